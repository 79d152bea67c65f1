"""Value types shared by every layer: names, container config, status.

Pure data and validation only; no I/O.  Importable from any layer, and on
the path of every container start and exec, so it imports nothing beyond
``corral.errors``: no dataclasses, enum, re or typing (each costs
milliseconds of start-up, measured in bench/startup.py).
"""

from __future__ import annotations

from corral.errors import InvalidStateError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

MAX_NAME = 63
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def _is_label(s: str, chars: frozenset[str]) -> bool:
    return (0 < len(s) <= 63 and s[0] != "-" and s[-1] != "-"
            and all(c in chars for c in s))


def validate_name(name: str, what: str = "container") -> str:
    """Return ``name`` if it is a valid object name (a lowercase DNS label)."""
    if not name:
        raise ValidationError(f"{what} name is empty", hint="Give a name such as 'web1'.")
    if len(name) > MAX_NAME:
        raise ValidationError(
            f"{what} name '{name[:20]}…' is {len(name)} characters long",
            hint=f"Use at most {MAX_NAME} characters.",
        )
    # Template names may carry a version's dots (ubuntu-24.04); they name no host.
    allowed = _LABEL_CHARS | {"."} if what == "template" else _LABEL_CHARS
    if not _is_label(name, allowed) or ".." in name:
        raise ValidationError(
            f"invalid {what} name '{name}'",
            hint="Use lowercase letters, digits and '-' (a DNS label)"
            + (", and '.' in template names" if what == "template" else "")
            + ", starting and ending with a letter or digit.",
        )
    return name


def validate_hostname(hostname: str) -> str:
    if not (0 < len(hostname) <= 64
            and all(_is_label(label, _HOST_CHARS) for label in hostname.split("."))):
        raise ValidationError(
            f"invalid hostname '{hostname}'",
            hint="Use DNS labels separated by dots, at most 64 characters.",
        )
    return hostname


class Status(str):
    """A container's status; the guards say which operations it allows."""

    __slots__ = ()

    def can_start(self) -> bool:
        return self == STOPPED

    def can_stop(self) -> bool:
        return self != STOPPED

    def can_exec(self) -> bool:
        return self == RUNNING

    def can_freeze(self) -> bool:
        return self == RUNNING

    def can_thaw(self) -> bool:
        return self == FROZEN

    def can_destroy(self, force: bool) -> bool:
        return self == STOPPED or force

    def require(self, verb: str, name: str) -> None:
        """Raise InvalidStateError unless ``verb`` is allowed in this status."""
        if not getattr(self, f"can_{verb}")():
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


STOPPED = Status("stopped")
RUNNING = Status("running")
FROZEN = Status("frozen")


class _Record:
    """Plain keyword-constructed records with defaults, dict round-trip and equality."""

    __slots__: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        unknown = set(kw) - set(self._defaults)
        if unknown:
            raise ValidationError(f"unknown config keys: {', '.join(sorted(unknown))}")
        for key, default in self._defaults.items():
            value = kw[key] if key in kw else default
            if isinstance(value, (list, dict)) and key not in kw:
                value = type(value)(value)  # never share a mutable default
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._defaults if getattr(self, k) is not None}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_dict()!r})"


class ContainerConfig(_Record):
    """Desired state of one container: what ``config.toml`` holds."""

    _defaults = {
        "name": "",
        "template": None,
        "rootfs": None,  # --rootfs: a directory used as the root without copying
        "hostname": None,
        "init": ["/sbin/init"],
        "stop_signal": "SIGTERM",
        "ephemeral": False,
        "env": {},
        "limits": {},
        "network": {},
        "created": 0.0,
        # Copy-on-write storage (storage/layers.py): the template version this
        # container stands on, and its own read-only layers, newest first.
        "template_version": None,
        "layers": [],
        # Unprivileged (the default): the container's ids 0..size-1 are host ids
        # base..base+size-1 in its own user namespace; --privileged: the host's ids.
        "privileged": False,
        "idmap": None,
        # "pty": /dev/console is a pty held by a monitor (`corral console`, reboot
        # from inside); "log": /dev/null in, a log file out, no resident process.
        # None: the template's choice.
        "console": None,
        # Guest setup kept as files written at every start (host/guest.py).
        "guest": {},
        # `corral autostart` (run at boot by corral.service) starts these by
        # boot_order, waiting boot_delay seconds after each.
        "autostart": False,
        "boot_order": 0,
        "boot_delay": 0.0,
        # Security knobs, for debugging and nesting (defaults are the safe ones):
        # "default" | "nesting" (new user namespaces allowed) | "unconfined".
        "seccomp": "default",
        "cap_add": [],  # capabilities beyond the profile, or ["all"]
        "systempaths": "default",  # "unconfined": /proc not masked, /sys writable
        "devices": "default",  # "unconfined": no device allow-list on its cgroup
    }
    __slots__ = tuple(_defaults)

    name: str
    template: str | None
    rootfs: str | None
    hostname: str | None
    init: list[str]
    stop_signal: str
    ephemeral: bool
    env: dict[str, str]
    limits: dict[str, Any]
    network: dict[str, Any]
    created: float
    template_version: int | None
    layers: list[str]
    privileged: bool
    idmap: dict[str, int] | None
    console: str | None
    guest: dict[str, Any]
    autostart: bool
    boot_order: int
    boot_delay: float
    seccomp: str
    cap_add: list[str]
    systempaths: str
    devices: str

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        validate_name(self.name)
        if self.hostname is not None:
            validate_hostname(self.hostname)
        if (self.template is None) == (self.rootfs is None):
            raise ValidationError("a container needs exactly one of a template or a rootfs")
        if not self.init:
            raise ValidationError("the init command is empty")
        if self.seccomp not in ("default", "nesting", "unconfined"):
            raise ValidationError(f"unknown seccomp profile '{self.seccomp}'",
                                  hint="Use default, nesting or unconfined.")
        if self.devices not in ("default", "unconfined"):
            raise ValidationError(f"unknown devices policy '{self.devices}'",
                                  hint="Use default or unconfined.")
        if self.systempaths not in ("default", "unconfined"):
            raise ValidationError(f"unknown systempaths '{self.systempaths}'",
                                  hint="Use default or unconfined.")
        if self.cap_add:  # the table of names is imported only when there are some
            from corral.linux.caps import CAP_NAMES

            for cap in self.cap_add:
                if cap != "all" and cap not in CAP_NAMES:
                    raise ValidationError(f"unknown capability '{cap}'",
                                          hint="Names as in capabilities(7) without CAP_, "
                                               "e.g. sys_time, or all.")

    @property
    def effective_hostname(self) -> str:
        return self.hostname or self.name

    @property
    def has_own_network(self) -> bool:
        """Addresses of its own on a Corral network (bridge, routed); not so with
        "none" (loopback only) or "host" (the host's stack)."""
        return self.network.get("mode", "none") not in ("none", "host")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerConfig:
        return cls(**data)


class RuntimeState(_Record):
    """Facts about a running container, saved in ``state.json``.

    Never trusted alone: status is recomputed from the kernel on every load
    (the init's start time in /proc, the cgroup's freezer), as runc does.
    """

    _defaults = {
        "pid": None,
        "pid_start": None,  # /proc/<pid>/stat field 22: guards against PID reuse
        "started": None,
        "cgroup": None,
        "net": {},
    }
    __slots__ = tuple(_defaults)

    pid: int | None
    pid_start: int | None
    started: float | None
    cgroup: str | None
    net: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._defaults}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeState:
        return cls(**{k: v for k, v in data.items() if k in cls._defaults})
