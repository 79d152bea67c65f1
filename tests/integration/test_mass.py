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


def test_stop_all_with_descriptors_past_select_limit(corral: Corral) -> None:
    """A thousand containers mean a thousand pidfds and locks: fd numbers past 1024,
    which select() cannot wait on (it raised a traceback once)."""
    import resource
    import subprocess
    import sys

    from conftest import CORRAL

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        import pytest

        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 2048")
    for i in range(2):
        corral("create", f"f{i}", "--template", "tiny", "--net", "none")
    corral("start", "--all")
    # The CLI starts with 1100 descriptors open (inherited through exec), so its
    # own are numbered above 1100.
    opener = ("import os, resource, sys; "
              "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; "
              "resource.setrlimit(resource.RLIMIT_NOFILE, "
              "(4096 if hard < 0 else min(4096, hard), hard)); "
              "[os.set_inheritable(os.open('/dev/null', os.O_RDONLY), True) "
              "for _ in range(1100)]; "
              "os.execv(sys.argv[1], sys.argv[1:])")
    p = subprocess.run([sys.executable, "-c", opener, CORRAL, "--root", str(corral.root),
                        "stop", "--all", "--timeout", "5"], capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    assert set(_states(corral).values()) == {"stopped"}
