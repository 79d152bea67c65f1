"""Joining a container's cgroups at fork: v1 through tasks, v2 by birth or by cgroup.procs."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from corral.linux import clone
from corral.runtime.cgjoin import CgroupJoin


def _tree(tmp_path: Path) -> list[str]:
    v1 = tmp_path / "memory" / "corral-x" / "c" / "payload"
    v2 = tmp_path / "unified" / "corral-x" / "c" / "payload"
    for d in (v1, v2):
        d.mkdir(parents=True)
        (d / "cgroup.procs").write_text("")
    (v1 / "tasks").write_text("")  # only v1 directories have a tasks file
    return [str(v1 / "cgroup.procs"), str(v2 / "cgroup.procs")]


def _fork_and_join(join: CgroupJoin) -> None:
    pid = join.fork()
    if pid == 0:
        try:
            join.join()
        finally:
            os._exit(0)
    join.close()
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_v1_by_tasks_v2_by_cgroup_procs_when_clone3_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _tree(tmp_path)

    def refused(_fd: int) -> int:  # e.g. a seccomp profile answering clone3 with ENOSYS
        raise OSError(errno.ENOSYS, "clone3")

    monkeypatch.setattr(clone, "fork_into_cgroup", refused)
    join = CgroupJoin(files)
    assert len(join.tasks) == 1 and join.v2_dir >= 0
    _fork_and_join(join)
    v1, v2 = (Path(f).parent for f in files)
    assert (v1 / "tasks").read_text() == "0"  # the thread moved itself: no threadgroup lock
    assert (v1 / "cgroup.procs").read_text() == ""
    assert (v2 / "cgroup.procs").read_text() == "0"  # not born there: moved the usual way


def test_other_clone3_errors_are_raised(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(_fd: int) -> int:
        raise OSError(errno.EACCES, "clone3")

    monkeypatch.setattr(clone, "fork_into_cgroup", denied)
    join = CgroupJoin(_tree(tmp_path))
    with pytest.raises(OSError) as e:
        join.fork()
    assert e.value.errno == errno.EACCES
    join.close()
    assert join.tasks == [] and join.v2_dir == -1
