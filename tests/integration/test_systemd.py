"""A Debian container boots its own systemd and serves like a real server (end to end).

Uses debian-12 from debootstrap (cached per machine, see test_debian_template)
and the Debian mirror it came from to install openssh-server inside.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Corral

BOOT = 90


def _booted(c: Corral, name: str) -> str:
    """The state systemd reached once booted (it has no bus for the first moments)."""
    deadline = time.monotonic() + BOOT
    while True:
        p = c.run("exec", name, "--", "systemctl", "is-system-running", "--wait",
                  check=False, timeout=BOOT)
        state = p.stdout.strip()
        if state not in ("", "offline", "initializing", "starting") or \
                time.monotonic() > deadline:
            return state
        time.sleep(0.1)


def _wait_state(c: Corral, name: str, want: str, within: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        if c.info(name)["state"] == want:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{name} did not become {want} within {within} s")


def _console_says(root: Path, name: str, send: bytes, expect: bytes) -> bytes:
    from corral.host import root_id

    sock = socket.socket(socket.AF_UNIX)
    sock.connect(f"/run/corral/console/{root_id(str(root))}-{name}.sock")
    sock.settimeout(5)
    seen = b""
    try:
        sock.sendall(send)
        deadline = time.monotonic() + 10
        while expect not in seen and time.monotonic() < deadline:
            try:
                seen += sock.recv(65536)
            except TimeoutError:
                sock.sendall(send)
    finally:
        sock.close()
    return seen


def _attach_and_detach(root: Path, name: str) -> bytes:
    """`corral console` on a real terminal: see the prompt, detach with Ctrl-a q."""
    import pty
    import select

    from conftest import CORRAL

    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CORRAL, [CORRAL, "--root", str(root), "console", name])
    seen = b""
    deadline = time.monotonic() + 15
    sent_detach = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 65536)
                except OSError:
                    break
            if b"attached" in seen and b"login:" not in seen:
                os.write(fd, b"\r")
            if b"login:" in seen and not sent_detach:
                os.write(fd, b"\x01q")
                sent_detach = True
            if b"[detached]" in seen:
                break
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert b"[detached]" in seen and os.WEXITSTATUS(status) == 0, seen[-300:]
    return seen


@pytest.fixture
def debian(state_root: Path) -> Corral:
    c = Corral(state_root)
    c("template", "build", "debian-12", timeout=1800)
    return c


def test_debian_boots_systemd_unprivileged_and_serves(debian: Corral, state_root: Path,
                                                      tmp_path: Path) -> None:
    c = debian
    c("create", "web", "--template", "debian-12", "--start")
    info = c.info("web")
    assert info["privileged"] is False and info["console"] == "pty"
    assert _booted(c, "web") == "running", c("exec", "web", "--", "systemctl", "--failed")
    # its own init, its own ids: root inside is an unprivileged id outside
    with open(f"/proc/{info['pid']}/status") as f:
        uid_line = next(ln for ln in f if ln.startswith("Uid:"))
    assert int(uid_line.split()[1]) >= 1_000_000_000
    assert c("exec", "web", "--", "cat", "/proc/1/comm").strip() == "systemd"
    # journald works; a service starts, stops and restarts; systemd owns its cgroup subtree
    c("exec", "web", "--", "logger", "-t", "corraltest", "hello-journal")
    c("exec", "web", "--", "sh", "-c",
      "printf '[Service]\\nExecStart=/bin/sleep infinity\\n' > /etc/systemd/system/idle.service"
      " && systemctl daemon-reload && systemctl start idle")
    assert c("exec", "web", "--", "systemctl", "is-active", "idle").strip() == "active"
    # systemd runs its own cgroup subtree (delegated through the cgroup namespace)
    assert "init.scope" in c("exec", "web", "--", "cat", "/proc/1/cgroup")
    service_cg = c("exec", "web", "--", "sh", "-c",
                   "cat /proc/$(systemctl show -p MainPID --value idle)/cgroup")
    assert "memory:/system.slice/idle.service" in service_cg, service_cg
    c("exec", "web", "--", "systemctl", "restart", "idle")
    c("exec", "web", "--", "systemctl", "stop", "idle")
    assert c.run("exec", "web", "--", "systemctl", "is-active", "idle",
                 check=False).stdout.strip() == "inactive"
    journal = c("exec", "web", "--", "journalctl", "-b", "--no-pager", "-t", "corraltest")
    assert "hello-journal" in journal

    # the console: a getty's login prompt, attachable after `start` has exited, in turn
    assert b"web login:" in _console_says(state_root, "web", b"\r", b"login:")
    assert b"login:" in _attach_and_detach(state_root, "web")
    assert b"login:" in _attach_and_detach(state_root, "web")

    # ssh: openssh-server from the template's mirror, root's key set from the host
    c("exec", "web", "--", "sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
      "apt-get install -y -qq openssh-server >/dev/null", timeout=600)
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    c("set", "web", "--ssh-key", f"{key}.pub", "--userpasswd", "admin:s3cret",
      "--timezone", "Europe/Berlin")
    address = c.info("web")["ip"].split("/")[0]
    out = subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no",
                          "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                          "-o", "ConnectTimeout=10", f"root@{address}",
                          "hostname; id -u admin; date +%Z"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["web", "1000"]

    # power as on a server: reboot inside comes back, poweroff inside stops it
    pid_before = c.info("web")["pid"]
    c.run("exec", "web", "--", "systemctl", "reboot", check=False)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        i = c.info("web")
        if i["state"] == "running" and i["pid"] != pid_before:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the container did not come back after reboot")
    assert _booted(c, "web") in ("running", "degraded")
    c("exec", "web", "--", "sh", "-c", "echo kept > /root/data")
    c.run("exec", "web", "--", "systemctl", "poweroff", check=False)
    _wait_state(c, "web", "stopped", 20)
    # stop/start keeps data; `corral stop` asks systemd to halt
    c("start", "web")
    assert _booted(c, "web") in ("running", "degraded")
    assert c("exec", "web", "--", "cat", "/root/data") == "kept\n"
    started = time.monotonic()
    c("stop", "web", "--timeout", "30")
    assert time.monotonic() - started < 25  # halted by systemd, not killed at the timeout
    # the monitor goes with its container
    deadline = time.monotonic() + 5
    while [p for p in os.listdir("/run/corral/console") if p.endswith("-web.sock")]:
        assert time.monotonic() < deadline, "the console monitor outlived its container"
        time.sleep(0.05)


def test_two_debian_containers_side_by_side(debian: Corral) -> None:
    c = debian
    # users and time zone asked for at create are set at the first start
    c("create", "a", "--template", "debian-12", "--net", "none", "--userpasswd", "bob:pw",
      "--timezone", "Asia/Tokyo", "--start")
    c("create", "b", "--template", "debian-12", "--net", "none", "--start")
    assert _booted(c, "a") == "running" and _booted(c, "b") == "running"
    assert c("exec", "a", "--", "id", "-un", "bob").strip() == "bob"
    assert c("exec", "a", "--", "cat", "/etc/timezone").strip() == "Asia/Tokyo"
    assert "pending" not in (c.root / "containers" / "a" / "config.toml").read_text()
    ids = {c("exec", n, "--", "cat", "/etc/machine-id").strip() for n in ("a", "b")}
    assert len(ids) == 2
    listed = json.loads(c("list", "--json"))
    assert {i["name"]: i["state"] for i in listed} == {"a": "running", "b": "running"}
    c("shutdown-all", "--timeout", "30")
    assert {i["state"] for i in json.loads(c("list", "--json"))} == {"stopped"}


def test_ubuntu_template_boots_too(state_root: Path) -> None:
    c = Corral(state_root)
    c("template", "build", "ubuntu-24.04", timeout=1800)  # debootstrap once, then cached
    info = c.json("template", "info", "ubuntu-24.04")
    assert info["os"] == "ubuntu" and info["version"] == "24.04"  # type: ignore[index]
    c("create", "u", "--template", "ubuntu-24.04", "--net", "none", "--start")
    assert _booted(c, "u") == "running", c.run("exec", "u", "--", "systemctl", "--failed",
                                              check=False).stdout
    assert "Ubuntu" in c("exec", "u", "--", "cat", "/etc/os-release")
    c("stop", "u", "--timeout", "30")
