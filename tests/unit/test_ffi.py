"""linux.ffi is ctypes' subset made from _ctypes: the same types, the same calls."""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

import pytest

from corral.linux import ffi

SIMPLE = ("c_char", "c_char_p", "c_int", "c_long", "c_size_t", "c_uint", "c_uint8", "c_uint16",
          "c_uint32", "c_uint64", "c_ulong", "c_ushort", "c_void_p", "py_object")


@pytest.mark.parametrize("name", SIMPLE)
def test_each_type_is_ctypes_own_type_code_and_size(name: str) -> None:
    ours, theirs = getattr(ffi, name), getattr(ctypes, name)
    assert (ours._type_, ffi.sizeof(ours), ctypes.alignment(ours)) == \
        (theirs._type_, ctypes.sizeof(theirs), ctypes.alignment(theirs))


def test_structures_lay_out_as_with_ctypes() -> None:
    class Ours(ffi.Structure):
        _fields_ = (("a", ffi.c_uint16), ("b", ffi.c_uint64), ("c", ffi.c_char * 3),
                    ("p", ffi.POINTER(ffi.c_int)))

    class Theirs(ctypes.Structure):
        _fields_ = (("a", ctypes.c_uint16), ("b", ctypes.c_uint64), ("c", ctypes.c_char * 3),
                    ("p", ctypes.POINTER(ctypes.c_int)))

    assert ffi.sizeof(Ours) == ctypes.sizeof(Theirs)
    assert [getattr(Ours, f).offset for f in "abcp"] == [getattr(Theirs, f).offset for f in "abcp"]
    o, t = Ours(a=7, b=2**63, c=b"xy"), Theirs(a=7, b=2**63, c=b"xy")
    assert bytes(o) == bytes(t)


def test_string_buffers_as_create_string_buffer() -> None:
    for args in ((b"abc",), (b"abc", 3), (b"", ), (8,), (b"a\0b", 5)):
        assert ffi.create_string_buffer(*args).raw == ctypes.create_string_buffer(*args).raw


def test_library_calls_return_int_and_keep_errno() -> None:
    libc = ffi.CDLL(None, use_errno=True)
    assert libc.getpid() == os.getpid()
    assert libc.getpid is libc.getpid  # one object per name: argtypes set once hold
    assert libc.close(-1) == -1 and ffi.get_errno() == errno.EBADF
    libc.syscall.restype = ffi.c_long
    nr = {"x86_64": 39, "aarch64": 172, "riscv64": 172}[os.uname().machine]
    assert libc.syscall(ffi.c_long(nr)) == os.getpid()
    with pytest.raises(AttributeError):
        _ = libc.no_such_function_in_libc


def test_cast_reads_a_function_address_and_retypes_arrays() -> None:
    libc = ffi.CDLL(None)
    addr = ffi.cast(libc.pause, ffi.c_void_p).value
    assert addr == ctypes.cast(ctypes.CDLL(None).pause, ctypes.c_void_p).value
    arr = (ffi.c_uint16 * 2)(1, 2)
    assert ffi.cast(arr, ffi.POINTER(ffi.c_uint16))[1] == 2


def test_the_interpreter_api_is_reachable() -> None:
    ffi.pythonapi.Py_IsInitialized.restype = ffi.c_int
    assert ffi.pythonapi.Py_IsInitialized() == 1


def test_linux_modules_do_not_load_ctypes() -> None:
    # The point of ffi: none of linux/ pulls in ctypes' 1.8 ms __init__.
    code = ("import sys; from corral.linux import clone, devices, filter, fs, mount, ns, "
            "seccomp, seccomp_notify; print('ctypes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
