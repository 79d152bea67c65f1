"""Value types shared by every layer: names, container config, status.

Pure data and validation only; no I/O.  Everything here is importable from
any layer, including the in-namespace helper, so it stays stdlib-only.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from typing import Any

from corral.errors import InvalidStateError, ValidationError

# A DNS label (RFC 1123): what a hostname, a directory name and a cgroup name
# can all carry without quoting.
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_NAME = 63


def validate_name(name: str, what: str = "container") -> str:
    """Return ``name`` if it is a valid object name, else raise ValidationError."""
    if not name:
        raise ValidationError(f"{what} name is empty", hint="Give a name such as 'web1'.")
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"{what} name '{name[:20]}…' is {len(name)} characters long",
            hint=f"Use at most {MAX_NAME} characters.",
        )
    if not _NAME_RE.match(name):
        raise ValidationError(
            f"invalid {what} name '{name}'",
            hint="Use lowercase letters, digits and '-' (a DNS label), "
            "starting and ending with a letter or digit.",
        )
    return name


_HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def validate_hostname(hostname: str) -> str:
    if not _HOST_RE.match(hostname) or len(hostname) > 64:
        raise ValidationError(
            f"invalid hostname '{hostname}'",
            hint="Use DNS labels separated by dots, at most 64 characters.",
        )
    return hostname


class Status(enum.StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    FROZEN = "frozen"

    def can_start(self) -> bool:
        return self is Status.STOPPED

    def can_stop(self) -> bool:
        return self is not Status.STOPPED

    def can_exec(self) -> bool:
        return self is Status.RUNNING

    def can_freeze(self) -> bool:
        return self is Status.RUNNING

    def can_thaw(self) -> bool:
        return self is Status.FROZEN

    def can_destroy(self, force: bool) -> bool:
        return self is Status.STOPPED or force

    def require(self, verb: str, name: str) -> None:
        """Raise InvalidStateError unless ``verb`` is allowed in this status."""
        allowed = getattr(self, f"can_{verb}")
        if not allowed():
            hints = {
                "start": f"It is already {self}; use 'corral restart {name}' to restart it.",
                "exec": f"Start it first: 'corral start {name}'.",
                "stop": "It is not running.",
                "freeze": "Only a running container can be frozen.",
                "thaw": "Only a frozen container can be thawed.",
            }
            raise InvalidStateError(
                f"container '{name}' is {self}, cannot {verb} it", hint=hints.get(verb)
            )


@dataclass(slots=True, kw_only=True)
class ContainerConfig:
    """Desired state of one container: what ``config.toml`` holds."""

    name: str
    template: str | None = None
    rootfs: str | None = None  # --rootfs: a directory used as the root without copying
    hostname: str | None = None
    init: list[str] = field(default_factory=lambda: ["/sbin/init"])
    stop_signal: str = "SIGTERM"
    ephemeral: bool = False
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.hostname is not None:
            validate_hostname(self.hostname)
        if (self.template is None) == (self.rootfs is None):
            raise ValidationError("a container needs exactly one of a template or a rootfs")
        if not self.init:
            raise ValidationError("the init command is empty")

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.name

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValidationError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass(slots=True, kw_only=True)
class RuntimeState:
    """Facts about a running container, saved in ``state.json``.

    Never trusted alone: status is recomputed from the kernel on every load
    (the init's start time in /proc, the cgroup's freezer), as runc does.
    """

    pid: int | None = None
    pid_start: int | None = None  # /proc/<pid>/stat field 22, guards against PID reuse
    started: float | None = None
    cgroup: str | None = None
    net: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_transition(current: Status, verb: str, name: str) -> None:
    current.require(verb, name)


__all__ = [
    "ContainerConfig",
    "InvalidStateError",
    "RuntimeState",
    "Status",
    "validate_hostname",
    "validate_name",
]
