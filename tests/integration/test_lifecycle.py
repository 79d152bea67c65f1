"""A container from the tiny template is its own server: the foundation's stories."""

from __future__ import annotations

import os
import time

import pytest
from conftest import CGROUP_ROOT, Corral, _cgroup_top


def test_create_start_shows_its_own_server(corral: Corral) -> None:
    corral("create", "web1", "--template", "tiny", "--hostname", "web1.example")
    assert corral.info("web1")["state"] == "stopped"
    corral("start", "web1")
    info = corral.info("web1")
    assert info["state"] == "running"
    assert info["template"] == "tiny"
    assert isinstance(info["pid"], int) and os.path.exists(f"/proc/{info['pid']}")

    assert corral("exec", "web1", "--", "hostname").strip() == "web1.example"
    # PID 1 is busybox init, and the host's processes are invisible
    assert corral("exec", "web1", "--", "cat", "/proc/1/comm").strip() == "init"
    corral.wait_for("web1", "pidof syslogd && pidof crond")
    pids = corral("exec", "web1", "--", "sh", "-c", "ls -d /proc/[0-9]*").split()
    assert len(pids) < 10, pids
    # its own mount namespace with an overlay root, and its own network namespace
    root_line = [ln for ln in corral("exec", "web1", "--", "cat", "/proc/mounts").splitlines()
                 if ln.split()[1] == "/"]
    assert root_line and root_line[0].split()[2] == "overlay"
    assert os.readlink(f"/proc/{info['pid']}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{info['pid']}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert corral("exec", "web1", "--", "sh", "-c", "ls /sys/class/net").split() == ["eth0", "lo"]
    # it is in its cgroup, and the cgroup namespace shows that cgroup as "/"
    assert corral("exec", "web1", "--", "cat", "/proc/self/cgroup").count(":/\n") >= 1


def test_rootfs_is_private_copy_on_write(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    corral("create", "a", "--template", "tiny", "--start")
    corral("create", "b", "--template", "tiny", "--start")
    corral("exec", "a", "--", "sh", "-c", "echo mine > /etc/motd; rm /bin/vi")
    assert corral("exec", "a", "--", "cat", "/etc/motd") == "mine\n"
    assert corral.run("exec", "b", "--", "cat", "/etc/motd", check=False).returncode != 0
    assert corral.run("exec", "b", "--", "test", "-e", "/bin/vi", check=False).returncode == 0
    template = state_root / "templates" / "tiny" / "rootfs"
    assert not (template / "etc" / "motd").exists()
    assert (template / "bin" / "vi").is_symlink()
    # the change survives a restart
    corral("restart", "a", "--timeout", "5")
    assert corral("exec", "a", "--", "cat", "/etc/motd") == "mine\n"


def test_no_host_mounts_and_no_resident_process(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    corral("create", "c1", "--template", "tiny", "--start")
    with open("/proc/self/mountinfo") as f:
        assert str(state_root) not in f.read()
    pid = corral.info("c1")["pid"]
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    # the init's parent is not a Corral process: nothing of ours stays per container
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        assert b"corral" not in f.read()


def test_stop_asks_init_then_kills(corral: Corral) -> None:
    corral("create", "s1", "--template", "tiny", "--start")
    corral.wait_for("s1", "pidof syslogd")
    t0 = time.monotonic()
    corral("stop", "s1", "--timeout", "10")
    assert time.monotonic() - t0 < 8, "busybox init should power off cleanly, not time out"
    assert corral.info("s1")["state"] == "stopped"
    assert corral.info("s1")["pid"] is None
    # a process ignoring everything is killed through the cgroup after the timeout
    corral("start", "s1")
    corral("exec", "s1", "--", "sh", "-c", "trap '' TERM USR2 HUP; nohup sleep 1000 >/dev/null 2>&1 &")
    t0 = time.monotonic()
    corral("stop", "s1", "--timeout", "0.5")
    assert time.monotonic() - t0 < 5
    assert corral.info("s1")["state"] == "stopped"


def test_exec_passes_stdio_exit_code_user_env_cwd(corral: Corral) -> None:
    corral("create", "e1", "--template", "tiny", "--start")
    p = corral.run("exec", "e1", "--", "sh", "-c", "cat; echo err >&2; exit 7", check=False,
                   input="from stdin\n")
    assert (p.returncode, p.stdout, p.stderr) == (7, "from stdin\n", "err\n")
    assert corral("exec", "e1", "--user", "nobody", "--", "id", "-u").strip() == "65534"
    assert corral("exec", "e1", "--env", "FOO=bar", "--", "sh", "-c", "echo $FOO") == "bar\n"
    assert corral("exec", "e1", "--cwd", "/etc", "--", "pwd") == "/etc\n"
    # no host environment leaks in
    env = corral("exec", "e1", "--", "env")
    assert "CORRAL_ROOT" not in env and "PYTEST" not in env
    p = corral.run("exec", "e1", "--", "no-such-command", check=False)
    assert p.returncode == 127 and "not found" in p.stderr and "Traceback" not in p.stderr


def test_exec_sees_only_safe_fds_and_caps(corral: Corral) -> None:
    corral("create", "e2", "--template", "tiny", "--start")
    corral("create", "e3", "--template", "tiny", "--start", "--privileged")
    fds = corral("exec", "e2", "--", "ls", "/proc/self/fd").split()
    assert sorted(fds) == ["0", "1", "2", "3"]  # 3 is ls's own directory handle
    status = corral("exec", "e2", "--", "cat", "/proc/self/status")
    bnd = int([ln for ln in status.splitlines() if ln.startswith("CapBnd")][0].split()[1], 16)
    # sys_admin only within the container's own user namespace (for systemd's mounts)
    assert corral("exec", "e2", "--", "cat", "/proc/self/uid_map").split()[:2] == [
        "0", str(corral.json("info", "e2")["idmap"].split()[2].split("-")[0])]  # type: ignore[index]
    assert not bnd & (1 << 16), "CAP_SYS_MODULE must not be in the bounding set"
    assert "Seccomp:\t2" in status
    privileged = corral("exec", "e3", "--", "cat", "/proc/self/status")
    pbnd = int([ln for ln in privileged.splitlines()
                if ln.startswith("CapBnd")][0].split()[1], 16)
    assert not pbnd & (1 << 21), "CAP_SYS_ADMIN must not be in a privileged bounding set"
    # nothing more than the privileged profile but sys_admin (and sys_resource, which
    # both profiles keep but a host may withhold from its own root, as this sandbox does)
    assert bnd & ~pbnd & ~(1 << 24) == 1 << 21
    assert "NoNewPrivs:\t1" in status
    assert "CapAmb:\t0000000000000000" in status and "CapInh:\t0000000000000000" in status
    p = corral.run("exec", "e2", "--", "sh", "-c", "echo 1 > /proc/sys/kernel/ostype", check=False)
    assert p.returncode != 0
    p = corral.run("exec", "e2", "--", "cat", "/proc/kcore", check=False)
    assert p.stdout == ""
    assert corral.run("exec", "e2", "--", "touch", "/sys/x", check=False).returncode != 0
    # syslogd adds its /dev/log socket; nothing else may be there
    assert sorted(set(corral("exec", "e2", "--", "ls", "/dev").split()) - {"log"}) == sorted(
        ["console", "core", "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm",
         "stderr", "stdin", "stdout", "tty", "urandom", "zero"])


def test_run_returns_exit_code_and_rm_cleans(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    p = corral.run("run", "--rm", "--template", "tiny", "--", "/bin/sh", "-c",
                   "echo pid=$$; exit 3", check=False)
    assert p.returncode == 3 and p.stdout == "pid=1\n"
    assert corral.json("list") == []
    corral("run", "--template", "tiny", "--name", "keep", "--", "/bin/true")
    assert corral.info("keep")["state"] == "stopped"


def test_only_a_thrown_away_root_skips_the_syncs(corral: Corral) -> None:
    """`run --rm` mounts its overlay volatile (its upper is deleted afterwards, no
    sync of the host's filesystem needed); a container that is kept never is."""
    root_line = ["/bin/sh", "-c", "grep ' / / ' /proc/self/mountinfo"]
    assert "fsync=volatile" in corral("run", "--rm", "--template", "tiny", "--", *root_line)
    assert "volatile" not in corral("run", "--template", "tiny", "--name", "once", "--",
                                    *root_line)
    corral("create", "kept", "--template", "tiny", "--start")
    assert "volatile" not in corral("exec", "kept", "--", *root_line)
    corral("destroy", "--force", "kept")


def test_an_idle_roots_top_cgroups_stay_until_doctor_tidies_them(corral: Corral,
                                                                   state_root) -> None:  # type: ignore[no-untyped-def]
    tops = [h / _cgroup_top(state_root) for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    corral("run", "--rm", "--template", "tiny", "--name", "once", "--", "/bin/true")
    # The last container is gone, its cgroups with it; the root's top stays for the
    # next start (and holds nothing), and doctor does not call it a leftover.
    kept = [t for t in tops if t.is_dir()]
    assert kept, "the root's top cgroups were removed with its last container"
    assert all(not any(p.is_dir() for p in t.iterdir()) for t in kept)
    assert corral("doctor").strip() == "nothing left behind"
    corral("doctor", "--fix")
    assert not [t for t in tops if t.is_dir()]
    corral("run", "--rm", "--template", "tiny", "--", "/bin/true")  # made again


def test_run_rootfs_dir_without_copy(corral: Corral, state_root) -> None:  # type: ignore[no-untyped-def]
    rootfs = state_root / "templates" / "tiny" / "rootfs"
    out = corral("run", "--rm", "--rootfs", str(rootfs), "--name", "direct", "--", "/bin/sh",
                 "-c", "hostname; echo $$; touch /tmp/written-through")
    assert out.split() == ["direct", "1"]
    # the directory itself is the root: writes land in it
    assert (rootfs / "tmp" / "written-through").exists()
    (rootfs / "tmp" / "written-through").unlink()


def test_killed_init_is_seen_as_stopped_and_restartable(corral: Corral) -> None:
    corral("create", "k1", "--template", "tiny", "--start")
    pid = corral.info("k1")["pid"]
    os.kill(pid, 9)
    deadline = time.monotonic() + 5
    while corral.info("k1")["state"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    corral("start", "k1")
    assert corral.info("k1")["state"] == "running"


def test_runtime_state_lives_on_run_and_an_older_record_is_still_read(corral: Corral) -> None:
    """The running container's record is on /run (tmpfs, gone at reboot like its
    processes); one an earlier version left in the container's directory is
    still honoured, and stop clears both."""
    from corral.paths import StateRoot

    paths = StateRoot(str(corral.root))
    corral("create", "r1", "--template", "tiny", "--start")
    new, old = paths.state_file("r1"), paths.legacy_state_file("r1")
    assert new.startswith("/run/corral/state/") and os.path.exists(new)
    assert not os.path.exists(old)
    os.rename(new, old)  # as an earlier version would have left it
    assert corral.info("r1")["state"] == "running"
    corral("stop", "r1", "--timeout", "2")
    assert not os.path.exists(old) and not os.path.exists(new)
    assert os.listdir(paths.runtime) == []  # kept for the next start, like the top cgroups
    corral("start", "r1")
    assert os.path.exists(new) and corral.info("r1")["state"] == "running"
    corral("destroy", "--force", "r1")
    corral("doctor", "--fix")  # an idle root's directory of records goes with its tops
    assert not os.path.exists(paths.runtime)


def test_list_json(corral: Corral) -> None:
    corral("create", "l1", "--template", "tiny", "--start")
    corral("create", "l2", "--template", "tiny")
    items = {i["name"]: i for i in corral.json("list")}  # type: ignore[union-attr]
    assert items["l1"]["state"] == "running" and items["l1"]["pid"]
    assert items["l2"]["state"] == "stopped" and items["l2"]["pid"] is None
    assert items["l1"]["processes"] >= 3
    assert items["l1"]["memory_bytes"] > 0


def test_exec_tty_is_the_containers_own_pty(corral: Corral) -> None:
    corral("create", "t1", "--template", "tiny", "--net", "none", "--start")
    p = corral.run("exec", "t1", "-t", "--", "sh", "-c", "tty; stty size; exit 5", check=False)
    out = p.stdout.replace("\r", "").splitlines()
    assert p.returncode == 5 and out[0] == "/dev/pts/0", p.stdout
    # the terminal is on the container's own devpts, not a host pty
    assert corral("exec", "t1", "--", "ls", "/dev/pts").split() == ["ptmx"]


@pytest.mark.parametrize("init", ["program", "python"])
def test_without_clone3_a_container_starts_through_the_forked_path(
        corral: Corral, state_root, monkeypatch, init: str) -> None:  # type: ignore[no-untyped-def]
    """Kernels or seccomp profiles that refuse clone3 get the same container the
    older way: an intermediate process that unshares, forks the init and exits
    (whether the init would have run its system-call program or Python)."""
    from corral.host import Host
    from corral.linux import clone, sysprog

    tried = []

    def refuse(*args: object, **kw: object) -> int:
        tried.append(args)
        raise OSError(38, "clone3: Function not implemented")

    corral("create", "fb", "--template", "tiny", "--net", "none")
    if init == "python":
        monkeypatch.setenv("CORRAL_INIT", "python")
        monkeypatch.setattr(clone, "clone", refuse)
    else:
        monkeypatch.setattr(sysprog, "start", refuse)
    Host(str(state_root)).start("fb", details=False)  # in this process: clone3 refused
    monkeypatch.undo()
    assert tried, "the direct path was not tried first"
    info = corral.info("fb")
    assert info["state"] == "running" and info["processes"] >= 1
    assert corral("exec", "fb", "--", "sh", "-c", "echo $(hostname) $(cat /proc/1/comm)") \
        .split() == ["fb", "init"]
    assert "0::/\n" in corral("exec", "fb", "--", "cat", "/proc/self/cgroup")
    corral("stop", "fb", "--timeout", "2")
    assert corral.info("fb")["state"] == "stopped"
