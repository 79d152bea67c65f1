"""seccomp user notification (SECCOMP_RET_USER_NOTIF, Linux 5.0+): the listener's side.

A filter installed with SECCOMP_FILTER_FLAG_NEW_LISTENER (linux/filter.py)
returns a listener fd; a call its program answers with USER_NOTIF waits
until someone reads the notification from that fd (``recv``) and answers it
(``respond``).  The fd polls readable while a notification waits and hangs
up (EPOLLHUP) once no process uses the filter any more.

The caller's memory is reached through ``/proc/<pid>/mem``, opened *before*
the notification is checked to be still valid (``id_valid``): if it is, the
open file is the caller's memory even if the PID is reused right after
(seccomp_unotify(2), "Caveats").

Also here: sysinfo(2) itself and its struct, which the agent fills in.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct

from corral.linux import ffi
from corral.linux._libc import libc

SECCOMP_GET_NOTIF_SIZES = 3
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1  # let the call run as if allowed (5.5+)

# struct seccomp_notif { __u64 id; __u32 pid; __u32 flags; struct seccomp_data data; }
# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
_NOTIF = struct.Struct("=QIIiIQ6Q")
# struct seccomp_notif_resp { __u64 id; __s64 val; __s32 error; __u32 flags; }
_RESP = struct.Struct("=QqiI")
_DATA_SIZE = 64
_ID = struct.Struct("=Q")


def _ioc(direction: int, nr: int, size: int) -> int:
    """_IOC(dir, '!', nr, size) as in linux/seccomp.h (asm-generic ioctl encoding)."""
    return direction << 30 | size << 16 | ord("!") << 8 | nr


_IOW, _IOWR = 1, 3
NOTIF_RECV = _ioc(_IOWR, 0, _NOTIF.size)  # 0xc0502100
NOTIF_SEND = _ioc(_IOWR, 1, _RESP.size)  # 0xc0182101
NOTIF_ID_VALID = _ioc(_IOW, 2, _ID.size)  # 0x40082102

_SECCOMP_NR = {"x86_64": 317, "aarch64": 277, "riscv64": 277}


class _NotifSizes(ffi.Structure):
    _fields_ = (("seccomp_notif", ffi.c_uint16), ("seccomp_notif_resp", ffi.c_uint16),
                ("seccomp_data", ffi.c_uint16))


def supported() -> bool:
    """Whether the kernel has user notification with exactly the structs used here.

    The ioctl numbers encode the struct sizes, so a kernel whose structs
    grew would refuse them: SECCOMP_GET_NOTIF_SIZES must match.
    """
    nr = _SECCOMP_NR.get(os.uname().machine)
    if nr is None:
        return False
    sizes = _NotifSizes()
    ret = libc.syscall(ffi.c_long(nr), ffi.c_long(SECCOMP_GET_NOTIF_SIZES),
                       ffi.c_long(0), ffi.byref(sizes))
    return ret == 0 and (sizes.seccomp_notif, sizes.seccomp_notif_resp,
                         sizes.seccomp_data) == (_NOTIF.size, _RESP.size, _DATA_SIZE)


class Notification:
    """One waiting call: its id, the caller's PID (in our PID namespace) and its data."""

    __slots__ = ("arch", "args", "id", "nr", "pid")

    def __init__(self, raw: bytes | bytearray) -> None:
        self.id, self.pid, _flags, self.nr, self.arch, _ip, *args = _NOTIF.unpack(raw)
        self.args: tuple[int, ...] = tuple(args)


def recv(listener: int) -> Notification:
    """The next notification.  Blocks if none waits: call when the fd polls readable.

    ENOENT: the caller was killed between the poll and this read.
    """
    buf = bytearray(_NOTIF.size)  # the kernel wants it zeroed
    fcntl.ioctl(listener, NOTIF_RECV, buf, True)
    return Notification(buf)


def id_valid(listener: int, notif_id: int) -> bool:
    """Whether the notification still waits (its caller is alive and in the call)."""
    try:
        fcntl.ioctl(listener, NOTIF_ID_VALID, _ID.pack(notif_id))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def respond(listener: int, notif_id: int, *, val: int = 0, error: int = 0,
            cont: bool = False) -> bool:
    """Answer: the call returns ``val``, or fails with ``error`` (a positive errno),
    or with ``cont`` runs as if the filter had allowed it.  False if the
    caller is gone (killed while it waited)."""
    resp = _RESP.pack(notif_id, val, -error, SECCOMP_USER_NOTIF_FLAG_CONTINUE if cont else 0)
    try:
        fcntl.ioctl(listener, NOTIF_SEND, resp)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


def write_memory(listener: int, notif: Notification, addr: int, data: bytes) -> bool:
    """Write ``data`` at ``addr`` in the caller's memory; False if the caller is gone.

    OSError(EFAULT) for an address the caller could not write either; any
    other OSError if its memory cannot be reached (e.g. its PID is not in our
    PID namespace).  As with LXD's, which writes the same way, a *read-only*
    private mapping is written too (/proc/<pid>/mem forces, unless booted
    with proc_mem.force_override=never): the caller only spoils its own copy.
    """
    try:
        fd = os.open(f"/proc/{notif.pid}/mem", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        if not id_valid(listener, notif.id):
            return False
        raise
    try:
        if not id_valid(listener, notif.id):  # the file is the caller's, not a reused PID's
            return False
        try:
            written = os.pwrite(fd, data, addr)
        except (OverflowError, OSError) as exc:  # EIO: not mapped or not writable
            raise OSError(errno.EFAULT, f"cannot write at {addr:#x}") from exc
        if written != len(data):
            raise OSError(errno.EFAULT, f"cannot write at {addr:#x}")
    finally:
        os.close(fd)
    return True


# -- sysinfo(2) ---------------------------------------------------------------------------

class Sysinfo(ffi.Structure):
    """struct sysinfo (linux/sysinfo.h) of a 64-bit process: 112 bytes."""

    _fields_ = (("uptime", ffi.c_long), ("loads", ffi.c_ulong * 3),
                ("totalram", ffi.c_ulong), ("freeram", ffi.c_ulong),
                ("sharedram", ffi.c_ulong), ("bufferram", ffi.c_ulong),
                ("totalswap", ffi.c_ulong), ("freeswap", ffi.c_ulong),
                ("procs", ffi.c_ushort), ("pad", ffi.c_ushort),
                ("totalhigh", ffi.c_ulong), ("freehigh", ffi.c_ulong),
                ("mem_unit", ffi.c_uint),
                ("_f", ffi.c_char * (20 - 2 * ffi.sizeof(ffi.c_ulong)
                                        - ffi.sizeof(ffi.c_uint))))


def sysinfo() -> Sysinfo:
    """This process's sysinfo(2): the host's, for the agent."""
    info = Sysinfo()
    if libc.sysinfo(ffi.byref(info)) != 0:
        err = ffi.get_errno()
        raise OSError(err, f"sysinfo: {os.strerror(err)}")
    return info
