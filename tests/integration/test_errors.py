"""Bad input and wrong states: one clear line, non-zero exit, nothing changed."""

from __future__ import annotations

import os
import subprocess

import pytest
from conftest import CORRAL, Corral


def _tree(root) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "locks" not in p.parts)


def _one_line_error(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("corral: error: "), p.stderr
    assert len(p.stderr.strip().splitlines()) <= 2  # the error, and a hint


@pytest.mark.parametrize("name", ["", "..", "a/b", "x" * 64, "Upper", "-lead", "trail-",
                                  "with space", "dot.ted"])
def test_invalid_names_refused(corral: Corral, state_root, name: str) -> None:  # type: ignore[no-untyped-def]
    before = _tree(state_root)
    p = corral.run("create", "--template", "tiny", "--", name, check=False)
    _one_line_error(p)
    assert _tree(state_root) == before


def test_unknown_things(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    before = _tree(state_root)
    for args in (("start", "nope"), ("info", "nope"), ("exec", "nope", "--", "true"),
                 ("destroy", "nope"), ("create", "x", "--template", "nope"),
                 ("template", "info", "nope"), ("template", "build", "nope")):
        p = corral.run(*args, check=False)
        _one_line_error(p)
        assert "nope" in p.stderr
    assert _tree(state_root) == before


def test_wrong_states(corral: Corral) -> None:
    corral("create", "w1", "--template", "tiny", "--start")
    p = corral.run("start", "w1", check=False)
    _one_line_error(p)
    assert "already running" in p.stderr or "is running" in p.stderr
    p = corral.run("destroy", "w1", check=False)
    _one_line_error(p)
    assert "--force" in p.stderr
    assert corral.info("w1")["state"] == "running"
    p = corral.run("create", "w1", "--template", "tiny", check=False)
    _one_line_error(p)
    assert "already exists" in p.stderr
    corral("stop", "w1")
    p = corral.run("exec", "w1", "--", "true", check=False)
    _one_line_error(p)
    p = corral.run("stop", "w1", check=False)
    _one_line_error(p)
    corral("destroy", "w1")
    assert corral.json("list") == []


def test_destroy_force_running(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    corral("create", "f1", "--template", "tiny", "--start")
    corral("destroy", "--force", "f1")
    assert not (state_root / "containers" / "f1").exists()


def test_not_root_is_refused(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        CORRAL, "--root", str(state_root), "list"],
                       capture_output=True, text=True)
    _one_line_error(p)
    assert "root" in p.stderr


def test_template_remove_refused_while_used(corral: Corral) -> None:
    corral("create", "u1", "--template", "tiny")
    p = corral.run("template", "remove", "tiny", check=False)
    _one_line_error(p)
    assert "u1" in p.stderr
    assert corral.json("template", "info", "tiny")["used_by"] == ["u1"]  # type: ignore[index]


def test_concurrent_creates_of_one_name(corral: Corral) -> None:
    procs = [subprocess.Popen([CORRAL, "--root", str(corral.root), "create", "same",
                               "--template", "tiny"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [p.wait() for p in procs]
    assert results.count(0) == 1, results
    assert [i["name"] for i in corral.json("list")] == ["same"]  # type: ignore[union-attr]


def test_doctor_finds_and_fixes_crash_leftovers(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    corral("create", "d1", "--template", "tiny", "--start")
    pid = corral.info("d1")["pid"]
    # a crashed create, and a container whose init died while no corral ran
    (state_root / "containers" / ".create-ghost-999999999").mkdir()
    # an id range leased by a create that crashed before writing its config
    from corral.host import idmaps

    ghost = idmaps.allocate(str(state_root), "ghost")
    own = idmaps.leased(str(state_root))
    os.kill(pid, 9)
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        pass
    p = corral.run("doctor", check=False)
    assert p.returncode != 0
    assert ".create-ghost" in p.stdout and "d1" in p.stdout
    assert f"id range {ghost} leased to no container ('ghost')" in p.stdout
    corral("doctor", "--fix")
    assert corral("doctor").strip() == "nothing left behind"
    assert idmaps.leased(str(state_root)) == {b: n for b, n in own.items() if n != "ghost"}
    corral("start", "d1")
    assert corral.info("d1")["state"] == "running"


def test_run_of_a_missing_command_leaves_nothing(corral: Corral) -> None:
    p = corral.run("run", "--rm", "--template", "tiny", "--", "no-such-command", check=False)
    assert p.returncode != 0 and "not found in the container's PATH" in p.stderr
    assert "Traceback" not in p.stderr
    assert corral.json("list") == []
    # its address went back to the pool, so the network can be deleted
    for net in corral.json("network", "list"):  # type: ignore[union-attr]
        assert net["containers"] == [], net
    # a bare command name is looked up in the container's PATH
    assert corral("run", "--rm", "--template", "tiny", "--", "echo", "found") == "found\n"
