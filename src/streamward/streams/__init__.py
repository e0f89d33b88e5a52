"""Streams, their lifecycle and their tags."""
