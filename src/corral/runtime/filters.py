"""The seccomp program a container runs under, compiled once and cached in /run.

The profile lives in runtime/seccomp_profile.py (see its deny list); its
compiled form depends only on the profile's source and the architecture,
so it is kept in ``CACHE`` under a name that changes when the source does.
``exec`` reads the same file, so a command run in a container gets exactly
its filter.
"""

from __future__ import annotations

import os

CACHE = "/run/corral/seccomp"


def _key(nesting: bool) -> str:
    import corral.runtime as pkg

    st = os.stat(os.path.join(os.path.dirname(pkg.__file__), "seccomp_profile.py"))
    return f"{'nesting' if nesting else 'default'}-{os.uname().machine}-{st.st_size}-" \
           f"{st.st_mtime_ns}"


def program(nesting: bool = False) -> bytes:
    path = f"{CACHE}/{_key(nesting)}.bpf"
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    from corral import store
    from corral.runtime.seccomp_profile import build, default_profile

    compiled = build(default_profile(nesting=nesting))
    os.makedirs(CACHE, 0o700, exist_ok=True)
    store.write_atomic(path, compiled, 0o600, durable=False)
    return compiled
