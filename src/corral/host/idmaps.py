"""Host id ranges for unprivileged containers: one range of 65536 ids each, never shared.

Like addresses, ranges are leased at create, persisted, and released at
destroy; unlike addresses they are unique on the whole machine, not only
within one state root, because a uid is a uid to the kernel whichever root
made the container.  So the registry is machine-wide (``REGISTRY``).  Ranges
start at 1e9, far above the ids that distributions give users, and skip
whatever /etc/subuid and /etc/subgid already hand out.

A lease is one file, named by the range's first id and holding
"<state root>:<container>": taken by creating it with O_EXCL, which no two
processes can both win, and given back by removing it.  No lock, and no
rewrite of every other lease on each change: `corral run` leases and
releases a range on its start path, and a thousand creates in parallel do
not queue behind one file.  (The registry used to be one text file,
rewritten under a lock; ``_adopt_legacy`` turns such a file into leases.)
"""

from __future__ import annotations

import os

from corral import store
from corral.errors import ConflictError

REGISTRY = "/var/lib/corral/idmaps.d"
_LEGACY = "/var/lib/corral/idmaps"
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


def _holder(base: int) -> str | None:
    """"<root>:<name>" of the lease on ``base``, or None."""
    try:
        with open(f"{REGISTRY}/{base}", "rb") as f:
            return f.read().decode(errors="replace").strip()
    except FileNotFoundError:
        return None


def _bases() -> list[int]:
    try:
        return [int(n) for n in os.listdir(REGISTRY) if n.isdigit()]
    except FileNotFoundError:
        return []


def _claim(base: int, key: str, durable: bool) -> bool:
    try:
        fd = os.open(f"{REGISTRY}/{base}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        return False  # leased meanwhile by another process
    try:
        os.write(fd, f"{key}\n".encode())
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(f"{REGISTRY}/{base}")
        raise
    os.close(fd)
    if durable:
        store.sync_dir(REGISTRY)
    return True


def _adopt_legacy() -> None:
    """Leases of the one-file registry of earlier versions become lease files."""
    os.makedirs(REGISTRY, 0o700, exist_ok=True)
    with store.locked(f"{_LEGACY}.lock", "the id map registry"):
        try:
            with open(_LEGACY) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return  # adopted by another process meanwhile
        for line in lines:
            base, _, key = line.partition(" ")
            if base.isdigit() and key:
                _claim(int(base), key, durable=True)
        os.unlink(_LEGACY)
    try:
        os.unlink(f"{_LEGACY}.lock")
    except FileNotFoundError:
        pass


def allocate(root: str, name: str, *, durable: bool = True) -> int:
    """The base of a free range, now leased to container ``name`` of state root ``root``.

    ``durable=False`` (ephemeral containers): the lease need not survive a
    power cut, which the container does not survive either.
    """
    if os.path.exists(_LEGACY):
        _adopt_legacy()
    os.makedirs(REGISTRY, 0o700, exist_ok=True)
    used = set(_bases())
    foreign = _taken_by_subid()
    base = FIRST
    while base + SIZE - 1 <= LAST:
        if base not in used and not any(lo < base + SIZE and base < hi for lo, hi in foreign) \
                and _claim(base, f"{root}:{name}", durable):
            return base
        base += SIZE
    raise ConflictError("no free range of host ids is left for another unprivileged container",
                        hint="Destroy unused containers, or use --privileged.")


def release(root: str, name: str, base: int | None = None) -> None:
    """Give back the range leased to ``name`` of ``root``: the one at ``base``
    (its config says which), or, without ``base``, every one it holds."""
    key = f"{root}:{name}"
    if os.path.exists(_LEGACY):
        _adopt_legacy()
    # Not synced: a release lost to a power cut only keeps a range leased
    # until doctor finds it.
    for b in [base] if base is not None else _bases():
        if _holder(b) == key:
            try:
                os.unlink(f"{REGISTRY}/{b}")
            except FileNotFoundError:
                pass


def leased(root: str) -> dict[int, str]:
    """The leases held by containers of state root ``root``: base → container."""
    prefix = f"{root}:"
    out = {}
    for b in _bases():
        key = _holder(b)
        if key is not None and key.startswith(prefix):
            out[b] = key[len(prefix):]
    return out
