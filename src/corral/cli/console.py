"""`corral console NAME`: attach this terminal to a container's console; Ctrl-a q detaches."""

from __future__ import annotations

import os
import select
import socket
import sys

ESCAPE = b"\x01"  # Ctrl-a, then q: detach (Ctrl-a Ctrl-a sends one Ctrl-a)


def attach(path: str, name: str) -> int:
    from corral.errors import InvalidStateError

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        raise InvalidStateError(f"container '{name}' has no console to attach to",
                                hint="It is stopped, or runs without a console pty "
                                     "(create it with --console pty).") from None
    tty = sys.stdin.isatty()
    saved = None
    if tty:
        import termios
        import tty as ttymod

        saved = termios.tcgetattr(0)
        ttymod.setraw(0)
    os.write(2, f"[attached to '{name}'; Ctrl-a q detaches]\r\n".encode())
    pending_escape = False
    try:
        while True:
            ready, _, _ = select.select([0, sock], [], [])
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    os.write(2, b"\r\n[the container's console closed]\r\n")
                    return 0
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 4096)
                if not data:
                    return 0
                out = b""
                for byte in data:
                    b = bytes([byte])
                    if pending_escape:
                        pending_escape = False
                        if b in (b"q", b"Q"):
                            if out:
                                sock.sendall(out)
                            os.write(2, b"\r\n[detached]\r\n")
                            return 0
                        out += b if b == ESCAPE else ESCAPE + b
                    elif b == ESCAPE:
                        pending_escape = True
                    else:
                        out += b
                if out:
                    sock.sendall(out)
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        sock.close()
