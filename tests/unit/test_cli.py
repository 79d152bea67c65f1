from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from corral import __version__
from corral.cli.main import main

CORRAL = str(Path(sys.executable).parent / "corral")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"corral {__version__}\n"


def test_version_imports_nothing_heavy() -> None:
    code = ("import sys; from corral.cli.main import main; main(['--version']); "
            "print(sorted(m for m in sys.modules if m.startswith('corral') or m in "
            "('argparse', 'ctypes', 'json', 'pyroute2', 'tomli_w')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.splitlines()[-1] == "['corral', 'corral.cli', 'corral.cli.main']"


def test_the_entry_flushes_its_output_before_leaving_without_teardown() -> None:
    # entry() ends with os._exit: whatever print() buffered must be out first,
    # also when stdout is a pipe (block-buffered), and the code must be main()'s.
    p = subprocess.run([sys.executable, "-m", "corral", "--version"], capture_output=True,
                       text=True)
    assert (p.returncode, p.stdout) == (0, f"corral {__version__}\n")
    p = subprocess.run([sys.executable, "-m", "corral", "frobnicate"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "invalid choice" in p.stderr


def test_the_collector_is_off_while_loading_and_back_for_ordinary_commands(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # entry() turns the garbage collector off while the command's modules load;
    # every command but run/exec (which only start and wait) turns it back on
    # before doing its work, with what was loaded frozen out of its sight.
    import gc

    from corral.cli import commands, main

    seen: list[tuple[bool, int]] = []
    monkeypatch.setattr(commands, "cmd_list", lambda host, args: seen.append(
        (gc.isenabled(), gc.get_freeze_count())) or 0, raising=False)
    monkeypatch.setattr(main, "_host", lambda args: None)
    gc.disable()
    try:
        assert main._dispatch(type("A", (), {"command": "list"})()) == 0
    finally:
        gc.unfreeze()
        gc.enable()
    assert seen and seen[0][0] and seen[0][1] > 0
    launcher = (Path(__file__).parents[2] / "scripts" / "corral-launcher").read_text()
    assert launcher.index("gc.disable()") < launcher.index("from corral")


def test_usage_error_is_not_a_traceback() -> None:
    p = subprocess.run([CORRAL, "frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr and "invalid choice" in p.stderr


def test_bad_env_is_a_validation_error() -> None:
    from corral.cli.main import _env
    from corral.errors import ValidationError

    assert _env(["A=1", "B=x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ValidationError):
        _env(["novalue"])


def _argparse(argv: list[str]) -> dict[str, object]:
    from corral.cli.parser import build

    return vars(build().parse_args(argv))


@pytest.mark.parametrize("argv", [
    ["exec", "web", "--", "ls", "-l"],
    ["--root", "/tmp/r", "exec", "-t", "--user", "nobody", "-e", "A=1", "--env", "B=2",
     "--cwd", "/etc", "web", "--", "sh", "-c", "echo hi"],
    ["--debug", "run", "--rm", "--template", "tiny", "--name", "x", "--", "/bin/true"],
    ["run", "--rootfs", "/srv/t", "--hostname", "h", "-e", "K=V", "--", "/bin/sh", "--", "x"],
])
def test_fast_parse_agrees_with_argparse(argv: list[str]) -> None:
    from corral.cgroups.resources import LIMITS
    from corral.cli.hot import _raw_limits
    from corral.cli.main import _fast_parse

    fast = _fast_parse(argv)
    assert fast is not None
    slow = _argparse(argv)
    for key, value in slow.items():
        if key in LIMITS and getattr(fast, "no_limits", False):
            assert value is None, key  # argparse saw no limit flag either
            continue
        assert getattr(fast, key) == value, key
    assert _raw_limits(fast) == {}


@pytest.mark.parametrize("argv", [
    ["exec", "web", "ls"],  # no "--": let argparse decide
    ["exec", "--help"],
    ["exec", "web", "--bogus", "--", "ls"],
    ["exec", "a", "b", "--", "ls"],
    ["run", "--template", "t", "--rootfs", "/x", "--", "ls"],
    ["run", "--", "ls"],
    ["exec", "web", "--user", "--", "ls"],
    ["list"],
])
def test_fast_parse_defers_everything_else(argv: list[str]) -> None:
    from corral.cli.main import _fast_parse

    assert _fast_parse(argv) is None


def test_run_without_network_skips_the_network_package_with_the_same_answer() -> None:
    from corral import network
    from corral.cli import hot

    args = type("A", (), {"net": "none", "ip": None, "network": None, "publish": None,
                          "isolated": False, "nameserver": None, "searchdomain": None,
                          "net_rate": None})()
    assert hot._network(args) == network.plan("none", None, None, None, False, None, None)


@pytest.mark.parametrize("parallel", [1, 3])
def test_mass_operations_name_every_failure_and_its_reason(
        parallel: int, capfd: pytest.CaptureFixture[str]) -> None:
    from corral.cli.commands import _each
    from corral.errors import InvalidStateError

    def one(name: str) -> None:
        if name == "b":
            raise InvalidStateError("container 'b' is running")
        if name == "d":
            raise OSError(5, "Input/output error")  # not ours: still one line, no traceback

    code = _each(["a", "b", "c", "d"], "start", one, parallel)
    err = capfd.readouterr().err
    assert code != 0
    assert "corral: b: container 'b' is running" in err
    assert "corral: d: [Errno 5] Input/output error" in err
    assert "start failed for 2 of 4: " in err
    assert sorted(err.split("start failed for 2 of 4: ")[1].strip().split(", ")) == ["b", "d"]
    assert "Traceback" not in err


@pytest.mark.parametrize("to_group", [False, True])
def test_ctrl_c_stops_a_parallel_mass_operation(tmp_path: Path, to_group: bool) -> None:
    # Each name takes 0.3 s and leaves a marker when done; SIGINT after 0.45 s
    # (to the caller alone, or to its whole group as a terminal sends it) must
    # stop every worker after the name it is on, and the caller waits for them.
    script = f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).parents[2] / "src")!r})
from corral.cli.commands import _each
def one(name):
    time.sleep(0.3)
    open(os.path.join({str(tmp_path)!r}, name), "w").close()
try:
    _each([f"n{{i}}" for i in range(12)], "start", one, 3)
except KeyboardInterrupt:
    sys.exit(130)
"""
    import signal
    import time

    p = subprocess.Popen([sys.executable, "-c", script], start_new_session=True,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.45)
    if to_group:
        os.killpg(p.pid, signal.SIGINT)
    else:
        os.kill(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 130, err
    time.sleep(0.7)  # a worker left running would add markers now
    done = sorted(f.name for f in tmp_path.iterdir())
    assert len(done) <= 6, done  # the first name of each worker, at most the second
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.killpg(p.pid, 0)  # no process of the group is left
