"""Reverter: register an undo after each side effect, run them in reverse on failure.

Modelled on Incus's ``shared/revert``: ``with Reverter() as undo: ...;
undo.success()``.  Undo errors are collected, never hide the original error,
and surface together as a ``CleanupError``.
"""

from __future__ import annotations

from corral.errors import CleanupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


class Reverter:
    def __init__(self) -> None:
        self._undos: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._done = False

    def add(self, fn: Callable[..., Any], *args: Any) -> None:
        self._undos.append((fn, args))

    def success(self) -> None:
        self._done = True
        self._undos.clear()

    def __enter__(self) -> Reverter:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if self._done or exc is None:
            return False
        errors: list[BaseException] = []
        for fn, args in reversed(self._undos):
            try:
                fn(*args)
            except Exception as undo_exc:  # collected and reported with the original
                errors.append(undo_exc)
        self._undos.clear()
        if errors:
            raise CleanupError(exc, errors) from exc
        return False
