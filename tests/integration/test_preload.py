"""`run` and `exec` import no module of ours through importlib: their lists in
cli/preload.py hold every module they need (a module missing there costs every
run ~40 µs of importlib, more with what it drags in)."""

from __future__ import annotations

import subprocess
import sys

from conftest import CORRAL, Corral

# Loaded by the launcher before the command is known.
LAUNCHER = {"corral", "corral.cli", "corral.cli.main", "corral.cli.preload"}


def _imported(corral: Corral, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-IS", "-X", "importtime", CORRAL, "--root",
                          str(corral.root), *args], capture_output=True, text=True, check=True)
    names = [line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines()
             if line.startswith("import time:") and "|" in line]
    return [n for n in names if n.split(".")[0] == "corral" and n not in LAUNCHER]


def test_run_and_exec_load_every_module_of_theirs_without_importlib(corral: Corral) -> None:
    run = ["run", "--rm", "--net", "none", "--template", "tiny", "--", "true"]
    networked = ["run", "--rm", "--template", "tiny", "--", "true"]
    corral(*run)  # the first run compiles and caches the seccomp programs,
    corral(*networked)  # the first networked one makes the network (bridge, rules)
    assert _imported(corral, *run) == []
    assert _imported(corral, *networked) == []
    corral("create", "pl", "--template", "tiny", "--net", "none", "--start")
    assert _imported(corral, "exec", "pl", "--", "true") == []
