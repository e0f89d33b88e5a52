"""Streamward: the organisation and access layer of a live-streaming cloud."""

__version__ = "0.1.0"
