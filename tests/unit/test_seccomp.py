"""The seccomp filter compiler and default profile, run on a small classic-BPF interpreter.

No kernel involved: the programs are executed against synthetic
``struct seccomp_data`` records, after the checks the kernel's
``seccomp_check_filter`` would make.
"""

from __future__ import annotations

import errno
import re
import struct
from pathlib import Path

import pytest

from corral.linux import seccomp
from corral.linux.seccomp import (
    ALLOW,
    ENOSYS,
    EPERM,
    KILL_PROCESS,
    Arg,
    Rule,
    compile_filter,
    decode,
    eq,
    masked_eq,
    ne,
)
from corral.runtime.seccomp_profile import (
    CLONE_NEWUSER,
    DENIED,
    PERSONALITY_ALLOWED,
    RESTRICTED,
    build,
    default_profile,
)

CLONE_NEWNS = 0x0002_0000
SIGCHLD = 17
ARCH = {"x86_64": seccomp.AUDIT_ARCH_X86_64, "aarch64": seccomp.AUDIT_ARCH_AARCH64}
AUDIT_ARCH_I386 = 0x4000_0003


def run_bpf(program: bytes, data: bytes) -> int:
    """Execute ``program`` on ``data`` the way the kernel does; return what it returns."""
    insns = decode(program)
    assert 0 < len(insns) <= seccomp.BPF_MAXINSNS
    acc = 0
    pc = 0
    steps = 0
    while True:
        assert 0 <= pc < len(insns), f"fell off the program at {pc}"
        code, jt, jf, k = insns[pc]
        pc += 1
        steps += 1
        assert steps <= len(insns), "loop"  # forward jumps only: cannot exceed length
        if code == 0x20:  # ld w abs
            assert k % 4 == 0 and k + 4 <= len(data), k
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:  # and k
            acc &= k
        elif code == 0x05:  # ja
            pc += k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: bool(acc & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:  # ret k
            return k
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1}")


def check_like_kernel(program: bytes) -> None:
    """What seccomp_check_filter and bpf_check_classic would refuse."""
    insns = decode(program)
    assert 0 < len(insns) <= seccomp.BPF_MAXINSNS
    assert insns[-1][0] == 0x06, "must end in ret"
    for pc, (code, jt, jf, k) in enumerate(insns):
        assert code in (0x20, 0x54, 0x05, 0x15, 0x25, 0x35, 0x45, 0x06), hex(code)
        if code == 0x20:
            assert k % 4 == 0 and k < seccomp.SECCOMP_DATA_SIZE
        if code == 0x05:
            assert pc + 1 + k < len(insns)
        elif code & 0x07 == 0x05:
            assert pc + 1 + jt < len(insns) and pc + 1 + jf < len(insns)


def data(nr: int, *args: int, arch: str | int = "x86_64") -> bytes:
    a = ARCH[arch] if isinstance(arch, str) else arch
    full = [*args, *[0] * (6 - len(args))]
    return struct.pack("=iIQ6Q", nr, a, 0x7F00_0000_1234, *[v & 0xFFFF_FFFF_FFFF_FFFF
                                                             for v in full])


def nr(name: str, arch: str = "x86_64") -> int:
    n = seccomp.syscall_nr(name, arch)
    assert n is not None
    return n


@pytest.fixture(scope="module", params=["x86_64", "aarch64"])
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def prog(arch: str) -> bytes:
    p = build(default_profile(), arch)
    check_like_kernel(p)
    return p


def call(prog: bytes, arch: str, name: str, *args: int) -> int:
    return run_bpf(prog, data(nr(name, arch), *args, arch=arch))


# --- the default profile -------------------------------------------------------


def test_denied_syscalls_get_eperm(prog: bytes, arch: str) -> None:
    hit = 0
    for name in DENIED:
        n = seccomp.syscall_nr(name, arch)
        if n is None:
            continue
        hit += 1
        assert run_bpf(prog, data(n, 0, 0, arch=arch)) == EPERM, name
        assert run_bpf(prog, data(n, 5, 0xFFFF_FFFF_FFFF_FFFF, arch=arch)) == EPERM, name
    assert hit >= 20


@pytest.mark.parametrize("name", ["read", "write", "getpid", "reboot", "name_to_handle_at",
                                  "setns"])
def test_ordinary_syscalls_allowed(prog: bytes, arch: str, name: str) -> None:
    if seccomp.syscall_nr(name, arch) is None:
        pytest.skip(f"no {name} on {arch}")
    assert call(prog, arch, name, 3, 0x1000, 12) == ALLOW


def test_unlisted_numbers_allowed(prog: bytes, arch: str) -> None:
    restricted = {seccomp.syscall_nr(n, arch) for n in (*DENIED, *RESTRICTED)}
    for n in range(460):
        if n not in restricted:
            assert run_bpf(prog, data(n, 0x1000_0000, arch=arch)) == ALLOW, n


def test_clone_newuser(prog: bytes, arch: str) -> None:
    assert call(prog, arch, "clone", SIGCHLD) == ALLOW
    assert call(prog, arch, "clone", 0x003D_0F00) == ALLOW  # pthread-style flags
    assert call(prog, arch, "clone", CLONE_NEWUSER | SIGCHLD) == EPERM
    assert call(prog, arch, "clone", CLONE_NEWUSER | CLONE_NEWNS) == EPERM
    # The kernel uses only the low word of clone's flags; so does the filter.
    assert call(prog, arch, "clone", (0xFFFF << 32) | SIGCHLD) == ALLOW
    assert call(prog, arch, "clone", (0xFFFF << 32) | CLONE_NEWUSER) == EPERM


def test_unshare_newuser(prog: bytes, arch: str) -> None:
    assert call(prog, arch, "unshare", CLONE_NEWUSER | CLONE_NEWNS) == EPERM
    assert call(prog, arch, "unshare", CLONE_NEWUSER) == EPERM
    assert call(prog, arch, "unshare", CLONE_NEWNS) == ALLOW
    assert call(prog, arch, "unshare", 0) == ALLOW


def test_clone3_enosys(prog: bytes, arch: str) -> None:
    assert call(prog, arch, "clone3", 0x7FFF_0000_1000, 88) == ENOSYS


def test_personality(prog: bytes, arch: str) -> None:
    for v in PERSONALITY_ALLOWED:
        assert call(prog, arch, "personality", v) == ALLOW, hex(v)
    for v in (0x1234, 0x1, 0x0040_0000, 0x0400_0000, 0x20001, 0xFFFF_FFFE):
        assert call(prog, arch, "personality", v) == EPERM, hex(v)
    # personality takes an unsigned int: the upper half does not count.
    assert call(prog, arch, "personality", (1 << 32) | 0x8) == ALLOW
    assert call(prog, arch, "personality", (1 << 32) | 0x1234) == EPERM


def test_socket_vsock(prog: bytes, arch: str) -> None:
    assert call(prog, arch, "socket", 2, 1, 0) == ALLOW  # AF_INET
    assert call(prog, arch, "socket", 1, 1, 0) == ALLOW  # AF_UNIX
    assert call(prog, arch, "socket", 40, 1, 0) == EPERM  # AF_VSOCK
    assert call(prog, arch, "socket", (7 << 32) | 40, 1, 0) == EPERM


def test_foreign_arch_killed(prog: bytes, arch: str) -> None:
    other = "aarch64" if arch == "x86_64" else "x86_64"
    assert run_bpf(prog, data(39, arch=other)) == KILL_PROCESS
    assert run_bpf(prog, data(20, arch=AUDIT_ARCH_I386)) == KILL_PROCESS
    assert run_bpf(prog, data(0, arch=0)) == KILL_PROCESS


def test_x32_refused_on_x86_64() -> None:
    p = build(default_profile(), "x86_64")
    for n in (0x4000_0000, 0x4000_0000 | 39, 0x4000_0000 | 250, 0x4000_0000 | 512, -1):
        assert run_bpf(p, data(n)) == ENOSYS, hex(n)
    # aarch64 has no such numbering: high numbers simply are not named.
    q = build(default_profile(), "aarch64")
    assert run_bpf(q, data(0x4000_0000 | 219, arch="aarch64")) == ALLOW


def test_nesting_allows_user_namespaces(arch: str) -> None:
    p = build(default_profile(nesting=True), arch)
    assert call(p, arch, "unshare", CLONE_NEWUSER | CLONE_NEWNS) == ALLOW
    assert call(p, arch, "clone", CLONE_NEWUSER | SIGCHLD) == ALLOW
    assert call(p, arch, "clone3", 0x7FFF_0000_1000, 88) == ALLOW
    assert call(p, arch, "keyctl", 0) == EPERM


def test_allow_removes_names(arch: str) -> None:
    p = build(default_profile(allow=("keyctl",)), arch)
    assert call(p, arch, "keyctl", 0) == ALLOW
    assert call(p, arch, "add_key", 0) == EPERM
    q = build(default_profile(), arch, allow={"bpf", "personality"})
    assert call(q, arch, "bpf", 0) == ALLOW
    assert call(q, arch, "personality", 0x1234) == ALLOW
    assert call(q, arch, "perf_event_open", 0) == EPERM
    with pytest.raises(KeyError):
        default_profile(allow=("no_such_call",))


def test_extra_rules_come_first(arch: str) -> None:
    p = build(default_profile(), arch, extra_rules=[
        Rule("personality", ALLOW, (eq(0, 0x0040_0000),)),  # ADDR_NO_RANDOMIZE, on request
        Rule("getpid", seccomp.errno_action(errno.EACCES)),
    ])
    assert call(p, arch, "personality", 0x0040_0000) == ALLOW
    assert call(p, arch, "personality", 0x1234) == EPERM
    assert call(p, arch, "getpid") == seccomp.errno_action(errno.EACCES)
    assert call(p, arch, "keyctl") == EPERM


def test_default_deny_list_is_documented() -> None:
    assert {"keyctl", "bpf", "kexec_load", "open_by_handle_at", "syslog"} <= set(DENIED)
    for allowed in ("reboot", "name_to_handle_at", "setns", "clone", "unshare", "personality"):
        assert allowed not in DENIED
    assert set(RESTRICTED) == {"personality", "socket", "unshare", "clone", "clone3"}
    assert default_profile().names() == set(DENIED) | set(RESTRICTED)


def test_build_defaults_to_this_machine() -> None:
    import os

    if os.uname().machine not in seccomp.ARCHES:
        pytest.skip("unsupported machine")
    assert build() == build(default_profile(), os.uname().machine)


def test_unsupported_arch() -> None:
    from corral.errors import UnsupportedError

    with pytest.raises(UnsupportedError):
        build(default_profile(), "riscv64")


def test_program_is_small(prog: bytes) -> None:
    # Forty-odd syscalls: nowhere near the 4096-instruction limit, and the
    # common path (an unnamed syscall) stays short.
    assert len(decode(prog)) < 200


# --- the compiler ----------------------------------------------------------------


def test_long_profile_jumps_correctly() -> None:
    """300 rules, many with argument checks: every one reaches its own action."""
    rules = []
    for i in range(300):
        n = 1000 + i
        if i % 3 == 0:
            rules.append(Rule(n, seccomp.errno_action(1 + i)))
        elif i % 3 == 1:
            rules.append(Rule(n, seccomp.errno_action(1 + i), (eq(0, i), eq(1, i << 32))))
        else:
            rules.append(Rule(n, seccomp.errno_action(1 + i), (ne(2, 7), masked_eq(3, 0xF0, 0x30))))
    p = compile_filter(rules, "x86_64")
    check_like_kernel(p)
    insns = decode(p)
    assert len(insns) > 256 * 3  # far past what one 8-bit offset spans
    for i in range(300):
        n = 1000 + i
        want = seccomp.errno_action(1 + i)
        if i % 3 == 0:
            assert run_bpf(p, data(n, 99)) == want, i
        elif i % 3 == 1:
            assert run_bpf(p, data(n, i, i << 32)) == want, i
            assert run_bpf(p, data(n, i, 0)) == ALLOW, i
            assert run_bpf(p, data(n, i + 1, i << 32)) == ALLOW, i
        else:
            assert run_bpf(p, data(n, 0, 0, 8, 0x35)) == want, i
            assert run_bpf(p, data(n, 0, 0, 7, 0x35)) == ALLOW, i
            assert run_bpf(p, data(n, 0, 0, 8, 0x45)) == ALLOW, i
    assert run_bpf(p, data(999)) == ALLOW
    assert run_bpf(p, data(1300)) == ALLOW


def test_many_rules_on_one_syscall() -> None:
    """One syscall whose body alone is longer than an 8-bit jump."""
    rules = [Rule(77, seccomp.errno_action(1 + i), (eq(0, i), eq(1, i))) for i in range(150)]
    rules.append(Rule(77, KILL_PROCESS, (eq(0, 10_000),)))
    p = compile_filter([*rules, Rule(78, EPERM)], "aarch64")
    check_like_kernel(p)
    assert any(code == 0x05 for code, *_ in decode(p))  # the skip over 77's body was widened
    for i in range(150):
        assert run_bpf(p, data(77, i, i, arch="aarch64")) == seccomp.errno_action(1 + i), i
        assert run_bpf(p, data(77, i, i + 1, arch="aarch64")) == ALLOW, i
    assert run_bpf(p, data(77, 10_000, arch="aarch64")) == KILL_PROCESS
    assert run_bpf(p, data(78, arch="aarch64")) == EPERM


def test_64_bit_halves() -> None:
    big = 0x1_0000_0000
    p = compile_filter([Rule(5, EPERM, (eq(0, 0),)), Rule(6, EPERM, (eq(0, big),)),
                        Rule(7, EPERM, (ne(0, 0),)), Rule(8, EPERM, (ne(0, big),))], "x86_64")
    check_like_kernel(p)
    assert run_bpf(p, data(5, 0)) == EPERM
    assert run_bpf(p, data(5, big)) == ALLOW  # low words equal, high words not
    assert run_bpf(p, data(6, big)) == EPERM
    assert run_bpf(p, data(6, 0)) == ALLOW
    assert run_bpf(p, data(6, 1)) == ALLOW
    assert run_bpf(p, data(7, big)) == EPERM
    assert run_bpf(p, data(7, 0)) == ALLOW
    assert run_bpf(p, data(8, 0)) == EPERM
    assert run_bpf(p, data(8, big)) == ALLOW
    assert run_bpf(p, data(8, big | 1)) == EPERM


def test_masked_eq_over_both_halves() -> None:
    top_and_bottom = masked_eq(2, 0x8000_0000_0000_0001, 0x8000_0000_0000_0000)
    p = compile_filter([Rule(9, EPERM, (top_and_bottom,))], "x86_64")
    assert run_bpf(p, data(9, 0, 0, 0x8000_0000_0000_0000)) == EPERM
    assert run_bpf(p, data(9, 0, 0, 0xFFFF_FFFF_0000_FFFE)) == EPERM
    assert run_bpf(p, data(9, 0, 0, 0x8000_0000_0000_0001)) == ALLOW
    assert run_bpf(p, data(9, 0, 0, 0x7000_0000_0000_0000)) == ALLOW


def test_first_matching_rule_wins() -> None:
    p = compile_filter([Rule(3, ALLOW, (eq(0, 1),)), Rule(3, EPERM), Rule(3, KILL_PROCESS)],
                       "x86_64")
    assert run_bpf(p, data(3, 1)) == ALLOW
    assert run_bpf(p, data(3, 2)) == EPERM


def test_too_long_is_refused() -> None:
    rules = [Rule(n, EPERM, tuple(eq(i, n) for i in range(6))) for n in range(400)]
    with pytest.raises(ValueError, match="4096"):
        compile_filter(rules, "x86_64")


def test_bad_rules_are_refused() -> None:
    with pytest.raises(KeyError):
        Rule("no_such_call", EPERM)
    with pytest.raises(ValueError):
        Arg(6, "eq", 0)
    with pytest.raises(ValueError):
        Arg(0, "lt", 0)
    with pytest.raises(ValueError):
        masked_eq(0, 0xF0, 0x1)  # can never match
    with pytest.raises(ValueError):
        seccomp.errno_action(0)


def test_absent_syscalls_are_skipped() -> None:
    p = compile_filter([Rule("iopl", EPERM), Rule("stime", EPERM)], "aarch64")
    assert len(decode(p)) == 5  # arch check and nr load, nothing else


# --- the syscall table against the kernel headers --------------------------------

_HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}


@pytest.mark.parametrize("which", ["x86_64", "aarch64"])
def test_table_matches_headers(which: str) -> None:
    header = _HEADERS[which]
    if not header.exists():
        pytest.skip(f"{header} not installed")
    defined = {m[1]: int(m[2]) for m in
               re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", header.read_text(), re.MULTILINE)}
    col = 0 if which == "x86_64" else 1
    for name, numbers in seccomp.SYSCALLS.items():
        assert numbers[col] == defined.get(name), name


def test_assembler_widens_both_targets() -> None:
    """A conditional whose taken and not-taken targets are both out of 8-bit reach."""
    from corral.linux.seccomp import _assemble, _Label, _Op

    far_t, far_f = _Label(), _Label()
    pad = [_Op(seccomp.BPF_RET_K, 1000 + i) for i in range(300)]
    items = [_Op(seccomp.BPF_LD_W_ABS, 0), _Op(seccomp.BPF_JEQ_K, 5, jt=far_t, jf=far_f),
             *pad, far_t, _Op(seccomp.BPF_RET_K, 1), *pad, far_f, _Op(seccomp.BPF_RET_K, 2)]
    p = b"".join(struct.pack("=HBBI", *i) for i in _assemble(items))
    check_like_kernel(p)
    assert run_bpf(p, data(5)) == 1
    assert run_bpf(p, data(6)) == 2
