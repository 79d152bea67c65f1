"""The only code in Corral that touches ctypes and raw system calls.

Each wrapper is a plain function named after its syscall; failures raise
``OSError(errno, "<syscall>(<path>): <strerror>")`` so the operation and path
reach the log.  Nothing here logs, decides or translates errors into
``CorralError``: that happens one layer up, at the driver boundary.
"""
