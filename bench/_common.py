"""What the benchmarks share: the installed CLI and a throwaway state root."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CORRAL = str(Path(sys.executable).parent / "corral")


class Root:
    """A temporary state root and a `corral` bound to it."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.argv = [CORRAL, "--root", str(self.path)]

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.argv, *args], check=True, capture_output=True,
                              text=True).stdout


def remove_root(root: Path) -> None:
    """Destroy every container of a benchmark's state root, its default network and its
    top cgroups: all a run leaves behind but the directory itself."""
    import os

    from corral.host import root_id

    if (root / "containers").is_dir():
        names = [n for n in os.listdir(root / "containers") if not n.startswith(".")]
        if names:
            subprocess.run([CORRAL, "--root", str(root), "destroy", "--force", *names],
                           capture_output=True, check=False)
    if (root / "network").is_dir():
        subprocess.run([CORRAL, "--root", str(root), "network", "delete", "default"],
                       capture_output=True, check=False)
    # An idle root keeps its top cgroups; --fix tidies them.
    subprocess.run([CORRAL, "--root", str(root), "doctor", "--fix"], capture_output=True,
                   check=False)
    for h in Path("/sys/fs/cgroup").iterdir():
        top = h / f"corral-{root_id(str(root))}"
        if top.is_dir():
            for d in sorted(top.rglob("*"), key=lambda q: -len(q.parts)):
                if d.is_dir():
                    d.rmdir()
            top.rmdir()


# -- host facts the side-by-side benchmarks read ------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")


def payload(marker: str) -> tuple[int, int, int]:
    """(RSS, PSS, count) of every process whose /proc/PID/cgroup mentions ``marker``."""
    import os

    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                if marker in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return payload_of(pids)


def payload_of(pids: list[int]) -> tuple[int, int, int]:
    """(RSS, PSS, count) of these processes (the ones still there)."""
    rss = pss = n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
            n += 1
        except (OSError, ValueError):
            continue
    return rss, pss, n


def proc_start(pid: int) -> int | None:
    """Start time of a live (not zombie) process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def cgroup_hierarchies() -> list[Path]:
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT]  # pure v2
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]


def rmdir_tree(path: Path) -> bool:
    """Remove an empty cgroup tree bottom-up (rmdir only: a cgroup that still has
    processes stays).  True when it is gone."""
    import time

    if not path.is_dir():
        return True
    for child in path.iterdir():
        if child.is_dir():
            rmdir_tree(child)
    for _ in range(20):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            time.sleep(0.05)
    return False
