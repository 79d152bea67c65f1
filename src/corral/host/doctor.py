"""Find (and with ``fix``, remove) what crashed operations left behind.

Leftovers it knows: half-built containers and templates (hidden temporary
directories whose creator is gone), state files of containers whose init is
dead, cgroups of stopped or unknown containers, lock files of containers that
no longer exist, scratch directories of crashed backups and restores, layers
nothing refers to, id ranges leased to no container, console sockets of dead
monitors, and mounts under the state root in the host's namespace
(Corral makes none there; any found are from a crash of an older version or
a manual mount).
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from corral import store
from corral.errors import BusyError, CorralError
from corral.model import STOPPED

if TYPE_CHECKING:
    from corral.host import Host


def _owner_alive(entry: str) -> bool:
    """Temporary directories end in '-<pid>' of the process that made them."""
    tail = entry.rsplit("-", 1)[-1]
    return tail.isdigit() and os.path.exists(f"/proc/{tail}")


def _unescape_mount(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def run(host: Host, *, fix: bool) -> list[str]:
    found: list[str] = []

    def report(what: str, action: object = None, *args: object) -> None:
        if fix and callable(action):
            try:
                action(*args)
                what += " (removed)"
            except BusyError:
                what += " (busy, skipped)"
            except OSError as exc:
                what += f" (cannot remove: {exc.strerror or exc})"
        found.append(what)

    for parent, kind in ((host.paths.containers, "container"), (host.paths.templates, "template")):
        try:
            entries = os.listdir(parent)
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.startswith(".") and not _owner_alive(entry):
                report(f"half-made {kind} directory {parent}/{entry}",
                       shutil.rmtree, f"{parent}/{entry}")

    try:
        entries = os.listdir(host.paths.containers)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        path = host.paths.container_dir(entry)
        if entry.startswith(".") or os.path.exists(host.paths.config_file(entry)):
            continue
        if not store.is_locked(host.paths.lock_file(entry)):  # not being created right now
            report(f"directory {path} of no container (a crashed create or destroy)",
                   shutil.rmtree, path)

    names = set(host.names())
    for name in sorted(names):
        state = host.load_state(name)
        if state.pid is None:
            continue
        if host.status(name, state) == STOPPED:
            report(f"container '{name}': state of a dead init (pid {state.pid})",
                   _cleanup_stopped, host, name)

    try:
        from corral import cgroups

        groups = cgroups.list_groups(top=host.cgroup_top)
    except (OSError, AttributeError):
        groups = []
    for name in groups:
        if name not in names:
            report(f"cgroup {host.cgroup_top}/{name} of no container", host.cgroup(name).destroy)
        elif host.status(name) == STOPPED and not host.load_state(name).pid:
            report(f"cgroup {host.cgroup_top}/{name} of stopped container '{name}'",
                   host.cgroup(name).destroy)

    try:
        locks = os.listdir(host.paths.locks)
    except FileNotFoundError:
        locks = []
    for lock in locks:
        name = lock.removesuffix(".lock")
        path = f"{host.paths.locks}/{lock}"
        if not lock.startswith(".") and name not in names and not store.is_locked(path):
            report(f"stale lock {path}", os.unlink, path)

    if os.path.isdir(host.net.state_dir):
        from corral import network

        running = {n for n in names if host.status(n) != STOPPED}
        for what, undo in network.doctor(host.net, names, running, fix):
            report(what, undo)

    # Scratch directories of backups and restores whose process is gone.
    try:
        entries = os.listdir(host.root)
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if entry.startswith((".backup-", ".restore-")) and not _owner_alive(entry):
            report(f"scratch directory {host.root}/{entry} of a crashed backup or restore",
                   shutil.rmtree, f"{host.root}/{entry}")

    # Layers no container or snapshot refers to (a crash between a cut and its record).
    if os.path.isdir(host.paths.layers):
        from corral.host import snapshots

        used = snapshots.referenced_layers(host)
        orphans = [i for i in os.listdir(host.paths.layers) if i not in used]
        if orphans:
            report(f"{len(orphans)} layer(s) no container or snapshot uses",
                   snapshots.gc_layers, host)

    # Id ranges leased to containers of this root that no longer exist.
    from corral.host import idmaps

    for base, name in sorted(idmaps.leased(host.root).items()):
        if store.is_locked(host.paths.lock_file(name)):
            continue  # being created (or destroyed) right now
        if name in names:
            try:
                if (host.load_config(name).idmap or {}).get("base") == base:
                    continue
            except CorralError:
                continue  # an unreadable config is reported above
        report(f"id range {base} leased to no container ('{name}')",
               idmaps.release, host.root, name, base)

    # Console sockets whose monitor is gone (killed, or the host crashed).
    from corral.host import monitor

    for name in sorted(names):
        path = monitor.socket_path(host, name)
        if os.path.exists(path) and not _listening(path):
            report(f"console socket {path} of no monitor", os.unlink, path)

    # A killed lxcfs leaves its mount, whose files fail with ENOTCONN.  Corral's
    # own is replaced at the next start; containers started while it was dead
    # show the host's /proc files until they are restarted.
    from corral.runtime import lxcfs

    for point in lxcfs.dead_mounts():
        if point == lxcfs.OWN_MOUNT:
            report(f"lxcfs mount {point} of a dead lxcfs (restart containers started since)",
                   lxcfs.stop)
        else:
            report(f"lxcfs mount {point} of a dead lxcfs, not Corral's: restart its service "
                   "(systemctl restart lxcfs)")

    prefix = host.root.rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        points = [_unescape_mount(line.split()[4]) for line in f]
    for point in reversed(points):
        if point.startswith(prefix):
            from corral.linux import mount

            report(f"mount {point}", mount.umount2, point, mount.MNT_DETACH)
    if fix:
        host.tidy_idle()  # not a leftover: what an idle root keeps for its next start
    return found


def _listening(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _cleanup_stopped(host: Host, name: str) -> None:
    from corral.host.lifecycle import _teardown

    with store.locked(host.paths.lock_file(name), f"container '{name}'", timeout=0.5):
        state = host.load_state(name)
        if host.status(name, state) == STOPPED:
            _teardown(host, name, state)
