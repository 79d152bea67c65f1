"""Atomic files and per-object locks under the state root.

Writes go to a temporary file in the same directory, are fsynced and renamed
over the target (then the directory is fsynced), so a crash leaves either the
old or the new content, never half of it (runc ``saveState``).  Locks are
``flock`` on a file per object: released by the kernel when the holder dies,
so a crashed CLI never leaves a lock that blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corral.errors import BusyError, ValidationError


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any:
    with open(path, "rb") as f:
        return json.load(f)


def write_toml(path: Path, obj: dict[str, Any]) -> None:
    import tomli_w  # only writers pay for it

    write_atomic(path, tomli_w.dumps(obj).encode())


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(f"cannot parse {path}: {exc}",
                              hint="Fix the file by hand or restore it from a backup.") from exc


@contextlib.contextmanager
def locked(path: Path, what: str, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; BusyError after ``timeout`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BusyError(
                        f"{what} is locked by another operation",
                        hint="Wait for it to finish, then retry.",
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
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
