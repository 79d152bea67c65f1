"""Facts about processes read from /proc, and pidfds."""

from __future__ import annotations

import os


def stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None if gone.

    The command (field 2) may hold spaces and parentheses, so split after the
    last ')'.  Index 0 of the result is field 3 (state).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (ticks since boot): identifies a process beyond its PID."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[19])


def is_alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` exists, is not a zombie and started at ``started``."""
    fields = stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def pidfd_open(pid: int) -> int:
    return os.pidfd_open(pid)
