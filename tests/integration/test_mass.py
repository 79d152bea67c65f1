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


def test_stop_all_waits_for_every_init_at_once(corral: Corral) -> None:
    import time

    for i in range(6):
        corral("create", f"s{i}", "--template", "tiny", "--net", "none")
    corral("start", "--all", "--parallel", "3")
    t0 = time.monotonic()
    corral("stop", "--all", "--timeout", "10")
    elapsed = time.monotonic() - t0
    # busybox init needs ~2 s to power off; six of them together, not 12 s in a row
    assert elapsed < 6, elapsed
    assert set(_states(corral).values()) == {"stopped"}
    p = corral.run("stop", "s0", "s1", check=False)  # named, already stopped: reported
    assert p.returncode != 0 and "stop failed for 2 of 2" in p.stderr
