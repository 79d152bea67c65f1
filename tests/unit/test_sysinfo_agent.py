"""The sysinfo agent's parts that need no kernel: its filter program, the values it
computes from a container's cgroup files (fake v1 and v2 trees), its protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_seccomp import check_like_kernel, data, run_bpf

from corral.cgroups import manager
from corral.linux import seccomp, seccomp_notify
from corral.linux.seccomp import ALLOW, ENOSYS, KILL_PROCESS, USER_NOTIF
from corral.runtime import sysinfo_agent
from corral.runtime.seccomp_profile import SYSINFO_NOTIFY, build, default_profile

MiB = 1 << 20
GiB = 1 << 30
AUDIT_ARCH_I386 = 0x4000_0003


# -- the filter -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_notified_program_sends_sysinfo_and_keeps_the_profile(arch: str) -> None:
    plain = build(default_profile(), arch)
    prog = build(default_profile(), arch, extra_rules=(SYSINFO_NOTIFY,))
    check_like_kernel(prog)
    assert len(seccomp.decode(prog)) <= len(seccomp.decode(plain)) + 2
    sysinfo = seccomp.syscall_nr("sysinfo", arch)
    assert sysinfo == {"x86_64": 99, "aarch64": 179}[arch]
    assert run_bpf(plain, data(sysinfo, 0x7FFF_0000, arch=arch)) == ALLOW
    assert run_bpf(prog, data(sysinfo, 0x7FFF_0000, arch=arch)) == USER_NOTIF
    # every other call gets what the plain profile gives it
    for name in ("read", "write", "clone", "personality", "syslog", "bpf", "keyctl",
                 "unshare", "getpid"):
        nr = seccomp.syscall_nr(name, arch)
        assert nr is not None
        for arg0 in (0, 0x1000_0000):  # CLONE_NEWUSER for clone/unshare
            assert run_bpf(prog, data(nr, arg0, arch=arch)) == \
                run_bpf(plain, data(nr, arg0, arch=arch)), name
    # the arch check and the x32 refusal come first
    assert run_bpf(prog, data(sysinfo, arch=AUDIT_ARCH_I386)) == KILL_PROCESS
    if arch == "x86_64":
        assert run_bpf(prog, data(sysinfo | seccomp.X32_SYSCALL_BIT)) == ENOSYS


# x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of what the init calls
# between its seccomp step and exec; the module's table names only filtered calls.
X86_64_AFTER_FILTER = {"read": 0, "write": 1, "close": 3, "rt_sigaction": 13,
                       "rt_sigprocmask": 14, "dup2": 33, "execve": 59, "rename": 82,
                       "mkdir": 83, "prctl": 157, "exit_group": 231, "openat": 257,
                       "newfstatat": 262, "dup3": 292, "close_range": 436}


def test_what_the_init_does_under_its_filter_is_allowed() -> None:
    # The init installs its filter before it reports ready (runtime/spawn.py):
    # what it calls afterwards, up to exec, must pass under every profile.
    for nesting in (False, True):
        prog = build(default_profile(nesting=nesting), "x86_64", extra_rules=(SYSINFO_NOTIFY,))
        for name, nr in X86_64_AFTER_FILTER.items():
            assert run_bpf(prog, data(nr, 0, arch="x86_64")) == ALLOW, name


def test_ioctl_numbers_and_structs() -> None:
    assert seccomp_notify.NOTIF_RECV == 0xC0502100
    assert seccomp_notify.NOTIF_SEND == 0xC0182101
    assert seccomp_notify.NOTIF_ID_VALID == 0x40082102
    import ctypes

    assert ctypes.sizeof(seccomp_notify.Sysinfo) == 112  # 64-bit struct sysinfo
    raw = bytes(seccomp_notify._NOTIF.pack(7, 1234, 0, 99, 0xC000_003E, 0x1000,
                                           0xDEAD, 1, 2, 3, 4, 5))
    n = seccomp_notify.Notification(raw)
    assert (n.id, n.pid, n.nr, n.arch, n.args[0]) == (7, 1234, 99, 0xC000_003E, 0xDEAD)


# -- values from fake cgroup trees ----------------------------------------------------------

def _host(total: int = 8 * GiB, free: int = 5 * GiB, swap: int = 2 * GiB,
          swap_free: int = GiB) -> seccomp_notify.Sysinfo:
    h = seccomp_notify.Sysinfo()
    h.uptime = 100_000
    h.loads[:] = [65536, 2 * 65536, 3 * 65536]
    h.totalram, h.freeram, h.totalswap, h.freeswap = total, free, swap, swap_free
    h.sharedram, h.bufferram, h.procs, h.mem_unit = 123, 456, 999, 1
    return h


def _files(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (path / name).write_text(content)


def _v2(tmp_path: Path, files: dict[str, str] | None = None) -> object:
    root = tmp_path / "cgroup"
    _files(root, {"cgroup.controllers": "cpu memory pids", "cgroup.procs": ""})
    base = {"memory.max": "max", "memory.current": str(100 * MiB), "memory.swap.max": "max",
            "memory.swap.current": "0", "pids.current": "7", "cgroup.procs": ""}
    _files(root / "corral" / "web", {**base, **(files or {})})
    return manager("corral/web", root=str(root), layout="v2")


def _v1(tmp_path: Path, files: dict[str, str] | None = None, memsw: bool = True) -> object:
    root = tmp_path / "cgroup"
    unlimited = "9223372036854771712"
    base = {"memory.limit_in_bytes": unlimited, "memory.usage_in_bytes": str(100 * MiB),
            "memory.memsw.limit_in_bytes": unlimited,
            "memory.memsw.usage_in_bytes": str(100 * MiB), "cgroup.procs": "", "tasks": ""}
    if not memsw:
        base = {k: v for k, v in base.items() if "memsw" not in k}
    for ctrl in ("memory", "pids"):
        _files(root / ctrl, {"cgroup.procs": ""})
    _files(root / "memory" / "corral" / "web", {**base, **(files or {})})
    _files(root / "pids" / "corral" / "web", {"pids.current": "4", "cgroup.procs": ""})
    return manager("corral/web", root=str(root), layout="v1")


def _values(cg: object, host: seccomp_notify.Sysinfo | None = None,
            start: int = 1000, now: float = 10.0 + 42.5) -> seccomp_notify.Sysinfo:
    # started at tick 1000 (10 s after boot at 100 Hz); 42.5 s later
    return sysinfo_agent.container_sysinfo(cg, start, host or _host(), now, 100)


def test_v2_limit_usage_swap_procs_uptime(tmp_path: Path) -> None:
    cg = _v2(tmp_path, {"memory.max": str(256 * MiB), "memory.swap.max": str(64 * MiB),
                        "memory.swap.current": str(16 * MiB)})
    v = _values(cg)
    assert (v.totalram, v.freeram) == (256 * MiB, 156 * MiB)
    assert (v.totalswap, v.freeswap) == (64 * MiB, 48 * MiB)
    assert (v.procs, v.uptime, v.mem_unit) == (7, 43, 1)  # 42.5 s rounds up, as the kernel
    assert list(v.loads) == [65536, 2 * 65536, 3 * 65536]  # the host's
    assert (v.sharedram, v.bufferram, v.totalhigh, v.freehigh) == (0, 0, 0, 0)
    assert len(bytes(v)) == 112


def test_v2_unlimited_is_the_hosts(tmp_path: Path) -> None:
    v = _values(_v2(tmp_path))
    # no limit: the host's RAM, minus what the container uses (lxcfs' MemFree)
    assert (v.totalram, v.freeram) == (8 * GiB, 8 * GiB - 100 * MiB)
    assert (v.totalswap, v.freeswap) == (2 * GiB, GiB)


def test_limits_above_the_host_and_usage_above_the_limit(tmp_path: Path) -> None:
    cg = _v2(tmp_path, {"memory.max": str(64 * GiB), "memory.swap.max": str(64 * GiB)})
    v = _values(cg)
    assert (v.totalram, v.totalswap) == (8 * GiB, 2 * GiB)  # never more than the host has
    cg = _v2(tmp_path / "b", {"memory.max": str(64 * MiB), "memory.swap.max": "0"})
    v = _values(cg)  # usage 100M over a 64M limit (lowered live): free is 0, not negative
    assert (v.totalram, v.freeram, v.totalswap, v.freeswap) == (64 * MiB, 0, 0, 0)
    # a host without swap shows none, whatever the limit (as lxcfs' SwapTotal)
    cg = _v2(tmp_path / "c", {"memory.swap.max": str(GiB)})
    v = _values(cg, _host(swap=0, swap_free=0))
    assert (v.totalswap, v.freeswap) == (0, 0)


def test_v1_limit_memsw_and_pids(tmp_path: Path) -> None:
    cg = _v1(tmp_path, {"memory.limit_in_bytes": str(256 * MiB),
                        "memory.memsw.limit_in_bytes": str(320 * MiB),
                        "memory.memsw.usage_in_bytes": str(110 * MiB)})
    v = _values(cg)
    assert (v.totalram, v.freeram) == (256 * MiB, 156 * MiB)
    # swap limit = memsw - memory = 64M; swap used = memsw usage - memory usage = 10M
    assert (v.totalswap, v.freeswap) == (64 * MiB, 54 * MiB)
    assert v.procs == 4


def test_v1_unlimited_and_no_swap_accounting(tmp_path: Path) -> None:
    v = _values(_v1(tmp_path))
    assert (v.totalram, v.freeram) == (8 * GiB, 8 * GiB - 100 * MiB)
    assert (v.totalswap, v.freeswap) == (2 * GiB, GiB)
    # memory limited, swap not accounted (swapaccount=0: no memsw files): the host's swap
    v = _values(_v1(tmp_path / "b", {"memory.limit_in_bytes": str(512 * MiB)}, memsw=False))
    assert (v.totalram, v.freeram, v.totalswap) == (512 * MiB, 412 * MiB, 2 * GiB)


def test_gone_cgroup_gives_the_hosts_values_not_an_error(tmp_path: Path) -> None:
    _v2(tmp_path)
    v = _values(manager("corral/gone", root=str(tmp_path / "cgroup"), layout="v2"))
    assert (v.totalram, v.freeram, v.procs, v.totalswap) == (8 * GiB, 8 * GiB, 0, 2 * GiB)
    _v1(tmp_path / "b")
    v = _values(manager("corral/gone", root=str(tmp_path / "b" / "cgroup"), layout="v1"))
    assert (v.totalram, v.freeram, v.procs, v.totalswap) == (8 * GiB, 8 * GiB, 0, 2 * GiB)


def test_host_mem_unit_is_honoured(tmp_path: Path) -> None:
    h = _host(total=2 * MiB, free=MiB, swap=0, swap_free=0)  # in 4 KiB units
    h.mem_unit = 4096
    v = _values(_v2(tmp_path, {"memory.max": str(256 * MiB)}), h)
    assert (v.totalram, v.mem_unit) == (256 * MiB, 1)
    v = _values(_v2(tmp_path / "b"), h)
    assert v.totalram == 8 * GiB


# -- protocol -------------------------------------------------------------------------------

def test_hello_parsing() -> None:
    ok = b"corral-sysinfo 1\n/sys/fs/cgroup\ncorral/web"
    assert sysinfo_agent._parse_hello(ok) == ("/sys/fs/cgroup", "corral/web")
    for bad in (b"hello", b"corral-sysinfo 1\nsys/fs/cgroup\ncorral/web",
                b"corral-sysinfo 1\n/sys/fs/cgroup\n/corral/web",
                b"corral-sysinfo 1\n/sys/fs/cgroup\ncorral/../../etc",
                b"corral-sysinfo 2\n/sys/fs/cgroup\ncorral/web", b"\xff\xfe"):
        assert sysinfo_agent._parse_hello(bad) is None, bad
