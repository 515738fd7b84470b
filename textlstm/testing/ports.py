"""Free loopback ports for servers a test or benchmark starts itself."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick; another process may race us to it,
    which on a test machine's loopback is rare enough to accept)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
