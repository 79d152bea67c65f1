"""Id range leases: one O_EXCL file per range, machine-wide, no lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from corral.host import idmaps


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(idmaps, "REGISTRY", str(tmp_path / "idmaps.d"))
    monkeypatch.setattr(idmaps, "_LEGACY", str(tmp_path / "idmaps"))
    monkeypatch.setattr(idmaps, "_taken_by_subid", list)
    return tmp_path


def test_each_container_gets_its_own_range_and_gives_it_back(registry: Path) -> None:
    a = idmaps.allocate("/r1", "a")
    b = idmaps.allocate("/r1", "b", durable=False)
    c = idmaps.allocate("/r2", "a")  # another root: another range, same name
    assert len({a, b, c}) == 3 and a == idmaps.FIRST
    assert idmaps.leased("/r1") == {a: "a", b: "b"} and idmaps.leased("/r2") == {c: "a"}
    idmaps.release("/r1", "a", a)
    assert idmaps.leased("/r1") == {b: "b"}
    assert idmaps.allocate("/r1", "d") == a  # the lowest free range is reused


def test_a_range_taken_meanwhile_is_skipped(registry: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process creates the lease file between our listing and our claim:
    # O_EXCL makes us lose that one and take the next.
    monkeypatch.setattr(idmaps, "_bases", list)
    os.makedirs(idmaps.REGISTRY)
    Path(idmaps.REGISTRY, str(idmaps.FIRST)).write_text("/other:x\n")
    assert idmaps.allocate("/r", "a") == idmaps.FIRST + idmaps.SIZE


def test_release_touches_only_the_named_containers_lease(registry: Path) -> None:
    a = idmaps.allocate("/r", "a")
    idmaps.release("/r", "b", a)  # a stale or wrong base: not b's, kept
    idmaps.release("/other", "a", a)
    assert idmaps.leased("/r") == {a: "a"}
    idmaps.release("/r", "a")  # without the base: whatever a holds
    assert idmaps.leased("/r") == {}
    idmaps.release("/r", "a", a)  # twice: nothing to do


def test_subid_ranges_are_skipped(registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idmaps, "_taken_by_subid",
                        lambda: [(idmaps.FIRST + 10, idmaps.FIRST + 20)])
    assert idmaps.allocate("/r", "a") == idmaps.FIRST + idmaps.SIZE


def test_the_one_file_registry_of_earlier_versions_is_adopted(registry: Path) -> None:
    Path(idmaps._LEGACY).write_text(f"{idmaps.FIRST} /r:old\n{idmaps.FIRST + 2 * idmaps.SIZE} "
                                    "/s:x\n")
    assert idmaps.allocate("/r", "new") == idmaps.FIRST + idmaps.SIZE
    assert not os.path.exists(idmaps._LEGACY)
    assert idmaps.leased("/r") == {idmaps.FIRST: "old", idmaps.FIRST + idmaps.SIZE: "new"}
    assert idmaps.leased("/s") == {idmaps.FIRST + 2 * idmaps.SIZE: "x"}


def test_the_registry_is_private(registry: Path) -> None:
    base = idmaps.allocate("/r", "a")
    assert os.stat(idmaps.REGISTRY).st_mode & 0o777 == 0o700
    assert os.stat(f"{idmaps.REGISTRY}/{base}").st_mode & 0o777 == 0o600
