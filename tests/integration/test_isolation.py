"""Isolation a hostile tenant cannot break, checked from inside containers.

tests/isolation/probe.c asks the kernel, harmlessly, for one permission per
probe and prints ALLOWED or DENIED.  It runs:

- in a default (unprivileged) container and in a --privileged one: every
  probe must be DENIED (but the container may set its own hostname);
- in a deliberately weakened container (--privileged --seccomp unconfined
  --cap-add all --systempaths unconfined --devices unconfined) and on the host itself (in a
  private mount namespace): the probes must say ALLOWED there wherever the
  host has the permission at all, so no check passes vacuously.  Probes of
  namespaces (host processes, host devices, the host's cgroup root, Corral's
  state and sockets) are shown against the host, the one place without them.

A probe the host itself lacks (e.g. module loading on a kernel built without
modules) cannot be shown ALLOWED anywhere here; the test prints which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import Corral

HERE = Path(__file__).parent
PROBE_SRC = HERE.parent / "isolation" / "probe.c"
# Shown against the host: a container, even a weakened one, has its own namespaces.
NAMESPACE_PROBES = {"raw-disk", "mount-host-disk", "cgroup-release-agent", "host-processes",
                    "state-root", "runtime-sockets", "host-abstract-socket", "host-loopback"}
ALWAYS_ALLOWED = {"set-own-hostname"}  # its own UTS namespace: expected, not a leak
WEAKENED = ("--privileged", "--seccomp", "unconfined", "--cap-add", "all",
            "--systempaths", "unconfined", "--devices", "unconfined")


@pytest.fixture(scope="module")
def probe_tree(tmp_path_factory: pytest.TempPathFactory, template_cache: Path) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the isolation probe (install.sh --test adds it)")
    tree = tmp_path_factory.mktemp("probe-root")
    shutil.copytree(template_cache / "rootfs", tree, symlinks=True, dirs_exist_ok=True)
    subprocess.run(["gcc", "-static", "-O1", "-o", str(tree / "probe"), str(PROBE_SRC)],
                   check=True, capture_output=True)
    return tree


def _parse(out: str) -> dict[str, tuple[bool, str]]:
    result = {}
    for line in out.splitlines():
        name, verdict, detail = (line.split(" ", 2) + [""])[:3]
        result[name] = (verdict == "ALLOWED", detail)
    return result


class _HostListeners:
    """An abstract unix socket and a loopback TCP port on the host, for the probes to try."""

    def __enter__(self) -> tuple[str, str]:
        import socket

        self.abstract = f"corral-probe-{os.getpid()}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract)
        self.unix.listen(8)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        return self.abstract, str(self.tcp.getsockname()[1])

    def __exit__(self, *_: object) -> None:
        self.unix.close()
        self.tcp.close()


def _probe(corral: Corral, tree: Path, state_root: Path, listeners: tuple[str, str],
           *flags: str) -> dict[str, tuple[bool, str]]:
    out = corral("run", "--rm", *flags, "--net", "none", "--rootfs", str(tree), "--",
                 "/probe", str(os.getpid()), str(state_root), *listeners)
    return _parse(out)


def _host_baseline(tree: Path, state_root: Path,
                   listeners: tuple[str, str]) -> dict[str, tuple[bool, str]]:
    out = subprocess.run(["unshare", "-m", "--propagation", "private", str(tree / "probe"),
                          str(os.getpid()), str(state_root), *listeners],
                         check=True, capture_output=True, text=True).stdout
    return _parse(out)


def test_probes_denied_inside_and_not_vacuous(corral: Corral, state_root: Path,
                                              probe_tree: Path) -> None:
    import socket
    import time as _time

    host_name, host_clock = socket.gethostname(), _time.time()
    with _HostListeners() as listeners:
        host = _host_baseline(probe_tree, state_root, listeners)
        weakened = _probe(corral, probe_tree, state_root, listeners, *WEAKENED)
        default = _probe(corral, probe_tree, state_root, listeners)
        privileged = _probe(corral, probe_tree, state_root, listeners, "--privileged")
        # the default network too: the container's own loopback is not the host's
        bridged = _parse(corral("run", "--rm", "--rootfs", str(probe_tree), "--", "/probe",
                                str(os.getpid()), str(state_root), *listeners))
    assert not bridged["host-loopback"][0] and not bridged["host-abstract-socket"][0]
    assert set(default) == set(host) == set(weakened) == set(privileged) and len(host) >= 20

    leaks = {name: detail for name, (allowed, detail) in default.items()
             if allowed and name not in ALWAYS_ALLOWED}
    assert not leaks, f"an unprivileged container has these permissions: {leaks}"
    leaks = {name: detail for name, (allowed, detail) in privileged.items()
             if allowed and name not in ALWAYS_ALLOWED}
    assert not leaks, f"a privileged container has these permissions: {leaks}"

    vacuous, shown_on_host, not_on_this_host = [], [], []
    for name in host:
        if name in ALWAYS_ALLOWED:
            continue
        if not host[name][0]:
            not_on_this_host.append(name)
        elif name in NAMESPACE_PROBES:
            shown_on_host.append(name)
        elif not weakened[name][0]:
            vacuous.append(f"{name}: {weakened[name][1]}")
    assert not vacuous, f"these probes did not see the permission in a weakened container: " \
                        f"{vacuous}"
    # The weakened container shows most checks can fail; say which could not be shown.
    print(f"\nshown against the weakened container: "
          f"{sorted(set(host) - set(shown_on_host) - set(not_on_this_host) - ALWAYS_ALLOWED)}")
    print(f"shown against the host (namespaces): {sorted(shown_on_host)}")
    print(f"the host itself lacks (cannot be shown here): {sorted(not_on_this_host)}")
    assert len(shown_on_host) + len(host) - len(not_on_this_host) >= 10
    # what the containers did to their own hostname and clock stayed theirs
    assert socket.gethostname() == host_name
    assert abs(_time.time() - host_clock) < 120


def test_fork_and_memory_probes_stop_at_the_limits(corral: Corral) -> None:
    """Bounded probes: stopped by the limits, and reaching their bound without them."""
    fork_probe = ("n=0; while [ $n -lt 150 ]; do sleep 30 & n=$((n+1)); done 2>/dev/null; "
                  "echo started $n; kill $(jobs -p) 2>/dev/null; true")
    memory_probe = "dd if=/dev/zero of=/dev/null bs=96M count=1 2>&1 && echo allocated"
    limited = ("--pids", "40", "--memory", "48M", "--swap", "0")
    for flags, expect_stopped in ((limited, True), ((), False)):
        out = corral.run("run", "--rm", *flags, "--net", "none", "--template", "tiny", "--",
                         "sh", "-c", fork_probe, check=False).stdout
        started = int(out.split()[-1]) if out.split()[:1] == ["started"] else 0
        assert (started < 40) == expect_stopped, (flags, out)
        p = corral.run("run", "--rm", *flags, "--net", "none", "--template", "tiny", "--",
                       "sh", "-c", memory_probe, check=False)
        assert ("allocated" in p.stdout) != expect_stopped, (flags, p.stdout, p.stderr)


def test_unprivileged_root_is_not_host_root(corral: Corral, state_root: Path) -> None:
    corral("create", "u", "--template", "tiny", "--net", "none", "--start")
    pid = corral.info("u")["pid"]
    with open(f"/proc/{pid}/status") as f:
        uids = next(ln for ln in f if ln.startswith("Uid:")).split()[1:]
    base = int(corral.info("u")["idmap"].split()[2].split("-")[0])  # type: ignore[index]
    assert [int(u) for u in uids] == [base] * 4 and base >= 1_000_000_000
    # the container's own writes land with its own host ids; the shared template is
    # seen through an idmapped mount, never chowned: its files stay host root's
    corral("exec", "u", "--", "sh", "-c", "echo x > /root/f && chown 33:33 /root/f")
    assert os.stat(state_root / "containers" / "u" / "upper" / "root" / "f").st_uid == base + 33
    assert os.stat(state_root / "templates" / "tiny" / "rootfs" / "bin" / "busybox").st_uid == 0
    assert corral("exec", "u", "--", "stat", "-c", "%u", "/bin/busybox").strip() == "0"
    # two containers, two ranges
    corral("create", "v", "--template", "tiny", "--net", "none")
    assert corral.info("v")["idmap"] != corral.info("u")["idmap"]
    # setuid and unshare cannot regain what was dropped
    p = corral.run("exec", "u", "--", "unshare", "-U", "true", check=False)
    assert p.returncode != 0
    status = corral("exec", "u", "--", "cat", "/proc/self/status")
    assert "NoNewPrivs:\t1" in status and "CapAmb:\t0000000000000000" in status


def test_symlinked_mount_targets_are_refused(corral: Corral, state_root: Path,
                                             tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("host file\n")
    for target in ("run", "dev", "proc"):
        tree = tmp_path / f"hostile-{target}"
        shutil.copytree(state_root / "templates" / "tiny" / "rootfs", tree, symlinks=True)
        if (tree / target).is_dir():
            shutil.rmtree(tree / target)
        (tree / target).symlink_to(victim)
        p = corral.run("run", "--rm", "--net", "none", "--rootfs", str(tree), "--", "/bin/true",
                       check=False)
        assert p.returncode != 0 and "symlink" in p.stderr, (target, p.stderr)
        assert sorted(os.listdir(victim)) == ["keep"], target
        assert (victim / "keep").read_text() == "host file\n"
    # the same planted by a container in its own layer: refused at its next start
    corral("create", "h", "--template", "tiny", "--net", "none", "--start")
    # (its root may unmount its own /run: that mount is owned by its user namespace)
    corral("exec", "h", "--", "sh", "-c", f"umount /run && rm -rf /run && ln -s {victim} /run")
    corral("stop", "h", "--timeout", "5")
    p = corral.run("start", "h", check=False)
    assert p.returncode != 0 and "symlink" in p.stderr
    assert sorted(os.listdir(victim)) == ["keep"]
    with open("/proc/self/mountinfo") as f:
        assert str(victim) not in f.read()


PROBE = ("cut -d' ' -f5-6,9- /proc/1/mountinfo; grep -E '^(Cap|Sig|Seccomp|NoNewPrivs)' "
         "/proc/1/status; ls -la /dev /run /tmp | cut -c1-10,30-; ls /proc/1/fd; "
         "cat /etc/hostname /etc/hosts /etc/resolv.conf 2>&1; hostname; id; ulimit -n")


def _same(text: str, *names: str) -> str:
    """A probe's output with what differs between two containers by design masked."""
    import re

    for n in names:
        text = text.replace(n, "NAME")
    return re.sub(r"\b(10|fd[0-9a-f]{2})[.:][0-9a-f.:]+", "ADDR", text)


@pytest.mark.parametrize("how", ["run", "run-net", "start", "privileged"])
def test_the_program_init_and_the_python_init_build_the_same_container(
        corral: Corral, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """runtime/initprog writes down the Python init's steps; the containers they make
    must not differ in anything a tenant can see: mounts, credentials, signals,
    seccomp, /dev, files, host names, descriptors."""
    seen = []
    for init in ("program", "python"):
        monkeypatch.setenv("CORRAL_INIT", init)
        name = f"same-{init}"
        if how.startswith("run"):
            net = ["--net", "none"] if how == "run" else []
            out = corral("run", "--rm", *net, "--name", name, "--template", "tiny", "--",
                         "/bin/sh", "-c", PROBE)
        else:
            extra = ["--privileged"] if how == "privileged" else []
            corral("create", name, "--template", "tiny", "--net", "none", *extra, "--start")
            corral.wait_for(name, "pidof syslogd && pidof crond")
            out = corral("exec", name, "--", "/bin/sh", "-c", PROBE)
            corral("destroy", "--force", name)
        seen.append(_same(out, name))
    assert seen[0] == seen[1]
    assert "proc" in seen[0] and "CapBnd" in seen[0] and "NAME" in seen[0], seen[0]


@pytest.mark.parametrize("init", ["program", "python"])
def test_a_restart_rewrites_only_guest_files_that_changed(
        corral: Corral, state_root: Path, monkeypatch: pytest.MonkeyPatch, init: str) -> None:
    monkeypatch.setenv("CORRAL_INIT", init)
    corral("create", "rw", "--template", "tiny", "--net", "none", "--start")
    hostname = state_root / "containers" / "rw" / "upper" / "etc" / "hostname"
    first = hostname.stat().st_ino
    corral("restart", "rw", "--timeout", "5")
    assert hostname.stat().st_ino == first  # as it was: not written again
    corral("exec", "rw", "--", "sh", "-c", "echo changed > /etc/hostname")
    corral("restart", "rw", "--timeout", "5")
    assert corral("exec", "rw", "--", "cat", "/etc/hostname") == "rw\n"
    corral("destroy", "--force", "rw")
