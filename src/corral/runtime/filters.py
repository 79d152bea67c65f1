"""The seccomp programs a container runs under, compiled once and cached in /run.

The profile lives in runtime/seccomp_profile.py (see its deny list); its
compiled form depends only on the profile's source and the architecture,
so it is kept in ``CACHE`` under a name that changes when the source does.
``exec`` reads the same file, so a command run in a container gets exactly
its filter.  Each profile comes in two forms: as it is, and with sysinfo(2)
handed to the host's agent (``sysinfo=True``, installed with a listener that
the agent gets; see sysinfo_client.install).
"""

from __future__ import annotations

import os

CACHE = "/run/corral/seccomp"


def _key(kind: str) -> str:
    import corral.runtime as pkg

    st = os.stat(os.path.join(os.path.dirname(pkg.__file__), "seccomp_profile.py"))
    return f"{kind}-{os.uname().machine}-{st.st_size}-{st.st_mtime_ns}"


def program(nesting: bool = False, sysinfo: bool = False) -> bytes:
    return _cached(("nesting" if nesting else "default") + ("-sysinfo" if sysinfo else ""))


def _cached(kind: str) -> bytes:
    path = f"{CACHE}/{_key(kind)}.bpf"
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    from corral import store
    from corral.runtime import seccomp_profile

    profile = seccomp_profile.default_profile(nesting=kind.startswith("nesting"))
    extra = (seccomp_profile.SYSINFO_NOTIFY,) if kind.endswith("-sysinfo") else ()
    compiled = seccomp_profile.build(profile, extra_rules=extra)
    os.makedirs(CACHE, 0o700, exist_ok=True)
    store.write_atomic(path, compiled, 0o600, durable=False)
    return compiled
