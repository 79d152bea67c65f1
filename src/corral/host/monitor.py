"""The console monitor of a container that boots a full system (``console = "pty"``).

One small process per such container, outside it, like LXC's monitor and
podman's conmon: it starts the container, is the parent (subreaper) of its
init, and

- holds the master of the container's console pty: what the console prints
  is kept in a bounded log (``console/NAME.log``, the last ``LOG_KEEP``
  bytes), and ``corral console NAME`` attaches to it through a unix socket,
  in turn, detaching with Ctrl-a q, also after the starting command exited;
- follows the init: ``reboot`` inside (the kernel kills a PID namespace's
  init with SIGHUP) starts the container again, ``poweroff``/``halt``
  (SIGINT) or any other end tears it down, so ``list`` and ``info`` follow
  at once.  A ``corral stop`` tears down itself; the monitor then just exits.

Containers whose init is content with /dev/null as console (the busybox
``tiny`` template) run without a monitor: no resident process at all.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time
from typing import Any

from corral.errors import KernelError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.host import Host

LOG_MAX = 256 << 10  # the console log is cut back to LOG_KEEP when it grows past this
LOG_KEEP = 128 << 10
SOCKET_DIR = "/run/corral/console"


def socket_path(host: Host, name: str) -> str:
    return f"{SOCKET_DIR}/{host.id}-{name}.sock"


def start(host: Host, name: str) -> None:
    """Fork the monitor, which starts the container; return once it runs (or raise).

    The caller holds the container's lock; the monitor inherits it until the
    container has started, then lets it go.
    """
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        try:
            if os.fork() != 0:  # the monitor is a grandchild: no zombie, not ours to wait for
                os._exit(0)
            os.setsid()
            import gc

            gc.enable()  # the CLI may have it off (cli.main.entry); the monitor lives on
            _monitor(host, name, report_w)
        except BaseException as exc:  # noqa: BLE001 — reported, then exit
            try:
                os.write(report_w, json.dumps({"error": str(exc)}).encode())
            except OSError:
                pass
            os._exit(1)
        os._exit(0)
    os.close(report_w)
    os.waitpid(pid, 0)
    try:
        data = b""
        while chunk := os.read(report_r, 65536):
            data += chunk
            if data.endswith(b"\n"):
                break
    finally:
        os.close(report_r)
    msg = json.loads(data or b'{"error": "the monitor exited before the container started"}')
    if "error" in msg:
        raise KernelError(f"cannot start container '{name}': {msg['error']}")


def _monitor(host: Host, name: str, report_w: int) -> None:
    from corral.host import lifecycle
    from corral.linux import ns

    ns.prctl(ns.PR_SET_CHILD_SUBREAPER, 1)  # the init becomes our child when the spawner exits
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.makedirs(SOCKET_DIR, 0o700, exist_ok=True)
    path = socket_path(host, name)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(4)
    log = os.open(host.paths.console_log(name), os.O_WRONLY | os.O_CREAT | os.O_APPEND
                  | os.O_CLOEXEC, 0o600)
    try:
        state, master = _launch(host, host.load_config(name), lifecycle)
        os.write(report_w, json.dumps({"pid": state.pid}).encode() + b"\n")
        os.close(report_w)
        _drop_inherited_lock(host, name)
        while True:
            status = _serve(state.pid, master, listener, log, host.paths.console_log(name))
            os.close(master)
            if not host.exists(name):  # destroyed
                return
            with host.lock(name) as lock:
                if not host.exists(name):
                    lock.unlink()
                    return
                current = host.load_state(name)
                if current.pid != state.pid:  # `corral stop` (or restart) took over
                    return
                lifecycle._teardown(host, name, current)
                _note(log, f"\r\n[corral: the init ended ({_describe(status)})]\r\n")
                if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP):
                    return  # poweroff, halt, or the init just ended
                _note(log, "\r\n[corral: the container rebooted]\r\n")
                state, master = _launch(host, host.load_config(name), lifecycle)
    finally:
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _launch(host: Host, cfg: Any, lifecycle: Any) -> tuple[Any, int]:
    """Start the container with a console pty; its state and the pty's master."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        state = lifecycle._launch(host, cfg, console_socket=theirs.fileno())
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    finally:
        theirs.close()
        ours.close()
    if not fds:
        raise KernelError(f"container '{cfg.name}' sent no console")
    return state, fds[0]


def _drop_inherited_lock(host: Host, name: str) -> None:
    """Close our copy of the starter's lock file descriptor (flock is per open file)."""
    lock = os.path.realpath(host.paths.lock_file(name))
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == lock:
                os.close(int(fd))
        except OSError:
            continue


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return {signal.SIGHUP: "reboot", signal.SIGINT: "power off"}.get(
            sig, f"killed by signal {sig}")
    return f"exit status {os.WEXITSTATUS(status)}"


def _note(log: int, text: str) -> None:
    os.write(log, text.encode())


def _serve(init_pid: int, master: int, listener: socket.socket, log: int,
           log_path: str) -> int:
    """Relay the console until the init exits; return its wait status."""
    pidfd = os.pidfd_open(init_pid)
    client: socket.socket | None = None
    try:
        while True:
            fds: list[Any] = [pidfd, master, listener]
            if client is not None:
                fds.append(client)
            ready, _, _ = select.select(fds, [], [])
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: no process has the console open right now
                    data = b""
                    time.sleep(0.05)
                if data:
                    os.write(log, data)
                    _trim(log, log_path)
                    if client is not None:
                        try:
                            client.sendall(data)
                        except OSError:
                            client.close()
                            client = None
            if listener in ready:
                new, _ = listener.accept()
                if client is not None:  # one at a time: the newest attach wins
                    client.close()
                client = new
                _send_recent(client, log_path)
            if client is not None and client in ready:
                try:
                    data = client.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    client.close()
                    client = None
                else:
                    os.write(master, data)
            if pidfd in ready:
                _, status = os.waitpid(init_pid, 0)
                if client is not None:
                    client.close()
                return status
    finally:
        os.close(pidfd)


def _send_recent(client: socket.socket, log_path: str, recent: int = 16 << 10) -> None:
    """What the console printed lately, so an attach starts with context."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - recent))
            client.sendall(f.read())
    except OSError:
        pass


def _trim(log: int, log_path: str) -> None:
    if os.fstat(log).st_size <= LOG_MAX:
        return
    with open(log_path, "rb") as f:
        f.seek(-LOG_KEEP, os.SEEK_END)
        tail = f.read()
    os.ftruncate(log, 0)
    os.write(log, tail)
