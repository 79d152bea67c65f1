"""linux/sysprog: the executor's bytes are its source's, and programs run as written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from corral.linux import sysprog as sp

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86-64 executor")

SOURCE = Path(__file__).parents[2] / "src" / "corral" / "linux" / "sysprog_x86_64.S"
WRITE, READ, CLOSE, OPENAT, MKDIR, EXECVE, GETPID = 1, 0, 3, 257, 83, 59, 39


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("objcopy")),
                    reason="GNU as and objcopy (binutils) not installed")
def test_code_is_the_assembled_source(tmp_path: Path) -> None:
    subprocess.run(["as", "--64", "-o", str(tmp_path / "x.o"), str(SOURCE)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(tmp_path / "x.o"),
                    str(tmp_path / "x.bin")], check=True)
    assert (tmp_path / "x.bin").read_bytes() == sp._CODE


def _run(program: sp.Program) -> tuple[list, int]:
    """Start ``program``; the records it reports and its exit status."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    try:
        child = sp.start(program, report_w)
    finally:
        os.close(report_w)
    records = []
    try:
        while (record := sp.read_record(report_r)) is not None:
            records.append(record)
    finally:
        os.close(report_r)
        _, status = os.waitpid(child.pid, 0)
    return records, os.waitstatus_to_exitcode(status)


def test_calls_run_in_order_with_stored_results(tmp_path: Path) -> None:
    p = sp.Program()
    d = tmp_path / "d"
    fd = p.slot()
    p.call(MKDIR, p.string(str(d)), 0o755, what="mkdir")
    p.call(MKDIR, p.string(str(d)), 0o755, what="mkdir again", ok=errno.EEXIST)
    p.call(OPENAT, -100, p.string(str(d / "f")), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600,
           what="open", store=fd)
    p.call(WRITE, sp.Deref(fd), p.string("hello"), 5, what="write")  # the fd stored above
    p.call(CLOSE, sp.Deref(fd), what="close")
    p.call(231, 0, what="exit 0")
    records, status = _run(p)
    assert (records, status) == ([], 0)
    assert (d / "f").read_text() == "hello"
    assert oct((d / "f").stat().st_mode & 0o777) == oct(0o600 & ~_umask())
    assert p.read(fd) >= 3  # the result the child stored, seen by the caller


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_a_failure_is_reported_with_its_op_and_errno(tmp_path: Path) -> None:
    p = sp.Program()
    p.call(GETPID, what="fine")
    p.call(MKDIR, p.string(str(tmp_path / "no" / "such")), 0o755, what="mkdir no/such")
    p.call(MKDIR, p.string(str(tmp_path / "never")), 0o755, what="never reached")
    records, status = _run(p)
    assert records == [(1, errno.ENOENT)] and p.what[1] == "mkdir no/such"
    assert status == 127
    assert not (tmp_path / "never").exists()


def test_any_error_can_be_expected() -> None:
    p = sp.Program()
    p.call(CLOSE, 999, what="close a closed fd", ok=sp.ANY)
    p.call(CLOSE, 999, what="close it again", ok=errno.EBADF)
    p.call(CLOSE, 999, what="and once more")
    records, _ = _run(p)
    assert records == [(2, errno.EBADF)]


def test_end_of_file_where_a_message_was_due_fails_and_go_lets_it_on(tmp_path: Path) -> None:
    for go in (b"g", b""):
        p = sp.Program()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        go_r, go_w = os.pipe2(os.O_CLOEXEC)
        marker = tmp_path / f"went-{go!r}"
        p.call(CLOSE, go_w, what="the caller's end: its close is EOF here")
        p.call(CLOSE, report_r, what="the caller's end")
        p.call(WRITE, report_w, p.struct(sp.READY, 0), sp.RECORD, what="ready")
        p.call(READ, go_r, p.slot(), 1, what="waiting for go", zero_fails=True)
        p.call(MKDIR, p.string(str(marker)), 0o755, what="after go")
        p.call(231, 0, what="exit")
        try:
            child = sp.start(p, report_w)
        finally:
            os.close(go_r)
            os.close(report_w)
        assert sp.read_record(report_r) == (sp.READY, 0)
        os.write(go_w, go)
        os.close(go_w)
        rest = sp.read_record(report_r)
        os.close(report_r)
        _, status = os.waitpid(child.pid, 0)
        assert os.waitstatus_to_exitcode(status) == (0 if go else 127)
        assert marker.exists() == bool(go)
        assert rest == (None if go else (3, 0))  # EOF at op 3: errno 0


def test_patched_ops_run_as_patched(tmp_path: Path) -> None:
    p = sp.Program()
    target = p.string(str(tmp_path / "made"))
    placeholder = p.call(GETPID, what="placeholder")
    p.call(231, 0, what="exit")
    p.patch(placeholder, MKDIR, target, 0o755, what="made by the patch")
    assert _run(p) == ([], 0)
    assert (tmp_path / "made").is_dir()


def test_signals_are_blocked_until_the_program_unblocks_them_and_exec_runs(
        tmp_path: Path) -> None:
    p = sp.Program()
    out = tmp_path / "status"
    fd = p.slot()
    p.call(OPENAT, -100, p.string(str(out)), os.O_WRONLY | os.O_CREAT, 0o644, what="open",
           store=fd)
    p.call(33, sp.Deref(fd), 1, what="dup2 to stdout")
    p.call(EXECVE, p.string("/bin/cat"), p.strings(["cat", "/proc/self/status"]),
           p.strings(["A=1"]), what="exec cat")
    assert _run(p) == ([], 0)
    status = out.read_text()
    blocked = next(ln for ln in status.splitlines() if ln.startswith("SigBlk:"))
    assert int(blocked.split()[1], 16) != 0  # inherited by cat: nothing unblocked it


def test_the_child_has_its_own_files_and_the_caller_keeps_its_own() -> None:
    keep_r, keep_w = os.pipe()
    try:
        p = sp.Program()
        p.call(CLOSE, keep_r, what="close the caller's pipe, in the child only")
        p.call(436, 3, 0xFFFFFFFF, 0, what="close_range")
        p.call(231, 0, what="exit")
        assert _run(p) == ([], 0)
        os.write(keep_w, b"x")
        assert os.read(keep_r, 1) == b"x"
    finally:
        os.close(keep_r)
        os.close(keep_w)


def test_large_data_and_many_ops(tmp_path: Path) -> None:
    p = sp.Program()
    big = os.urandom(70000)
    blob = p.blob(big)
    fd = p.slot()
    p.call(OPENAT, -100, p.string(str(tmp_path / "big")), os.O_WRONLY | os.O_CREAT, 0o644,
           what="open", store=fd)
    p.call(WRITE, sp.Deref(fd), blob, len(big), what="write")
    for i in range(600):  # past the first op buffer's capacity
        p.call(GETPID, what=f"no-op {i}")
    p.call(231, 0, what="exit")
    assert _run(p) == ([], 0)
    assert (tmp_path / "big").read_bytes() == big


def test_a_string_with_a_null_byte_is_refused_as_os_refuses_it() -> None:
    p = sp.Program()
    with pytest.raises(ValueError, match="null byte"):
        p.string("/etc/host\0name")
