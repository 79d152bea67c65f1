"""Progress for long steps (debootstrap, imports, backups), drawn with tqdm.

Drivers report through a plain callable ``progress(step, done, total)`` and
never import this module; the CLI passes an instance of ``Progress``.  One
bar per step: a new step name closes the old bar.  On a non-terminal
stderr nothing is drawn, so logs and tests stay clean.
"""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, unit: str = "it") -> None:
        self.enabled = sys.stderr.isatty()
        self.unit = unit
        self.step: str | None = None
        self.bar: Any = None

    def __call__(self, step: str, done: int, total: int | None = None) -> None:
        if not self.enabled:
            return
        if step != self.step:
            self.close()
            from tqdm import tqdm

            self.step = step
            byte_step = step.startswith(("bytes", "layer", "backup", "restore", "import"))
            self.bar = tqdm(desc=step, total=total, leave=False, file=sys.stderr,
                            unit="B" if byte_step else self.unit, unit_scale=byte_step,
                            dynamic_ncols=True)
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.step = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
