"""User-facing output: tables, human sizes, JSON.  Logging is not output."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def human_size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def limit_size(n: float | None) -> str:
    """A size limit: -1 (or unset) is "max"."""
    return "max" if n in (-1, None) else human_size(n)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    return "\n".join(lines)


def emit_json(obj: Any) -> None:
    import json

    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def keyvalue(obj: dict[str, Any]) -> str:
    width = max((len(k) for k in obj), default=0)
    out = []
    for k, v in obj.items():
        if isinstance(v, list):
            v = ", ".join(str(x) for x in v) or "-"
        elif v is None:
            v = "-"
        out.append(f"{k + ':':<{width + 1}} {v}")
    return "\n".join(out)


def when(ts: float | None) -> str:
    """A time stamp as local 'YYYY-MM-DD HH:MM' ('-' when unknown)."""
    if not ts:
        return "-"
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))
