"""Host id ranges for unprivileged containers: one range of 65536 ids each, never shared.

Like addresses, ranges are leased at create, persisted, and released at
destroy; unlike addresses they are unique on the whole machine, not only
within one state root, because a uid is a uid to the kernel whichever root
made the container.  So the registry is machine-wide (``REGISTRY``), keyed by
state root and container.  Ranges start at 1e9, far above the ids that
distributions give users, and skip whatever /etc/subuid and /etc/subgid
already hand out.
"""

from __future__ import annotations

import os

from corral import store
from corral.errors import ConflictError

# One "<base> <state root>:<container>" line per lease: plain text, because
# `corral run` reads and writes it on its start path, where importing json
# alone costs milliseconds.
REGISTRY = "/var/lib/corral/idmaps"
FIRST = 1_000_000_000
SIZE = 65536
LAST = 2**31 - 1  # some tools still take ids as signed 32-bit numbers


def _taken_by_subid() -> list[tuple[int, int]]:
    out = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                for line in f:
                    parts = line.strip().split(":")
                    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                        out.append((int(parts[1]), int(parts[1]) + int(parts[2])))
        except FileNotFoundError:
            continue
    return out


def _load() -> dict[str, int]:
    try:
        with open(REGISTRY) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    out = {}
    for line in lines:
        base, _, key = line.partition(" ")
        if base.isdigit() and key:
            out[key] = int(base)
    return out


def _save(leases: dict[str, int], durable: bool) -> None:
    text = "".join(f"{base} {key}\n" for key, base in sorted(leases.items(), key=lambda i: i[1]))
    store.write_atomic(REGISTRY, text.encode(), 0o600, durable=durable)


def allocate(root: str, name: str, *, durable: bool = True) -> int:
    """The base of a free range for container ``name`` of state root ``root``.

    ``durable=False`` (ephemeral containers): the lease need not survive a
    power cut, which the container does not survive either.
    """
    key = f"{root}:{name}"
    os.makedirs(os.path.dirname(REGISTRY), 0o700, exist_ok=True)
    with store.locked(f"{REGISTRY}.lock", "the id map registry"):
        leases = _load()
        if key in leases:
            return leases[key]
        used = set(leases.values())
        foreign = _taken_by_subid()
        base = FIRST
        while base + SIZE - 1 <= LAST:
            if base not in used and not any(lo < base + SIZE and base < hi for lo, hi in foreign):
                leases[key] = base
                _save(leases, durable)
                return base
            base += SIZE
    raise ConflictError("no free range of host ids is left for another unprivileged container",
                        hint="Destroy unused containers, or use --privileged.")


def release(root: str, name: str) -> None:
    key = f"{root}:{name}"
    if not os.path.exists(REGISTRY):
        return
    with store.locked(f"{REGISTRY}.lock", "the id map registry"):
        leases = _load()
        if leases.pop(key, None) is not None:
            # Not synced: a release lost to a power cut only keeps a range
            # leased until the next destroy of that name or doctor.
            _save(leases, False)


def leased(root: str) -> dict[str, int]:
    prefix = f"{root}:"
    return {k[len(prefix):]: v for k, v in _load().items() if k.startswith(prefix)}
