"""lxcfs: /proc and /sys files that show a container its own limits and uptime.

lxcfs (a FUSE filesystem, Debian package ``lxcfs``) answers reads of its
meminfo, cpuinfo, stat, loadavg, uptime, swaps, diskstats and
devices/system/cpu/online with values computed from the *reader's* cgroup
(walking up to the container's outer cgroup for limits).  One instance
serves every container; Corral starts it on demand when none is mounted,
outside any container's cgroup, so it survives container restarts.  If the
host already runs lxcfs (its systemd unit), that instance is used.
"""

from __future__ import annotations

import os
import time

from corral import store

OWN_MOUNT = "/run/corral/lxcfs"
PID_FILE = "/run/corral/lxcfs.pid"
PROC_FILES = ("cpuinfo", "diskstats", "loadavg", "meminfo", "stat", "swaps", "uptime")
SYS_FILES = ("devices/system/cpu/online",)


def _mounts() -> list[str]:
    """Mount points of lxcfs in this namespace, answering or not."""
    points = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                if post.startswith("fuse.lxcfs "):
                    points.append(pre.split()[4])
    except OSError:
        pass
    return points


def answers(point: str) -> bool:
    """Whether the lxcfs behind ``point`` is alive.  A killed lxcfs leaves its
    mount behind, and every read of it fails with ENOTCONN; containers given
    its files would see the host's /proc files instead of their own."""
    try:
        os.stat(f"{point}/proc")
    except OSError:
        return False
    return True


def mounted() -> str | None:
    """The mount point of a running, answering lxcfs, if any."""
    for point in _mounts():
        if answers(point):
            return point
    return None


def dead_mounts() -> list[str]:
    """lxcfs mounts whose process is gone (for doctor)."""
    return [point for point in _mounts() if not answers(point)]


def available() -> bool:
    import shutil  # only when lxcfs is not running yet: ~6 ms of imports

    return shutil.which("lxcfs") is not None


def ensure(timeout: float = 3.0) -> str | None:
    """The lxcfs mount point, starting lxcfs if needed; None if lxcfs is not installed."""
    point = mounted()
    if point or not available():
        return point
    os.makedirs(os.path.dirname(OWN_MOUNT), mode=0o755, exist_ok=True)
    # Containers starting at once must start one lxcfs, not one each (the
    # losers would exit at once, but their PID would be in the PID file).
    import fcntl

    lock = os.open(f"{OWN_MOUNT}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        point = mounted()
        if point:
            return point
        if OWN_MOUNT in _mounts():  # ours, dead (killed, OOM): replace it
            from corral.linux import mount

            mount.umount2(OWN_MOUNT, mount.MNT_DETACH)
        os.makedirs(OWN_MOUNT, mode=0o755, exist_ok=True)
        return _start(timeout)
    finally:
        os.close(lock)


def _start(timeout: float) -> str | None:
    pid = os.fork()
    if pid == 0:  # detach completely: own session, no inherited fds, host's cgroup
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.closerange(3, 1 << 20)
            # In the foreground, lxcfs keeps this process's PID and writes it to
            # its own PID file (the default, /run/lxcfs.pid, is locked by a host
            # instance if there is one, and a second lxcfs would refuse to run).
            # Per-container load average; CPUs counted from the CFS quota.
            os.execvp("lxcfs", ["lxcfs", "--foreground", "--enable-loadavg", "--enable-cfs",
                                "--pidfile", PID_FILE, OWN_MOUNT])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if OWN_MOUNT in _mounts() and answers(OWN_MOUNT):
            return OWN_MOUNT
        time.sleep(0.01)
    return None


def binds(point: str) -> list[tuple[str, str]]:
    """(source on the host, target inside the container) pairs for the files lxcfs offers."""
    try:
        return _binds(point, _offer(point))
    except OSError:
        return []


def _offer(point: str) -> list[str]:
    """The files under ``point`` that lxcfs offers, as "proc/meminfo", "sys/...".

    One listing of its proc/ rather than a stat per file: each question is a
    round trip to the lxcfs process (~0.15 ms, up to 0.6 ms when it is busy
    answering running containers).  Raises OSError when lxcfs does not answer.
    """
    offered = [f"proc/{name}" for name in os.listdir(f"{point}/proc")]
    for name in SYS_FILES:
        if os.path.exists(f"{point}/sys/{name}"):
            offered.append(f"sys/{name}")
    return offered


_WANTED = (*(f"proc/{name}" for name in PROC_FILES), *(f"sys/{name}" for name in SYS_FILES))


def _binds(point: str, offered: list[str]) -> list[tuple[str, str]]:
    have = set(offered)
    return [(f"{point}/{rel}", f"/{rel}") for rel in _WANTED if rel in have]


def refresh(binds: tuple[tuple[str, str], ...]) -> None:
    """Look the bind sources up, from the host's side, while the init is busy
    elsewhere: lxcfs's FUSE entries expire within a second, and each lookup
    of an expired one is a round trip to the lxcfs process (0.1-0.15 ms).
    Done here, the init's binds of them, moments later, find them fresh
    instead of paying ~1 ms on the start's critical path after an idle spell
    (measured: 8 binds 0.9-1.2 ms cold, 0.07 ms fresh).  Best effort."""
    for src, _target in binds:
        try:
            os.stat(src)
        except OSError:
            pass


_offered: dict[tuple[str, int], tuple[tuple[str, str], ...]] = {}
OFFER_FILE = "/run/corral/lxcfs.offer"  # the files under our instance's proc/, by PID


def container_binds() -> tuple[tuple[str, str], ...]:
    """The binds for a container that starts: what a live lxcfs offers, started
    first if none runs; () without lxcfs.

    Each question put to lxcfs is a round trip to its process, which is busy
    answering the running containers' reads: 0.2-0.8 ms.  So for our own
    instance, whose PID we know, its offer (/proc files and /sys files alike)
    is kept (in this process and in ``OFFER_FILE`` for the next commands) and
    trusted while that PID is still an lxcfs; another instance is asked each
    time, and a dead one fails the listing of its /proc with ENOTCONN.
    """
    for point in _mounts():
        pid = _own_pid() if point == OWN_MOUNT else 0
        if pid and (point, pid) in _offered:
            return _offered[point, pid]
        offered = store.load_cache(OFFER_FILE, pid) if pid else None
        if not (isinstance(offered, list) and all(isinstance(rel, str) and
                                                  rel.startswith(("proc/", "sys/"))
                                                  for rel in offered)):
            try:
                offered = _offer(point)
            except OSError:
                continue  # dead: ensure replaces it if it is ours
            if pid:
                store.save_cache(OFFER_FILE, pid, offered)
        found = tuple(_binds(point, offered))
        if pid:
            _offered[point, pid] = found
        return found
    point = ensure()
    return tuple(binds(point)) if point else ()


def _own_pid() -> int:
    """The PID of our lxcfs instance if that process is alive and an lxcfs, else 0."""
    try:
        with open(PID_FILE, "rb") as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/comm", "rb") as f:
            return pid if f.read().strip() == b"lxcfs" else 0
    except (OSError, ValueError):
        return 0


def stop() -> bool:
    """Stop the lxcfs instance Corral started: unmount it, end its process."""
    if OWN_MOUNT not in _mounts():  # dead or alive: unmount it
        return False
    import signal

    from corral.linux import mount

    mount.umount2(OWN_MOUNT, mount.MNT_DETACH)
    try:
        with open(PID_FILE) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "lxcfs":  # never signal a recycled PID
                os.kill(pid, signal.SIGTERM)
        os.unlink(PID_FILE)
    except (OSError, ValueError):
        pass
    try:
        os.unlink(OFFER_FILE)
    except FileNotFoundError:
        pass
    return True
