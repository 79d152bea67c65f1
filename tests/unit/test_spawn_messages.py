from __future__ import annotations

import os

import pytest

from corral.errors import KernelError
from corral.runtime import spawn
from corral.runtime.spec import ExecSpec, InitSpec, RootfsSpec


def test_messages_roundtrip_and_eof() -> None:
    r, w = os.pipe()
    spawn.send(w, ("pid", 42))
    spawn.send(w, ("go", {"/etc/hosts": (b"x", 0o644)}))
    os.close(w)
    assert spawn.recv(r) == ("pid", 42)
    assert spawn.recv(r) == ("go", {"/etc/hosts": (b"x", 0o644)})
    assert spawn.recv(r) is None
    os.close(r)


def test_error_report_becomes_kernel_error() -> None:
    with pytest.raises(KernelError, match="cannot start container 'c': rootfs: boom") as e:
        spawn._raise_report("c", ("error", "rootfs: boom", 2))
    assert e.value.errno == 2


def test_specs_are_read_only_and_complete() -> None:
    r = RootfsSpec(mountpoint="/m", lower=("/t",), upper="/u", work="/w")
    with pytest.raises(AttributeError):
        r.upper = "/x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="missing"):
        InitSpec(name="x")
    spec = InitSpec(name="x", hostname="x", rootfs=r, argv=("/sbin/init",))
    assert "sys_admin" not in spec.caps and "sys_module" not in spec.caps
    assert ExecSpec(argv=("ls",)).tty is False
