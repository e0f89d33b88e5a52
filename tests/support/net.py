"""Loopback ports for the servers the tests start (and for addresses where nothing listens)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now; the OS hands out another one to the next caller, so that
    parallel test processes do not pick the same port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
