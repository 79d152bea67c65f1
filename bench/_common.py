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
    (then empty) top cgroups: all a run leaves behind but the directory itself."""
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
    for h in Path("/sys/fs/cgroup").iterdir():
        top = h / f"corral-{root_id(str(root))}"
        if top.is_dir():
            for d in sorted(top.rglob("*"), key=lambda q: -len(q.parts)):
                if d.is_dir():
                    d.rmdir()
            top.rmdir()
