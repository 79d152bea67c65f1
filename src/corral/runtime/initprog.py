"""The init's setup as a system-call program (``linux.sysprog``), for ``spawn``.

The same steps as the Python init (``spawn._init_direct``, ``spawn._init`` and
``rootfs.setup``), in the same order and with the same mounts, written down
before the clone so that the init runs them without Python (see sysprog for
why).  What the Python init decides by looking (does this /proc file exist?
is /proc a symlink?) is decided here by the kernel: a call whose error is
expected counts as done (``ok=ENOENT`` for a masked path this kernel lacks),
and the checks that must refuse become calls that fail (``/proc`` opened
with O_NOFOLLOW|O_DIRECTORY).  ``supported`` says which starts this serves;
the rest keep the Python init.

The init and the caller speak in ``sysprog`` records: the init writes
``READY`` when its root is built, then waits for one byte ("go"; before it,
one byte when the caller has written the rest of its program, and its id
map when it has a user namespace; see ``Init``).  Files known only at "go"
(the network's /etc/hosts and /etc/resolv.conf) are written by ops held in
reserve: ``Init.late`` fills them in before the caller says go.
"""

from __future__ import annotations

import _signal as signal
import errno
import os

from corral.linux import caps, ffi, fs, ns
from corral.linux import mount as m
from corral.linux import sysprog as sp
from corral.runtime import lxcfs, rootfs
from corral.runtime.spec import DEFAULT_PATH, InitSpec, RootfsSpec, fd_ranges_except

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from corral.runtime.cgjoin import CgroupJoin
    from corral.runtime.rootfs import StagedLayers

NR = sp.NR
AT_FDCWD = -100
O_PATH = 0o10000000
O_DIRECTORY = 0o200000
O_NOFOLLOW = 0o400000
_NOSUID_NODEV_NOEXEC = rootfs.NOSUID_NODEV_NOEXEC
_LATE_CAPACITY = 16384  # bytes of a file known only at "go"
_SCM_RIGHTS = 1
_SOL_SOCKET = 1
_MSG_NOSIGNAL = 0x4000

# Of rootfs.MASKED_PATHS, the directories (masked by an empty directory, the rest
# by /dev/null); the same on every kernel that has them.
MASKED_DIRS = frozenset(("/proc/acpi", "/proc/scsi", "/sys/firmware"))


def supported(spec: InitSpec) -> bool:
    """Whether this start can use the program: the executor runs here, and
    nothing needs the Python init (a console pty made inside, a disk image
    mounted first, or a seccomp filter of our own process's to stack on:
    a nested Corral, where the kernel may refuse a second listener)."""
    return (sp.available() and _kernel_at_least(5, 9)  # close_range(2)
            and spec.console_socket < 0 and spec.rootfs.disk is None
            and not (spec.seccomp and _filtered()))


def _filtered() -> bool:
    """This process runs under a seccomp filter already (mode 2: filter)."""
    return ns.prctl(ns.PR_GET_SECCOMP) == 2


def _kernel_at_least(major: int, minor: int) -> bool:
    """This kernel's release is ``major.minor`` or later (an unreadable one: no)."""
    try:
        have_major, have_minor = os.uname().release.split(".")[:2]
        return (int(have_major), int(have_minor.split("-")[0])) >= (major, minor)
    except ValueError:
        return False


def _volatile_known() -> bool:
    """The kernel knows overlayfs' ``volatile`` (5.10)."""
    return _kernel_at_least(5, 10)


class Init:
    """The program of one container's init, in two parts.

    The constructor writes what the init does first -- close the caller's pipe
    ends, join its cgroups, unshare its other namespaces and wait for one
    byte -- so that it can be cloned at once; ``finish`` writes the rest, part
    by part, while the init runs the part before (the caller sends a byte
    for each; the first also says the id map is written).
    """

    def __init__(self, spec: InitSpec, report_w: int, go_r: int, join: CgroupJoin,
                 callers: tuple[int, ...]) -> None:
        """``callers``: the caller's ends of the two pipes, which the init closes
        first (then the caller's death is EOF where it waits)."""
        self.program = p = sp.Program(capacity=512)  # fixed once the init runs
        self._late: dict[str, tuple[list[int], list[tuple], int, int]] = {}
        self._zero = p.string("0")
        self._byte = p.slot()
        self._nul = p.string("")
        self.report_w, self.go_r = report_w, go_r
        c = self.call = p.call
        for fd in callers:
            c(NR["close"], fd, what="setup: close")
        for fd in join.tasks:
            c(NR["write"], fd, self._zero, 1, what="joining its cgroups")
        if join.v2_procs >= 0 and join.v2_dir < 0:
            c(NR["write"], join.v2_procs, self._zero, 1, what="joining its cgroups")
        c(NR["unshare"], ns.CLONE_NEWNS | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC
          | ns.CLONE_NEWCGROUP, what="namespaces: unshare")
        self._wait(go_r, "waiting for the host" if spec.userns is None else
                   "waiting for its id map")

    def finish(self, spec: InitSpec, console: str | None, log_fd: int,
               staged: StagedLayers | None, sysinfo_alive: bool) -> Iterator[None]:
        """The rest, from its root to its exec (see ``rootfs.setup`` and ``spawn._init``),
        in parts: each time one is written this yields, and the caller lets the
        init run it (one byte) while the next is written.  Each part but the
        last ends in a wait for that byte, so the init starts on its root when
        the first few calls are written, not all of them (~0.4 ms of a start)."""
        p, c = self.program, self.call
        if staged is not None:
            c(NR["setgroups"], 0, 0, what="namespaces: setgroups")
            c(NR["setresgid"], 0, 0, 0, what="namespaces: setresgid")
            c(NR["setresuid"], 0, 0, 0, what="namespaces: setresuid")
        self._mount(None, "/", None, m.MS_REC | m.MS_PRIVATE, step="namespaces")
        root_spec = self._attach(staged, spec.rootfs) if staged is not None else spec.rootfs
        if not spec.foreground:
            c(NR["setsid"], what="setup: setsid")
        raw = spec.hostname.encode()
        c(NR["sethostname"], p.string(raw), len(raw), what="hostname")
        if spec.netns and not spec.netns_wired:
            self._loopback_up()
        self._wait(self.go_r, "waiting for the host")
        yield
        root = self._root_first(spec, console, root_spec)
        self._wait(self.go_r, "waiting for the host")
        yield
        lxcfs.refresh(spec.binds)  # while it runs the part before; its binds are next
        self._root_rest(spec, root)
        self._wait(self.go_r, "waiting for the host")
        yield
        self._files(_changed(spec.files, _own_tree(spec.rootfs)), "writing guest files")
        if spec.seccomp:
            self._seccomp(spec, sysinfo_alive)
        c(NR["write"], self.report_w, p.struct(sp.READY, 0), sp.RECORD,
          what="reporting ready")
        self._wait(self.go_r, "waiting for the host")
        for path in spec.late_files:
            self._reserve(path)
        self._stdio(spec, log_fd)
        for low, high in fd_ranges_except((self.report_w,), 0xFFFFFFFF):  # ~0U: all
            c(NR["close_range"], low, high, 0, what="closing host files")
        keep = caps.cap_numbers(spec.caps)
        for cap in range(caps.cap_last() + 1):
            if cap not in keep:
                c(NR["prctl"], ns.PR_CAPBSET_DROP, cap, what="capabilities")
        default = p.struct(0, 0, 0, 0)  # struct sigaction: SIG_DFL, no flags
        # Python ignores SIGPIPE and SIGXFSZ (ignored signals survive exec); ours catch
        # INT and TERM.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            c(NR["rt_sigaction"], sig, default, 0, 8, what="signals")
        c(NR["rt_sigprocmask"], signal.SIG_SETMASK, p.slot(), 0, 8, what="signals")  # none
        self._exec(spec)
        yield

    # -- pieces ------------------------------------------------------------------------------

    def _wait(self, go_r: int, what: str) -> None:
        # EOF: the caller gave up or died; never go on unconfigured.
        self.call(NR["read"], go_r, self._byte, 1, what=what, zero_fails=True)

    def _mount(self, source: str | None, target: str, fstype: str | None, flags: int,
               data: str | None = None, *, step: str = "rootfs", ok: int = 0) -> None:
        p = self.program
        self.call(NR["mount"], p.string(source) if source is not None else 0, p.string(target),
                  p.string(fstype) if fstype is not None else 0, flags,
                  p.string(data) if data is not None else 0,
                  what=f"{step}: mount({target})", ok=ok)

    def _mkdir(self, path: str, mode: int = 0o755, *, ok: int = 0, step: str = "rootfs") -> None:
        self.call(NR["mkdir"], self.program.string(path), mode, what=f"{step}: mkdir({path})",
                  ok=ok)

    def _touch(self, path: str) -> None:
        fd = self.program.slot()
        self.call(NR["openat"], AT_FDCWD, self.program.string(path),
                  os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644, what=f"rootfs: open({path})",
                  store=fd)
        self.call(NR["close"], sp.Deref(fd), what="rootfs: close")

    def _attach(self, staged: StagedLayers, spec: RootfsSpec) -> RootfsSpec:
        """StagedLayers.attach: the detached trees under STAGE, on a tmpfs of the init's."""
        stage = rootfs.STAGE
        self._mount("tmpfs", stage, "tmpfs", m.MS_NOSUID | m.MS_NODEV, "mode=755,size=64k",
                    step="namespaces")
        for name, fd in staged.trees:
            target = f"{stage}/{name}"
            self._mkdir(target, step="namespaces")
            self.call(NR["move_mount"], fd, self._nul, AT_FDCWD, self.program.string(target),
                      m.MOVE_MOUNT_F_EMPTY_PATH, what=f"namespaces: move_mount({target})")
        if staged.bind:
            return RootfsSpec(mountpoint=f"{stage}/root", premounted=True)
        self._mkdir(f"{stage}/root", step="namespaces")
        return RootfsSpec(mountpoint=f"{stage}/root",
                          lower=tuple(f"{stage}/l{i}" for i in range(len(spec.lower))),
                          upper=f"{stage}/c/upper", work=f"{stage}/c/work",
                          volatile=spec.volatile)

    def _loopback_up(self) -> None:
        p = self.program
        sock = p.slot()
        self.call(NR["socket"], 2, 2 | os.O_CLOEXEC, 0, what="loopback: socket", store=sock)
        # struct ifreq {"lo", flags}: IFF_UP alone; the kernel keeps IFF_LOOPBACK.
        ifreq = p.blob(b"lo".ljust(16, b"\0") + ns.IFF_UP.to_bytes(2, "little") + bytes(22))
        self.call(NR["ioctl"], sp.Deref(sock), ns.SIOCSIFFLAGS, ifreq, what="loopback: up")
        self.call(NR["close"], sp.Deref(sock), what="loopback: close")

    def _root_first(self, spec: InitSpec, console: str | None, root_spec: RootfsSpec) -> str:
        """rootfs.setup, first half: the root, /proc, /sys, /dev; the root's path."""
        root = self._mount_root(root_spec)
        for sub in ("proc", "sys", "dev", "run"):
            path = f"{root}/{sub}"
            self._mkdir(path, ok=errno.EEXIST)
            fd = self.program.slot()
            # rootfs._require_plain_dir: mount(2) follows symlinks, and the host's
            # tree is still reachable here.
            self.call(NR["openat"], AT_FDCWD, self.program.string(path),
                      O_PATH | O_NOFOLLOW | O_DIRECTORY | os.O_CLOEXEC, 0,
                      what=f"rootfs: the container's /{sub} is a symlink or not a directory: "
                           "refusing to mount over it (a hostile or broken root tree)",
                      store=fd)
            self.call(NR["close"], sp.Deref(fd), what="rootfs: close")
        self._mkdir(f"{root}/tmp", 0o1777, ok=errno.EEXIST)
        self._mount("proc", root + "/proc", "proc", _NOSUID_NODEV_NOEXEC)
        self._mount("sysfs", root + "/sys", "sysfs",
                    _NOSUID_NODEV_NOEXEC | (m.MS_RDONLY if spec.systempaths else 0))
        self._mount_dev(root, console)
        return root

    def _root_rest(self, spec: InitSpec, root: str) -> None:
        """rootfs.setup, second half: cgroups, lxcfs' files, masks, /run, the pivot."""
        self._mount_cgroups(root, spec)
        for src, target in spec.binds:  # lxcfs' views, where this kernel has the file
            self._mount(src, root + target, None, m.MS_BIND, ok=errno.ENOENT)
        if spec.systempaths:
            self._mask(root)
        self._mount("tmpfs", root + "/run", "tmpfs", m.MS_NOSUID | m.MS_NODEV,
                    "mode=755,size=65536k")
        c, s = self.call, self.program.string
        c(NR["chdir"], s(root), what="rootfs: chdir")
        c(NR["pivot_root"], s("."), s("."), what="rootfs: pivot_root")
        c(NR["umount2"], s("."), m.MNT_DETACH, what="rootfs: umount the old root")
        c(NR["chdir"], s("/"), what="rootfs: chdir")

    def _mount_root(self, spec: RootfsSpec) -> str:
        """rootfs.mount_root: ``volatile`` only where the kernel knows it (the Python
        init retries without on EINVAL, which a program cannot)."""
        (source, target, fstype, flags, data), base = rootfs.root_mount(
            spec, volatile=spec.volatile and _volatile_known())
        if base is not None:
            self.call(NR["chdir"], self.program.string(base), what="rootfs: chdir")
        self._mount(source, target, fstype, flags, data)
        if base is not None:
            self.call(NR["chdir"], self.program.string("/"), what="rootfs: chdir")
        return target

    def _mount_dev(self, root: str, console: str | None) -> None:
        dev = root + "/dev"
        self._mount("tmpfs", dev, "tmpfs", m.MS_NOSUID | m.MS_NOEXEC | m.MS_STRICTATIME,
                    "mode=755,size=65536k")
        for name in rootfs.SAFE_DEVICES:
            self._touch(f"{dev}/{name}")
            self._mount(f"/dev/{name}", f"{dev}/{name}", None, m.MS_BIND)
        self._mkdir(dev + "/pts")
        self._mount("devpts", dev + "/pts", "devpts", m.MS_NOSUID | m.MS_NOEXEC,
                    "newinstance,ptmxmode=0666,mode=0620,gid=5")
        self._symlink("pts/ptmx", dev + "/ptmx")
        self._mkdir(dev + "/shm", 0o1777)
        self._mount("shm", dev + "/shm", "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
        self._mkdir(dev + "/mqueue")
        self._mount("mqueue", dev + "/mqueue", "mqueue", _NOSUID_NODEV_NOEXEC)
        for link, to in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("core", "/proc/kcore")):
            self._symlink(to, f"{dev}/{link}")
        self._touch(dev + "/console")
        if console != "pty":
            self._mount(console or "/dev/null", dev + "/console", None, m.MS_BIND)

    def _symlink(self, to: str, path: str) -> None:
        s = self.program.string
        self.call(NR["symlink"], s(to), s(path), what=f"rootfs: symlink({path})")

    def _mount_cgroups(self, root: str, spec: InitSpec) -> None:
        if not spec.cgroup_mounts:
            return
        base = root + "/sys/fs/cgroup"
        tops = [cg for cg in spec.cgroup_mounts if cg.target == ""]
        if tops:
            self._mount("cgroup2", base, "cgroup2", _NOSUID_NODEV_NOEXEC, tops[0].options or None)
            return
        self._mount("tmpfs", base, "tmpfs", _NOSUID_NODEV_NOEXEC, "mode=755,size=64k")
        own = rootfs._own_cgroups(spec) if spec.userns else {}
        for cg in spec.cgroup_mounts:
            path = f"{base}/{cg.target}"
            if cg.fstype == "cgroup2" or not spec.userns:
                self._mkdir(path)
                self._mount("cgroup", path, cg.fstype, _NOSUID_NODEV_NOEXEC, cg.options or None)
            elif cg.target in own:
                self._mkdir(path)
                self._mount(own[cg.target], path, None, m.MS_BIND)
        self._mount(None, base, None, m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY
                    | _NOSUID_NODEV_NOEXEC)

    def _mask(self, root: str) -> None:
        ro = m.MS_REMOUNT | m.MS_BIND | m.MS_RDONLY | _NOSUID_NODEV_NOEXEC
        for path in rootfs.MASKED_PATHS:
            full = root + path
            if path in MASKED_DIRS:
                self._mount(rootfs.EMPTY, full, None, m.MS_BIND, ok=errno.ENOENT)
                self._mount(None, full, None, ro, ok=errno.ENOENT)
            else:
                self._mount("/dev/null", full, None, m.MS_BIND, ok=errno.ENOENT)
        for path in rootfs.READONLY_PATHS:
            full = root + path
            self._mount(full, full, None, m.MS_BIND | m.MS_REC, ok=errno.ENOENT)
            self._mount(None, full, None, ro, ok=errno.ENOENT)

    def _file_ops(self, path: str, content: int, length: int,
                  mode: int, step: str) -> list[tuple]:
        """spawn._write_files for one file: parents, a temporary, its rename."""
        s = self.program.string
        ops: list[tuple] = []
        parent = os.path.dirname(path)
        parts = [q for q in parent.split("/") if q]
        for i in range(len(parts)):
            d = "/" + "/".join(parts[:i + 1])
            ops.append((NR["mkdir"], (s(d), 0o755), f"{step}: mkdir({d})", errno.EEXIST, 0))
        fd = self.program.slot()
        tmp = f"{path}.corral-tmp"
        ops.append((NR["openat"], (AT_FDCWD, s(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                   | O_NOFOLLOW | os.O_CLOEXEC, mode),
                    f"{step}: open({tmp})", 0, fd))
        ops.append((NR["write"], (sp.Deref(fd), content, length), f"{step}: write({tmp})", 0, 0))
        ops.append((NR["close"], (sp.Deref(fd),), f"{step}: close({tmp})", 0, 0))
        ops.append((NR["rename"], (s(tmp), s(path)), f"{step}: rename({path})", 0, 0))
        return ops

    def _files(self, files: dict[str, tuple[bytes, int]], step: str) -> None:
        for path, (content, mode) in files.items():
            for nr, args, what, ok, store in self._file_ops(
                    path, self.program.blob(content), len(content), mode, step):
                self.call(nr, *args, what=what, ok=ok, store=store)

    def _reserve(self, path: str) -> None:
        """Ops for a file whose content comes with "go": no-ops until ``late`` fills them."""
        buf = self.program.blob(_LATE_CAPACITY)
        length = self.program.slot()
        ops = self._file_ops(path, buf, sp.Deref(length), 0o644, "writing network files")
        indexes = [self.call(NR["getpid"], what="(a file not given)") for _ in ops]
        self._late[path] = (indexes, ops, buf, length)

    def late(self, files: dict[str, tuple[bytes, int]]) -> None:
        """Fill in the reserved ops for ``files`` (before "go"); a path not reserved
        is a bug of the caller's."""
        p = self.program
        for path, (content, mode) in files.items():
            if path not in self._late or len(content) > _LATE_CAPACITY:
                from corral.errors import KernelError

                raise KernelError(f"cannot write {path} into the container: no room in its "
                                  "init's program", hint="Report this as a bug of Corral's.")
            indexes, ops, buf, length = self._late[path]
            ffi.memmove(buf, content, len(content))  # read by the init after "go"
            ffi.c_long.from_address(length).value = len(content)
            for index, (nr, args, what, ok, store) in zip(indexes, ops):
                if nr == NR["openat"]:
                    args = (*args[:3], mode)
                p.patch(index, nr, *args, what=what, ok=ok, store=store)

    def _seccomp(self, spec: InitSpec, alive: bool) -> None:
        """sysinfo_client.install (or filter.install): the filter, and with the host's
        agent there, a listener for sysinfo(2) sent to it.  Before "ready", while
        the caller has work of its own."""
        p = self.program
        sock = spec.sysinfo_socket
        if sock >= 0 and alive:
            prog = p.blob(spec.sysinfo_filter)
            fprog = p.struct(len(spec.sysinfo_filter) // 8, prog)
            # struct cmsghdr {len 20, SOL_SOCKET, SCM_RIGHTS, fd}; the fd stored below.
            cmsg = p.struct(20, _SOL_SOCKET | _SCM_RIGHTS << 32, 0)
            iov = p.struct(p.string("L"), 1)
            msg = p.struct(0, 0, iov, 1, cmsg, 24, 0)
            self.call(NR["seccomp"], 1, 1 << 3, fprog, what="seccomp", store=cmsg + 16)
            self.call(NR["sendmsg"], sock, msg, _MSG_NOSIGNAL, what="seccomp: listener",
                      ok=sp.ANY)
            self.call(NR["close"], sp.Deref(cmsg + 16), what="seccomp: close")
        else:
            prog = p.blob(spec.seccomp)
            fprog = p.struct(len(spec.seccomp) // 8, prog)
            self.call(NR["seccomp"], 1, 0, fprog, what="seccomp")
        if sock >= 0:
            self.call(NR["close"], sock, what="seccomp: close")

    def _stdio(self, spec: InitSpec, log_fd: int) -> None:
        if spec.foreground:
            return
        null = self.program.slot()
        self.call(NR["openat"], AT_FDCWD, self.program.string("/dev/null"), os.O_RDWR, 0,
                  what="stdio: open(/dev/null)", store=null)
        self.call(NR["dup2"], sp.Deref(null), 0, what="stdio: dup2")
        out: int = log_fd if log_fd >= 0 else sp.Deref(null)
        self.call(NR["dup2"], out, 1, what="stdio: dup2")
        self.call(NR["dup2"], out, 2, what="stdio: dup2")

    def _exec(self, spec: InitSpec) -> None:
        """spec.execvpe: by the container's PATH unless the command names a path."""
        p = self.program
        env = {"PATH": DEFAULT_PATH, "HOME": "/root", "TERM": "linux", "container": "corral"}
        env.update(spec.env)
        argv = p.strings(list(spec.argv))
        envp = p.strings([f"{k}={v}" for k, v in env.items()])
        cmd = spec.argv[0]
        if "/" in cmd:
            self.call(NR["execve"], p.string(cmd), argv, envp, what=f"exec {cmd}")
        else:
            for d in env.get("PATH", DEFAULT_PATH).split(":"):
                self.call(NR["execve"], p.string(f"{d or '.'}/{cmd}"), argv, envp,
                          what=f"exec {cmd}", ok=sp.ANY)
            # None of them: an execve of "" fails with ENOENT, reported as this.
            self.call(NR["execve"], self._nul, argv, envp,
                      what=f"exec {cmd}: not found in the container's PATH")
        self.call(NR["exit_group"], 127, what="exec")


def _own_tree(spec: RootfsSpec) -> str | None:
    """Where a file the container wrote lies on the host: its upper layer, or the
    directory it runs on (``--rootfs``)."""
    return spec.bind if spec.bind is not None else spec.upper


def _changed(files: dict[str, tuple[bytes, int]], tree: str | None
             ) -> dict[str, tuple[bytes, int]]:
    """``files`` but those the container's own tree holds already as they are.

    As the Python init's ``_same_file``: a restart rewrites no /etc/hostname
    (no new inode in the upper layer) when nothing changed.  Looked at from
    here, as host root, in a tree the container controls: beneath the tree,
    no symlink followed, a regular file only (opened O_PATH first).
    """
    if tree is None or not files:
        return files
    try:
        top = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return files
    out = {}
    try:
        for path, (content, mode) in files.items():
            if not _holds(top, path.lstrip("/"), content, mode):
                out[path] = (content, mode)
    finally:
        os.close(top)
    return out


def _holds(top: int, rel: str, content: bytes, mode: int) -> bool:
    try:
        fd = fs.open_beneath(top, rel, O_PATH | O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or st.st_mode & 0o7777 != mode \
                or st.st_size != len(content):
            return False
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            return f.read(len(content) + 1) == content
    except OSError:
        return False
    finally:
        os.close(fd)
