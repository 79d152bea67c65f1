"""linux/unixsock: the start path's connection to the sysinfo agent, by raw calls."""

from __future__ import annotations

import _socket
import os
from pathlib import Path

from corral.linux import unixsock


def test_connects_to_a_listener_and_sees_it_go(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    assert unixsock.connect_seqpacket(path) == -1  # nothing there
    server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    server.bind(path)
    server.listen(1)
    fd = unixsock.connect_seqpacket(path)
    try:
        assert fd >= 0
        assert os.get_inheritable(fd) is False  # close-on-exec
        peer = _socket.socket(fileno=server._accept()[0])  # _socket's own accept
        assert unixsock.peer_holds(fd)  # open, nothing sent
        os.write(fd, b"hello")
        assert peer.recv(16) == b"hello"  # one record, as send would make it
        peer.send(b"x")
        assert not unixsock.peer_holds(fd)  # a message waits
        os.read(fd, 1)
        peer.close()
        assert not unixsock.peer_holds(fd)  # EOF: the peer went away
    finally:
        os.close(fd)
        server.close()
    server = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    os.unlink(path)
    server.bind(path)  # bound, not listening: refused
    try:
        assert unixsock.connect_seqpacket(path) == -1
    finally:
        server.close()
