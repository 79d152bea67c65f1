"""Debian and Ubuntu templates made with debootstrap from a configurable mirror.

The first build of a suite runs debootstrap (minutes: it downloads and
configures a few hundred packages); the finished tree is kept in a cache
outside the state root (``/var/cache/corral`` or ``$CORRAL_CACHE``) keyed
by distribution, suite, architecture, mirror and package list, so every
later build — in any state root — is a hard-linked copy of the cached tree:
seconds, offline, and no extra disk.  Hard links are safe because neither
the cache nor a template is ever written in place: templates are read-only
lower layers, and updates go into new layers.

The tree is made ready for booting in a container the way
``systemd-nspawn`` and LXC's download templates expect: an empty
machine-id (systemd makes one per container on first boot), no SSH host
keys (made per container), no getty on real ttys, the mirror in
sources.list, and apt's downloaded packages dropped.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

from corral.errors import CommandError, UnsupportedError, ValidationError

Progress = Callable[[str, int, "int | None"], None]

# kind -> (distribution, suite, default mirror)
DEBIAN_MIRROR = "http://deb.debian.org/debian"
UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"
KINDS: dict[str, tuple[str, str, str]] = {
    "debian-11": ("debian", "bullseye", DEBIAN_MIRROR),
    "debian-12": ("debian", "bookworm", DEBIAN_MIRROR),
    "debian-13": ("debian", "trixie", DEBIAN_MIRROR),
    "ubuntu-22.04": ("ubuntu", "jammy", UBUNTU_MIRROR),
    "ubuntu-24.04": ("ubuntu", "noble", UBUNTU_MIRROR),
}

# What a small server needs beyond debootstrap's minbase: systemd as init,
# D-Bus for systemctl/logind, and the everyday network and process tools.
INCLUDE = ("systemd-sysv", "dbus", "iproute2", "iputils-ping", "procps", "netbase",
           "less", "ca-certificates", "libpam-systemd")

DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "armhf", "i686": "i386",
            "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}


def cache_root() -> str:
    return os.environ.get("CORRAL_CACHE") or "/var/cache/corral"


def _arch() -> str:
    machine = platform.machine()
    try:
        return DEB_ARCH[machine]
    except KeyError:
        raise UnsupportedError(f"debootstrap templates are not supported on {machine}") from None


def _validate_mirror(mirror: str) -> str:
    if not re.fullmatch(r"(https?|file)://[^\s'\"]+", mirror):
        raise ValidationError(f"mirror '{mirror}' is not an http(s):// or file:// URL")
    return mirror.rstrip("/")


def cache_key(kind: str, mirror: str) -> str:
    distro, suite, _ = KINDS[kind]
    digest = hashlib.sha256("\n".join((mirror, *INCLUDE)).encode()).hexdigest()[:12]
    return f"{distro}-{suite}-{_arch()}-{digest}"


def build(rootfs: Any, *, kind: str, mirror: str | None = None,
          progress: Progress | None = None, **_: Any) -> dict[str, Any]:
    """Fill ``rootfs`` (an empty directory) from the cache, making the cache first if needed."""
    distro, suite, default_mirror = KINDS[kind]
    mirror = _validate_mirror(mirror or default_mirror)
    cached = os.path.join(cache_root(), "debootstrap", cache_key(kind, mirror))
    hit = os.path.isdir(f"{cached}/rootfs")
    if not hit:
        _bootstrap(cached, distro, suite, mirror, progress)
    if progress:
        progress("copy from cache", 0, None)
    # cp -al: the tree shares the cache's inodes (see the module docstring);
    # a state root on another filesystem gets a real copy.
    same_fs = os.stat(cached).st_dev == os.stat(str(rootfs)).st_dev
    _run(["cp", "-al" if same_fs else "-a", "--", f"{cached}/rootfs/.", str(rootfs)],
         "copying the cached tree")
    meta = _os_release(str(rootfs))
    meta.update({
        "os": distro,
        "version": meta.get("version") or suite,
        "suite": suite,
        "mirror": mirror,
        "init": "/sbin/init",
        "stop_signal": "SIGRTMIN+3",  # systemd's "halt the container"
        "console": "pty",  # a getty on /dev/console, `corral console`, reboot from inside
        "cache": "hit" if hit else "filled",
    })
    return meta


def _bootstrap(cached: str, distro: str, suite: str, mirror: str,
               progress: Progress | None) -> None:
    if shutil.which("debootstrap") is None:
        raise UnsupportedError("debootstrap is not installed",
                               hint="Install it: apt-get install debootstrap")
    script = f"/usr/share/debootstrap/scripts/{suite}"
    extra: list[str] = []
    if distro == "ubuntu":
        extra.append(f"--keyring={_ubuntu_keyring(mirror)}")
        if not os.path.exists(script):
            # Every Ubuntu suite since 7.10 uses the same script; an older
            # debootstrap (Debian 12's) just lacks the newer names.
            script = "/usr/share/debootstrap/scripts/gutsy"
    if not os.path.exists(script):
        raise UnsupportedError(f"this debootstrap does not know {distro} '{suite}'",
                               hint="Update debootstrap from the distribution's backports.")
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    tmp = f"{cached}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(f"{tmp}/rootfs")
    try:
        argv = ["debootstrap", "--variant=minbase", f"--arch={_arch()}", *extra,
                f"--include={','.join(INCLUDE)}", suite, f"{tmp}/rootfs", mirror, script]
        if distro == "ubuntu":
            argv.insert(1, "--components=main,universe")
        _debootstrap(argv, mirror, progress)
        _prepare_for_containers(f"{tmp}/rootfs", distro, suite, mirror)
        os.rename(tmp, cached)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Ubuntu's archive key (2018), as published by Ubuntu; Debian does not ship
# Ubuntu's keyring, so it is fetched from the mirror in the ubuntu-keyring
# package and trusted only if its fingerprint is this one.
UBUNTU_ARCHIVE_KEY = "F6ECB3762474EDA9D21B7022871920D1991BC93C"
UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb"
UBUNTU_KEY_MEMBER = "etc/apt/trusted.gpg.d/ubuntu-keyring-2018-archive.gpg"


def _ubuntu_keyring(mirror: str) -> str:
    system = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    if os.path.exists(system):
        return system
    cached = os.path.join(cache_root(), "keyrings", "ubuntu-archive-2018.gpg")
    if os.path.exists(cached):
        return cached
    import tempfile
    import urllib.request

    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        deb = f"{tmp}/keyring.deb"
        try:
            urllib.request.urlretrieve(f"{mirror}/{UBUNTU_KEYRING_DEB}", deb)
        except OSError as exc:
            raise CommandError(f"cannot fetch Ubuntu's keyring from {mirror}: {exc}") from None
        _run(["dpkg-deb", "-x", deb, f"{tmp}/x"], "unpacking ubuntu-keyring")
        key = f"{tmp}/x/{UBUNTU_KEY_MEMBER}"
        if shutil.which("gpg") is None:
            raise UnsupportedError("gpg is needed to check Ubuntu's archive key",
                                   hint="Install it: apt-get install gpg")
        out = subprocess.run(["gpg", "--show-keys", "--with-colons", key], capture_output=True,
                             text=True, check=False).stdout
        fingerprints = [ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:")]
        if fingerprints != [UBUNTU_ARCHIVE_KEY]:
            raise CommandError("the Ubuntu keyring from the mirror is not Ubuntu's archive key",
                               hint=f"Expected {UBUNTU_ARCHIVE_KEY}, got {fingerprints}.")
        shutil.copyfile(key, f"{cached}.tmp")
        os.rename(f"{cached}.tmp", cached)
    return cached


_STEP = re.compile(r"^I: (Retrieving|Validating|Extracting|Unpacking|Configuring) (\S+)")


def _debootstrap(argv: list[str], mirror: str, progress: Progress | None) -> None:
    """Run debootstrap, turning its ``I:`` lines into progress (packages per phase)."""
    tail: list[str] = []
    counts: dict[str, int] = {}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-15:]
        step = _STEP.match(line)
        if step and progress:
            phase = step.group(1).lower()
            counts[phase] = counts.get(phase, 0) + 1
            progress(f"debootstrap: {phase} packages", counts[phase], None)
    if proc.wait() != 0:
        log = "\n".join(tail)
        raise CommandError(f"debootstrap from {mirror} failed (exit {proc.returncode})",
                           hint=f"Is the mirror reachable? Its last lines:\n{log}")


def _prepare_for_containers(root: str, distro: str, suite: str, mirror: str) -> None:
    def write(rel: str, text: str, mode: int = 0o644) -> None:
        path = f"{root}/{rel}"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    # Empty, not missing: systemd writes a fresh id on first boot of each container.
    write("etc/machine-id", "", 0o444)
    try:
        os.unlink(f"{root}/var/lib/dbus/machine-id")
    except FileNotFoundError:
        pass
    write("etc/hostname", "localhost\n")
    components = "main universe" if distro == "ubuntu" else "main"
    lines = [f"deb {mirror} {suite} {components}"]
    if distro == "debian" and suite not in ("sid", "unstable"):
        lines.append(f"deb {mirror} {suite}-updates {components}")
    write("etc/apt/sources.list", "\n".join(lines) + "\n")
    # No getty on virtual terminals that do not exist in a container; the
    # console getty (on /dev/console, a pty) stays.
    for unit in ("getty@tty1.service",):
        link = f"{root}/etc/systemd/system/getty.target.wants/{unit}"
        if os.path.lexists(link):
            os.unlink(link)
    # Files that only make sense on a real machine.
    for rel in ("etc/fstab",):
        write(rel, "# the container's mounts are made by corral\n")
    shutil.rmtree(f"{root}/var/cache/apt/archives", ignore_errors=True)
    os.makedirs(f"{root}/var/cache/apt/archives/partial", exist_ok=True)
    for stale in ("var/lib/apt/lists",):
        shutil.rmtree(f"{root}/{stale}", ignore_errors=True)
        os.makedirs(f"{root}/{stale}/partial", exist_ok=True)


def _os_release(root: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            with open(f"{root}/{rel}") as f:
                text = f.read()
        except OSError:
            continue
        fields = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', text, re.MULTILINE))
        out["version"] = fields.get("VERSION_ID", "")
        out["pretty_name"] = fields.get("PRETTY_NAME", "")
        break
    return out


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandError(f"{what} failed: {proc.stderr.strip()[-300:]}")
