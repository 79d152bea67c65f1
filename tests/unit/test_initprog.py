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
