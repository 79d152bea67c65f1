"""A Unix socket connection by raw calls: what the start path needs of one.

``_socket``'s module initialisation (its hundreds of constants) costs ~0.2 ms,
more than the two calls a container's start makes on its connection to the
sysinfo agent; this is those calls, by libc.
"""

from __future__ import annotations

import os

from corral.linux import ffi
from corral.linux._libc import libc

AF_UNIX = 1
SOCK_SEQPACKET = 5
SOCK_CLOEXEC = 0o2000000
MSG_PEEK = 0x2
MSG_DONTWAIT = 0x40
_EAGAIN = 11
_ENOENT = 2
_ECONNREFUSED = 111
_EINTR = 4


class _SockaddrUn(ffi.Structure):
    _fields_ = (("sun_family", ffi.c_ushort), ("sun_path", ffi.c_char * 108))


def connect_seqpacket(path: str) -> int:
    """A close-on-exec SOCK_SEQPACKET connection to ``path``; -1 when nothing
    listens there (no socket, or refused).  OSError otherwise."""
    raw = path.encode()
    if len(raw) >= 108:
        raise OSError(36, f"socket path too long: {path}")
    fd = libc.socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)
    if fd < 0:
        err = ffi.get_errno()
        raise OSError(err, f"socket: {os.strerror(err)}")
    addr = _SockaddrUn(AF_UNIX, raw)
    while libc.connect(fd, ffi.byref(addr), ffi.sizeof(addr)) != 0:
        err = ffi.get_errno()
        if err == _EINTR:
            continue
        os.close(fd)
        if err in (_ENOENT, _ECONNREFUSED):
            return -1
        raise OSError(err, f"connect({path}): {os.strerror(err)}")
    return int(fd)


def peer_holds(fd: int) -> bool:
    """The other end of a connected socket is still open and has sent nothing:
    a peek that would block (EOF, a message or an error: False)."""
    buf = ffi.create_string_buffer(1)
    if libc.recv(fd, buf, 1, MSG_PEEK | MSG_DONTWAIT) < 0:
        return ffi.get_errno() == _EAGAIN
    return False
