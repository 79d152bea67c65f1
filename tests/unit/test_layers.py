"""Calls go down only: fronts → host → drivers → linux (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "corral"
SHARED = {"errors", "model", "paths", "store", "revert", "__init__"}
RANK = {"cli": 3, "daemon": 3, "api": 3, "host": 2, "cgroups": 1, "storage": 1, "network": 1,
        "runtime": 1, "templates": 1, "linux": 0}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("corral"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("corral")}
    return out


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_no_upward_or_sideways_imports() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC)
        mine = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        if mine in SHARED or mine not in RANK:
            continue
        for mod in _imports(path):
            other = _area(mod)
            if other is None or other in SHARED or other == mine:
                continue
            if RANK.get(other, 0) > RANK[mine] or (RANK.get(other) == RANK[mine] != 0):
                bad.append(f"{rel} imports {mod}")
    assert not bad, bad


def test_only_linux_uses_ctypes() -> None:
    users = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
             if any(m == "ctypes" or m.startswith("ctypes.") for m in _all_imports(p))]
    assert all(u.startswith("linux/") for u in users), users


def _all_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out
