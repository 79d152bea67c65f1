"""runtime/initprog: what the caller decides before the init's program runs."""

from __future__ import annotations

import os
from pathlib import Path

from corral.runtime import initprog


def test_guest_files_held_as_they_are_are_not_written_again(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hostname").write_bytes(b"c1\n")
    os.chmod(tmp_path / "etc" / "hostname", 0o644)
    files = {"/etc/hostname": (b"c1\n", 0o644), "/etc/hosts": (b"127.0.0.1 c1\n", 0o644)}
    assert initprog._changed(files, str(tmp_path)) == {"/etc/hosts": files["/etc/hosts"]}
    os.chmod(tmp_path / "etc" / "hostname", 0o600)  # another mode: written again
    assert initprog._changed(files, str(tmp_path)) == files
    assert initprog._changed(files, None) == files


def test_a_tree_the_container_controls_is_read_without_following_its_links(
        tmp_path: Path) -> None:
    """A symlinked /etc (or file) in the container's layer may point anywhere on the
    host: the check, made as host root, must not follow it."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "hostname").write_bytes(b"c1\n")
    os.chmod(outside / "hostname", 0o644)
    tree = tmp_path / "upper"
    tree.mkdir()
    (tree / "etc").symlink_to(outside)
    files = {"/etc/hostname": (b"c1\n", 0o644)}
    assert initprog._changed(files, str(tree)) == files
    (tree / "etc").unlink()
    (tree / "etc").mkdir()
    (tree / "etc" / "hostname").symlink_to(outside / "hostname")
    assert initprog._changed(files, str(tree)) == files
    (tree / "etc" / "hostname").unlink()
    os.mkfifo(tree / "etc" / "hostname", 0o644)  # never opened for reading (would block)
    assert initprog._changed(files, str(tree)) == files


class _Join:
    tasks = (7, 8)
    v2_dir = 9
    v2_procs = 10


class _Staged:
    trees = (("l0", 11), ("c", 12))
    bind = False


def _spec(**kw: object) -> object:
    from corral.runtime.spec import InitSpec, RootfsSpec

    base = {"name": "c1", "hostname": "c1", "argv": ("sh", "-c", "true"),
            "rootfs": RootfsSpec(mountpoint="/m", lower=("/t",), upper="/nonexistent/u",
                                 work="/nonexistent/w", volatile=True),
            "cgroup_procs": ("/sys/fs/cgroup/unified/g/payload/cgroup.procs",),
            "userns": (1000000000, 1000000000, 65536), "seccomp": b"\0" * 8,
            "files": {"/etc/hostname": (b"c1\n", 0o644)}, "late_files": ("/etc/hosts",),
            "netns_wired": True}
    base.update(kw)
    return InitSpec(**base)  # type: ignore[arg-type]


def test_the_program_reads_as_the_python_init_does() -> None:
    spec = _spec()
    init = initprog.Init(spec, 20, 21, _Join, (22, 23))  # type: ignore[arg-type]
    first = list(init.program.what)
    assert first == ["setup: close", "setup: close", "joining its cgroups",
                     "joining its cgroups", "namespaces: unshare", "waiting for its id map"]
    parts = init.finish(spec, None, -1, _Staged, sysinfo_alive=False)  # type: ignore[arg-type]
    written = [len(init.program.what) for _ in parts]  # the program's length at each part
    what = init.program.what
    # each part but the last ends in a wait for the host's byte
    assert [what[n - 1] for n in written[:-1]] == ["waiting for the host"] * 3
    assert written[-1] == len(what)
    order = [what.index(w) for w in (
        "namespaces: setresuid", "namespaces: mount(/)", "hostname",
        "rootfs: mount(/run/corral/stage/root)", "rootfs: mount(/run/corral/stage/root/proc)",
        "rootfs: pivot_root", "writing guest files: rename(/etc/hostname)", "seccomp",
        "reporting ready", "closing host files", "capabilities", "signals")]
    assert order == sorted(order)
    assert what[-2:] == ["exec sh: not found in the container's PATH", "exec"]
    assert "loopback: up" not in what  # wired by the host (netns_wired)
    assert "setup: setsid" in what  # not in the foreground
    # the late file's ops are no-ops until the host fills them in
    assert what.count("(a file not given)") == 5  # mkdir /etc, open, write, close, rename


def test_a_late_file_too_large_or_unknown_is_an_error_not_a_traceback() -> None:
    from corral.errors import KernelError

    spec = _spec()
    init = initprog.Init(spec, 20, 21, _Join, (22, 23))  # type: ignore[arg-type]
    for _ in init.finish(spec, None, -1, _Staged, sysinfo_alive=False):  # type: ignore[arg-type]
        pass
    init.late({"/etc/hosts": (b"127.0.0.1 localhost\n", 0o644)})
    assert "writing network files: rename(/etc/hosts)" in init.program.what
    for files in ({"/etc/other": (b"x", 0o644)}, {"/etc/hosts": (b"x" * 20000, 0o644)}):
        try:
            init.late(files)
        except KernelError as exc:
            assert "no room" in exc.message
        else:
            raise AssertionError("accepted")


def test_kernel_versions_are_read_safely(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    class U:
        def __init__(self, release: str) -> None:
            self.release = release

    for release, old_enough in (("6.18.44-fc-v669", True), ("5.9.0", True), ("5.10-rc1", True),
                                ("5.8.18", False), ("4.19.0-26-amd64", False), ("7", False)):
        monkeypatch.setattr(initprog.os, "uname", lambda r=release: U(r))
        assert initprog._kernel_at_least(5, 9) is old_enough, release


def test_fd_ranges_leave_out_what_is_kept() -> None:
    from corral.runtime.spec import fd_ranges_except

    assert fd_ranges_except((20,), 0xFFFFFFFF) == [(3, 19), (21, 0xFFFFFFFF)]
    assert fd_ranges_except((3,), 9) == [(4, 9)]
    assert fd_ranges_except((5, 6, -1), 9) == [(3, 4), (7, 9)]
    assert fd_ranges_except((), 9) == [(3, 9)]
