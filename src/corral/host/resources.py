"""Resources: limits set live and persisted, and usage read from the kernel.

``set`` validates everything first, applies the new limits to a running
container's cgroup, and only then saves the config; if the kernel refuses a
value, the limits that were in force are written back and the config is
untouched.
"""

from __future__ import annotations

import os
import time

from corral.errors import CorralError, ValidationError, from_oserror
from corral.model import STOPPED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from corral.host import Host


def parse_limits(raw: dict[str, Any]) -> dict[str, Any]:
    """Flag texts (name → text, or list of texts for IO) → stored limit values."""
    from corral.cgroups import resources

    out = {}
    for name, value in raw.items():
        if value is None or value == []:
            continue
        if name not in resources.LIMITS:
            raise ValidationError(f"unknown limit '{name}'")
        out[name] = resources.parse(name, value)
    return out


def apply(host: Host, name: str, limits: dict[str, Any]) -> None:
    """Write ``limits`` to the container's cgroup, naming the limit the kernel refused."""
    limits = {k: v for k, v in limits.items() if k != "disk"}  # not a cgroup matter
    if not limits:
        return
    cg = host.cgroup(name)
    try:
        cg.apply(limits)
    except OSError as exc:
        hint = None
        if exc.errno == 16 and "memory" in limits:  # EBUSY: below what is in use now
            hint = "The container uses more than that now; free memory inside or set more."
        err = from_oserror(f"cannot apply limits to '{name}'", exc)
        err.hint = hint or "Check the values against the host's resources."
        raise err from exc


def set_limits(host: Host, name: str, changes: dict[str, Any]) -> dict[str, Any]:
    from corral.cgroups import resources

    cfg = host.load_config(name)
    with host.lock(name):
        cfg = host.load_config(name)
        old = dict(cfg.limits)
        new = resources.merge(old, changes)
        state = host.load_state(name)
        running = host.status(name, state) != STOPPED
        if "disk" in changes:
            _set_disk(host, name, cfg, old.get("disk", -1), changes["disk"], running, state)
        if running:
            try:
                apply(host, name, changes)
            except CorralError:
                # Put back what was in force for every limit we may have touched.
                restore = {k: old.get(k, _unlimited_value(k)) for k in changes}
                try:
                    host.cgroup(name).apply(restore)
                except (OSError, CorralError):
                    pass
                raise
        cfg.limits = new
        host.save_config(cfg)
    return new


def _set_disk(host: Host, name: str, cfg: Any, old: int, new: int, running: bool,
              state: Any) -> None:
    """Grow or shrink, live too (btrfs images; older ext4 ones grow live only with
    CAP_SYS_RESOURCE and shrink when stopped); refused below what is in use."""
    from corral.cgroups.resources import UNLIMITED
    from corral.errors import InvalidStateError
    from corral.storage import disk

    image = host.paths.disk_image(name)
    if old == UNLIMITED:
        if new == UNLIMITED:
            return
        if running or any(os.scandir(host.paths.upper(name))):
            raise InvalidStateError(
                f"container '{name}' has no disk quota, and its files are outside one",
                hint="Give --disk when creating a container (its files then live on it).")
        disk.create(image, new)
        return
    if new == UNLIMITED:
        raise ValidationError("a disk quota cannot be lifted", hint="Set a larger size instead.")
    live = f"/proc/{state.pid}/root" if running else None
    if live is not None:
        disk.sync(live)  # what it just wrote counts
    used = disk.usage(image, live)
    if new < used:
        raise ValidationError(f"--disk {new} is less than the {used} bytes in use",
                              hint="Free space inside the container first.")
    if disk.fstype(image) == "btrfs":
        disk.resize(image, new, running)  # btrfs may still refuse a shrink
        return
    if new > old:
        if running:
            disk.grow_live(image, new)  # checks that the kernel will let us, first
        else:
            disk.grow_offline(image, new)
    elif new < old:
        if running:
            raise InvalidStateError(f"container '{name}' is running; a disk shrinks only when "
                                    "stopped", hint=f"Stop it first: corral stop {name}")
        disk.shrink_offline(image, new)


def _unlimited_value(key: str) -> Any:
    from corral.cgroups import resources

    if key in resources.IO_LIMITS:
        return {}
    defaults = {"cpu_weight": 100, "io_weight": 100}
    if key == "cpuset":
        return ",".join(str(c) for c in resources.host_cpus())
    return defaults.get(key, resources.UNLIMITED)


def _net_bytes(pid: int) -> tuple[int, int]:
    """rx/tx of every interface but lo in the container's network namespace."""
    rx = tx = 0
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        ifname, _, data = line.partition(":")
        if ifname.strip() == "lo":
            continue
        fields = data.split()
        rx += int(fields[0])
        tx += int(fields[8])
    return rx, tx


def _disk_bytes(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(f"{dirpath}/{f}").st_blocks * 512
            except OSError:
                pass
    return total


def _disk_used(host: Host, name: str, state: Any, status: Any) -> int:
    image = host.paths.disk_image(name)
    if os.path.exists(image):
        from corral.storage import disk

        live = f"/proc/{state.pid}/root" if status != STOPPED and state.pid else None
        return disk.usage(image, live)
    return _disk_bytes(host.paths.upper(name))


def stats(host: Host, name: str) -> dict[str, Any]:
    cfg = host.load_config(name)
    state = host.load_state(name)
    status = host.status(name, state)
    limits = cfg.limits
    out: dict[str, Any] = {
        "name": name,
        "state": str(status),
        "time": time.time(),
        "cpu_seconds": 0.0,
        "cpus_limit": limits.get("cpus", -1),
        "memory_bytes": 0,
        "memory_limit_bytes": limits.get("memory", -1),
        "swap_bytes": 0,
        "swap_limit_bytes": limits.get("swap", -1),
        "pids": 0,
        "pids_limit": limits.get("pids", -1),
        "disk_bytes": _disk_used(host, name, state, status),
        "disk_limit_bytes": limits.get("disk", -1),
        "io_read_bytes": 0,
        "io_write_bytes": 0,
        "net_rx_bytes": 0,
        "net_tx_bytes": 0,
        "oom_kills": 0,
        "failcnt": {"memory": 0, "pids": 0},
    }
    if status == STOPPED or state.pid is None:
        return out
    st = host.cgroup(name).stats()
    out.update({
        "cpu_seconds": round(st.cpu_usage_ns / 1e9, 6),
        "memory_bytes": st.memory_bytes,
        "memory_limit_bytes": st.memory_limit_bytes,
        "swap_bytes": st.swap_bytes,
        "swap_limit_bytes": st.swap_limit_bytes,
        "pids": st.pids,
        "pids_limit": st.pids_limit,
        "io_read_bytes": st.io_read_bytes,
        "io_write_bytes": st.io_write_bytes,
        "oom_kills": st.oom_kills,
        "failcnt": {"memory": st.memory_failcnt, "pids": st.pids_failcnt},
    })
    out["net_rx_bytes"], out["net_tx_bytes"] = _net_bytes(state.pid)
    return out
