"""The one exception tree of Corral.

::

    CorralError(message, *, hint=None)
    ├── ValidationError        bad input: name, size, path, config value
    ├── NotFoundError          container, template, snapshot, network
    ├── ConflictError          already exists
    │   └── InvalidStateError  operation not allowed in the current state
    ├── BusyError              a lock is held by another operation
    ├── PermissionError_       not root, or the kernel refused a privilege
    ├── UnsupportedError       the host lacks a kernel feature
    ├── KernelError            a syscall failed (wraps OSError)
    ├── CommandError           an external tool failed
    └── CleanupError           the original error plus errors from rolling back

Messages are lowercase, name the object, and carry no final period; hints
are whole sentences.  Fronts translate these into one line and an exit code
(``cli/main.py``); nothing below the fronts prints.
"""

from __future__ import annotations


class CorralError(Exception):
    """Base of every error a user can see."""

    exit_code = 1
    reference = "corral-error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ValidationError(CorralError):
    """Input is malformed; nothing was touched.  Fix the input and retry."""

    exit_code = 2
    reference = "invalid-input"


class NotFoundError(CorralError):
    """The named object does not exist."""

    exit_code = 3
    reference = "not-found"


class ConflictError(CorralError):
    """The object already exists."""

    exit_code = 4
    reference = "conflict"


class InvalidStateError(ConflictError):
    """The operation does not fit the object's current state."""

    reference = "invalid-state"


class BusyError(CorralError):
    """Another operation holds the lock; retry when it has finished."""

    exit_code = 5
    reference = "busy"


class PrivilegeError(CorralError):
    """Corral needs root (or a capability) for this."""

    exit_code = 6
    reference = "not-permitted"


class UnsupportedError(CorralError):
    """The host kernel or system lacks a feature this operation needs."""

    exit_code = 7
    reference = "unsupported"


class KernelError(CorralError):
    """A system call failed; the message names it, the path and the errno."""

    reference = "kernel"

    def __init__(self, message: str, *, errno: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


class CommandError(CorralError):
    """An external tool failed; the message carries its exit code and output tail."""

    reference = "command-failed"


class CleanupError(CorralError):
    """An operation failed and rolling it back failed too; both are reported."""

    reference = "cleanup-failed"

    def __init__(self, original: BaseException, cleanup_errors: list[BaseException]) -> None:
        details = "; ".join(str(e) for e in cleanup_errors)
        super().__init__(
            f"{original} (and rolling back failed: {details})",
            hint="Run 'corral doctor --fix' to remove what was left behind.",
        )
        self.original = original
        self.cleanup_errors = cleanup_errors


def from_oserror(what: str, exc: OSError) -> KernelError:
    """Turn an OSError from ``corral.linux`` into a KernelError that names ``what``."""
    reason = exc.strerror or str(exc)
    return KernelError(f"{what}: {reason}", errno=exc.errno)


class ExecError(CorralError):
    """The command given to ``exec``/``run`` could not be started in the container.

    Exit codes follow the shell: 127 when the command is not found, 126 when
    it cannot be executed.
    """

    reference = "exec-failed"

    def __init__(self, message: str, *, exit_code: int = 126, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code
