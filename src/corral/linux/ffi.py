"""The part of ctypes that ``linux/`` uses, made straight from ``_ctypes``.

``import ctypes`` costs ~1.8 ms here, on every `run` and `exec`: its
``__init__`` defines some thirty C types, function-type factories and
caches, loads ``struct`` and ``ctypes._endian`` (byte-order structures), and
makes a libffi closure to probe the platform.  Everything ``linux/`` needs is
a dozen classes over the C extension below it (~0.5 ms), defined here the way
ctypes defines them: ``_ctypes.Structure``, ``byref``, ``sizeof``... are the
very objects ctypes re-exports, and a ``c_long`` of this module is a
``_SimpleCData`` of type code ``"l"`` exactly like ctypes' own.  Objects of
both mix freely (tests/unit/test_ffi.py compares them).

Names and behaviour follow ctypes, so the code reads as ctypes code.  LP64
Linux only (long and pointers 64-bit), which is what Corral runs on.
"""

from __future__ import annotations

import _ctypes
from _ctypes import (
    FUNCFLAG_CDECL,
    FUNCFLAG_PYTHONAPI,
    FUNCFLAG_USE_ERRNO,
    POINTER,
    Array,
    CFuncPtr,
    Structure,
    _SimpleCData,
    addressof,
    byref,
    get_errno,
    sizeof,
)

__all__ = [
    "CDLL", "POINTER", "Array", "PyDLL", "Structure", "addressof", "byref", "c_char",
    "c_char_p", "c_int", "c_long", "c_size_t", "c_uint", "c_uint8", "c_uint16", "c_uint32",
    "c_uint64", "c_ulong", "c_ushort", "c_void_p", "cast", "create_string_buffer",
    "get_errno", "memmove", "py_object", "pythonapi", "sizeof",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _simple(name: str, code: str) -> Any:
    """A C scalar type: ctypes defines each as a _SimpleCData subclass with a type code."""
    return type(name, (_SimpleCData,), {"_type_": code, "__module__": __name__})


c_char = _simple("c_char", "c")
c_ubyte = _simple("c_ubyte", "B")
c_ushort = _simple("c_ushort", "H")
c_int = _simple("c_int", "i")
c_uint = _simple("c_uint", "I")
c_long = _simple("c_long", "l")
c_ulong = _simple("c_ulong", "L")
c_char_p = _simple("c_char_p", "z")
c_void_p = _simple("c_void_p", "P")
py_object = _simple("py_object", "O")

# The fixed-width names as ctypes binds them on LP64.
c_uint8 = c_ubyte
c_uint16 = c_ushort
c_uint32 = c_uint
c_uint64 = c_ulong
c_size_t = c_ulong


def create_string_buffer(init: bytes | int, size: int | None = None) -> Any:
    """A mutable char array: of ``init`` bytes (and a NUL unless ``size`` says
    otherwise) or of ``init`` zero bytes, as ctypes.create_string_buffer."""
    if isinstance(init, bytes):
        if size is None:
            size = len(init) + 1
        buf = (c_char * size)()
        buf.value = init
        return buf
    return (c_char * init)()


class _Library:
    """A shared object's functions by attribute, as ctypes.CDLL / PyDLL: each
    returns int unless its ``restype`` is set; ``use_errno``: ``get_errno``
    reads the errno of the last call; ``holds_gil``: the GIL is kept across
    calls (PyDLL), for functions of the interpreter itself."""

    def __init__(self, path: str | None, use_errno: bool, holds_gil: bool) -> None:
        flags = FUNCFLAG_CDECL
        if use_errno:
            flags |= FUNCFLAG_USE_ERRNO
        if holds_gil:
            flags |= FUNCFLAG_PYTHONAPI

        class Function(CFuncPtr):
            _flags_ = flags
            _restype_ = c_int

        self._function = Function
        self._handle = _ctypes.dlopen(path, _RTLD_LOCAL)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        fn = self._function((name, self))
        fn.__name__ = name
        setattr(self, name, fn)  # one object per name: argtypes/restype set once hold
        return fn


_RTLD_LOCAL = 0  # RTLD_LOCAL is 0 on Linux; with RTLD_NOW ctypes passes the same


def CDLL(path: str | None, use_errno: bool = False) -> _Library:
    return _Library(path, use_errno, holds_gil=False)


def PyDLL(path: str | None, use_errno: bool = False) -> _Library:
    return _Library(path, use_errno, holds_gil=True)


pythonapi = PyDLL(None)  # the interpreter's own C API (linked into the executable)


class _CastFunction(CFuncPtr):
    _argtypes_ = (c_void_p, py_object, py_object)
    _restype_ = py_object
    _flags_ = FUNCFLAG_CDECL | FUNCFLAG_PYTHONAPI


_cast = _CastFunction(_ctypes._cast_addr)


def cast(obj: Any, typ: Any) -> Any:
    """``obj`` (a pointer, array or function) seen as type ``typ``, as ctypes.cast."""
    return _cast(obj, obj, typ)


class _MemmoveFunction(CFuncPtr):
    _argtypes_ = (c_void_p, c_void_p, c_size_t)
    _restype_ = c_void_p
    _flags_ = FUNCFLAG_CDECL


memmove = _MemmoveFunction(_ctypes._memmove_addr)  # as ctypes.memmove
