"""sysinfo(2) answered for containers: one agent process for the whole machine.

lxcfs shows a container its own /proc/meminfo and /proc/uptime, but tools
that ask the kernel directly -- busybox ``free`` and ``uptime``, glibc's
``sysconf(_SC_PHYS_PAGES)`` -- call sysinfo(2), which no filesystem can
virtualize.  As LXD does, the call is intercepted with seccomp user
notification: a container's init (and each ``corral exec``) installs its
seccomp program in the form that sends sysinfo to a listener
(runtime/seccomp_profile.py ``SYSINFO_NOTIFY``) and hands the listener's fd
to this agent, which answers each call with the container's values:

* uptime: seconds since the container's init started (as lxcfs' /proc/uptime);
* totalram: the memory limit, at most the host's RAM; freeram: that minus
  the container's usage, never negative (lxcfs' MemTotal/MemFree); shared,
  buffer and high memory 0; mem_unit 1;
* totalswap/freeswap: the swap limit (at most the host's swap) minus the
  container's swap usage; the host's own when swap is not limited;
* procs: the tasks in the container's cgroup;
* loads: the host's.  lxcfs' per-container load average is computed inside
  lxcfs and is not readable for another cgroup, and sampling every
  container's run queue here would cost more than the call is worth.

Life cycle, like the lxcfs instance (runtime/lxcfs.py): started on demand by
the first container start that needs it (``connect``), under a flock so
concurrent starts start one; detached (own session, stdio on /dev/null,
``/`` as its directory), so it survives container restarts.  The starter
binds the socket and hands it over, so the first start need not wait for the
agent's Python to come up.  Only root may connect (SO_PEERCRED).

Protocol (SOCK_SEQPACKET on ``SOCKET``): the host side connects *before* the
container's root is set up (afterwards /run/corral is out of reach) and
introduces the container (``HELLO`` root group); the init or exec child
then sends one message carrying the listener fd (SCM_RIGHTS) and closes.
``status`` instead of a hello asks for counters.

Without an agent (not startable, kernel without user notification) a
container starts as before and sysinfo shows the host.  If the agent dies,
the listeners it held are gone and the kernel fails sysinfo in the
containers it served with ENOSYS until they restart: it is written never to
exit on an error, and any error answering one call answers that call.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import struct
import sys
import time

from corral.runtime.sysinfo_client import (  # noqa: F401 - the agent's own interface too
    COMM,
    HELLO,
    PID_FILE,
    RUN,
    SOCKET,
    STATUS,
    _listening_socket,
    connect,
    ensure,
    install,
    status,
    stop,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


# -- the agent ------------------------------------------------------------------------------

def container_sysinfo(cg: Any, start_ticks: int, host: Any, now: float,
                      clk_tck: int) -> Any:
    """The struct sysinfo a container sees, from its cgroups (``cg``: a
    CgroupManager), its init's start (ticks since boot), the host's sysinfo
    and the boot-time clock ``now`` (seconds)."""
    from corral.linux.seccomp_notify import Sysinfo

    unit = host.mem_unit or 1
    host_ram, host_swap = host.totalram * unit, host.totalswap * unit
    usage, limit, swap, swap_limit = cg.memory()
    info = Sysinfo()
    up = now - start_ticks / clk_tck
    info.uptime = max(0, int(up) + (up > int(up)))  # rounded up, as the kernel does
    info.loads[:] = host.loads[:]
    info.totalram = host_ram if limit < 0 else min(limit, host_ram)
    info.freeram = max(0, info.totalram - usage)
    if swap_limit < 0:
        info.totalswap, info.freeswap = host_swap, host.freeswap * unit
    else:
        info.totalswap = min(swap_limit, host_swap)
        info.freeswap = max(0, info.totalswap - swap)
    info.procs = min(cg.tasks(), 0xFFFF)
    info.mem_unit = 1
    return info


class _Box:
    """One listener: the container it serves and since when that runs."""

    __slots__ = ("cgroup", "fd", "start")

    def __init__(self, fd: int, cgroup: Any, start: int) -> None:
        self.fd = fd
        self.cgroup = cgroup
        self.start = start


class Agent:
    """One epoll loop over the listening socket, the connections introducing
    containers, and every container's listener."""

    def __init__(self, listen: Any) -> None:
        from corral.linux import seccomp, seccomp_notify

        self.notify = seccomp_notify
        self.listen = listen
        listen.setblocking(False)
        self.epoll = select.epoll()
        self.epoll.register(listen.fileno(), select.EPOLLIN)
        self.conns: dict[int, tuple[Any, tuple[str, str] | None]] = {}
        self.boxes: dict[int, _Box] = {}
        self.nr = seccomp.syscall_nr("sysinfo")
        self.arch = seccomp.ARCHES[seccomp.machine()][0]
        self.clk_tck = os.sysconf("SC_CLK_TCK")
        self.served = 0
        self.errors = 0

    def run(self) -> None:
        while True:
            try:
                events = self.epoll.poll()
            except InterruptedError:
                continue
            for fd, ev in events:
                try:
                    self._event(fd, ev)
                except Exception:  # noqa: BLE001 — never exit on one bad event
                    self.errors += 1

    def _event(self, fd: int, ev: int) -> None:
        if fd == self.listen.fileno():
            self._accept()
        elif fd in self.boxes:
            box = self.boxes[fd]
            if ev & select.EPOLLIN:
                self._answer(box)
            elif ev & (select.EPOLLHUP | select.EPOLLERR):
                self._drop(box)  # no process uses the filter any more
        elif fd in self.conns:
            self._message(fd)

    # -- connections -------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listen._accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # EMFILE and the like: the caller goes on without us
                self.errors += 1
                return
            sock = _socket.socket(fileno=conn)
            _, uid, _ = struct.unpack("3i", sock.getsockopt(
                _socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))
            if uid != 0:
                sock.close()
                continue
            sock.setblocking(False)
            self.conns[conn] = (sock, None)
            self.epoll.register(conn, select.EPOLLIN)

    def _close_conn(self, fd: int) -> None:
        sock, _ = self.conns.pop(fd)
        self.epoll.unregister(fd)
        sock.close()

    def _message(self, fd: int) -> None:
        sock, who = self.conns[fd]
        fds: list[int] = []
        try:
            data, anc, _flags, _ = sock.recvmsg(4096, _socket.CMSG_SPACE(4 * 8))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close_conn(fd)
            return
        for level, kind, payload in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                n = len(payload) - len(payload) % 4
                fds += [int.from_bytes(payload[i:i + 4], sys.byteorder) for i in range(0, n, 4)]
        try:
            if who is None and data == STATUS:
                sock.send(b"%d %d %d %d" % (os.getpid(), len(self.boxes), self.served,
                                            self.errors))
            elif who is None and data:
                hello = _parse_hello(data)
                if hello is not None:
                    self.conns[fd] = (sock, hello)
                    return  # the listener comes next
            elif who is not None and data == b"L" and len(fds) == 1:
                self._close_conn(fd)
                self._add(fds[0], *who)
                fds.clear()  # the listener is ours now
                return
            self._close_conn(fd)  # done, EOF, or not our protocol
        finally:
            for extra in fds:
                os.close(extra)

    def _add(self, listener: int, cgroup_root: str, group: str) -> None:
        from corral import cgroups
        from corral.linux import proc

        cg = cgroups.manager(group, cgroup_root)
        try:
            init = cg.init_pid()
        except OSError:
            init = None
        start = proc.start_time(init) if init is not None else None
        if start is None:  # no init found: count from now
            start = int(time.clock_gettime(time.CLOCK_BOOTTIME) * self.clk_tck)
        self.epoll.register(listener, select.EPOLLIN)
        self.boxes[listener] = _Box(listener, cg, start)

    def _drop(self, box: _Box) -> None:
        del self.boxes[box.fd]
        self.epoll.unregister(box.fd)
        os.close(box.fd)

    # -- notifications -----------------------------------------------------------------

    def _answer(self, box: _Box) -> None:
        """Read one notification and answer it, whatever happens."""
        n = self.notify
        try:
            note = n.recv(box.fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EINTR):  # ENOENT: the caller was killed
                self.errors += 1
                self._drop(box)  # would poll readable forever
            return
        try:
            self._serve(box, note)
        except Exception:  # noqa: BLE001 — answered below, counted
            self.errors += 1
            self._fail(box, note)

    def _serve(self, box: _Box, note: Any) -> None:
        n = self.notify
        if note.nr != self.nr or note.arch != self.arch:
            n.respond(box.fd, note.id, error=errno.ENOSYS)
            return
        try:
            info = container_sysinfo(box.cgroup, box.start, n.sysinfo(),
                                     time.clock_gettime(time.CLOCK_BOOTTIME),
                                     self.clk_tck)
        except Exception:  # noqa: BLE001 — answered, counted
            # The host's view, as the container would have without the agent.
            self.errors += 1
            n.respond(box.fd, note.id, cont=True)
            return
        try:
            if not n.write_memory(box.fd, note, note.args[0], bytes(info)):
                return  # the caller is gone
        except OSError as exc:
            if exc.errno == errno.EFAULT:  # a bad pointer: what the kernel would say
                n.respond(box.fd, note.id, error=errno.EFAULT)
            else:  # its memory is out of our reach: the host's view, as without us
                self.errors += 1
                n.respond(box.fd, note.id, cont=True)
            return
        if n.id_valid(box.fd, note.id) and n.respond(box.fd, note.id):
            self.served += 1

    def _fail(self, box: _Box, note: Any) -> None:
        """Answer a call whose handling failed: never leave the caller waiting."""
        for kw in ({"cont": True}, {"error": errno.ENOSYS}):
            try:
                self.notify.respond(box.fd, note.id, **kw)
                return
            except OSError:
                continue


def _parse_hello(data: bytes) -> tuple[str, str] | None:
    """(cgroup root, group) of a hello; None if it is not one."""
    parts = data.decode(errors="replace").split("\n")
    if len(parts) != 3 or parts[0] != HELLO.decode():
        return None
    root, group = parts[1], parts[2]
    if not root.startswith("/") or not group or group.startswith("/") \
            or ".." in root.split("/") + group.split("/"):
        return None
    return root, group


def main(argv: list[str]) -> int:
    import _signal as signal
    import resource

    try:
        with open("/proc/self/comm", "w") as f:
            f.write(COMM)
    except OSError:
        pass
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # One fd per container and per running exec.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    if "--fd" in argv:  # bound by the starter (see _start)
        listen = _socket.socket(fileno=int(argv[argv.index("--fd") + 1]))
        os.set_inheritable(listen.fileno(), False)
    else:  # run by hand
        os.makedirs(RUN, 0o755, exist_ok=True)
        listen = _listening_socket()
        with open(PID_FILE, "w") as f:
            f.write(f"{os.getpid()}\n")
    Agent(listen).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
