"""Build the container's root inside its new mount namespace, then pivot into it.

Runs in the container's init process after unshare(CLONE_NEWNS), before exec.
The mount table follows runc's and systemd-nspawn's defaults: a fresh /proc
with sensitive files masked and /proc/sys read-only, /sys read-only, a small
/dev on tmpfs holding only safe devices (bind-mounted from the host, which
also works inside a user namespace where mknod is refused), devpts with its
own instance, and /sys/fs/cgroup showing only the container's own cgroups
(the cgroup namespace makes the mounts start at the container's cgroup).
Nothing is mounted in the host's namespace, so there is nothing to unmount
when the container stops and nothing can leak from a crash.
"""

from __future__ import annotations

import errno
import os

from corral.linux import mount as m
from corral.runtime.spec import InitSpec, RootfsSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

SAFE_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Files that leak host information or control the host kernel: hidden under
# /dev/null (files) or an empty read-only tmpfs (directories).
MASKED_PATHS = (
    "/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/kmsg",
    "/proc/latency_stats", "/proc/kallsyms", "/proc/sysrq-trigger", "/proc/acpi",
    "/proc/scsi", "/proc/interrupts", "/sys/firmware", "/proc/config.gz",
)
READONLY_PATHS = ("/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs")

NOSUID_NODEV_NOEXEC = m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC


# Where a user-namespaced container's layers (detached mount trees, idmapped
# where they need to be) are attached inside its own mount namespace, on a
# tmpfs of its own over this host directory, before the overlay is mounted
# from them.  Short paths keep many layers inside the one page of overlay
# mount options.
STAGE = "/run/corral/stage"
# An empty, read-only directory of the host's, bound over the directories
# that are masked (/proc/acpi, /sys/firmware ...): no filesystem instance of
# its own, which would cost every memory cgroup on the host a slot for its
# shrinker (see README, Measurements).
EMPTY = "/run/corral/empty"
_host_dirs_made = False


def make_host_dirs() -> None:
    """STAGE and EMPTY, made by the caller as host root (an unprivileged init
    could not); once per process."""
    global _host_dirs_made
    if _host_dirs_made:
        return
    os.makedirs(STAGE, 0o755, exist_ok=True)
    os.makedirs(EMPTY, 0o555, exist_ok=True)
    os.chmod(EMPTY, 0o555)  # past the umask; never written
    _host_dirs_made = True


class StagedLayers:
    """The container's layers as detached mount trees, made as host root.

    Templates (files owned by the host's ids) and layers written by other
    containers become *idmapped* mounts, so their files appear owned by this
    container's ids -- no chown of shared trees, however large.  The
    container's own layers and its upper already carry its host ids and are
    plain clones: what it writes lands on disk with its own host ids.

    Three steps, so that the container's init needs no process of its own
    to map ids (see ``spawn``): ``open_layers`` before the init is cloned
    (it inherits the fds), ``idmap`` once the init's user namespace has its
    id map (the templates are mapped through that very namespace), and
    ``attach`` in the init, inside its own mount namespace, which then
    mounts the overlay from them (``mount_root``).
    """

    __slots__ = ("bind", "pending", "trees")

    def __init__(self) -> None:
        self.trees: list[tuple[str, int]] = []  # (name under STAGE, detached tree fd)
        self.pending: list[int] = []  # fds to idmap through the container's own namespace
        self.bind = False  # --rootfs DIR: one tree, the root itself

    def idmap(self, userns_fd: int) -> None:
        """Map the host-owned trees through ``userns_fd`` (host root, before ``attach``)."""
        for fd in self.pending:
            m.set_idmap(fd, userns_fd)
        self.pending = []

    def attach(self, spec: RootfsSpec) -> RootfsSpec:
        """Attach the trees under STAGE (a fresh tmpfs); the root to mount from them."""
        m.mount("tmpfs", STAGE, "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=755,size=64k")
        for name, fd in self.trees:
            target = f"{STAGE}/{name}"
            os.mkdir(target, 0o755)
            m.move_mount(fd, target)
        self.close()
        if self.bind:
            return RootfsSpec(mountpoint=f"{STAGE}/root", premounted=True)
        os.mkdir(f"{STAGE}/root", 0o755)
        return RootfsSpec(mountpoint=f"{STAGE}/root",
                          lower=tuple(f"{STAGE}/l{i}" for i in range(len(spec.lower))),
                          upper=f"{STAGE}/c/upper", work=f"{STAGE}/c/work",
                          volatile=spec.volatile)

    def close(self) -> None:
        for _name, fd in self.trees:
            os.close(fd)
        self.trees = []
        self.pending = []


def open_layers(spec: RootfsSpec, base: int, size: int) -> StagedLayers:
    """Step one of ``StagedLayers``, as host root: a detached tree for every layer.

    ``base``, ``size``: the container's id range on the host.  Layers of other
    containers (owned by another range) are mapped here already, through a
    namespace made for their owner; the templates wait for ``idmap``.
    """
    from corral.linux import ns

    staged = StagedLayers()
    others: dict[int, int] = {}  # owner -> a user namespace mapping it to base

    def add(path: str, name: str, owner: int | None) -> None:
        if owner == base or owner is None:
            staged.trees.append((name, m.open_tree_clone(path)))
            return
        if owner == 0:
            fd = m.open_tree_clone(path)
            staged.trees.append((name, fd))
            staged.pending.append(fd)
            return
        if owner not in others:
            others[owner] = ns.make_userns(base, base, size, inside=owner)
        staged.trees.append((name, m.open_tree_idmapped(path, others[owner])))

    try:
        if spec.bind is not None:
            # A directory of the user's: seen as the container's, written unshifted.
            staged.bind = True
            add(spec.bind, "root", 0)
            return staged
        if spec.disk is not None and spec.disk_mount is not None:
            own = spec.disk_mount  # mounted already (spawn._private_mounts)
        else:
            assert spec.upper is not None
            own = os.path.dirname(spec.upper)  # upper/ and work/ share the container's dir
        owners = spec.lower_owners or (0,) * len(spec.lower)
        for i, (path, owner) in enumerate(zip(spec.lower, owners)):
            add(path, f"l{i}", owner)
        add(own, "c", None)
        return staged
    except BaseException:
        staged.close()
        raise
    finally:
        for fd in others.values():
            os.close(fd)


def mount_root(spec: RootfsSpec) -> str:
    """Mount the container's root on its mountpoint; return the mountpoint."""
    (source, target, fstype, flags, data), base = root_mount(spec, volatile=spec.volatile)
    if base is not None:
        os.chdir(base)
    try:
        try:
            m.mount(source, target, fstype, flags, data)
        except OSError as exc:
            # a kernel before 5.10 does not know ``volatile``: without it, then
            if not (spec.volatile and exc.errno == errno.EINVAL and fstype == "overlay"):
                raise
            (source, target, fstype, flags, data), _ = root_mount(spec, volatile=False)
            m.mount(source, target, fstype, flags, data)
    finally:
        if base is not None:
            os.chdir("/")
    return target


MountArgs = tuple[str | None, str, str | None, int, str | None]


def root_mount(spec: RootfsSpec, *, volatile: bool
               ) -> tuple[MountArgs, str | None]:
    """The mount(2) that makes the container's root (source, target, fstype,
    flags, data), and the directory to make it from (None: any); for both inits.

    Overlayfs keeps its own metadata (opaque directories, copy-up origins) in
    ``user.overlay.*`` xattrs (``userxattr``) for every container, so that a
    layer written by a privileged container serves an unprivileged one and
    the other way round.  ``volatile``: an upper that is thrown away afterwards
    needs none of the syncs overlayfs makes of the upper's whole filesystem
    (the host's) when it is unmounted, on every fsync inside, and on syncfs:
    that sync is ~0.5 ms of each `run --rm`'s exit, more with the host's own
    writes pending (podman mounts its --rm containers so too; Linux 5.10+).
    """
    target = spec.mountpoint
    if spec.premounted:
        # Staged in a more privileged mount namespace, the tree is locked here
        # and pivot_root refuses it; a bind of it made here is ours.
        return (target, target, None, m.MS_BIND, None), None
    if spec.bind is not None:
        return (spec.bind, target, None, m.MS_BIND | m.MS_REC, None), None
    upper, work = spec.upper, spec.work
    if spec.disk is not None and spec.disk_mount is not None:
        # The container's own layer lives on its quota'd filesystem,
        # mounted before the device cgroup was joined (spawn._private_mounts).
        upper, work = f"{spec.disk_mount}/upper", f"{spec.disk_mount}/work"
    assert upper is not None and work is not None
    opts, base = _overlay_data(spec.lower, upper, work)
    return ("overlay", target, "overlay", 0, opts + ",volatile" if volatile else opts), base


def _overlay_data(lower: tuple[str, ...], upper: str, work: str) -> tuple[str, str | None]:
    """The overlay's mount options, and the directory to mount from (None: any).

    Mount data is one page: with many layers, they are named relative to
    their common parent (as Docker's overlay2 does with its l/ links), and
    the mount is made from there.
    """
    opts = _overlay_options(lower, upper, work)
    if len(opts) < 3800:
        return opts, None
    base = os.path.commonpath([*lower, upper, work])
    return _overlay_options([os.path.relpath(p, base) for p in lower],
                            os.path.relpath(upper, base), os.path.relpath(work, base)), base


def _overlay_options(lower: Iterable[str], upper: str, work: str) -> str:
    return f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work},userxattr"


def _require_plain_dir(root: str, sub: str) -> None:
    """A mount target at the top of the container's tree: a real directory, made if missing.

    mount(2) follows symlinks, and this runs before pivot_root with the host's
    tree still reachable: a template or a container whose /proc, /dev … is a
    symlink (say to /etc) could otherwise redirect a mount, or a file written
    beneath it, out of its root.  Everything deeper is made on filesystems we
    mounted ourselves (proc, sysfs, tmpfs), which a tenant cannot plant links in.
    """
    path = f"{root}/{sub}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path, 0o755)
        return
    import stat

    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise OSError(40, f"the container's /{sub} is {kind}: refusing to mount over it "
                          "(a hostile or broken root tree)")


def _mkdir(path: str, mode: int = 0o755) -> None:
    try:
        os.makedirs(path, mode, exist_ok=True)
    except FileExistsError:
        pass


def _touch(path: str) -> None:
    if not os.path.lexists(path):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))


def _mount_dev(root: str, console: str | None) -> None:
    dev = root + "/dev"
    _mkdir(dev)
    m.mount("tmpfs", dev, "tmpfs", m.MS_NOSUID | m.MS_NOEXEC | m.MS_STRICTATIME,
            "mode=755,size=65536k")
    for name in SAFE_DEVICES:
        path = f"{dev}/{name}"
        _touch(path)
        m.mount(f"/dev/{name}", path, None, m.MS_BIND)
    os.mkdir(dev + "/pts", 0o755)
    m.mount("devpts", dev + "/pts", "devpts", m.MS_NOSUID | m.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5")
    os.symlink("pts/ptmx", dev + "/ptmx")
    os.mkdir(dev + "/shm", 0o1777)
    m.mount("shm", dev + "/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    os.mkdir(dev + "/mqueue", 0o755)
    m.mount("mqueue", dev + "/mqueue", "mqueue", NOSUID_NODEV_NOEXEC)
    for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                     ("core", "/proc/kcore")):
        os.symlink(to, f"{dev}/{link}")
    # /dev/console: the caller's terminal for `corral run` on a tty, a pty of the
    # container's own made after pivot_root (see spawn._make_console), or /dev/null.
    _touch(dev + "/console")
    if console != "pty":
        m.mount(console or "/dev/null", dev + "/console", None, m.MS_BIND)


def _own_cgroups(spec: InitSpec) -> dict[str, str]:
    """Hierarchy (path under /sys/fs/cgroup) → the container's own cgroup directory."""
    out = {}
    for procs in spec.cgroup_procs:
        rel = procs[len("/sys/fs/cgroup/"):]
        hierarchy = rel.split("/", 1)[0] if "/" in rel else ""
        out[hierarchy] = os.path.dirname(procs)
    return out


def _mount_cgroups(root: str, spec: InitSpec) -> None:
    if not spec.cgroup_mounts:
        return
    base = root + "/sys/fs/cgroup"
    tops = [c for c in spec.cgroup_mounts if c.target == ""]
    if tops:  # pure v2: one cgroup2 mount is all there is
        m.mount("cgroup2", base, "cgroup2", NOSUID_NODEV_NOEXEC, tops[0].options or None)
        return
    m.mount("tmpfs", base, "tmpfs", NOSUID_NODEV_NOEXEC, "mode=755,size=64k")
    own = _own_cgroups(spec) if spec.userns else {}
    for cg in spec.cgroup_mounts:
        path = f"{base}/{cg.target}"
        if cg.fstype == "cgroup2" or not spec.userns:
            os.mkdir(path, 0o755)
            m.mount("cgroup", path, cg.fstype, NOSUID_NODEV_NOEXEC, cg.options or None)
        elif cg.target in own:
            # A v1 hierarchy cannot be mounted inside a user namespace: show
            # the container's own cgroup directory there instead (as LXC does).
            os.mkdir(path, 0o755)
            m.mount(own[cg.target], path, None, m.MS_BIND)
    m.mount(None, base, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | NOSUID_NODEV_NOEXEC)


def _mask(root: str) -> None:
    empty = None
    for path in MASKED_PATHS:
        full = root + path
        if os.path.isdir(full):
            if empty is None:
                m.mount(EMPTY, full, None, m.MS_BIND)
                m.mount(None, full, None,
                        m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | NOSUID_NODEV_NOEXEC)
                empty = full
            else:
                m.mount(empty, full, None, m.MS_BIND)  # read-only already
        elif os.path.lexists(full):
            m.mount("/dev/null", full, None, m.MS_BIND)
    for path in READONLY_PATHS:
        full = root + path
        if os.path.exists(full):
            m.mount(full, full, None, m.MS_BIND | m.MS_REC)
            m.mount(None, full, None,
                    m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | NOSUID_NODEV_NOEXEC)


def setup(spec: InitSpec, console: str | None, rootfs: RootfsSpec | None = None) -> None:
    """Mount everything under the new root and pivot into it (``rootfs``: staged)."""
    # No mount event of ours may propagate back to the host (and none of the
    # host's later mounts into the container).
    m.mount(None, "/", None, m.MS_REC | m.MS_PRIVATE)
    root = mount_root(rootfs or spec.rootfs)
    for sub in ("proc", "sys", "dev", "run"):
        _require_plain_dir(root, sub)
    if not os.path.lexists(f"{root}/tmp"):
        os.mkdir(f"{root}/tmp", 0o1777)
    m.mount("proc", root + "/proc", "proc", NOSUID_NODEV_NOEXEC)
    m.mount("sysfs", root + "/sys", "sysfs",
            NOSUID_NODEV_NOEXEC | (m.MS_RDONLY if spec.systempaths else 0))
    _mount_dev(root, console)
    _mount_cgroups(root, spec)
    for src, target in spec.binds:  # lxcfs' views of /proc and /sys files
        if os.path.exists(root + target):
            m.mount(src, root + target, None, m.MS_BIND)
    if spec.systempaths:
        _mask(root)
    m.mount("tmpfs", root + "/run", "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=755,size=65536k")
    pivot(root)


def pivot(root: str) -> None:
    """pivot_root(".", ".") then detach the old root (runc's trick: no put_old dir needed)."""
    os.chdir(root)
    m.pivot_root(".", ".")
    m.umount2(".", m.MNT_DETACH)
    os.chdir("/")
