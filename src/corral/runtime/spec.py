"""InitSpec and ExecSpec: everything the runtime needs, as plain data.

Built by the service layer from a container's config and the drivers'
answers (cgroup files, rootfs layers); the runtime reads nothing else.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# What a container's root keeps: enough to run a server (bind low ports,
# change owners, send signals, manage its own network and processes), and
# nothing that reaches the host kernel or hardware: no sys_admin (mounts,
# namespaces administration), sys_module, sys_rawio, sys_time, mknod,
# syslog, mac_*, bpf, perfmon.  sys_boot stays: reboot(2) inside a PID
# namespace only ends that namespace's init (pid_namespaces(7)).
DEFAULT_CAPS = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_chroot", "sys_ptrace",
    "sys_boot", "sys_nice", "sys_resource", "sys_tty_config", "lease", "audit_write",
    "setfcap",
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class _Spec:
    """Keyword-only, read-only plain data (dataclasses would cost ms on every start)."""

    __slots__: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, **kw: Any) -> None:
        missing = [k for k, v in self._defaults.items() if v is _REQUIRED and k not in kw]
        unknown = set(kw) - set(self._defaults)
        if missing or unknown:
            raise TypeError(f"{type(self).__name__}: missing {missing}, unknown {sorted(unknown)}")
        for k, default in self._defaults.items():
            object.__setattr__(self, k, kw.get(k, default))

    def __setattr__(self, key: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._defaults)
        return f"{type(self).__name__}({fields})"


_REQUIRED = object()


class RootfsSpec(_Spec):
    """Where the container's root comes from."""

    _defaults = {
        "mountpoint": _REQUIRED,  # empty dir; mounted on only inside the new mount namespace
        "lower": (),  # overlay lower layers, top first
        "lower_owners": (),  # per lower layer: the host id its files' root has (0: host's)
        "upper": None,
        "work": None,
        "bind": None,  # --rootfs DIR: bind this directory instead of an overlay
        "disk": None,  # a loop device holding upper and work (disk quota), mounted first
        "disk_mount": None,  # where, inside the new mount namespace only
        "disk_fstype": None,  # its filesystem: btrfs (ext4 for images made before)
        "premounted": False,  # the root is already at mountpoint (staged for a user namespace)
        "volatile": False,  # upper thrown away afterwards (run --rm): overlay skips its syncs
    }
    __slots__ = tuple(_defaults)
    premounted: bool
    volatile: bool
    disk: str | None
    disk_mount: str | None
    disk_fstype: str | None
    mountpoint: str
    lower: tuple[str, ...]
    lower_owners: tuple[int, ...]
    upper: str | None
    work: str | None
    bind: str | None


class CgroupMount(_Spec):
    """A cgroup hierarchy to show inside the container under /sys/fs/cgroup."""

    _defaults = {
        "target": _REQUIRED,  # relative to /sys/fs/cgroup, "" for the top (pure v2)
        "fstype": _REQUIRED,  # "cgroup" or "cgroup2"
        "options": "",  # "cpu,cpuacct", "memory", "none,name=systemd", ""
    }
    __slots__ = tuple(_defaults)
    target: str
    fstype: str
    options: str


class InitSpec(_Spec):
    _defaults = {
        "name": _REQUIRED,
        "hostname": _REQUIRED,
        "rootfs": _REQUIRED,
        "argv": _REQUIRED,
        "env": {},
        "cgroup_procs": (),  # cgroup.procs files the init joins before unshare
        "cgroup_mounts": (),
        "caps": DEFAULT_CAPS,
        "foreground": False,  # `corral run`: keep the caller's stdio and session
        "console_log": None,  # detached: init's stdout/stderr go here
        "netns": True,
        # The host wires the network namespace (veth, addresses, loopback) while
        # the init builds its root.  False (``--net none``): the init brings up
        # its loopback itself.
        "netns_wired": True,
        "binds": (),  # (host file, path inside) mounted read-only over the fresh /proc, /sys
        # (host uid base, host gid base, size): run in a new user namespace mapping
        # 0..size-1 there to base..base+size-1 here; None: the host's (privileged)
        "userns": None,
        # A socket to send the master of the container's console pty to (its
        # monitor holds it); -1: /dev/console is the caller's terminal or /dev/null.
        "console_socket": -1,
        "seccomp": b"",  # a compiled seccomp-BPF program, installed before "ready"
        # A connection to the host's sysinfo agent (runtime/sysinfo_agent.py) and
        # ``seccomp`` in the form that sends sysinfo to a listener, installed instead
        # of it while the agent is there, the listener sent on the connection
        # (runtime/sysinfo_client.install); -1: sysinfo is not intercepted.
        # ``spawn`` closes the connection in the caller.
        "sysinfo_socket": -1,
        "sysinfo_filter": b"",
        "systempaths": True,  # mask /proc's sensitive files, /sys read-only (False: neither)
        # Files the init writes into its root before it reports ready:
        # path inside -> (content, mode); /etc/hostname, /etc/hosts, guest settings.
        "files": {},
        # Files whose content comes with "go" (``Spawned.release``): the network's.
        "late_files": (),
    }
    __slots__ = tuple(_defaults)
    late_files: tuple[str, ...]
    seccomp: bytes
    sysinfo_socket: int
    sysinfo_filter: bytes
    systempaths: bool
    files: dict[str, tuple[bytes, int]]
    userns: tuple[int, int, int] | None
    console_socket: int
    name: str
    hostname: str
    rootfs: RootfsSpec
    argv: tuple[str, ...]
    env: dict[str, str]
    cgroup_procs: tuple[str, ...]
    cgroup_mounts: tuple[CgroupMount, ...]
    caps: tuple[str, ...]
    foreground: bool
    console_log: str | None
    netns: bool
    netns_wired: bool
    binds: tuple[tuple[str, str], ...]


class ExecSpec(_Spec):
    _defaults = {
        "argv": _REQUIRED,
        "env": {},
        "user": None,
        "cwd": None,
        "tty": False,
        "caps": DEFAULT_CAPS,
    }
    __slots__ = tuple(_defaults)
    argv: tuple[str, ...]
    env: dict[str, str]
    user: str | None
    cwd: str | None
    tty: bool
    caps: tuple[str, ...]


def execvpe(argv: tuple[str, ...] | list[str], env: dict[str, str]) -> None:
    """execvpe(3) by the container's PATH, for the init and for ``exec``.

    os.execvpe imports modules lazily, which cannot be found once the process
    is inside the container; this needs nothing but ``os``.
    """
    import os

    if "/" in argv[0]:
        os.execve(argv[0], list(argv), env)
    denied: OSError | None = None
    for d in env.get("PATH", DEFAULT_PATH).split(":"):
        try:
            os.execve(f"{d or '.'}/{argv[0]}", list(argv), env)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except PermissionError as exc:  # remember, but a later directory may have it
            denied = exc
    raise denied or FileNotFoundError(2, "not found in the container's PATH", argv[0])


def fd_ranges_except(keep: tuple[int, ...], top: int) -> list[tuple[int, int]]:
    """The fds from 3 to ``top`` but ``keep`` (negative ones ignored), as inclusive
    (low, high) ranges."""
    out = []
    low = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > low:
            out.append((low, fd - 1))
        low = fd + 1
    out.append((low, top))
    return out


def close_fds_except(*keep: int) -> None:
    """Close every fd from 3 up but ``keep`` (negative ones ignored), before the
    init or an exec'd command runs: no host fd may reach the container
    (CVE-2024-21626 class)."""
    import os

    for low, high in fd_ranges_except(keep, (1 << 20) - 1):
        os.closerange(low, high + 1)
