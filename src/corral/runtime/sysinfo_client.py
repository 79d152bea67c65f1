"""The host's side of the sysinfo agent (runtime/sysinfo_agent.py): start it,
connect a container to it, hand it a container's listener, ask its status.

Kept apart from the agent itself, which the start path never runs: this is
all that a container's start and ``corral exec`` import.
"""

from __future__ import annotations

import os
import sys
import time

# At the top, not where it is used: install runs after the container's
# root has replaced the host's, where no module can be found any more.
from corral.linux import filter as seccomp
from corral.linux import unixsock

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

RUN = "/run/corral"
SOCKET = f"{RUN}/sysinfo.sock"
LOCK = f"{RUN}/sysinfo.lock"
PID_FILE = f"{RUN}/sysinfo.pid"
COMM = "corral-sysinfo"  # the agent's /proc/<pid>/comm
HELLO = b"corral-sysinfo 1"
STATUS = b"status"


def connect(cgroup_root: str, group: str) -> int:
    """A connection to the agent, introduced as the container whose cgroups are
    ``group`` under ``cgroup_root``; the agent is started if none runs.

    Close-on-exec.  -1 when no agent can be had: the container then runs
    without interception, as before.
    """
    try:
        fd = _connect()
        if fd < 0:
            fd = _start_and_connect()
        if fd < 0:
            return -1
        try:
            os.write(fd, b"\n".join((HELLO, cgroup_root.encode(), group.encode())))
        except OSError:
            os.close(fd)
            return -1
        return fd
    except OSError:
        return -1


def ensure() -> bool:
    """Start the agent if none runs; whether one runs now."""
    try:
        fd = _connect()
        if fd < 0:
            fd = _start_and_connect()
    except OSError:
        return False
    if fd < 0:
        return False
    os.close(fd)
    return True


def alive(sock_fd: int) -> bool:
    """Whether the agent still holds the other end of ``sock_fd`` (which stays open):
    not at EOF (it went away), nor with a message waiting (it never sends one)."""
    return unixsock.peer_holds(sock_fd)


def install(program: bytes, notified: bytes, sock_fd: int) -> None:
    """In the container's init (before it reports ready) or exec child (last before
    exec): install its seccomp filter, and have the agent on ``sock_fd`` answer
    its sysinfo(2).

    ``notified`` is ``program`` with sysinfo sent to a listener: installed with
    one when the agent still holds the other end of ``sock_fd``, and the
    listener sent there.  A listener the agent never gets would fail every later
    sysinfo with ENOSYS, hence the check.  Anything amiss on that path (the agent
    gone, EBUSY: a filter with a listener is already there, as when nesting)
    installs ``program`` instead: the process never goes on without its filter,
    and an error installing ``program`` is raised.  ``sock_fd`` is closed.
    """
    import _socket  # built in: found after the root has changed, too

    try:
        sock = _socket.socket(fileno=sock_fd)
    except OSError:
        os.close(sock_fd)
        seccomp.install(program)
        return
    try:
        listener = -1
        if alive(sock_fd):
            try:
                listener = seccomp.install(notified, listener=True)
            except (OSError, ValueError):
                pass
        if listener < 0:
            seccomp.install(program)
            return
        try:  # the filter is in place whatever happens to the listener now
            sock.sendmsg([b"L"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                   listener.to_bytes(4, sys.byteorder))])
        except OSError:
            pass
        finally:
            os.close(listener)
    finally:
        sock.close()


def _connect() -> int:
    """A connection to the agent (close-on-exec); -1 when none listens."""
    return unixsock.connect_seqpacket(SOCKET)


def _start_and_connect() -> int:
    from corral.linux import seccomp_notify

    if not seccomp_notify.supported():
        return -1
    import fcntl

    os.makedirs(RUN, 0o755, exist_ok=True)
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fd = _connect()  # started by another start while we waited
        if fd < 0:
            _start()
            fd = _connect()
        return fd
    finally:
        os.close(lock)


def _listening_socket() -> Any:
    """The agent's socket, bound afresh (a stale one of a dead agent is replaced), 0600."""
    import _socket

    try:
        os.unlink(SOCKET)
    except FileNotFoundError:
        pass
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(SOCKET)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _start() -> None:
    """Bind the socket, then run the agent on it, detached (the lock is held)."""
    sock = _listening_socket()
    env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    argv = [sys.executable, "-m", "corral.runtime.sysinfo_agent", "--fd", "3"]
    pid = os.fork()
    if pid == 0:  # own session, no inherited fds but the socket, no directory pinned
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            os.chdir("/")
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            os.dup2(sock.fileno(), 3)
            os.set_inheritable(3, True)  # dup2 onto itself would leave close-on-exec
            os.closerange(4, 1 << 20)
            with open(PID_FILE, "w") as f:  # exec keeps the PID
                f.write(f"{os.getpid()}\n")
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    sock.close()
    os.waitpid(pid, 0)


def status() -> dict[str, int] | None:
    """The running agent's counters, or None if none answers."""
    import _socket

    try:
        fd = _connect()
        if fd < 0:
            return None
        sock = _socket.socket(fileno=fd)
        try:
            sock.settimeout(2.0)
            sock.send(STATUS)
            reply = sock.recv(256).split()
        finally:
            sock.close()
    except OSError:
        return None
    keys = ("pid", "listeners", "served", "errors")
    return dict(zip(keys, (int(v) for v in reply)))


def stop(*, only_idle: bool = False) -> bool:
    """End the agent (SIGTERM); with ``only_idle``, only if it serves no container.

    Containers it served fail sysinfo with ENOSYS afterwards (see above).
    """
    st = status()
    if st is None or (only_idle and st.get("listeners")):
        return False
    import _signal as signal

    pid = st["pid"]
    try:
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() != COMM:  # never signal a recycled PID
                return False
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + 3.0
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.01)
    for path in (SOCKET, PID_FILE):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return True
