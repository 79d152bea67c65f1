"""The device allow-list, enforced for real: v1's devices controller and v2's eBPF program.

The eBPF program is checked on this host's cgroup2 tree (the unified half of
a hybrid host, or the whole tree of a v2 host) in a cgroup of the test's own,
as host root: only the program stands between it and the devices.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import Corral

from corral.linux import devices


def _unified() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] == "cgroup2":
                return Path(pre.split()[4])
    return None


def test_v2_device_program_allows_only_the_list(tmp_path: Path) -> None:
    unified = _unified()
    if unified is None:
        pytest.skip("no cgroup2 tree on this host")
    cg = unified / f"corral-devtest-{os.getpid()}"
    cg.mkdir()
    try:
        devices.attach_v2(str(cg))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                (cg / "cgroup.procs").write_text("0")
                results = []
                for path in ("/dev/null", "/dev/zero", "/dev/urandom"):
                    try:
                        os.close(os.open(path, os.O_RDWR))
                        results.append("ok")
                    except OSError as exc:
                        results.append(f"{path}:{exc.errno}")
                node = tmp_path / "sda"
                try:
                    os.mknod(node, 0o600 | 0o060000, os.makedev(8, 0))  # block 8:0
                    results.append("mknod-block-allowed")
                    node.unlink()
                except OSError as exc:
                    results.append(f"mknod:{exc.errno}")
                try:
                    os.mknod(tmp_path / "null", 0o600 | 0o020000, os.makedev(1, 3))
                    results.append("mknod-null-ok")
                except OSError as exc:
                    results.append(f"mknod-null:{exc.errno}")
                for disk in ("/dev/loop0", "/dev/vda", "/dev/sda", "/dev/mem"):
                    if os.path.exists(disk):
                        try:
                            os.close(os.open(disk, os.O_RDONLY))
                            results.append(f"{disk}-opened")
                        except OSError as exc:
                            results.append(f"{disk}:{exc.errno}")
                os.write(w, " ".join(results).encode())
            finally:
                os._exit(0)
        os.close(w)
        out = os.read(r, 4096).decode().split()
        os.waitpid(pid, 0)
        os.close(r)
        assert out[:3] == ["ok", "ok", "ok"], out
        assert f"mknod:{errno.EPERM}" in out and "mknod-null-ok" in out, out
        opened = [x for x in out if x.endswith("-opened")]
        assert not opened, out
    finally:
        cg.rmdir()


def test_v1_device_cgroup_inside_containers(corral: Corral) -> None:
    if not os.path.isdir("/sys/fs/cgroup/devices"):
        pytest.skip("no v1 devices controller on this host")
    listed = corral("run", "--rm", "--net", "none", "--template", "tiny", "--", "cat",
                    "/sys/fs/cgroup/devices/devices.list").split("\n")
    assert [ln for ln in listed if ln] == devices.v1_rules()
    # even with mknod given back, a block device is refused by the device cgroup
    p = corral.run("run", "--rm", "--privileged", "--cap-add", "mknod", "--net", "none",
                   "--template", "tiny", "--", "sh", "-c",
                   "mknod /tmp/sda b 8 0 || echo refused; mknod /tmp/n c 1 3 && echo null-ok",
                   check=False)
    assert "refused" in p.stdout and "null-ok" in p.stdout, p.stdout + p.stderr
