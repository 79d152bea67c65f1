"""The latency-critical commands' modules, loaded from their bytecode files, come out
as imported ones, and a stale bytecode file is never used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import corral

PACKAGE = Path(corral.__file__).parent

CHECK = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import corral
from corral.cli import preload
loaded = preload.load(preload.RUN + preload.NETWORK + preload.EXEC)
out = {"loaded": loaded, "modules": {}}
for name in sorted(n for n in sys.modules if n.startswith("corral.") and n != "corral.cli.preload"):
    m = sys.modules[name]
    parent, _, child = name.rpartition(".")
    out["modules"][name] = {
        "file": m.__file__, "cached": getattr(m, "__cached__", None), "package": m.__package__,
        "path": getattr(m, "__path__", None), "origin": m.__spec__.origin,
        "loader": type(m.__loader__).__name__, "bound": getattr(sys.modules[parent], child, None) is m,
    }
print(json.dumps(out))
"""


def _copy(tmp_path: Path) -> Path:
    """The package with fresh bytecode of its own, in a directory of the test's."""
    shutil.copytree(PACKAGE, tmp_path / "corral", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tmp_path / "corral")],
                   check=True, capture_output=True)
    return tmp_path


def _state(where: Path, *, preload: bool) -> dict:
    import json

    code = CHECK if preload else CHECK.replace(
        "loaded = preload.load(preload.RUN + preload.NETWORK + preload.EXEC)",
        "import importlib\nloaded = []\n"
        "for s in preload.RUN + preload.NETWORK + preload.EXEC:\n"
        "    importlib.import_module('corral.' + s.removesuffix('/__init__').replace('/', '.'))")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(where)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def test_preloaded_modules_are_what_importing_them_makes(tmp_path: Path) -> None:
    where = _copy(tmp_path)
    ours, theirs = _state(where, preload=True), _state(where, preload=False)
    assert len(ours["loaded"]) >= 40  # every module of the lists, none left to import
    assert ours["modules"] == theirs["modules"]
    assert all(m["bound"] and m["loader"] == "SourceFileLoader" for m in ours["modules"].values())


def test_a_stale_bytecode_file_is_left_to_the_import(tmp_path: Path) -> None:
    where = _copy(tmp_path)
    source = where / "corral" / "runtime" / "spawn.py"
    source.write_text(source.read_text() + "\nPRELOAD_TEST = 1\n")  # newer and longer
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    ours = _state(where, preload=True)
    assert "corral.runtime.spawn" not in ours["loaded"]  # left to the import, which recompiles
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from corral.cli import preload; preload.load(preload.RUN); "
            "import corral.runtime.spawn as s; print(s.PRELOAD_TEST)")
    out = subprocess.run([sys.executable, "-I", "-c", code, str(where)],
                         check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "1"
