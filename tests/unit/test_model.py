from __future__ import annotations

import pytest

from corral.errors import InvalidStateError, ValidationError
from corral.model import RUNNING, STOPPED, FROZEN, ContainerConfig, RuntimeState, validate_hostname, validate_name


@pytest.mark.parametrize("name", ["a", "web1", "a-b", "0", "x" * 63])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "x" * 64, "A", "-a", "a-", "a_b",
                                  "a.b", "a b", "ü"])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValidationError) as e:
        validate_name(name)
    assert e.value.hint


@pytest.mark.parametrize("h", ["web1", "web1.example.com", "A-b.c"])
def test_valid_hostnames(h: str) -> None:
    assert validate_hostname(h) == h


@pytest.mark.parametrize("h", ["", "-a", "a..b", "a_b", "x" * 65])
def test_invalid_hostnames(h: str) -> None:
    with pytest.raises(ValidationError):
        validate_hostname(h)


def test_config_roundtrip_and_unknown_keys() -> None:
    cfg = ContainerConfig(name="web", template="tiny", hostname="web.example")
    again = ContainerConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.effective_hostname == "web.example"
    with pytest.raises(ValidationError, match="unknown config keys: bogus"):
        ContainerConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_config_needs_exactly_one_source() -> None:
    with pytest.raises(ValidationError):
        ContainerConfig(name="x")
    with pytest.raises(ValidationError):
        ContainerConfig(name="x", template="tiny", rootfs="/srv")


def test_status_transitions() -> None:
    assert STOPPED.can_start() and not RUNNING.can_start()
    assert RUNNING.can_exec() and not FROZEN.can_exec()
    assert not RUNNING.can_destroy(force=False) and RUNNING.can_destroy(force=True)
    with pytest.raises(InvalidStateError, match="is running, cannot start"):
        RUNNING.require("start", "web")
    STOPPED.require("start", "web")


def test_runtime_state_ignores_unknown_keys() -> None:
    st = RuntimeState.from_dict({"pid": 5, "pid_start": 9, "future": True})
    assert (st.pid, st.pid_start) == (5, 9)
