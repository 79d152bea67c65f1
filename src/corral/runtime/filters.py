"""The seccomp programs a container runs under, compiled once and cached in /run.

The profile lives in runtime/seccomp_profile.py (see its deny list); its
compiled form depends only on the profile's source and the architecture,
so it is kept in ``CACHE`` under a name that changes when the source does.
``exec`` reads the same file, so a command run in a container gets exactly
its filter.  The small program that hands sysinfo(2) to the host's agent
(``sysinfo_program``) is cached the same way.
"""

from __future__ import annotations

import os

CACHE = "/run/corral/seccomp"


def _key(kind: str) -> str:
    import corral.runtime as pkg

    st = os.stat(os.path.join(os.path.dirname(pkg.__file__), "seccomp_profile.py"))
    return f"{kind}-{os.uname().machine}-{st.st_size}-{st.st_mtime_ns}"


def program(nesting: bool = False) -> bytes:
    return _cached("nesting" if nesting else "default")


def sysinfo_program() -> bytes:
    """sysinfo(2) to the agent's listener, the rest allowed (see seccomp_profile)."""
    return _cached("sysinfo")


def _cached(kind: str) -> bytes:
    path = f"{CACHE}/{_key(kind)}.bpf"
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    from corral import store
    from corral.runtime import seccomp_profile

    if kind == "sysinfo":
        compiled = seccomp_profile.build_sysinfo_notify()
    else:
        compiled = seccomp_profile.build(seccomp_profile.default_profile(
            nesting=kind == "nesting"))
    os.makedirs(CACHE, 0o700, exist_ok=True)
    store.write_atomic(path, compiled, 0o600, durable=False)
    return compiled
