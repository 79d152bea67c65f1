"""Capabilities: the bounding set is what a container's root can ever hold."""

from __future__ import annotations

from corral.linux.ns import PR_CAPBSET_DROP, prctl

CAP_NAMES = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
]


def cap_last() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
            return int(f.read())
    except OSError:
        return len(CAP_NAMES) - 1


def drop_bounding(keep: frozenset[int]) -> None:
    """Drop every capability not in ``keep`` from the bounding set (irreversible)."""
    for cap in range(cap_last() + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)


def cap_numbers(names: list[str] | tuple[str, ...]) -> frozenset[int]:
    return frozenset(CAP_NAMES.index(n) for n in names)


def bounding_from_status(status: str) -> frozenset[int]:
    """The capability bounding set in the text of a /proc/PID/status file (CapBnd)."""
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            mask = int(line.split()[1], 16)
            return frozenset(c for c in range(64) if mask >> c & 1)
    raise OSError("no CapBnd in a /proc status file")
