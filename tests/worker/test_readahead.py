"""worker/readahead.py on a real socket pair: readable only while bytes wait, never blocking."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from worker.readahead import more_to_read, socket_of


def channel_on(sock: socket.socket | None) -> SimpleNamespace:
    """What the check reads of a py-amqp channel: `channel.connection.sock`."""
    return SimpleNamespace(connection=SimpleNamespace(sock=sock))


def test_readable_only_while_bytes_wait() -> None:
    a, b = socket.socketpair()
    try:
        channel = channel_on(a)
        assert socket_of(channel) is a
        assert not more_to_read(channel)
        b.sendall(b"frame")
        assert more_to_read(channel)
        assert a.recv(16) == b"frame"
        assert not more_to_read(channel)
    finally:
        a.close()
        b.close()
    assert not more_to_read(channel_on(a))  # closed meanwhile: nothing to read, no error


def test_no_socket_means_no_read_ahead() -> None:
    assert not more_to_read(None)
    assert not more_to_read(channel_on(None))
    assert not more_to_read(SimpleNamespace(connection=object()))
