"""The copy-on-write store: snapshots, clones, template versions and rebase, backups."""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

from conftest import Corral
from treeprint import fingerprint

# Files of every kind a restore must bring back exactly.
POPULATE = """
set -e
mkdir -p /srv/data/sub /srv/gone
echo alpha > /srv/data/a
printf 'bin\\000ary' > /srv/data/b
chmod 4750 /srv/data/b
chown 7:8 /srv/data/a
ln /srv/data/a /srv/data/a-hardlink
ln -s ../data/a /srv/data/sub/link
dd if=/dev/urandom of=/srv/data/big bs=64k count=16 2>/dev/null
echo x > /srv/gone/file
rm /etc/shells
mkfifo /srv/data/fifo
"""
CHANGE = """
set -e
echo beta > /srv/data/a
chmod 600 /srv/data/b
rm -r /srv/gone
rm /srv/data/sub/link
echo new > /srv/new
echo back > /etc/shells
"""


def _xattr(root: Path, name: str, rel: str, value: bytes) -> None:
    """Set a user xattr on a container file through its upper layer (busybox has no setfattr)."""
    path = root / "containers" / name / "upper" / rel
    os.setxattr(path, "user.corral-test", value)


def _config(root: Path, name: str) -> dict:  # type: ignore[type-arg]
    return tomllib.loads((root / "containers" / name / "config.toml").read_text())


def test_snapshot_restore_brings_back_exactly(corral: Corral, state_root: Path) -> None:
    corral("create", "s", "--template", "tiny", "--start")
    corral("exec", "s", "--", "sh", "-c", POPULATE)
    _xattr(state_root, "s", "srv/data/a", b"kept")
    before = fingerprint(state_root, "s")
    assert before["/srv/data/a"][-1] == {"user.corral-test": b"kept".hex()}

    snap = corral.run("snapshot", "create", "s", "one").stdout
    assert "live" in snap
    corral("exec", "s", "--", "sh", "-c", CHANGE)
    assert fingerprint(state_root, "s") != before
    # restoring a running container needs --force: it is stopped and started again
    refused = corral.run("snapshot", "restore", "s", "one", check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr
    corral("snapshot", "restore", "--force", "s", "one")
    assert corral.info("s")["state"] == "running"
    after = fingerprint(state_root, "s")
    assert after == before
    assert corral("exec", "s", "--", "cat", "/srv/data/a") == "alpha\n"
    assert corral.run("exec", "s", "--", "test", "-e", "/srv/new", check=False).returncode == 1

    # a stopped container's snapshot, then changes, then restore: same again
    corral("stop", "s", "--timeout", "5")
    corral("snapshot", "create", "s", "two")
    corral("start", "s")
    corral("exec", "s", "--", "sh", "-c", CHANGE)
    corral("stop", "s", "--timeout", "5")
    corral("snapshot", "restore", "s", "two")
    assert fingerprint(state_root, "s") == before
    snaps = corral.json("snapshot", "list", "s")
    assert [s["name"] for s in snaps] == ["one", "two"]  # type: ignore[union-attr]
    corral("snapshot", "delete", "s", "one")
    assert [s["name"] for s in corral.json("snapshot", "list", "s")] == ["two"]  # type: ignore[union-attr]
    missing = corral.run("snapshot", "restore", "s", "one", check=False)
    assert missing.returncode != 0 and "no snapshot 'one'" in missing.stderr
    bad = corral.run("snapshot", "create", "s", "../x", check=False)
    assert bad.returncode != 0 and "invalid snapshot name" in bad.stderr
    corral("destroy", "s")
    assert os.listdir(state_root / "layers") == []  # no layer outlives its users


def _fill(corral: Corral, name: str, mbytes: int) -> None:
    corral("exec", name, "--", "sh", "-c",
           f"mkdir -p /srv; dd if=/dev/zero of=/srv/blob bs=1M count={mbytes} 2>/dev/null; sync")


def test_snapshot_time_does_not_grow_with_data(corral: Corral) -> None:
    times = {}
    for mb in (1, 200):
        name = f"d{mb}"
        corral("create", name, "--template", "tiny", "--start")
        _fill(corral, name, mb)
        corral("stop", name, "--timeout", "5")
        started = time.monotonic()
        corral("snapshot", "create", name, "s")
        corral("snapshot", "restore", name, "s")
        times[mb] = time.monotonic() - started
    # two CLI calls each: dominated by start-up; 200x the data must not show
    assert times[200] < times[1] * 3 + 0.2, times


def test_clone_shares_layers_and_gets_its_own_identity(corral: Corral, state_root: Path) -> None:
    corral("create", "src", "--template", "tiny", "--start")
    corral("exec", "src", "--", "sh", "-c",
           "echo 0123456789abcdef0123456789abcdef > /etc/machine-id; mkdir -p /srv; "
           "echo mine > /srv/f")
    corral("stop", "src", "--timeout", "5")
    corral("clone", "src", "dst")
    corral("start", "src", "dst")
    assert corral("exec", "dst", "--", "cat", "/srv/f") == "mine\n"
    assert corral("exec", "dst", "--", "hostname").strip() == "dst"
    src_id = corral("exec", "src", "--", "cat", "/etc/machine-id")
    dst_id = corral("exec", "dst", "--", "cat", "/etc/machine-id")
    assert src_id != dst_id and len(dst_id.strip()) == 32
    a, b = corral.info("src"), corral.info("dst")
    assert a["ip"] != b["ip"]
    mac = "cat /sys/class/net/eth0/address"
    assert corral("exec", "src", "--", "sh", "-c", mac) != corral("exec", "dst", "--", "sh", "-c", mac)
    # the layers are shared, not copied
    assert set(_config(state_root, "src")["layers"]) == set(_config(state_root, "dst")["layers"])
    # the clone has its own id range; the shared layer (written with the source's host
    # ids) is seen through an idmapped mount with the same owners inside
    assert corral.info("src")["idmap"] != corral.info("dst")["idmap"]
    assert corral("exec", "dst", "--", "stat", "-c", "%u:%g", "/srv/f").strip() == "0:0"
    # changes stay private to each
    corral("exec", "dst", "--", "sh", "-c", "echo theirs > /srv/f")
    assert corral("exec", "src", "--", "cat", "/srv/f") == "mine\n"
    # a clone outlives its source; the last user frees the layers
    corral("destroy", "--force", "src")
    assert corral("exec", "dst", "--", "cat", "/srv/f") == "theirs\n"
    # a clone of a running container, and of a snapshot
    corral("snapshot", "create", "dst", "base")
    corral("exec", "dst", "--", "sh", "-c", "echo later > /srv/f")
    corral("clone", "dst", "live")
    corral("clone", "dst", "old", "--snapshot", "base")
    corral("start", "live", "old")
    assert corral("exec", "live", "--", "cat", "/srv/f") == "later\n"
    assert corral("exec", "old", "--", "cat", "/srv/f") == "theirs\n"
    corral("destroy", "--force", "dst", "live", "old")
    assert os.listdir(state_root / "layers") == []


def test_template_update_and_rebase(corral: Corral) -> None:
    corral("create", "old", "--template", "tiny", "--start")
    corral("exec", "old", "--", "sh", "-c", "mkdir /srv; echo own > /srv/mine; rm /etc/profile")
    out = corral("template", "update", "tiny", "--command",
                 "echo 'updated' > /etc/motd; rm /etc/shells")
    assert "version 2" in out
    info = corral.json("template", "info", "tiny")
    assert [v["version"] for v in info["versions"]] == [1, 2]  # type: ignore[index]
    assert info["versions"][0]["used_by"] == ["old"]  # type: ignore[index]
    # a container keeps its version until rebased
    assert corral.run("exec", "old", "--", "test", "-e", "/etc/motd", check=False).returncode == 1
    corral("create", "new", "--template", "tiny", "--start")
    assert corral("exec", "new", "--", "cat", "/etc/motd") == "updated\n"
    refused = corral.run("rebase", "old", check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr
    corral("rebase", "--force", "old")
    # the update is there, and the container's own changes (new file, deletion) too
    assert corral("exec", "old", "--", "cat", "/etc/motd") == "updated\n"
    assert corral.run("exec", "old", "--", "test", "-e", "/etc/shells", check=False).returncode == 1
    assert corral("exec", "old", "--", "cat", "/srv/mine") == "own\n"
    assert corral.run("exec", "old", "--", "test", "-e", "/etc/profile",
                      check=False).returncode == 1
    # back to version 1 works too, and an unknown version is refused
    corral("rebase", "--force", "old", "--version", "1")
    assert corral.run("exec", "old", "--", "test", "-e", "/etc/shells", check=False).returncode == 0
    assert corral.run("rebase", "old", "--version", "9", check=False).returncode != 0
    # a template in use cannot be removed; a failing update records nothing
    assert "used by" in corral.run("template", "remove", "tiny", check=False).stderr
    failed = corral.run("template", "update", "tiny", "--command", "exit 3", check=False)
    assert failed.returncode != 0 and "exit 3" in failed.stderr
    assert len(corral.json("template", "info", "tiny")["versions"]) == 2  # type: ignore[index]


def test_backup_round_trip_and_damage_detected(corral: Corral, state_root: Path,
                                               tmp_path: Path) -> None:
    corral("create", "b", "--template", "tiny", "--start")
    corral("exec", "b", "--", "sh", "-c", POPULATE)
    corral("snapshot", "create", "b", "first")
    corral("exec", "b", "--", "sh", "-c", CHANGE)
    _xattr(state_root, "b", "srv/new", b"xattr")
    current = fingerprint(state_root, "b")
    archive = tmp_path / "b.backup"
    out = corral("backup", "b", "-o", str(archive))  # live: from a snapshot of the moment
    assert "1 snapshots" in out
    assert [s["name"] for s in corral.json("snapshot", "list", "b")] == ["first"]  # type: ignore[union-attr]

    corral("restore", str(archive), "--name", "copy")
    assert fingerprint(state_root, "copy") == current
    corral("snapshot", "restore", "copy", "first")
    corral("snapshot", "restore", "--force", "b", "first")
    assert fingerprint(state_root, "copy") == fingerprint(state_root, "b")
    corral("start", "copy")
    assert corral("exec", "copy", "--", "cat", "/srv/data/a") == "alpha\n"
    # another id range: the restored files keep their owners inside and stay writable
    assert corral.info("copy")["idmap"] != corral.info("b")["idmap"]
    assert corral("exec", "copy", "--", "stat", "-c", "%u:%g", "/srv/data/a").strip() == "7:8"
    corral("exec", "copy", "--", "sh", "-c", "echo more >> /srv/data/a && touch /srv/new2")
    assert corral.info("copy")["ip"] != corral.info("b")["ip"]

    layers_before = sorted(os.listdir(state_root / "layers"))
    data = archive.read_bytes()
    corrupt = tmp_path / "corrupt.backup"
    middle = len(data) // 2
    corrupt.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    truncated = tmp_path / "truncated.backup"
    truncated.write_bytes(data[: len(data) - 3000])
    for bad in (corrupt, truncated):
        p = corral.run("restore", str(bad), "--name", "broken", check=False)
        assert p.returncode != 0, bad
        assert "corrupt" in p.stderr or "truncated" in p.stderr or "damaged" in p.stderr, p.stderr
        assert "Traceback" not in p.stderr
        assert not (state_root / "containers" / "broken").exists()
        assert sorted(os.listdir(state_root / "layers")) == layers_before
        assert not [n for n in os.listdir(state_root) if n.startswith(".restore")]
    taken = corral.run("restore", str(archive), check=False)  # its own name is in use
    assert taken.returncode != 0 and "already exists" in taken.stderr


def test_disk_quota_containers_snapshot_restore_and_clone(corral: Corral,
                                                         state_root: Path) -> None:
    corral("create", "q", "--template", "tiny", "--disk", "64M", "--net", "none", "--start")
    corral("exec", "q", "--", "sh", "-c", "mkdir -p /srv && echo first > /srv/f")
    out = corral("snapshot", "create", "q", "s1")  # live: frozen and synced for the copy
    assert "live" in out
    corral("exec", "q", "--", "sh", "-c", "echo second > /srv/f; echo new > /srv/g")
    corral("snapshot", "restore", "--force", "q", "s1")
    assert corral("exec", "q", "--", "cat", "/srv/f") == "first\n"
    assert corral.run("exec", "q", "--", "test", "-e", "/srv/g", check=False).returncode == 1
    # the quota still holds after the restore
    p = corral.run("exec", "q", "--", "sh", "-c",
                   "dd if=/dev/zero of=/srv/big bs=1M count=100 2>&1", check=False)
    assert p.returncode != 0 and "No space left" in p.stdout
    corral("exec", "q", "--", "rm", "-f", "/srv/big")
    corral("clone", "q", "q2")
    corral("clone", "q", "q3", "--snapshot", "s1")
    corral("start", "q2", "q3")
    assert corral("exec", "q2", "--", "cat", "/srv/f") == "first\n"
    assert corral("exec", "q3", "--", "cat", "/srv/f") == "first\n"
    corral("exec", "q2", "--", "sh", "-c", "echo mine > /srv/f")
    assert corral("exec", "q", "--", "cat", "/srv/f") == "first\n"
    # a backup carries the image (sparse) and the snapshots' images; live and restored
    archive = state_root / "q.backup"
    corral("backup", "q", "-o", str(archive))
    assert archive.stat().st_size < 16 << 20  # 64 MB images, mostly holes
    corral("restore", str(archive), "--name", "q4")
    corral("start", "q4")
    assert corral("exec", "q4", "--", "cat", "/srv/f") == "first\n"
    corral("snapshot", "restore", "--force", "q4", "s1")
    assert corral("exec", "q4", "--", "cat", "/srv/f") == "first\n"
    p = corral.run("exec", "q4", "--", "sh", "-c",
                   "dd if=/dev/zero of=/srv/big bs=1M count=100 2>&1", check=False)
    assert p.returncode != 0 and "No space left" in p.stdout  # its quota came along
    corral("snapshot", "delete", "q", "s1")
    assert not list((state_root / "containers" / "q" / "snapshots").glob("*.img"))


def test_btrfs_state_root_snapshots_running_containers_in_constant_time(
        state_root: Path, template_cache: Path) -> None:
    """On btrfs, containers are subvolumes and a live snapshot is a btrfs snapshot."""
    import shutil
    import subprocess

    from conftest import _remove_cgroup_top

    image, mnt = state_root / "pool.img", state_root / "pool"
    with open(image, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    root = mnt / "root"
    c = Corral(root)
    try:
        (root / "templates").mkdir(parents=True)
        shutil.copytree(template_cache, root / "templates" / "tiny", symlinks=True)
        c("create", "v", "--template", "tiny", "--start")
        times = []
        for mb in (1, 300):
            _fill(c, "v", mb)
            started = time.monotonic()
            out = c("snapshot", "create", "v", f"at{mb}")
            times.append(time.monotonic() - started)
            assert "live" in out
        assert times[1] < times[0] * 3 + 0.2, times  # a copy of 300 MB would take seconds
        c("exec", "v", "--", "rm", "/srv/blob")
        c("clone", "v", "w")
        c("snapshot", "restore", "--force", "v", "at300")
        assert c("exec", "v", "--", "stat", "-c", "%s", "/srv/blob").strip() == str(300 << 20)
        c("start", "w")
        assert c.run("exec", "w", "--", "test", "-e", "/srv/blob", check=False).returncode == 1
        subvolumes = subprocess.run(["btrfs", "subvolume", "list", str(mnt)], check=True,
                                    capture_output=True, text=True).stdout
        assert "root/containers/v" in subvolumes and "root/layers/" in subvolumes
        c("destroy", "--force", "v", "w")
        assert os.listdir(root / "layers") == []
        subvolumes = subprocess.run(["btrfs", "subvolume", "list", str(mnt)], check=True,
                                    capture_output=True, text=True).stdout
        assert subvolumes.strip() == ""
    finally:
        c.run("destroy", "--force", "v", "w", check=False)
        c.run("network", "delete", "default", check=False)
        c.run("doctor", "--fix", check=False)  # the idle root's top cgroups and records
        _remove_cgroup_top(root)
        subprocess.run(["umount", str(mnt)], check=True)
