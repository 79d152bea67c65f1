"""Fixtures for privileged tests: a private state root per test and a leak check.

Every test gets its own state root (so its own cgroup top and, later, its own
network names).  Around each test the leak checker snapshots what a
container could leave on the host -- mounts, network links, cgroups, loop
devices, nft tables -- and fails the test if anything new remains, after
first destroying whatever the test left so the next test starts clean.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

CORRAL = str(Path(sys.executable).parent / "corral")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class Corral:
    """Runs the installed `corral` CLI against one state root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run(self, *args: str, check: bool = True, input: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([CORRAL, "--root", str(self.root), *args], capture_output=True,
                           text=True, input=input, timeout=timeout,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"corral {' '.join(args)} exited {p.returncode}:\n"
                                 f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def __call__(self, *args: str, **kw: object) -> str:
        return self.run(*args, **kw).stdout  # type: ignore[arg-type]

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json"))

    def info(self, name: str) -> dict:  # type: ignore[type-arg]
        return self.json("info", name)  # type: ignore[return-value]

    def wait_for(self, name: str, cmd: str, timeout: float = 5.0) -> None:
        """Wait until `sh -c cmd` succeeds inside the container."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.run("exec", name, "--", "sh", "-c", cmd, check=False)
            if p.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {cmd!r} in {name}: {p.stderr}")
            time.sleep(0.05)


def _cgroups() -> set[str]:
    found = set()
    for hier in CGROUP_ROOT.iterdir():
        try:
            for d in hier.iterdir():
                if d.is_dir() and d.name.startswith("corral"):
                    for sub in d.rglob("*"):
                        if sub.is_dir():
                            found.add(str(sub))
                    found.add(str(d))
        except OSError:
            continue
    return found


def _nft_tables() -> set[str]:
    if not shutil.which("nft"):
        return set()
    out = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
    try:
        items = json.loads(out.stdout)["nftables"]
    except (ValueError, KeyError):
        return set()
    return {f"{i['table']['family']} {i['table']['name']}" for i in items if "table" in i}


def _loops() -> set[str]:
    out = set()
    for b in Path("/sys/block").glob("loop*"):
        f = b / "loop" / "backing_file"
        if f.exists():
            out.add(f"{b.name}:{f.read_text().strip()}")
    return out


def host_snapshot() -> dict[str, set[str]]:
    with open("/proc/self/mountinfo") as f:
        mounts = {" ".join(line.split()[3:5]) for line in f}
    return {
        "mounts": mounts,
        "links": set(os.listdir("/sys/class/net")),
        "cgroups": _cgroups(),
        "nft tables": _nft_tables(),
        "loop devices": _loops(),
        "records": _records(),
    }


RECORDS = Path("/run/corral/state")


def _records() -> set[str]:
    """The state roots' directories of runtime records, and what is in them."""
    if not RECORDS.is_dir():
        return set()
    return {str(p) for p in RECORDS.rglob("*")}


@pytest.fixture(scope="session", autouse=True)
def lxcfs_service() -> Iterator[None]:
    """lxcfs is a host-wide service that outlives containers by design: start it
    before the first test's snapshot, and stop it at the end if we started it."""
    from corral.runtime import lxcfs

    was_running = lxcfs.mounted() is not None
    lxcfs.ensure()
    yield
    if not was_running:
        lxcfs.stop()


@pytest.fixture(scope="session", autouse=True)
def sysinfo_agent_service() -> Iterator[None]:
    """The sysinfo agent is host-wide like lxcfs: started before the first test's
    snapshot, stopped at the end if we started it and it serves no container."""
    from corral.runtime import sysinfo_agent

    was_running = sysinfo_agent.status() is not None
    sysinfo_agent.ensure()
    yield
    if not was_running:
        sysinfo_agent.stop(only_idle=True)


@pytest.fixture
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("root")
    before = host_snapshot()
    yield root
    # Clean whatever the test left, then fail if the product itself leaked.
    if (root / "containers").exists():
        subprocess.run([CORRAL, "--root", str(root), "destroy", "--force",
                        *[n for n in os.listdir(root / "containers") if not n.startswith(".")]],
                       capture_output=True)
    leftovers = subprocess.run([CORRAL, "--root", str(root), "doctor"], capture_output=True,
                               text=True)
    # A root's networks outlive its containers by design; removing the root removes them.
    if (root / "network").is_dir():
        nets = json.loads(subprocess.run([CORRAL, "--root", str(root), "network", "list",
                                          "--json"], capture_output=True, text=True).stdout)
        for net in nets:
            subprocess.run([CORRAL, "--root", str(root), "network", "delete", net["name"]],
                           capture_output=True)
    after = host_snapshot()
    # The root's top cgroup directory is shared by its containers and stays
    # while the root exists; anything beneath it is a leak.
    after["cgroups"] -= {str(h / _cgroup_top(root)) for h in CGROUP_ROOT.iterdir()}
    after["records"] -= {str(RECORDS / _root_id(root))}  # its directory, empty: the same
    leaks = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    subprocess.run([CORRAL, "--root", str(root), "doctor", "--fix"], capture_output=True)
    _remove_cgroup_top(root)
    assert not leaks, f"the test left these on the host: {leaks}"
    assert not (RECORDS / _root_id(root)).exists(), "doctor --fix left the root's records"
    assert leftovers.returncode == 0, f"doctor found leftovers:\n{leftovers.stdout}"


def _root_id(root: Path) -> str:
    from corral.host import root_id

    return root_id(str(root))


def _cgroup_top(root: Path) -> str:
    return f"corral-{_root_id(root)}"


def _remove_cgroup_top(root: Path) -> None:
    top = _cgroup_top(root)
    for hier in CGROUP_ROOT.iterdir():
        d = hier / top
        if d.is_dir():
            for sub in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
                if sub.is_dir():
                    sub.rmdir()
            d.rmdir()


@pytest.fixture(scope="session")
def template_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One built tiny template, copied into each test's root (building takes ~30 ms anyway)."""
    root = tmp_path_factory.mktemp("template-cache")
    subprocess.run([CORRAL, "--root", str(root), "template", "build", "tiny"], check=True,
                   capture_output=True)
    return root / "templates" / "tiny"


@pytest.fixture
def corral(state_root: Path, template_cache: Path) -> Corral:
    """A state root with the tiny template, and a CLI bound to it."""
    (state_root / "templates").mkdir(parents=True, exist_ok=True)
    shutil.copytree(template_cache, state_root / "templates" / "tiny", symlinks=True)
    return Corral(state_root)
