"""seccomp(2): a classic-BPF filter compiler and its installer, without libseccomp.

A filter is a list of :class:`Rule` -- "this syscall, when its arguments
match these conditions, gets this action" -- compiled for one architecture
by :func:`compile_filter` into the bytes of a ``struct sock_filter`` array,
and put on the calling thread by :func:`install`.

The program has this shape::

    ld  arch             ; a foreign ABI (i386 int 0x80, arm32 compat) would
    jeq AUDIT_ARCH, ok   ; index our table with the wrong numbers: kill
    ret KILL_PROCESS
  ok:
    ld  nr
    jge 0x40000000 -> ret ERRNO(ENOSYS)     ; x86_64 only: the x32 ABI
    jeq nr_1, 0, next_1 ; rule bodies inline, each ends in a ret
    ...                 ; (argument checks, then the action)
    ret default

Rules for one syscall are tried in order and the first whose conditions all
hold decides.  Syscalls no rule names reach ``ret default`` having only
looked at ``arch`` and ``nr``, which lets the kernel's per-syscall action
cache (5.11+) skip the filter for them entirely.

Classic BPF conditional jumps have 8-bit offsets.  Instructions are emitted
with symbolic labels and :func:`_assemble` widens any conditional jump whose
target is further than 255 instructions into a ``jxx 0,1; ja T; ja F``
triple (``ja`` has a 32-bit offset), repeating until the layout is stable.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from corral.linux import ffi
from corral.linux._libc import libc

# --- classic BPF opcodes (linux/bpf_common.h) -----------------------------

BPF_LD_W_ABS = 0x00 | 0x00 | 0x20  # BPF_LD | BPF_W | BPF_ABS
BPF_ALU_AND_K = 0x04 | 0x50 | 0x00  # BPF_ALU | BPF_AND | BPF_K
BPF_JA = 0x05 | 0x00  # BPF_JMP | BPF_JA
BPF_JEQ_K = 0x05 | 0x10 | 0x00
BPF_JGT_K = 0x05 | 0x20 | 0x00
BPF_JGE_K = 0x05 | 0x30 | 0x00
BPF_JSET_K = 0x05 | 0x40 | 0x00
BPF_RET_K = 0x06 | 0x00

BPF_MAXINSNS = 4096
_MAX_JUMP = 255

# --- seccomp (linux/seccomp.h, linux/audit.h) -----------------------------

SECCOMP_RET_KILL_PROCESS = 0x8000_0000
SECCOMP_RET_KILL_THREAD = 0x0000_0000
SECCOMP_RET_TRAP = 0x0003_0000
SECCOMP_RET_ERRNO = 0x0005_0000
SECCOMP_RET_USER_NOTIF = 0x7FC0_0000
SECCOMP_RET_LOG = 0x7FFC_0000
SECCOMP_RET_ALLOW = 0x7FFF_0000
SECCOMP_RET_DATA = 0x0000_FFFF

ALLOW = SECCOMP_RET_ALLOW
KILL_PROCESS = SECCOMP_RET_KILL_PROCESS
USER_NOTIF = SECCOMP_RET_USER_NOTIF  # wait for the filter's listener to answer

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_MODE_FILTER = 2
PR_SET_SECCOMP = 22

AUDIT_ARCH_X86_64 = 0xC000_003E
AUDIT_ARCH_AARCH64 = 0xC000_00B7
X32_SYSCALL_BIT = 0x4000_0000

# struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }
OFF_NR = 0
OFF_ARCH = 4
OFF_ARGS = 16
SECCOMP_DATA_SIZE = 64


def errno_action(n: int) -> int:
    """SECCOMP_RET_ERRNO with errno ``n``: the syscall returns -1 and sets errno."""
    if not 0 < n <= 4095:  # the kernel clamps larger values to MAX_ERRNO
        raise ValueError(f"errno {n} out of range")
    return SECCOMP_RET_ERRNO | n


EPERM = errno_action(_errno.EPERM)
ENOSYS = errno_action(_errno.ENOSYS)

# --- architectures ---------------------------------------------------------

# uname machine -> (AUDIT_ARCH, column in SYSCALLS, x32-style numbers to refuse)
ARCHES: dict[str, tuple[int, int, bool]] = {
    "x86_64": (AUDIT_ARCH_X86_64, 0, True),
    "aarch64": (AUDIT_ARCH_AARCH64, 1, False),
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

# name -> (x86_64, aarch64); None where the arch has no such syscall.  From
# arch/x86/entry/syscalls/syscall_64.tbl (asm/unistd_64.h) and
# include/uapi/asm-generic/unistd.h, which aarch64 uses.  Only names some
# profile or test refers to; the generic ones are asm-generic's numbering,
# not x86_64's historical one.  tests/unit/test_seccomp.py checks these
# against the installed headers when they are present.
SYSCALLS: dict[str, tuple[int | None, int | None]] = {
    "read": (0, 63),
    "write": (1, 64),
    "getpid": (39, 172),
    "socket": (41, 198),
    "clone": (56, 220),
    "fork": (57, None),
    "uselib": (134, None),
    "personality": (135, 92),
    "sysinfo": (99, 179),
    "syslog": (103, 116),
    "adjtimex": (159, 171),
    "acct": (163, 89),
    "settimeofday": (164, 170),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "reboot": (169, 142),
    "iopl": (172, None),
    "ioperm": (173, None),
    "create_module": (174, None),
    "init_module": (175, 105),
    "delete_module": (176, 106),
    "get_kernel_syms": (177, None),
    "query_module": (178, None),
    "quotactl": (179, 60),
    "nfsservctl": (180, 42),
    "lookup_dcookie": (212, 18),
    "clock_settime": (227, 112),
    "kexec_load": (246, 104),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "keyctl": (250, 219),
    "unshare": (272, 97),
    "perf_event_open": (298, 241),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "clock_adjtime": (305, 266),
    "setns": (308, 268),
    "finit_module": (313, 273),
    "kexec_file_load": (320, 294),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "clone3": (435, 435),
    "quotactl_fd": (443, 443),
    # 32-bit only (i386, arm32...): filters for x86_64/aarch64 skip it, and
    # the arch check already kills compat callers.
    "stime": (None, None),
}


def machine(arch: str | None = None) -> str:
    """The canonical arch name for ``arch`` (default: this machine); UnsupportedError if none."""
    name = arch or os.uname().machine
    name = _ARCH_ALIASES.get(name, name)
    if name not in ARCHES:
        from corral.errors import UnsupportedError

        raise UnsupportedError(f"seccomp filters are not supported on {name}",
                               hint=f"Supported architectures: {', '.join(ARCHES)}.")
    return name


def syscall_nr(name: str, arch: str | None = None) -> int | None:
    """The number of syscall ``name`` on ``arch``; None if the arch lacks it.

    KeyError for a name in no table, so a typo in a profile fails loudly
    instead of silently filtering nothing.
    """
    return SYSCALLS[name][ARCHES[machine(arch)][1]]


# --- rules -----------------------------------------------------------------

_U64 = 0xFFFF_FFFF_FFFF_FFFF
_U32 = 0xFFFF_FFFF


@dataclass(frozen=True)
class Arg:
    """A condition on syscall argument ``index``: ``(arg & mask) <op> value``.

    ``op`` is "eq", "ne" or "masked_eq" (the same as "eq": the mask is
    what makes it masked).  Arguments are 64-bit; for a kernel ``int``
    argument pass ``mask=0xffffffff``: the kernel ignores the register's
    upper half, so a full 64-bit compare could be dodged with garbage there.
    """

    index: int
    op: str
    value: int
    mask: int = _U64

    def __post_init__(self) -> None:
        if not 0 <= self.index < 6:
            raise ValueError(f"syscall argument index {self.index} out of range 0..5")
        if self.op not in ("eq", "ne", "masked_eq"):
            raise ValueError(f"unknown argument comparison {self.op!r}")
        if not (0 <= self.mask <= _U64 and 0 <= self.value <= _U64):
            raise ValueError("argument value and mask must be unsigned 64-bit")
        if self.value & ~self.mask:
            # (arg & mask) can never equal it: almost certainly a mistake.
            raise ValueError(f"value {self.value:#x} has bits outside mask {self.mask:#x}")


def eq(index: int, value: int, mask: int = _U64) -> Arg:
    return Arg(index, "eq", value & mask, mask)


def ne(index: int, value: int, mask: int = _U64) -> Arg:
    return Arg(index, "ne", value & mask, mask)


def masked_eq(index: int, mask: int, value: int) -> Arg:
    return Arg(index, "masked_eq", value, mask)


@dataclass(frozen=True)
class Rule:
    """``syscall`` (a name from SYSCALLS or a number) gets ``action`` when all ``args`` hold."""

    syscall: str | int
    action: int
    args: tuple[Arg, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.syscall, str) and self.syscall not in SYSCALLS:
            raise KeyError(f"unknown syscall {self.syscall!r}")
        if isinstance(self.syscall, int) and not 0 <= self.syscall <= _U32:
            raise ValueError(f"syscall number {self.syscall} out of range")
        if not isinstance(self.args, tuple):
            object.__setattr__(self, "args", tuple(self.args))


# --- assembler ---------------------------------------------------------------


class _Label:
    __slots__ = ()


@dataclass
class _Op:
    """One instruction; ``jt``/``jf`` (conditional) or ``to`` (ja) are labels, None = next."""

    code: int
    k: int = 0
    jt: _Label | None = None
    jf: _Label | None = None
    to: _Label | None = None

    @property
    def conditional(self) -> bool:
        return self.code & 0x07 == 0x05 and self.code != BPF_JA


_Item = _Op | _Label


def _assemble(items: Sequence[_Item]) -> list[tuple[int, int, int, int]]:
    """Resolve labels into (code, jt, jf, k) with forward offsets that fit their fields."""
    wide: set[int] = set()  # indexes of conditionals emitted as jxx/ja/ja
    while True:
        addr: dict[int, int] = {}  # id(label) -> instruction index
        ends: list[int] = []  # per item: the address right after it
        pc = 0
        for i, it in enumerate(items):
            if isinstance(it, _Label):
                addr[id(it)] = pc
            else:
                pc += 3 if i in wide else 1
            ends.append(pc)
        grew = False
        for i, it in enumerate(items):
            if isinstance(it, _Op) and it.conditional and i not in wide:
                for t in (it.jt, it.jf):
                    if t is not None and addr[id(t)] - ends[i] > _MAX_JUMP:
                        wide.add(i)
                        grew = True
                        break
        if not grew:
            break

    def target(t: _Label | None, end: int) -> int:
        return end if t is None else addr[id(t)]

    out: list[tuple[int, int, int, int]] = []
    for i, it in enumerate(items):
        if isinstance(it, _Label):
            continue
        end = ends[i]
        if it.code == BPF_JA:
            out.append((BPF_JA, 0, 0, target(it.to, end) - (len(out) + 1)))
        elif it.conditional and i in wide:
            here = len(out)
            out.append((it.code, 0, 1, it.k))
            out.append((BPF_JA, 0, 0, target(it.jt, end) - (here + 2)))
            out.append((BPF_JA, 0, 0, target(it.jf, end) - (here + 3)))
        elif it.conditional:
            here = len(out)
            out.append((it.code, target(it.jt, end) - (here + 1),
                        target(it.jf, end) - (here + 1), it.k))
        else:
            out.append((it.code, 0, 0, it.k))
    for pc, (code, jt, jf, k) in enumerate(out):  # classic BPF only jumps forward
        assert 0 <= jt <= _MAX_JUMP and 0 <= jf <= _MAX_JUMP, (pc, code, jt, jf)
        assert code != BPF_JA or pc + 1 + k < len(out), (pc, k)
    return out


def _arg_check(a: Arg, fail: _Label) -> list[_Item]:
    """Instructions that fall through when ``a`` holds and jump to ``fail`` otherwise."""
    lo_off = OFF_ARGS + 8 * a.index  # both supported arches are little-endian
    # Compare the high word first: for masks that leave it out, skip it.
    halves = [(lo_off + 4, a.mask >> 32, a.value >> 32), (lo_off, a.mask & _U32, a.value & _U32)]
    halves = [h for h in halves if h[1]]
    items: list[_Item] = []
    if a.op in ("eq", "masked_eq"):
        for off, mask, value in halves:
            items.append(_Op(BPF_LD_W_ABS, off))
            if mask != _U32:
                items.append(_Op(BPF_ALU_AND_K, mask))
            items.append(_Op(BPF_JEQ_K, value, jf=fail))
        return items
    # "ne": holds as soon as one half differs.
    if not halves:  # mask 0: both sides are 0, never unequal
        return [_Op(BPF_JA, to=fail)]
    ok = _Label()
    for n, (off, mask, value) in enumerate(halves):
        items.append(_Op(BPF_LD_W_ABS, off))
        if mask != _U32:
            items.append(_Op(BPF_ALU_AND_K, mask))
        last = n == len(halves) - 1
        items.append(_Op(BPF_JEQ_K, value, jt=fail if last else None, jf=None if last else ok))
    items.append(ok)
    return items


def compile_filter(rules: Iterable[Rule], arch: str | None = None,
                   default: int = ALLOW) -> bytes:
    """The BPF program (``struct sock_filter[]`` bytes) for ``rules`` on ``arch``.

    Names the arch lacks are skipped.  Several rules for one syscall are
    tried in the order given; the first that matches wins.
    """
    name = machine(arch)
    audit_arch, _, refuse_x32 = ARCHES[name]

    by_nr: dict[int, list[Rule]] = {}
    for r in rules:
        nr = syscall_nr(r.syscall, name) if isinstance(r.syscall, str) else r.syscall
        if nr is not None:
            by_nr.setdefault(nr, []).append(r)

    arch_ok = _Label()
    items: list[_Item] = [
        _Op(BPF_LD_W_ABS, OFF_ARCH),
        _Op(BPF_JEQ_K, audit_arch, jt=arch_ok),
        _Op(BPF_RET_K, KILL_PROCESS),
        arch_ok,
        _Op(BPF_LD_W_ABS, OFF_NR),
    ]
    if refuse_x32:
        # x32 syscalls arrive with AUDIT_ARCH_X86_64 and nr | 0x40000000;
        # refusing them all keeps that second numbering out of the filter,
        # and ENOSYS is what a kernel built without x32 answers.
        native = _Label()
        items += [_Op(BPF_JGE_K, X32_SYSCALL_BIT, jf=native), _Op(BPF_RET_K, ENOSYS), native]

    for nr, group in by_nr.items():
        nxt = _Label()
        items.append(_Op(BPF_JEQ_K, nr, jf=nxt))
        for r in group:
            fail = _Label()
            for a in r.args:
                items += _arg_check(a, fail)
            items.append(_Op(BPF_RET_K, r.action))
            items.append(fail)
            if not r.args:
                break  # later rules for this syscall are unreachable
        else:
            items.append(_Op(BPF_RET_K, default))
        # Every body ends in a ret, so the accumulator still holds nr at nxt.
        items.append(nxt)
    items.append(_Op(BPF_RET_K, default))

    prog = _assemble(items)
    if len(prog) > BPF_MAXINSNS:
        raise ValueError(f"seccomp filter has {len(prog)} instructions, "
                         f"the kernel takes at most {BPF_MAXINSNS}")
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    """The (code, jt, jf, k) instructions of ``program`` (for tests and debugging)."""
    if len(program) % 8:
        raise ValueError("a BPF program is a whole number of 8-byte instructions")
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


# --- installing --------------------------------------------------------------


class _SockFilter(ffi.Structure):
    _fields_ = (("code", ffi.c_uint16), ("jt", ffi.c_uint8), ("jf", ffi.c_uint8),
                ("k", ffi.c_uint32))


class _SockFprog(ffi.Structure):
    _fields_ = (("len", ffi.c_ushort), ("filter", ffi.POINTER(_SockFilter)))


_SECCOMP_NR = {"x86_64": 317, "aarch64": 277}


def install(program: bytes) -> None:
    """Attach ``program`` to the calling thread (and what it later forks or execs).

    No PR_SET_NO_NEW_PRIVS here: without it the kernel demands CAP_SYS_ADMIN
    in the current user namespace, which a container's init has -- and
    setting it would stop setuid binaries in the container from working.
    Only this thread is filtered (no TSYNC): call it before starting threads.
    """
    n = len(program) // 8
    if not program or len(program) % 8 or n > BPF_MAXINSNS:
        raise ValueError(f"bad seccomp program of {len(program)} bytes")
    buf = (_SockFilter * n).from_buffer_copy(program)
    prog = _SockFprog(n, ffi.cast(buf, ffi.POINTER(_SockFilter)))
    nr = _SECCOMP_NR[machine()]
    ret = libc.syscall(ffi.c_long(nr), ffi.c_long(SECCOMP_SET_MODE_FILTER),
                       ffi.c_long(0), ffi.byref(prog))
    err = ffi.get_errno() if ret == -1 else 0
    if err == _errno.ENOSYS:  # before 3.17 the only way in was prctl
        # c_ulong throughout: ns.py may have set prctl's argtypes, or not.
        addr = ffi.addressof(prog)
        ret = libc.prctl(ffi.c_int(PR_SET_SECCOMP), ffi.c_ulong(SECCOMP_MODE_FILTER),
                         ffi.c_ulong(addr), ffi.c_ulong(0), ffi.c_ulong(0))
        err = ffi.get_errno() if ret == -1 else 0
    if err:
        raise OSError(err, f"seccomp(SET_MODE_FILTER): {os.strerror(err)}")
