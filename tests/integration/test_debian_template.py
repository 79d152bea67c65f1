"""A real distribution template: debian-12 by debootstrap, cached, updated in place.

The first run on a machine runs debootstrap against the Debian mirror (about
a minute); its result is cached in /var/cache/corral (as the suite may do),
so later builds, in any state root, take well under a second.
"""

from __future__ import annotations

import time
from pathlib import Path

from conftest import Corral


def test_debian_12_builds_from_cache_and_runs(state_root: Path) -> None:
    c = Corral(state_root)
    c("template", "build", "debian-12", timeout=1800)  # fills the cache on a fresh machine
    info = c.json("template", "info", "debian-12")
    assert info["os"] == "debian" and info["version"] == "12"  # type: ignore[index]
    assert info["suite"] == "bookworm" and info["mirror"] == "http://deb.debian.org/debian"  # type: ignore[index]
    assert info["size_bytes"] > 100 << 20  # type: ignore[index]
    # a second build (another name, same cache) is a copy of the cached tree
    started = time.monotonic()
    c("template", "build", "debian-12", "--name", "deb2")
    assert time.monotonic() - started < 10
    assert c.json("template", "info", "deb2")["cache"] == "hit"  # type: ignore[index]
    c("template", "remove", "deb2")

    out = c("run", "--rm", "--template", "debian-12", "--", "sh", "-c",
            "cat /etc/debian_version; dpkg-query -W -f '${Status}' systemd-sysv; "
            "test -s /etc/machine-id || echo no-machine-id")
    assert out.splitlines()[0].startswith("12.")
    assert "install ok installed" in out and "no-machine-id" in out
    # creating a container copies nothing of the 150+ MB tree
    c("create", "d1", "--template", "debian-12")
    used = sum(p.stat().st_size for p in (state_root / "containers" / "d1").rglob("*")
               if p.is_file())
    assert used < 64 << 10, used
    assert "used by" in c.run("template", "remove", "debian-12", check=False).stderr
    c("destroy", "d1")


def test_bad_mirror_and_unknown_kind_are_refused(state_root: Path) -> None:
    c = Corral(state_root)
    p = c.run("template", "build", "debian-12", "--name", "x", "--mirror", "ftp:/nope",
              check=False)
    assert p.returncode != 0 and "mirror" in p.stderr and "Traceback" not in p.stderr
    p = c.run("template", "build", "debian-99", check=False)
    assert p.returncode != 0 and "unknown template kind" in p.stderr
    assert not (state_root / "templates" / "x").exists()
