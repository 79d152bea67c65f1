"""Run a command inside a running container (``corral exec`` / ``enter``).

The command gets exactly the container's namespaces (joined through the
init's pidfd, so a recycled PID can never redirect us into another
process's namespaces), its cgroup, its capability bounding set and the
requested user.  One fork: the caller joins the PID namespace for its
children only, then the child joins the rest, drops privileges and execs.
"""

from __future__ import annotations

import errno
import os
# _signal is signal without its IntEnum wrappers: the enum module alone costs
# milliseconds on every exec, and plain numbers serve here.
import _signal as signal

from corral.errors import ExecError, InvalidStateError
from corral.linux import ns, proc
from corral.runtime.spec import DEFAULT_PATH, ExecSpec, close_fds_except, execvpe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

JOIN = ns.CLONE_NEWNS | ns.CLONE_NEWUTS | ns.CLONE_NEWIPC | ns.CLONE_NEWNET | ns.CLONE_NEWCGROUP


def run(init_pid: int, still_init: Any, cgroup_procs: list[str], spec: ExecSpec,
        sysinfo: tuple[str, str] | None = None) -> int:
    """Run ``spec`` in the namespaces of ``init_pid``; ``still_init()`` re-checks, once
    the pidfd pins the process, that the PID still is the container's init.
    ``sysinfo`` (cgroup root, group): have the host's agent answer the command's
    sysinfo(2) as the init's (runtime/sysinfo_agent.py), when it is confined."""
    try:
        pidfd = os.pidfd_open(init_pid)
    except ProcessLookupError:
        pidfd = -1
    # Checked after taking the pidfd: from here on the pidfd pins this very process.
    if pidfd < 0 or not proc.is_alive(init_pid, None) or not still_init():
        raise InvalidStateError("the container's init is gone", hint="Start it again.")
    from corral.runtime.cgjoin import CgroupJoin

    cgroups = CgroupJoin(cgroup_procs)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    # -t: the terminal is made inside the container, on its own devpts (as LXC
    # does), so the command sees a tty it can name and no host pty reaches it;
    # the child hands the master end back over this socket.
    pty_sock = None
    if spec.tty:
        import socket

        pty_sock = socket.socketpair()
    from corral.linux import caps
    from corral.runtime import filters

    # Exactly the container's capabilities, as its init was left with them,
    # and its seccomp filter.
    with open(f"/proc/{init_pid}/status") as f:  # read once, for both
        status = f.read()
    bounding = caps.bounding_from_status(status)
    program = _filter_of(status, filters)
    agent = (-1, b"")
    if program and sysinfo is not None:
        from corral.runtime import sysinfo_client

        agent = (sysinfo_client.connect(*sysinfo), filters.program(sysinfo=True))
    # After connecting: an agent started by connect must not be born in the container.
    ns.setns(pidfd, ns.CLONE_NEWPID)  # our children are born inside the container
    join = JOIN
    if os.readlink(f"/proc/{init_pid}/ns/user") != os.readlink("/proc/self/ns/user"):
        join |= ns.CLONE_NEWUSER  # an unprivileged container: its ids, its capabilities
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_quit = signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    pid = cgroups.fork()
    if pid == 0:
        _child(pidfd, cgroups, err_w, pty_sock[1].fileno() if pty_sock else -1, spec, join,
               bounding, program, agent)
    if agent[0] >= 0:
        os.close(agent[0])
    os.close(err_w)
    cgroups.close()
    os.close(pidfd)
    try:
        if pty_sock is not None:
            import socket

            pty_sock[1].close()
            _, fds, _, _ = socket.recv_fds(pty_sock[0], 1, 1)
            pty_sock[0].close()
            if fds:  # none if the child failed before making the terminal
                _relay(fds[0], pid)
        msg = os.read(err_r, 4096)
        os.close(err_r)
        _, status = os.waitpid(pid, 0)
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGQUIT, old_quit)
    if msg:
        code, _, text = msg.decode(errors="replace").partition(" ")
        raise ExecError(text, exit_code=int(code))
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


TIOCGPTPEER = 0x5441  # open the slave of a master without a path lookup (Linux 4.13)
TIOCSPTLCK = 0x40045431


def _filter_of(init_status: str, filters: Any) -> bytes:
    """The seccomp program for a command in the container whose init has this
    /proc status: none when the init runs unconfined, else the default one (for a
    container whose profile allows nesting, the stricter default: an exec never
    gets more than its init)."""
    mode = next((ln.split()[1] for ln in init_status.splitlines()
                 if ln.startswith("Seccomp:")), "0")
    return b"" if mode == "0" else filters.program()


def _child(pidfd: int, cgroups: Any, err_w: int, pty_sock: int, spec: ExecSpec,
           join: int, bounding: frozenset[int], program: bytes,
           agent: tuple[int, bytes] = (-1, b"")) -> None:
    # Everything this child needs must be imported before setns: afterwards
    # the container's root is its root, and Python's library is not there.
    from corral.linux import caps
    from corral.linux import filter as seccomp

    if agent[0] >= 0:
        from corral.runtime import sysinfo_client

    if spec.tty:
        import fcntl
        import socket
        import struct
        import termios

    step = "joining the container"
    try:
        # Until it execs, this process is the host's Python inside the
        # container's PID namespace: non-dumpable, so the container's processes
        # cannot open its /proc/<pid>/exe, memory or fds (CVE-2019-5736 class).
        ns.prctl(ns.PR_SET_DUMPABLE, 0)
        cgroups.join()
        ns.setns(pidfd, join)
        step = "resolving the user"
        uid, gid, home, groups = _resolve_user(spec.user)
        if spec.tty:
            step = "making a terminal in the container"
            master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
            socket.send_fds(socket.socket(fileno=pty_sock), [b"m"], [master])
            os.close(master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
        close_fds_except(err_w, agent[0])
        step = "dropping privileges"
        caps.drop_bounding(bounding)
        # An exec'd command never gains privileges through setuid binaries or file
        # capabilities (the container's init, a full system, may still use su).
        ns.prctl(ns.PR_SET_NO_NEW_PRIVS, 1)
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        step = f"changing to {spec.cwd}"
        if spec.cwd:
            os.chdir(spec.cwd)
        else:
            try:  # like login(1): a missing home directory means "/"
                os.chdir(home or "/")
            except OSError:
                os.chdir("/")
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT,
                    signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        env = {"PATH": DEFAULT_PATH, "HOME": home or "/", "container": "corral",
               "TERM": os.environ.get("TERM", "xterm") if spec.tty else "dumb"}
        if uid == 0:
            env["USER"] = env["LOGNAME"] = "root"
        env.update(spec.env)
        if program:  # no_new_privs is set: no privilege needed
            step = "seccomp"
            if agent[0] >= 0:  # the agent gets a listener, the socket is closed
                sysinfo_client.install(program, agent[1], agent[0])
            else:
                seccomp.install(program)
        step = spec.argv[0]
        execvpe(spec.argv, env)
    except BaseException as exc:
        code = 127 if isinstance(exc, FileNotFoundError) and step == spec.argv[0] else 126
        if isinstance(exc, OSError) and exc.errno == errno.ENOENT and step == spec.argv[0]:
            text = f"{spec.argv[0]}: command not found in the container"
        elif isinstance(exc, OSError) and exc.strerror:
            text = f"{step}: {exc.strerror.lower()}"
        else:
            text = f"{step}: {exc}"
        try:
            os.write(err_w, f"{code} {text}".encode())
        finally:
            os._exit(code)


def _resolve_user(user: str | None) -> tuple[int, int, str, list[int]]:
    """uid, gid, home and groups of ``user`` (name or number) from the container's files."""
    if user is None or user in ("root", "0"):
        return 0, 0, "/root", [0]
    entries = _read_db("/etc/passwd")
    for e in entries:
        if len(e) >= 6 and (e[0] == user or e[2] == user):
            uid, gid = int(e[2]), int(e[3])
            groups = [gid] + [int(g[2]) for g in _read_db("/etc/group")
                              if len(g) >= 4 and e[0] in g[3].split(",")]
            return uid, gid, e[5], groups
    if user.isdigit():
        return int(user), int(user), "/", [int(user)]
    raise LookupError(f"no user '{user}' in the container's /etc/passwd")


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [line.rstrip("\n").split(":") for line in f if line.strip()
                    and not line.startswith("#")]
    except FileNotFoundError:
        return []


def _relay(master: int, pid: int) -> None:
    """Copy between our terminal and the pty until the command closes it."""
    import select
    import termios
    import tty

    stdin_tty = os.isatty(0)
    saved: Any = termios.tcgetattr(0) if stdin_tty else None

    def resize(*_: Any) -> None:
        if stdin_tty:
            import fcntl

            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)

    old_winch = signal.signal(signal.SIGWINCH, resize)
    resize()
    if stdin_tty:
        tty.setraw(0)
    fds = [0, master]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    fds.remove(0)
                    os.write(master, b"\x04")
                else:
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, old_winch)
        os.close(master)
