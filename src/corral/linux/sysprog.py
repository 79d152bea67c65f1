"""A child that runs a list of system calls, sharing the caller's memory until it execs.

A container's init is set up by ~150 system calls (mounts, the pivot, files,
capabilities, seccomp) between its clone and its exec.  Made by a fork of
the Python caller, that costs the copy of the caller's page tables (~1 ms
with namespaces) and then a copy-on-write fault for every page either side
touches until the exec (~800 faults, ~3 µs each on a VM), plus the
interpreter's own work for each call: together more than the calls
themselves.  runc and crun avoid it by being C; LXC by a C library.

Here the caller writes the calls down as data -- a *program*: numbers,
arguments, which results to keep, which errors are expected -- and a
generic executor of ~60 machine instructions runs it in a child cloned with
CLONE_VM: no page table copy, no copy-on-write, no Python in the child.
The child shares the caller's memory until its execve (like vfork, but the
caller goes on: it has its own work meanwhile, such as writing the child's
id maps).  It only reads the program and writes its own stack and the
program's result slots, so the caller must keep the program alive and not
touch it until the child has exec'd or exited.  It has its own copy of the
file table and signal dispositions (no CLONE_FILES, no CLONE_SIGHAND).

The executor (x86-64; elsewhere ``available()`` is False and callers use
their Python path) is ``_CODE`` below, assembled from sysprog_x86_64.S beside
this file.  A program is a u64 report fd, then ops of ten u64 each: the
call's number, its six arguments, ``ctl`` (bit i: argument i is an address
whose u64 is passed; bit 8: a result of 0 is a failure, as EOF where a
message was due), ``store`` (where the result goes, or 0) and ``ok`` (an
errno that counts as success, -1 for any, 0 for none).  A failure writes
{op index, errno} to the report fd and exits 127.  The caller's side of the
clone returns the child's PID (or -errno) like a fork.

tests/unit/test_sysprog.py reassembles it (when GNU as is installed) and
compares, and runs programs through it.
"""

from __future__ import annotations

import _struct as struct  # struct.py is only `from _struct import *`
import os

from corral.linux import ffi
from corral.linux.ns import CLONE_INTO_CGROUP, CLONE_VM, SIGCHLD

_CODE = bytes.fromhex(
    "4989d0b8b30100000f054885c07401c34d8b28498d58084531e44c8b7338488b7b0841f6c6"
    "017403488b3f488b731041f6c6027403488b36488b531841f6c6047403488b124c8b532041"
    "f6c60874034d8b124c8b432841f6c61074034d8b004c8b4b3041f6c62074034d8b09488b03"
    "0f05488b53404885d27403488902483d01f0ffff73104885c0754841f7c600010000743feb"
    "1248f7d8488b53484883faff74304839d0742b4883ec104c89242448894424084c89ef4889"
    "e6ba10000000b8010000000f05bf7f000000b8e70000000f054883c35049ffc4e93cffffff")

# x86-64 system call numbers (the executor runs only there).
NR = {"read": 0, "write": 1, "close": 3, "rt_sigaction": 13, "rt_sigprocmask": 14,
      "ioctl": 16, "dup2": 33, "getpid": 39, "socket": 41, "sendmsg": 46, "execve": 59,
      "chdir": 80, "rename": 82, "mkdir": 83, "symlink": 88, "setresuid": 117,
      "setresgid": 119, "setsid": 112, "setgroups": 116, "pivot_root": 155, "prctl": 157,
      "mount": 165, "umount2": 166, "sethostname": 170, "exit_group": 231, "openat": 257,
      "unshare": 272, "seccomp": 317, "move_mount": 429, "close_range": 436}
ANY = -1  # ``ok``: every error counts as success
READY = (1 << 64) - 1  # op index of the record a program writes to say it is ready
RECORD = 16  # bytes of a report record: u64 op index, u64 errno
_STACK = 4096  # the executor pushes 16 bytes; every signal stays blocked
_OP = struct.Struct("<10q")
_U64 = struct.Struct("<Q")
_Q = (1 << 64) - 1


def available() -> bool:
    """The executor runs here (x86-64), and nothing asked for the Python path
    (``CORRAL_INIT=python``: for tests, and to tell a fault of this path apart)."""
    return os.uname().machine == "x86_64" and os.environ.get("CORRAL_INIT") != "python"


class Deref(int):
    """An address whose u64 the call passes instead of the address itself (a result
    stored by an earlier call)."""

    __slots__ = ()


class Program:
    """System calls to run in order, and the data they point to.

    Data is placed at once in buffers owned by the program (``string``,
    ``blob``, ``slot``, ``struct`` return its address), so every call is
    encoded when it is appended: a start's ~170 calls cost the caller a few
    hundred microseconds.
    """

    _CHUNK = 16384

    def __init__(self, capacity: int = 256) -> None:
        self.what: list[str] = []  # per op: what it does, for error messages
        self.count = 0
        # Unwritten ops exit (127): a child never runs into zeroes (read(0, 0, 0)).
        self._ops = ffi.create_string_buffer(bytes(8) + _EXIT * capacity, 8 + capacity * 80)
        self._capacity = capacity
        self._chunks: list[object] = []  # data buffers: alive as long as the program
        self._mem = memoryview(b"")
        self._base = self._used = 0
        self._strings: dict[str | bytes, int] = {}  # read-only data, placed once
        self.started = False  # a child runs it: ops may be appended, never moved

    # -- data --------------------------------------------------------------------------------

    def blob(self, data: bytes | int) -> int:
        """``data`` (or that many zero bytes) placed 8-byte aligned; its address."""
        size = data if type(data) is int else len(data)  # type: ignore[arg-type]
        need = size + 7 & ~7 or 8
        off = self._used
        if off + need > len(self._mem):
            if need > self._CHUNK // 4:  # a large item gets a buffer of its own
                buf = ffi.create_string_buffer(need)
                self._chunks.append(buf)
                if type(data) is not int:
                    memoryview(buf).cast("B")[:size] = data  # type: ignore[index]
                return int(ffi.addressof(buf))
            buf = ffi.create_string_buffer(self._CHUNK)
            self._chunks.append(buf)
            self._mem = memoryview(buf).cast("B")
            self._base, off = ffi.addressof(buf), 0
        if type(data) is not int and size:
            self._mem[off:off + size] = data  # type: ignore[index]
        self._used = off + need
        return self._base + off

    def string(self, text: str | bytes) -> int:
        """A NUL-terminated string (the same text twice: one copy)."""
        addr = self._strings.get(text)
        if addr is None:
            raw = text.encode() if type(text) is str else text  # type: ignore[union-attr]
            if b"\0" in raw:  # type: ignore[operator]
                raise ValueError(f"embedded null byte in {text!r}")  # as os.* says
            addr = self._strings[text] = self.blob(raw + b"\0")  # type: ignore[operator]
        return addr

    def slot(self) -> int:
        """Eight zero bytes: a result's place."""
        return self.blob(8)

    def struct(self, *fields: int) -> int:
        """u64 fields (addresses or numbers, unsigned)."""
        return self.blob(struct.pack(f"<{len(fields)}Q", *(f & _Q for f in fields)))

    def strings(self, items: list[str] | tuple[str, ...]) -> int:
        """A NULL-terminated array of C strings (argv, envp)."""
        return self.struct(*(self.string(s) for s in items), 0)

    # -- calls -------------------------------------------------------------------------------

    def call(self, nr: int, *args: int, what: str, ok: int = 0, store: int = 0,
             zero_fails: bool = False) -> int:
        """Append system call ``nr``; its index.  An argument that is a ``Deref``
        passes the u64 at that address.  ``ok``: an errno that is no failure
        (``ANY``: none is); ``store``: where its result goes."""
        index = self.count
        if index == self._capacity:
            self._grow()
        self._encode(index, nr, args, 256 if zero_fails else 0, store, ok)
        self.what.append(what)
        self.count = index + 1
        return index

    def patch(self, index: int, nr: int, *args: int, what: str, ok: int = 0,
              store: int = 0) -> None:
        """Rewrite op ``index``: also of a running program, before the child reaches it."""
        self._encode(index, nr, args, 0, store, ok)
        self.what[index] = what

    def _encode(self, index: int, nr: int, args: tuple[int, ...], ctl: int, store: int,
                ok: int) -> None:
        n = len(args)
        if n > 6:
            raise ValueError("a system call has at most six arguments")
        if Deref in map(type, args):
            for i, arg in enumerate(args):
                if type(arg) is Deref:
                    ctl |= 1 << i
        _OP.pack_into(self._ops, 8 + index * 80, nr, *args, *_ZEROS[n:], ctl, store, ok)

    def _grow(self) -> None:
        if self.started:
            raise RuntimeError("a running program's ops cannot move: give it the capacity")
        bigger = ffi.create_string_buffer(bytes(8) + _EXIT * (2 * self._capacity),
                                          8 + 2 * self._capacity * 80)
        memoryview(bigger).cast("B")[:len(self._ops)] = memoryview(self._ops).cast("B")
        self._ops, self._capacity = bigger, 2 * self._capacity

    def address(self, report_fd: int) -> int:
        """The program's address, with ``report_fd`` as where failures are reported.

        Ops may be appended while the child runs, as long as it waits (in a
        read) before reaching them: the caller writes them, then the byte that
        lets it go on (a system call between: the child sees them whole).  A
        program must end in an exit or exec of its own.
        """
        _U64.pack_into(self._ops, 0, report_fd)
        self.started = True
        return int(ffi.addressof(self._ops))

    @staticmethod
    def read(address: int) -> int:
        """The u64 at ``address`` (a result the child stored), as a signed number."""
        return int(ffi.c_long.from_address(address).value)


_ZEROS = (0,) * 6
_EXIT = _OP.pack(231, 127, 0, 0, 0, 0, 0, 0, 0, 0)  # exit_group(127)


class _Executor:
    """The machine code, in a page of its own mapped read+execute."""

    fn = None

    @classmethod
    def get(cls) -> object:
        if cls.fn is None:
            from corral.linux._libc import libc

            libc.mmap.restype = ffi.c_void_p
            libc.mmap.argtypes = [ffi.c_void_p, ffi.c_size_t, ffi.c_int, ffi.c_int, ffi.c_int,
                                  ffi.c_long]
            page = libc.mmap(None, 4096, 3, 0x22, -1, 0)  # RW, MAP_PRIVATE|MAP_ANONYMOUS
            if page in (None, (1 << 64) - 1):
                raise OSError(ffi.get_errno(), "mmap for the init's executor")
            (ffi.c_char * len(_CODE)).from_address(page).raw = _CODE
            if libc.mprotect(ffi.c_void_p(page), ffi.c_size_t(4096), 5) != 0:  # R+X
                raise OSError(ffi.get_errno(), "mprotect for the init's executor")

            class Run(ffi.CFuncPtr):
                _argtypes_ = (ffi.c_void_p, ffi.c_size_t, ffi.c_void_p)
                _restype_ = ffi.c_long
                _flags_ = ffi.FUNCFLAG_CDECL | ffi.FUNCFLAG_PYTHONAPI  # GIL held, as os.fork

            cls.fn = Run(page)
        return cls.fn


class Child:
    """A running program's child: its PID, and what must live until it execs."""

    __slots__ = ("_args", "_stack", "pid", "program")

    def __init__(self, pid: int, program: Program, stack: object, args: object) -> None:
        self.pid, self.program, self._stack, self._args = pid, program, stack, args


def start(program: Program, report_fd: int, flags: int = 0, cgroup_fd: int = -1) -> Child:
    """Clone a child (``flags``: namespaces; born in the cgroup2 directory
    ``cgroup_fd`` unless -1) that runs ``program``, reporting a failed call on
    ``report_fd``.  Signals stay blocked in the child (it starts with all
    blocked; a program unblocks them before its execve).  OSError when clone3
    fails."""
    import _signal

    fn = _Executor.get()
    base = program.address(report_fd)
    stack = ffi.create_string_buffer(_STACK)
    if cgroup_fd >= 0:
        flags |= CLONE_INTO_CGROUP
    args = ffi.create_string_buffer(struct.pack(
        "<11Q", flags | CLONE_VM, 0, 0, 0, SIGCHLD, ffi.addressof(stack), _STACK, 0, 0, 0,
        max(cgroup_fd, 0)), 88)
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        pid = fn(ffi.addressof(args), 88, base)  # type: ignore[operator]
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
    if pid < 0:
        raise OSError(-pid, f"clone3: {os.strerror(-pid)}")
    return Child(pid, program, stack, args)


def read_exact(fd: int, n: int) -> bytes | None:
    """``n`` bytes from a pipe, or None at EOF."""
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_record(fd: int) -> tuple[int, int] | None:
    """One report record (op index, errno), or None at EOF (the child exec'd or died)."""
    buf = read_exact(fd, RECORD)
    if buf is None:
        return None
    index, err = struct.unpack("<QQ", buf)
    return index, err

