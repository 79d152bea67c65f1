"""Resource limits: parse what users type, and map each limit to cgroup files.

``Limits`` is plain data stored in a container's config (``[limits]``):
sizes in bytes, CPUs as a float, -1 for "unlimited", absent for "not set".
Controllers are small functions, one per limit and layout, that return the
(file, value) writes for the *outer* cgroup; the managers in ``fs`` only
perform them.  Keeping the mapping pure lets unit tests assert the exact
files and values for v1 and v2 without a kernel.
"""

from __future__ import annotations

import os

from corral.errors import UnsupportedError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

UNLIMITED = -1
CPU_PERIOD = 100_000  # µs; the kernel's default CFS period
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

# name → (kind, help) for every limit; fronts build their flags from this table.
LIMITS: dict[str, tuple[str, str]] = {
    "cpus": ("cpus", "CPU time as a number of CPUs (1.5), or max"),
    "cpu_weight": ("int:1:10000", "CPU share under contention, 1..10000 (default 100)"),
    "cpuset": ("cpuset", "CPUs it may run on, e.g. 0-1,3"),
    "memory": ("size", "memory limit (512M, 2G, max)"),
    "swap": ("size", "swap it may use beyond memory (256M, max)"),
    "pids": ("count", "most processes and threads at once (500, max)"),
    "io_weight": ("int:10:1000", "disk IO share under contention, 10..1000"),
    "io_read_bps": ("io", "read bytes/s per device: DEV=10M (repeatable)"),
    "io_write_bps": ("io", "write bytes/s per device: DEV=10M (repeatable)"),
    "io_read_iops": ("io", "read operations/s per device: DEV=1000 (repeatable)"),
    "io_write_iops": ("io", "write operations/s per device: DEV=1000 (repeatable)"),
    "disk": ("size", "disk space for the container's own files (2G, max)"),
}
IO_LIMITS = ("io_read_bps", "io_write_bps", "io_read_iops", "io_write_iops")


# -- parsing ------------------------------------------------------------------------------

def _unlimited(text: str) -> bool:
    return text.strip().lower() in ("max", "unlimited", "none", "-1")


def parse_size(text: str, what: str = "size") -> int:
    """'512M' → 536870912 (K/M/G/T, powers of 1024; 'B'/'iB' allowed); 'max' → -1."""
    if _unlimited(text):
        return UNLIMITED
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    number = t[: len(t) - len(unit)].strip()
    try:
        value = float(number)
    except ValueError:
        raise ValidationError(f"invalid {what} '{text}'",
                              hint="Use a number with K, M, G or T (e.g. 512M), or max.") from None
    if value < 0 or value != value:
        raise ValidationError(f"invalid {what} '{text}': must not be negative")
    return int(value * _UNITS[unit])


def host_cpus() -> list[int]:
    """The host's online CPUs (from /sys, so a cpuset-limited Corral still sees them all)."""
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpu_list(f.read().strip())
    except OSError:
        return list(range(os.cpu_count() or 1))


def parse_cpu_list(text: str) -> list[int]:
    cpus: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValidationError(f"invalid CPU list '{text}'", hint="Use e.g. 0-1,3.")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValidationError(f"invalid CPU range '{part}' in '{text}'")
        cpus.extend(range(a, b + 1))
    return cpus


def parse_cpus(text: str) -> float:
    if _unlimited(text):
        return UNLIMITED
    try:
        value = float(text)
    except ValueError:
        raise ValidationError(f"invalid --cpus '{text}'", hint="Use a number such as 1.5, or max.") \
            from None
    n = len(host_cpus())
    if not 0.01 <= value <= n:
        raise ValidationError(f"invalid --cpus {text}: this host has {n} CPUs",
                              hint=f"Use a value between 0.01 and {n}.")
    return value


def _parse_int(text: str, name: str, lo: int, hi: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValidationError(f"invalid --{name.replace('_', '-')} '{text}'") from None
    if not lo <= value <= hi:
        raise ValidationError(f"invalid --{name.replace('_', '-')} {value}",
                              hint=f"Use a value between {lo} and {hi}.")
    return value


def device_number(dev: str) -> str:
    """'/dev/vda' or '253:0' → '253:0' (a block device's MAJ:MIN)."""
    if ":" in dev and all(p.isdigit() for p in dev.split(":")):
        return dev
    try:
        st = os.stat(dev)
    except OSError as exc:
        raise ValidationError(f"no device {dev}: {exc.strerror}") from None
    import stat

    if not stat.S_ISBLK(st.st_mode):
        raise ValidationError(f"{dev} is not a block device")
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def parse_io(items: list[str], name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        dev, sep, value = item.partition("=")
        if not sep:
            raise ValidationError(f"invalid --{name.replace('_', '-')} '{item}'",
                                  hint="Use DEV=VALUE, e.g. /dev/vda=10M.")
        amount = parse_size(value, name.replace("_", " ")) if name.endswith("bps") else (
            UNLIMITED if _unlimited(value) else _parse_int(value, name, 1, 1 << 40))
        out[device_number(dev)] = amount
    return out


def parse(name: str, value: Any) -> Any:
    """One flag's text (or list of texts for IO) → its stored value."""
    kind = LIMITS[name][0]
    if kind == "size":
        return parse_size(value, name)
    if kind == "cpus":
        return parse_cpus(value)
    if kind == "count":
        return UNLIMITED if _unlimited(value) else _parse_int(value, name, 1, 1 << 22)
    if kind.startswith("int:"):
        _, lo, hi = kind.split(":")
        return _parse_int(value, name, int(lo), int(hi))
    if kind == "cpuset":
        cpus = parse_cpu_list(value)
        online = set(host_cpus())
        missing = sorted(set(cpus) - online)
        if missing:
            raise ValidationError(f"invalid --cpuset {value}: no CPU {missing[0]} on this host",
                                  hint=f"Online CPUs: {sorted(online)}.")
        return value.strip()
    if kind == "io":
        return parse_io(value if isinstance(value, list) else [value], name)
    raise AssertionError(kind)


def merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """New limits: ``changes`` over ``current``; IO maps merge per device."""
    out = dict(current)
    for k, v in changes.items():
        if k in IO_LIMITS:
            merged = dict(out.get(k, {}))
            merged.update(v)
            out[k] = merged
        else:
            out[k] = v
    return out


# -- controllers: limit → file writes on the outer cgroup ------------------------------------

def _v2_max(v: int) -> str:
    return "max" if v == UNLIMITED else str(v)


def v2_writes(limits: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(controller, file, value) for cgroup v2."""
    w: list[tuple[str, str, str]] = []
    if "cpus" in limits:
        c = limits["cpus"]
        quota = "max" if c == UNLIMITED else str(max(1000, int(c * CPU_PERIOD)))
        w.append(("cpu", "cpu.max", f"{quota} {CPU_PERIOD}"))
    if "cpu_weight" in limits:
        w.append(("cpu", "cpu.weight", str(limits["cpu_weight"])))
    if "cpuset" in limits:
        w.append(("cpuset", "cpuset.cpus", limits["cpuset"]))
    if "memory" in limits:
        w.append(("memory", "memory.max", _v2_max(limits["memory"])))
    if "swap" in limits:
        w.append(("memory", "memory.swap.max", _v2_max(limits["swap"])))
    if "pids" in limits:
        w.append(("pids", "pids.max", _v2_max(limits["pids"])))
    if "io_weight" in limits:
        w.append(("io", "io.weight", f"default {limits['io_weight']}"))
    keys = {"io_read_bps": "rbps", "io_write_bps": "wbps", "io_read_iops": "riops",
            "io_write_iops": "wiops"}
    devices = sorted({d for k in keys for d in limits.get(k, {})})
    for dev in devices:
        parts = [f"{keys[k]}={_v2_max(limits[k][dev])}" for k in keys if dev in limits.get(k, {})]
        w.append(("io", "io.max", f"{dev} {' '.join(parts)}"))
    return w


def _v1_num(v: int) -> str:
    return "-1" if v == UNLIMITED else str(v)


def v1_writes(limits: dict[str, Any], has_memsw: bool = True) -> list[tuple[str, str, str]]:
    """(controller, file, value) for cgroup v1, in an order the kernel accepts.

    ``memory.memsw.limit_in_bytes`` (memory + swap) may never be below
    ``memory.limit_in_bytes``, in either direction of a change; lifting memsw
    first, then setting memory, then memsw always satisfies that.
    """
    w: list[tuple[str, str, str]] = []
    if "cpus" in limits:
        c = limits["cpus"]
        w.append(("cpu", "cpu.cfs_period_us", str(CPU_PERIOD)))
        w.append(("cpu", "cpu.cfs_quota_us",
                  "-1" if c == UNLIMITED else str(max(1000, int(c * CPU_PERIOD)))))
    if "cpu_weight" in limits:
        # v2's default weight 100 is v1's default 1024 shares
        w.append(("cpu", "cpu.shares", str(max(2, limits["cpu_weight"] * 1024 // 100))))
    if "cpuset" in limits:
        w.append(("cpuset", "cpuset.cpus", limits["cpuset"]))
    if "memory" in limits or "swap" in limits:
        mem = limits.get("memory", UNLIMITED)
        swap = limits.get("swap", UNLIMITED)
        if not has_memsw:
            if swap != UNLIMITED:
                raise UnsupportedError(
                    "this kernel does not account swap per cgroup (no memory.memsw files)",
                    hint="Boot with swapaccount=1, or leave --swap unset.")
            w.append(("memory", "memory.limit_in_bytes", _v1_num(mem)))
        else:
            memsw = UNLIMITED if UNLIMITED in (mem, swap) else mem + swap
            w.append(("memory", "memory.memsw.limit_in_bytes", "-1"))
            w.append(("memory", "memory.limit_in_bytes", _v1_num(mem)))
            w.append(("memory", "memory.memsw.limit_in_bytes", _v1_num(memsw)))
    if "pids" in limits:
        w.append(("pids", "pids.max", _v2_max(limits["pids"])))
    if "io_weight" in limits:
        w.append(("blkio", "blkio.weight", str(limits["io_weight"])))
    files = {"io_read_bps": "blkio.throttle.read_bps_device",
             "io_write_bps": "blkio.throttle.write_bps_device",
             "io_read_iops": "blkio.throttle.read_iops_device",
             "io_write_iops": "blkio.throttle.write_iops_device"}
    for key, fname in files.items():
        for dev, value in sorted(limits.get(key, {}).items()):
            w.append(("blkio", fname, f"{dev} {0 if value == UNLIMITED else value}"))
    return w
