"""Which lxcfs files a starting container gets, and when lxcfs is asked again."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.runtime import lxcfs

OFFER = ["cpuinfo", "meminfo", "uptime", "stat"]


@pytest.fixture
def fake_lxcfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Our own lxcfs instance at OWN_MOUNT, alive with a given PID; counts listings."""
    seen = {"listings": 0, "pid": 4242}
    monkeypatch.setattr(lxcfs, "OFFER_FILE", str(tmp_path / "lxcfs.offer"))
    monkeypatch.setattr(lxcfs, "_mounts", lambda: [lxcfs.OWN_MOUNT])
    monkeypatch.setattr(lxcfs, "_own_pid", lambda: seen["pid"])
    monkeypatch.setattr(lxcfs, "_offered", {})
    monkeypatch.setattr(lxcfs, "SYS_FILES", ())  # only /proc files here

    def listdir(path: str) -> list[str]:
        assert path == f"{lxcfs.OWN_MOUNT}/proc"
        seen["listings"] += 1
        return list(OFFER)

    monkeypatch.setattr(lxcfs.os, "listdir", listdir)
    return seen


def test_our_lxcfs_is_asked_once_then_trusted_while_its_pid_lives(
        fake_lxcfs: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    first = lxcfs.container_binds()
    assert [target for _, target in first] == ["/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
                                               "/proc/uptime"]
    assert lxcfs.container_binds() == first  # the same process: no second question
    monkeypatch.setattr(lxcfs, "_offered", {})  # a later command: the recorded offer serves
    assert lxcfs.container_binds() == first
    assert fake_lxcfs["listings"] == 1
    fake_lxcfs["pid"] = 4343  # lxcfs restarted: its offer is asked for again
    monkeypatch.setattr(lxcfs, "_offered", {})
    assert lxcfs.container_binds() == first
    assert fake_lxcfs["listings"] == 2


def test_a_dead_instance_is_not_trusted(fake_lxcfs: dict[str, int],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    lxcfs.container_binds()
    fake_lxcfs["pid"] = 0  # its PID is no lxcfs any more
    monkeypatch.setattr(lxcfs, "_offered", {})

    def dead(path: str) -> list[str]:
        raise OSError(107, "Transport endpoint is not connected")

    monkeypatch.setattr(lxcfs.os, "listdir", dead)
    monkeypatch.setattr(lxcfs, "ensure", lambda: None)  # and none can be started here
    assert lxcfs.container_binds() == ()


def test_its_sys_files_are_part_of_the_kept_offer(fake_lxcfs: dict[str, int],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lxcfs, "SYS_FILES", ("devices/system/cpu/online",))
    looked_up: list[str] = []

    def exists(path: str) -> bool:
        looked_up.append(path)
        return True

    monkeypatch.setattr(lxcfs.os.path, "exists", exists)
    first = lxcfs.container_binds()
    assert first[-1] == (f"{lxcfs.OWN_MOUNT}/sys/devices/system/cpu/online",
                         "/sys/devices/system/cpu/online")
    monkeypatch.setattr(lxcfs, "_offered", {})  # a later command: no question to lxcfs
    assert lxcfs.container_binds() == first
    assert looked_up == [f"{lxcfs.OWN_MOUNT}/sys/devices/system/cpu/online"]
    assert fake_lxcfs["listings"] == 1
