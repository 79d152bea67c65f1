"""The built-in ``tiny`` template: a busybox server made offline in under a second.

Uses the host's statically linked busybox (Debian's busybox-static), so no
network, no package manager and no shared libraries are needed.  Its init is
busybox init with an inittab that behaves like a small server's: startup
scripts in /etc/init.d/rcS, a syslog daemon, a cron daemon as the "idle
service", a getty respawned on the console when the console is a terminal,
and shutdown scripts on stop.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from corral.errors import CommandError, UnsupportedError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

INITTAB = """\
# busybox init(8) table of the corral 'tiny' template
::sysinit:/etc/init.d/rcS
::respawn:/sbin/syslogd -n -O /var/log/messages
::respawn:/usr/sbin/crond -f -c /etc/crontabs
::respawn:/sbin/console-getty
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
"""

RCS = """\
#!/bin/sh
# System start-up: what a small server does before its services start.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
ip link set lo up 2>/dev/null
mkdir -p /run /var/run /var/log /var/spool/cron/crontabs /tmp
chmod 1777 /tmp
for s in /etc/rc.d/S*; do [ -x "$s" ] && "$s" start; done
echo "$(hostname) is up"
"""

RCK = """\
#!/bin/sh
# System shutdown: stop services in reverse order.
for s in $(ls -r /etc/rc.d/S* 2>/dev/null); do [ -x "$s" ] && "$s" stop; done
echo "$(hostname) is going down"
"""

# A getty needs a terminal; a detached container's console is /dev/null,
# so wait instead of respawning in a tight loop.
CONSOLE_GETTY = """\
#!/bin/sh
if [ -t 0 ]; then exec /sbin/getty -n -l /bin/login 0 console; fi
exec sleep 2147483647
"""

PROFILE = """\
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\\u@\\h:\\w\\$ '
"""

FILES: dict[str, tuple[str, int]] = {
    "etc/inittab": (INITTAB, 0o644),
    "etc/init.d/rcS": (RCS, 0o755),
    "etc/init.d/rcK": (RCK, 0o755),
    "sbin/console-getty": (CONSOLE_GETTY, 0o755),
    "etc/profile": (PROFILE, 0o644),
    "etc/passwd": ("root:x:0:0:root:/root:/bin/sh\n"
                   "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                   "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", 0o644),
    "etc/group": ("root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n", 0o644),
    "etc/shadow": ("root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
                   "nobody:*:19000:0:99999:7:::\n", 0o640),
    "etc/shells": ("/bin/sh\n/bin/ash\n", 0o644),
    "etc/hostname": ("tiny\n", 0o644),
    "etc/hosts": ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n", 0o644),
    "etc/resolv.conf": ("", 0o644),
    "etc/crontabs/root": ("# m h dom mon dow command\n", 0o600),
    "etc/os-release": ('NAME="Corral tiny"\nID=corral-tiny\nVERSION_ID="1"\n'
                       'PRETTY_NAME="Corral tiny (busybox)"\n', 0o644),
}

DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc/init.d", "etc/rc.d", "etc/crontabs",
        "dev", "proc", "sys", "run", "tmp", "root", "home", "var/log", "var/run",
        "var/spool/cron", "mnt")


def find_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path) and _is_static(path):
            return path
    raise UnsupportedError(
        "no statically linked busybox on this host",
        hint="Install it: apt-get install busybox-static",
    )


def _is_static(path: str) -> bool:
    # A static ELF has no PT_INTERP program header; a dynamic one names its loader.
    with open(path, "rb") as f:
        head = f.read(65536)
    return b"ld-linux" not in head and b"/lib64/ld" not in head


def build(rootfs: Path, **_: object) -> dict[str, str]:
    """Populate ``rootfs`` (an empty directory); return template metadata."""
    busybox = find_busybox()
    for d in DIRS:
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    os.chmod(rootfs / "tmp", 0o1777)
    os.chmod(rootfs / "root", 0o700)
    shutil.copy2(busybox, rootfs / "bin/busybox")
    os.chmod(rootfs / "bin/busybox", 0o755)
    try:
        applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True,
                                 text=True).stdout.split()
    except subprocess.CalledProcessError as exc:
        raise CommandError(f"{busybox} --list-full failed: {exc.stderr.strip()}") from exc
    for applet in applets:
        link = rootfs / applet
        if applet == "bin/busybox" or link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink("/bin/busybox", link)
    for rel, (content, mode) in FILES.items():
        path = rootfs / rel
        path.write_text(content)
        os.chmod(path, mode)
    version = subprocess.run([busybox], capture_output=True, text=True).stdout.split("\n")[0]
    return {
        "os": "busybox",
        "version": version.split()[1] if version.startswith("BusyBox") else "unknown",
        "init": "/sbin/init",
        # busybox init: SIGUSR2 powers off (runs ::shutdown:, then TERM/KILL to all);
        # SIGTERM would mean reboot.
        "stop_signal": "SIGUSR2",
    }
