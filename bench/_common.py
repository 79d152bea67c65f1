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
