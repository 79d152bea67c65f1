"""Atomic files and per-object locks under the state root.

Writes go to a temporary file in the same directory, are fsynced and renamed
over the target (then the directory is fsynced), so a crash leaves either the
old or the new content, never half of it (runc ``saveState``).  Locks are
``flock`` on a file per object: released by the kernel when the holder dies,
so a crashed CLI never leaves a lock that blocks the next one.

Parsers (json, tomllib, tomli_w) are imported where used: they cost
milliseconds, and most commands need at most one of them.
"""

from __future__ import annotations

import fcntl
import os
import time

from corral.errors import BusyError, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def write_atomic(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``; ``durable=False`` skips fsync (ephemeral records)."""
    path = os.fspath(path)
    parent, base = os.path.split(path)
    tmp = f"{parent}/.{base}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        sync_dir(parent or ".")


def sync_dir(path: str) -> None:
    """fsync a directory: the names made or removed in it survive a power cut."""
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def json_bytes(obj: Any) -> bytes:
    """``json.dumps(obj, indent=1, sort_keys=True)`` + newline, byte for byte, for
    the plain data our records hold (dict with str keys, list, tuple, str, int,
    float, bool, None).

    Written here because ``import json`` costs ~8 ms on these machines (it
    compiles regular expressions, and ``re`` pulls in ``enum``) and every
    container start writes a record; strings that need escaping go through
    the same C escaper json uses, imported only then (loading it is ~0.4 ms).
    tests/unit/test_store.py checks it against json.dumps.
    """
    out: list[str] = []
    _json_value(obj, out, "\n", _json_quote)
    out.append("\n")
    return "".join(out).encode()


def _needs_no_escape(text: str) -> bool:
    """Printable ASCII without quote or backslash: the same between double
    quotes in JSON and in a TOML basic string."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _json_quote(text: str) -> str:
    if _needs_no_escape(text):
        return f'"{text}"'  # what the escaper would return
    from _json import encode_basestring_ascii

    return str(encode_basestring_ascii(text))


_INF = float("inf")


def _json_value(obj: Any, out: list[str], nl: str, quote: Any) -> None:
    if isinstance(obj, str):
        out.append(quote(obj))
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(int.__repr__(obj))
    elif isinstance(obj, float):
        if obj != obj:
            out.append("NaN")
        elif obj == _INF:
            out.append("Infinity")
        elif obj == -_INF:
            out.append("-Infinity")
        else:
            out.append(float.__repr__(obj))
    elif isinstance(obj, dict):
        if not obj:
            out.append("{}")
            return
        inner = nl + " "
        out.append("{")
        for i, key in enumerate(sorted(obj)):
            if not isinstance(key, str):
                raise TypeError(f"record keys must be strings, not {key!r}")
            out.append(("," if i else "") + inner + quote(key) + ": ")
            _json_value(obj[key], out, inner, quote)
        out.append(nl + "}")
    elif isinstance(obj, (list, tuple)):
        if not obj:
            out.append("[]")
            return
        inner = nl + " "
        out.append("[")
        for i, item in enumerate(obj):
            out.append(("," if i else "") + inner)
            _json_value(item, out, inner, quote)
        out.append(nl + "]")
    else:
        raise TypeError(f"cannot write {type(obj).__name__} into a record")


def write_json(path: str, obj: Any, *, durable: bool = True) -> None:
    write_atomic(path, json_bytes(obj), durable=durable)


def read_json(path: str) -> Any:
    with open(path, "rb") as f:
        return json_loads(f.read())


class _ScanContext:
    """What the json module's C scanner reads from a ``json.JSONDecoder``:
    the defaults of ``json.loads``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": _INF, "-Infinity": -_INF}[name]


_scan: Any = None
_JSON_SPACE = " \t\n\r"


def json_loads(data: bytes) -> Any:
    """``json.loads(data)`` for the records Corral writes, without ``import json``
    (~8 ms here: it compiles regular expressions, and ``re`` pulls in ``enum``),
    which every networked start would pay to read its network's record.  The
    parsing is json's own C scanner, the one ``json.loads`` runs; any input it
    does not take whole goes to ``json.loads`` itself, which raises what it
    always raises.  tests/unit/test_store.py checks the two against each other.
    """
    global _scan
    try:
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        if _scan is None:
            from _json import make_scanner

            _scan = make_scanner(_ScanContext)
        obj, end = _scan(text, len(text) - len(text.lstrip(_JSON_SPACE)))
        if not text[end:].strip(_JSON_SPACE):
            return obj
    except (StopIteration, UnicodeDecodeError):
        pass
    import json

    return json.loads(data)  # what it makes of the rest (a BOM, UTF-16), or its error


def toml_bytes(obj: dict[str, Any]) -> bytes:
    """``tomli_w.dumps(obj)``, byte for byte (tomli-w 1.x), for what configs hold:
    tables with str keys, str, int, float, bool, lists and lists of tables.

    Written here because importing tomli_w costs ~3 ms (it pulls in
    collections, datetime and decimal), and `corral run` writes a config on
    its critical path.  Anything else (dates, times, Decimals) goes to tomli_w
    itself.  tests/unit/test_store.py checks the two against each other.
    """
    out: list[str] = []
    try:
        _toml_table(obj, "", False, out)
    except _NotPlain:
        import tomli_w

        return tomli_w.dumps(obj).encode()
    return "".join(out).encode()


class _NotPlain(Exception):
    """A value ``toml_bytes`` leaves to tomli_w."""


_TOML_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_TOML_ESCAPES = {"\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"',
                 "\\": "\\\\"}


def _toml_table(table: dict[str, Any], name: str, in_array: bool, out: list[str]) -> None:
    # The layout tomli_w chooses: a table's own values first, then its
    # sub-tables, each after a blank line; a list of tables that would not
    # fit on a line as inline tables becomes an array of tables.
    literals = []
    tables: list[tuple[str, dict[str, Any], bool]] = []
    for key, value in table.items():
        if isinstance(value, dict):
            tables.append((key, value, False))
        elif _is_table_list(value) and not all(_fits_inline(t) for t in value):
            tables.extend((key, t, True) for t in value)
        else:
            literals.append((key, value))
    wrote = False
    if in_array or name and (literals or not tables):
        wrote = True
        out.append(f"[[{name}]]\n" if in_array else f"[{name}]\n")
    for key, value in literals:
        wrote = True
        out.append(f"{_toml_key(key)} = {_toml_value(value, 0)}\n")
    for key, sub, sub_in_array in tables:
        if wrote:
            out.append("\n")
        wrote = True
        part = _toml_key(key)
        _toml_table(sub, f"{name}.{part}" if name else part, sub_in_array, out)


def _is_table_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and \
        all(isinstance(v, dict) for v in value)


def _fits_inline(table: dict[str, Any]) -> bool:
    text = f"    {_toml_inline_table(table)},"
    return len(text) <= 100 and "\n" not in text


def _toml_value(value: Any, level: int) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)  # inf, nan and 1e+20 are TOML as they are
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        indent = "    " * (level + 1)
        items = ",\n".join(indent + _toml_value(v, level + 1) for v in value)
        return f"[\n{items},\n{'    ' * level}]"
    if isinstance(value, dict):
        return _toml_inline_table(value)
    raise _NotPlain


def _toml_inline_table(table: dict[str, Any]) -> str:
    if not table:
        return "{}"
    return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v, 0)}"
                            for k, v in table.items()) + " }"


def _toml_key(key: str) -> str:
    if not isinstance(key, str):
        raise _NotPlain  # tomli_w says what is wrong with it
    if key and _TOML_BARE.issuperset(key):
        return key
    return _toml_str(key)


def _toml_str(text: str) -> str:
    if _needs_no_escape(text):
        return f'"{text}"'
    parts = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            parts.append(_TOML_ESCAPES[ch])
        elif ch < " " and ch != "\t" or ch == "\x7f":
            parts.append(f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    return '"' + "".join(parts) + '"'


def write_toml(path: str, obj: dict[str, Any], *, durable: bool = True) -> None:
    write_atomic(path, toml_bytes(obj), durable=durable)


def read_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"cannot parse {path}: {exc}",
                              hint="Fix the file by hand or restore it from a backup.") from exc


def read_toml_cached(path: str) -> dict[str, Any]:
    """``read_toml``, through a marshal copy of the parsed table kept beside the file
    (``.NAME.cache``) and trusted while the file's inode, size, mtime and ctime are
    those it was made from.

    tomllib is pure Python: parsing a container's config costs ~0.4 ms, two
    thirds of what ``list`` spends on each container, and ``list`` of a
    thousand must stay under a second.  Every write replaces the file (a new
    inode, a new ctime), and so does an edit by hand in any editor that saves
    atomically; one that rewrites in place changes the mtime and ctime.  The
    stat comes first, so a file replaced while it is read is cached under the
    old key and parsed again next time.
    """
    st = os.stat(path)
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    parent, base = os.path.split(path)
    cache = f"{parent}/.{base}.cache"
    data = load_cache(cache, key)
    if isinstance(data, dict):
        return data
    data = read_toml(path)
    save_cache(cache, key, data)
    return data


def load_cache(path: str, key: object) -> Any:
    """What ``save_cache`` kept in ``path`` under ``key``; None if it is missing,
    unreadable or kept under another key (the thing it was derived from changed)."""
    import marshal

    try:
        with open(path, "rb") as f:
            cached_key, data = marshal.load(f)
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return data if cached_key == key else None


def save_cache(path: str, key: object, data: object) -> None:
    """Keep ``data`` (marshal-able) in ``path`` under ``key``; best effort: a
    cache that cannot be written is asked for again."""
    import marshal

    try:
        write_atomic(path, marshal.dumps((key, data)), 0o600, durable=False)
    except (OSError, ValueError):  # a read-only root; a value marshal cannot hold
        pass


def remove_tree(path: str) -> None:
    """``rm -rf path``: never follows symlinks; missing is fine.

    Written with os.scandir rather than shutil.rmtree because shutil's import
    (bz2, lzma, fnmatch …) costs more than removing a small container's tree.
    """
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    for e in entries:
        if e.is_dir(follow_symlinks=False):
            remove_tree(e.path)
        else:
            try:
                os.unlink(e.path)
            except FileNotFoundError:
                pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


class locked:  # noqa: N801 - used like a function: `with locked(path, what):`
    """Hold an exclusive flock on ``path``; BusyError after ``timeout`` seconds."""

    __slots__ = ("path", "what", "timeout", "fd")

    def __init__(self, path: str, what: str, timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        self.what = what
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> locked:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise BusyError(f"{self.what} is locked by another operation",
                                    hint="Wait for it to finish, then retry.") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
                continue
            # The holder before us may have removed the file (``unlink`` below):
            # a lock on a removed file protects nothing, so take the new one.
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)

    def unlink(self) -> None:
        """Remove the lock file while holding it (its object is gone for good)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
        self.fd = -1


def is_locked(path: str) -> bool:
    """True when some live process holds the lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
