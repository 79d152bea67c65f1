"""InitSpec and ExecSpec: everything the runtime needs, as plain data.

Built by the service layer from a container's config and the drivers'
answers (cgroup files, rootfs layers); the runtime reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True, kw_only=True)
class RootfsSpec:
    """Where the container's root comes from."""

    mountpoint: str  # an empty directory; mounted on only inside the new mount namespace
    lower: tuple[str, ...] = ()  # overlay lower layers, top first
    upper: str | None = None
    work: str | None = None
    bind: str | None = None  # --rootfs DIR: bind this directory instead of an overlay


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupMount:
    """A cgroup hierarchy to show inside the container under /sys/fs/cgroup."""

    target: str  # relative to /sys/fs/cgroup, "" for the top (pure v2)
    fstype: str  # "cgroup" or "cgroup2"
    options: str  # "cpu,cpuacct", "memory", "none,name=systemd", ""


@dataclass(frozen=True, slots=True, kw_only=True)
class InitSpec:
    name: str
    hostname: str
    rootfs: RootfsSpec
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    cgroup_procs: tuple[str, ...] = ()  # cgroup.procs files the init joins before unshare
    cgroup_mounts: tuple[CgroupMount, ...] = ()
    caps: tuple[str, ...] = DEFAULT_CAPS
    foreground: bool = False  # `corral run`: keep the caller's stdio and session
    console_log: str | None = None  # detached: init's stdout/stderr go here
    netns: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecSpec:
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    cwd: str | None = None
    tty: bool = False
    caps: tuple[str, ...] = DEFAULT_CAPS
