from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from corral import store
from corral.errors import BusyError, CleanupError, ValidationError
from corral.revert import Reverter


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    f = tmp_path / "state.json"
    store.write_json(f, {"a": 1})
    store.write_json(f, {"a": 2})
    assert store.read_json(f) == {"a": 2}
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize("obj", [
    {}, [], {"a": {}}, {"a": []}, {"b": 1, "a": [1, 2.5, None, True, False, "x"]},
    {"pid": 4242, "pid_start": 123456789012, "started": 1764108000.123456, "cgroup": "/corral-ab/c1",
     "net": {"interfaces": [{"name": "eth0", "ip": "10.0.3.2", "ip6": "fd42::2", "peer": "vc1"}],
             "bridge": "crb0"}},
    {"s": "quote \" backslash \\ tab \t nl \n ctl \x01 del \x7f é 猫 \U0001F600"},
    {"f": [0.1, -0.0, 1e300, 1e-300, float("inf"), float("-inf"), 3.0], "big": 2**70, "neg": -7},
    ("a", ("b", ["c"])), "top", 5, None,
])
def test_json_records_are_written_exactly_as_json_dumps_writes_them(obj: object) -> None:
    import json

    assert store.json_bytes(obj) == json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n"


@pytest.mark.parametrize("text", [
    '{"leases": {"c1": "10.200.0.2"}, "subnet": "10.200.0.0/24", "n": -12, "x": 1.5e3}',
    '  [1, 2.25, true, false, null, "\\u00e9t\\u00e9 \\"q\\" \\\\ \\n", {}, []]\n\n',
    '"just a string"', "42", "NaN", "[Infinity, -Infinity]", '{"a": {"b": {"c": [1, [2, [3]]]}}}',
    '{"big": 123456789012345678901234567890, "dup": 1, "dup": 2}', "\t\r\n{}\n",
])
def test_json_records_are_read_as_json_loads_reads_them(text: str) -> None:
    ours = store.json_loads(text.encode())
    theirs = json.loads(text)
    assert repr(ours) == repr(theirs)  # NaN != NaN; their reprs agree


def test_json_records_in_another_encoding_are_read_as_json_reads_them() -> None:
    for data, expected in (('\ufeff{"a": 1}'.encode(), {"a": 1}),
                           ('{"a": "é"}'.encode("utf-16"), {"a": "é"})):
        assert store.json_loads(data) == json.loads(data) == expected


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '"\x01"',
                                  "tru", "[1] [2]"])
def test_json_records_that_are_not_json_raise_what_json_raises(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as ours:
        store.json_loads(text.encode())
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(text)
    assert str(ours.value) == str(theirs.value)


def test_json_records_refuse_non_string_keys_and_unknown_types() -> None:
    with pytest.raises(TypeError):
        store.json_bytes({1: "x"})
    with pytest.raises(TypeError):
        store.json_bytes({"x": object()})


_TOML_SHAPES = [
    {}, {"a": {}}, {"a": []}, {"a": {"b": {}}}, {"x": 1, "t": {"y": 2}, "z": "after a table"},
    {"s": "quote \" backslash \\ tab \t nl \n cr \r ff \f bs \b ctl \x01 del \x7f é 猫 \U0001F600"},
    {"odd key": 1, "": 2, "k.dot": 3, "é": 4, "bare-key_09": 5},
    {"f": [0.1, -0.0, 1e300, 1e-300, 1e20, float("inf"), float("-inf"), 3.0], "big": 2**70,
     "neg": -7, "b": [True, False]},
    {"nested": [[1, 2], [], [["deep"]]], "tup": ("a", "b")},
    {"ports": [{"host": 8080, "container": 80, "proto": "tcp"}]},  # fits: inline tables
    {"aot": [{"name": "n" * 90, "x": 1}, {"name": "short"}]},  # too long: [[aot]]
    {"aot": [{"t": {"deep": 1}, "v": [1, 2]}]},  # a nested table: [[aot]] then [aot.t]
    {"mixed": [{"a": 1}, 2]},  # not only tables: an inline array
    {"a": {"b": {"c": {"d": 1}}, "e": 2}},
    {"inline": [{"a": {}}, {"b": {"c": [1, {"d": "x"}]}}]},
]


@pytest.mark.parametrize("obj", _TOML_SHAPES)
def test_toml_configs_are_written_exactly_as_tomli_w_writes_them(obj: dict) -> None:
    import tomli_w
    import tomllib

    assert store.toml_bytes(obj) == tomli_w.dumps(obj).encode()
    tomllib.loads(store.toml_bytes(obj).decode())  # and it is TOML


def test_toml_writer_matches_tomli_w_on_random_tables_and_real_configs() -> None:
    import random

    import tomli_w

    from corral.model import ContainerConfig

    rng = random.Random(7)
    alphabet = "ab-_ .\"\\\t\né猫\x00\x7f"

    def scalar() -> object:
        kind = rng.randrange(5)
        if kind == 0:
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(8)))
        if kind == 1:
            return rng.randrange(-10**12, 10**12)
        if kind == 2:
            return rng.uniform(-1e6, 1e6)
        if kind == 3:
            return rng.random() < 0.5
        return [scalar() for _ in range(rng.randrange(3))]

    def table(depth: int) -> dict:
        out: dict = {}
        for _ in range(rng.randrange(6)):
            key = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 6)))
            roll = rng.random()
            if depth < 3 and roll < 0.2:
                out[key] = table(depth + 1)
            elif depth < 3 and roll < 0.3:
                out[key] = [table(depth + 1) for _ in range(rng.randrange(1, 3))]
            else:
                out[key] = scalar()
        return out

    for _ in range(300):
        obj = table(0)
        assert store.toml_bytes(obj) == tomli_w.dumps(obj).encode(), obj
    cfg = ContainerConfig(name="web1", template="tiny", init=["/sbin/init", "--x"],
                          env={"A": "1", "B": "two words"}, hostname="web1.example",
                          limits={"memory": 256 << 20, "cpus": 1.5},
                          network={"mode": "bridge", "publish": [{"host": 8080, "container": 80}]})
    assert store.toml_bytes(cfg.to_dict()) == tomli_w.dumps(cfg.to_dict()).encode()


def test_toml_writer_leaves_other_types_to_tomli_w() -> None:
    import datetime

    import tomli_w

    obj = {"when": datetime.date(2026, 11, 25), "t": {"at": datetime.time(12, 30)}}
    assert store.toml_bytes(obj) == tomli_w.dumps(obj).encode()
    with pytest.raises(TypeError):
        store.toml_bytes({"x": object()})
    with pytest.raises(TypeError):
        store.toml_bytes({1: "x"})


def test_cached_toml_follows_every_change_of_the_file(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    store.write_toml(f, {"name": "a", "limits": {"memory": 1}})
    assert store.read_toml_cached(str(f)) == {"name": "a", "limits": {"memory": 1}}
    assert (tmp_path / ".config.toml.cache").exists()
    assert store.read_toml_cached(str(f)) == {"name": "a", "limits": {"memory": 1}}
    store.write_toml(f, {"name": "b", "limits": {"memory": 2}})  # same size, new inode
    assert store.read_toml_cached(str(f)) == {"name": "b", "limits": {"memory": 2}}
    time.sleep(0.02)  # an edit by hand comes later than a timestamp tick (4-10 ms)
    with open(f, "r+") as fh:  # rewritten in place, same size and inode
        fh.write('name = "c"')
    assert store.read_toml_cached(str(f))["name"] == "c"
    (tmp_path / ".config.toml.cache").write_bytes(b"garbage")
    assert store.read_toml_cached(str(f))["name"] == "c"
    f.write_text("name = [")
    with pytest.raises(ValidationError, match="cannot parse"):
        store.read_toml_cached(str(f))


def test_toml_roundtrip_and_parse_error(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    store.write_toml(f, {"name": "x", "init": ["/sbin/init"]})
    assert store.read_toml(f) == {"name": "x", "init": ["/sbin/init"]}
    f.write_text("name = [")
    with pytest.raises(ValidationError, match="cannot parse"):
        store.read_toml(f)


def _hold(path: str, ready: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    with store.locked(Path(path), "thing"):
        ready.set()
        time.sleep(2)


def test_lock_is_exclusive_and_times_out(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    ready = multiprocessing.Event()
    p = multiprocessing.Process(target=_hold, args=(str(lock), ready))
    p.start()
    try:
        assert ready.wait(5)
        assert store.is_locked(lock)
        with pytest.raises(BusyError, match="thing is locked"):
            with store.locked(lock, "thing", timeout=0.1):
                pass
    finally:
        p.kill()
        p.join()
    # the kernel released the dead holder's lock
    assert not store.is_locked(lock)
    with store.locked(lock, "thing", timeout=0.1):
        pass


def test_reverter_undoes_in_reverse_and_collects_errors() -> None:
    done: list[str] = []
    with pytest.raises(RuntimeError):
        with Reverter() as undo:
            undo.add(done.append, "first")
            undo.add(done.append, "second")
            raise RuntimeError("boom")
    assert done == ["second", "first"]

    def bad() -> None:
        raise OSError("cannot undo")

    with pytest.raises(CleanupError) as e:
        with Reverter() as undo:
            undo.add(bad)
            raise RuntimeError("boom")
    assert "boom" in str(e.value) and "cannot undo" in str(e.value)

    with Reverter() as undo:
        undo.add(done.append, "never")
        undo.success()
    assert "never" not in done
