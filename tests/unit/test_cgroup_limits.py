"""Limits: parsing, and the exact files and values each cgroup layout gets.

The managers run against fake cgroupfs trees built like the kernel's (a
directory per cgroup with its interface files), so the v2 driver is tested
faithfully on this v1/hybrid machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.cgroups import fs, manager, resources
from corral.errors import UnsupportedError, ValidationError

MiB = 1 << 20


@pytest.mark.parametrize("text,value", [("512M", 512 * MiB), ("2G", 2 << 30), ("1.5K", 1536),
                                         ("100", 100), ("64MiB", 64 * MiB), ("max", -1),
                                         ("unlimited", -1), ("1t", 1 << 40)])
def test_parse_size(text: str, value: int) -> None:
    assert resources.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "-1M", "lots", "12Q", "nan"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValidationError):
        resources.parse_size(text)


def test_parse_cpus_bounded_by_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "host_cpus", lambda: [0, 1])
    assert resources.parse("cpus", "1.5") == 1.5
    assert resources.parse("cpus", "max") == -1
    for bad in ("3", "0", "-1.5", "x"):
        with pytest.raises(ValidationError):
            resources.parse("cpus", bad)
    assert resources.parse("cpuset", "0-1") == "0-1"
    with pytest.raises(ValidationError, match="no CPU 2"):
        resources.parse("cpuset", "0,2")
    with pytest.raises(ValidationError):
        resources.parse("cpuset", "1-0")


def test_parse_weights_and_counts() -> None:
    assert resources.parse("cpu_weight", "200") == 200
    assert resources.parse("pids", "max") == -1
    for name, bad in (("cpu_weight", "0"), ("cpu_weight", "10001"), ("io_weight", "5"),
                      ("pids", "0"), ("pids", "-3")):
        with pytest.raises(ValidationError):
            resources.parse(name, bad)


def test_parse_io_devices() -> None:
    assert resources.parse("io_read_bps", ["8:0=10M", "253:1=max"]) == {"8:0": 10 * MiB,
                                                                         "253:1": -1}
    with pytest.raises(ValidationError):
        resources.parse("io_write_bps", ["8:0"])
    with pytest.raises(ValidationError, match="not a block device"):
        resources.parse("io_write_bps", ["/dev/null=1M"])


def test_merge_io_per_device() -> None:
    merged = resources.merge({"memory": 1, "io_read_bps": {"8:0": 5}},
                             {"io_read_bps": {"8:16": 7}, "memory": 2})
    assert merged == {"memory": 2, "io_read_bps": {"8:0": 5, "8:16": 7}}


def test_v1_memory_order_keeps_memsw_above_memory() -> None:
    w = resources.v1_writes({"memory": 64 * MiB, "swap": 32 * MiB})
    assert w == [("memory", "memory.memsw.limit_in_bytes", "-1"),
                 ("memory", "memory.limit_in_bytes", str(64 * MiB)),
                 ("memory", "memory.memsw.limit_in_bytes", str(96 * MiB))]
    with pytest.raises(UnsupportedError):
        resources.v1_writes({"swap": MiB}, has_memsw=False)


# -- fake kernel trees --------------------------------------------------------------------

V2_FILES = {
    "cgroup.procs": "", "cgroup.controllers": "cpuset cpu io memory pids",
    "cgroup.subtree_control": "", "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.freeze": "0", "cgroup.kill": "", "cpu.max": "max 100000", "cpu.weight": "100",
    "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
    "cpuset.cpus": "", "memory.max": "max", "memory.swap.max": "max",
    "memory.current": "1048576", "memory.swap.current": "4096",
    "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n", "pids.max": "max",
    "pids.current": "3", "pids.events": "max 5\n", "io.max": "", "io.weight": "default 100",
    "io.stat": "8:0 rbytes=1000 wbytes=2000 rios=1 wios=2\n8:16 rbytes=10 wbytes=20\n",
}


def _kernel_mkdir(path: Path, files: dict[str, str]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if not (path / name).exists():
            (path / name).write_text(content)


def _mkdir_like_the_kernel(monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> None:
    """mkdir in the fake tree makes the interface files, as cgroupfs does."""
    real_mkdir = fs.os.mkdir

    def mkdir(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        _kernel_mkdir(Path(path), files)

    monkeypatch.setattr(fs.os, "mkdir", mkdir)


@pytest.fixture
def v2_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cgroup"
    _kernel_mkdir(root, {k: v for k, v in V2_FILES.items() if k not in ("cgroup.kill",
                                                                         "cgroup.freeze")})
    _kernel_mkdir(root / "init.scope", V2_FILES)
    _mkdir_like_the_kernel(monkeypatch, V2_FILES)
    return root


def test_v2_detect_create_and_exact_limit_files(v2_tree: Path) -> None:
    from corral.cgroups import detect

    assert detect(str(v2_tree)) == "v2"
    m = manager("corral/web", root=str(v2_tree))
    assert m.layout == "v2" and m.caps.kill and m.caps.freeze
    m.create()
    outer = v2_tree / "corral" / "web"
    assert (outer / "payload").is_dir()
    assert m.procs_files() == [str(outer / "payload" / "cgroup.procs")]
    assert (v2_tree / "corral" / "cgroup.subtree_control").read_text() == \
        "+cpuset +cpu +io +memory +pids"
    m.apply({"cpus": 1.5, "cpu_weight": 300, "cpuset": "0-1", "memory": 512 * MiB,
             "swap": 256 * MiB, "pids": 500, "io_weight": 50,
             "io_read_bps": {"8:0": 10 * MiB}, "io_write_iops": {"8:0": 100}})
    expect = {"cpu.max": "150000 100000", "cpu.weight": "300", "cpuset.cpus": "0-1",
              "memory.max": str(512 * MiB), "memory.swap.max": str(256 * MiB),
              "pids.max": "500", "io.weight": "default 50",
              "io.max": f"8:0 rbps={10 * MiB} wiops=100"}
    for name, value in expect.items():
        assert (outer / name).read_text() == value, name
    m.apply({"memory": -1, "cpus": -1, "pids": -1})
    assert (outer / "memory.max").read_text() == "max"
    assert (outer / "cpu.max").read_text() == "max 100000"
    assert (outer / "pids.max").read_text() == "max"


def test_v2_stats_freeze_kill(v2_tree: Path) -> None:
    m = manager("corral/web", root=str(v2_tree))
    m.create()
    outer = v2_tree / "corral" / "web"
    (outer / "memory.max").write_text(str(64 * MiB))
    (outer / "pids.max").write_text("40")
    st = m.stats()
    assert (st.memory_bytes, st.memory_limit_bytes, st.swap_bytes) == (MiB, 64 * MiB, 4096)
    assert (st.cpu_usage_ns, st.oom_kills, st.memory_failcnt) == (2_500_000_000, 2, 7)
    assert (st.pids_limit, st.pids_failcnt) == (40, 5)
    assert (st.io_read_bytes, st.io_write_bytes) == (1010, 2020)
    (outer / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    m.freeze()
    assert (outer / "cgroup.freeze").read_text() == "1" and m.frozen()
    m.thaw()
    assert (outer / "cgroup.freeze").read_text() == "0"
    assert m.populated()
    m.kill()
    assert (outer / "cgroup.kill").read_text() == "1"


V1_FILES = {
    "cgroup.procs": "", "tasks": "", "cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000",
    "cpu.shares": "1024", "cpuset.cpus": "", "cpuset.mems": "", "memory.limit_in_bytes":
    "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
    "memory.usage_in_bytes": "2097152", "memory.memsw.usage_in_bytes": "2101248",
    "memory.failcnt": "3", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    "pids.max": "max", "pids.events": "max 4\n", "freezer.state": "THAWED",
    "cpuacct.usage": "123000", "blkio.weight": "100", "blkio.throttle.read_bps_device": "",
    "blkio.throttle.io_service_bytes_recursive": "8:0 Read 300\n8:0 Write 400\nTotal 700\n",
}


@pytest.fixture
def v1_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cgroup"
    for ctrl in ("cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio"):
        _kernel_mkdir(root / ctrl, V1_FILES)
    (root / "cpuset" / "cpuset.cpus").write_text("0-3\n")
    (root / "cpuset" / "cpuset.mems").write_text("0\n")
    _mkdir_like_the_kernel(monkeypatch, V1_FILES)
    return root


def test_v1_create_apply_stats(v1_tree: Path) -> None:
    m = manager("corral/db", root=str(v1_tree), layout="v1")
    assert not m.caps.kill and m.caps.freeze
    m.create()
    # cpuset: a new cgroup takes its parent's CPUs and memory nodes, or refuses tasks
    assert (v1_tree / "cpuset" / "corral" / "db" / "payload" / "cpuset.cpus").read_text() == "0-3"
    assert len(m.procs_files()) == 7
    m.apply({"cpus": 0.5, "cpu_weight": 50, "memory": 64 * MiB, "pids": 20, "cpuset": "1"})
    outer = {c: v1_tree / c / "corral" / "db" for c in ("cpu", "memory", "pids", "cpuset")}
    assert (outer["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (outer["cpu"] / "cpu.shares").read_text() == "512"
    assert (outer["memory"] / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert (outer["memory"] / "memory.memsw.limit_in_bytes").read_text() == "-1"
    assert (outer["pids"] / "pids.max").read_text() == "20"
    assert (outer["cpuset"] / "cpuset.cpus").read_text() == "1"
    assert (outer["cpuset"] / "payload" / "cpuset.cpus").read_text() == "1"
    st = m.stats()
    # v1 counts OOM kills where the victim was: outer and payload say 1 each here
    assert (st.memory_bytes, st.swap_bytes, st.memory_failcnt, st.oom_kills) == (
        2 * MiB, 4096, 3 + 0, 2)
    assert (st.cpu_usage_ns, st.pids_failcnt, st.io_read_bytes, st.io_write_bytes) == (
        123000, 4 + 4, 300, 400)
    m.freeze()
    assert (v1_tree / "freezer" / "corral" / "db" / "freezer.state").read_text() == "FROZEN"


def test_v1_unprivileged_processes_live_in_the_outer_cgroup(v1_tree: Path) -> None:
    """No payload cgroup in v1 hierarchies for a container in a user namespace:
    the outer cgroup holds the processes, limits written once, where they act."""
    m = manager("corral/u", root=str(v1_tree), layout="v1")
    m.create(v1_inner=False)
    outer = {c: v1_tree / c / "corral" / "u" for c in ("cpu", "memory", "pids", "cpuset")}
    assert not any((o / "payload").exists() for o in outer.values())
    assert (outer["cpuset"] / "cpuset.cpus").read_text() == "0-3"  # usable at once
    assert sorted(m.procs_files()) == sorted(
        str(v1_tree / c / "corral" / "u" / "cgroup.procs")
        for c in ("blkio", "cpu", "cpuacct", "cpuset", "freezer", "memory", "pids"))
    m.apply({"cpus": 0.5, "cpuset": "1", "memory": 64 * MiB})
    assert (outer["cpu"] / "cpu.cfs_quota_us").read_text() == "50000"
    assert (outer["cpuset"] / "cpuset.cpus").read_text() == "1"
    assert (outer["memory"] / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    m.apply({"cpus": 1.5, "cpuset": "0-2"})  # changed live, in the one place
    assert (outer["cpu"] / "cpu.cfs_quota_us").read_text() == "150000"
    assert (outer["cpuset"] / "cpuset.cpus").read_text() == "0-2"
