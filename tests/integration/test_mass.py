"""Mass operations: names, globs, --all, --parallel, a failure summary at the end."""

from __future__ import annotations

from conftest import Corral


def _states(corral: Corral) -> dict[str, str]:
    return {i["name"]: i["state"] for i in corral.json("list")}  # type: ignore[union-attr]


def test_all_glob_parallel_and_summary(corral: Corral) -> None:
    for n in ("web1", "web2", "db1", "db2"):
        corral("create", n, "--template", "tiny", "--net", "none")
    corral("start", "web1")
    corral("start", "--all", "--parallel", "3")  # web1 already runs: skipped, not an error
    assert set(_states(corral).values()) == {"running"}
    corral("stop", "web*", "--parallel", "2", "--timeout", "3")
    assert _states(corral) == {"web1": "stopped", "web2": "stopped", "db1": "running",
                               "db2": "running"}
    p = corral.run("start", "web1", "nope", "web2", check=False)
    assert p.returncode != 0
    assert "start failed for 1 of 3: nope" in p.stderr
    assert _states(corral)["web1"] == "running" and _states(corral)["web2"] == "running"
    corral("destroy", "--all", "--force", "--parallel", "4")
    assert corral.json("list") == []
