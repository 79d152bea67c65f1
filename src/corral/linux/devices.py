"""Which devices a container may use: the device cgroup (v1) and its eBPF successor (v2).

One allow-list, two enforcers.  On cgroup v1 it is written to the devices
controller of the container's outer cgroup; on cgroup v2 there is no such
file, so a BPF_PROG_TYPE_CGROUP_DEVICE program, assembled here from the
same list, is attached to the outer cgroup (what runc and systemd do).  On
hybrid hosts both apply.  The container cannot lift either: the files and
the program sit on the outer cgroup, which it does not own, and its seccomp
filter denies bpf(2).
"""

from __future__ import annotations

import _struct as struct  # struct.py is only `from _struct import *`
import errno
import os

from corral.linux import ffi
from corral.linux._libc import libc

# (type, major, minor or -1 for any, access) — the devices every container has
# in /dev (see runtime/rootfs.py), its ptys, and tun/fuse for VPNs and FUSE
# filesystems inside; nothing else: no disks, no memory, no host consoles.
ALLOWED: tuple[tuple[str, int, int, str], ...] = (
    ("c", 1, 3, "rwm"),    # null
    ("c", 1, 5, "rwm"),    # zero
    ("c", 1, 7, "rwm"),    # full
    ("c", 1, 8, "rwm"),    # random
    ("c", 1, 9, "rwm"),    # urandom
    ("c", 5, 0, "rwm"),    # tty
    ("c", 5, 1, "rwm"),    # console
    ("c", 5, 2, "rwm"),    # ptmx
    ("c", 136, -1, "rwm"),  # the pts of the container's own devpts
    ("c", 10, 200, "rwm"),  # net/tun
    ("c", 10, 229, "rwm"),  # fuse
)


def v1_rules() -> list[str]:
    """What to write to devices.allow, after "a" to devices.deny."""
    return [f"{t} {major}:{'*' if minor < 0 else minor} {access}"
            for t, major, minor, access in ALLOWED]


# -- eBPF for cgroup v2 ------------------------------------------------------------------

_DEV_TYPE = {"b": 1, "c": 2}            # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}      # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6
_BPF_F_ALLOW_MULTI = 2
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280}


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def program(rules: tuple[tuple[str, int, int, str], ...] = ALLOWED) -> bytes:
    """The BPF program: 1 (allow) when the access matches a rule, else 0.

    Context (struct bpf_cgroup_dev_ctx): u32 access_type (type in the low
    16 bits, access in the high 16), u32 major, u32 minor.
    """
    ldx_w, mov_x, and_k, rsh_k, jne_k, mov_k, exit_ = 0x61, 0xBF, 0x57, 0x77, 0x55, 0xB7, 0x95
    head = [
        _insn(ldx_w, dst=2, src=1, off=0),   # r2 = access_type
        _insn(mov_x, dst=3, src=2),
        _insn(and_k, dst=3, imm=0xFFFF),     # r3 = device type
        _insn(mov_x, dst=4, src=2),
        _insn(rsh_k, dst=4, imm=16),         # r4 = requested access
        _insn(ldx_w, dst=5, src=1, off=4),   # r5 = major
        _insn(ldx_w, dst=6, src=1, off=8),   # r6 = minor
    ]
    body: list[bytes] = []
    for kind, major, minor, access in rules:
        mask = sum(_ACCESS[a] for a in access)
        block = [(jne_k, 3, _DEV_TYPE[kind]), (jne_k, 5, major)]
        if minor >= 0:
            block.append((jne_k, 6, minor))
        # r7 = requested & ~allowed; any bit left means "not this rule"
        tail = [_insn(mov_x, dst=7, src=4), _insn(and_k, dst=7, imm=~mask & 0xFFFF),
                _insn(jne_k, dst=7, imm=0, off=2), _insn(mov_k, dst=0, imm=1), _insn(exit_)]
        size = len(block) + len(tail)
        for i, (code, reg, imm) in enumerate(block):
            body.append(_insn(code, dst=reg, imm=imm, off=size - i - 1))
        body.extend(tail)
    tail_deny = [_insn(mov_k, dst=0, imm=0), _insn(exit_)]
    return b"".join(head + body + tail_deny)


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ffi.create_string_buffer(attr, len(attr))
    # The verifier gives up with EAGAIN when a signal is pending (a sibling's
    # SIGCHLD during a parallel start, say); libbpf retries the same way.
    for attempt in range(5):
        ret = libc.syscall(ffi.c_long(_SYS_BPF[os.uname().machine]), ffi.c_long(cmd),
                           buf, ffi.c_long(len(attr)))
        if ret >= 0:
            return int(ret)
        err = ffi.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR) or attempt == 4:
            raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    raise AssertionError("unreachable")


# Programs this process has loaded, by rule set: every container it starts
# gets the same one (verified once, one copy in the kernel for all of them).
_loaded: dict[tuple[tuple[str, int, int, str], ...], int] = {}


def _load(rules: tuple[tuple[str, int, int, str], ...]) -> int:
    fd = _loaded.get(rules)
    if fd is None:
        insns = program(rules)
        insns_buf = ffi.create_string_buffer(insns, len(insns))
        license_buf = ffi.create_string_buffer(b"GPL")
        attr = bytearray(128)
        struct.pack_into("<IIQQ", attr, 0, _BPF_PROG_TYPE_CGROUP_DEVICE, len(insns) // 8,
                         ffi.addressof(insns_buf), ffi.addressof(license_buf))
        fd = _loaded[rules] = _bpf(_BPF_PROG_LOAD, bytes(attr))
    return fd


def attach_v2(cgroup_dir: str, rules: tuple[tuple[str, int, int, str], ...] = ALLOWED) -> None:
    """Attach the device program to a cgroup v2 directory (loaded once per process;
    the cgroup holds its own reference, the fd here is close-on-exec)."""
    prog_fd = _load(rules)
    cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attach = struct.pack("<IIII", cg_fd, prog_fd, _BPF_CGROUP_DEVICE,
                             _BPF_F_ALLOW_MULTI) + bytes(112)
        _bpf(_BPF_PROG_ATTACH, attach)
    finally:
        os.close(cg_fd)
