"""Guest setup from the host, like vzctl's `set` options: hostname, users, DNS, SSH keys, time zone.

What is a file (hostname, root's authorized SSH keys, resolvers) is kept in
the config and written into the container at every start; what needs the
guest's own tools (a user and its password, the time zone's links) runs
inside the running container, with its credentials, through ``exec``.
"""

from __future__ import annotations

import re
from typing import Any

from corral.errors import InvalidStateError, ValidationError
from corral.model import STOPPED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from corral.host import Host

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_TZ = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}")
_KEY = re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+"
                  r"( [^\n]*)?")


def parse_userpasswd(text: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not _USER.fullmatch(user) or not password or "\n" in password:
        raise ValidationError(f"--userpasswd '{user}:…' is not USER:PASSWORD",
                              hint="A user name like 'admin' and a non-empty password.")
    return user, password


def read_ssh_keys(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith("#")]
    except OSError as exc:
        raise ValidationError(f"cannot read SSH key file {path}: {exc.strerror}") from None
    bad = [ln for ln in lines if not _KEY.fullmatch(ln)]
    if not lines or bad:
        raise ValidationError(f"{path} holds no SSH public key" if not lines else
                              f"{path}: not an SSH public key: {bad[0][:40]}…",
                              hint="Give a public key file such as ~/.ssh/id_ed25519.pub.")
    return lines


def validate_timezone(tz: str) -> str:
    if not _TZ.fullmatch(tz) or ".." in tz:
        raise ValidationError(f"'{tz}' is not a time zone name", hint="E.g. Europe/Berlin, UTC.")
    return tz


def run_pending(host: Host, name: str) -> None:
    """The guest changes asked for while the container was stopped, now that it runs."""
    with host.lock(name):
        cfg = host.load_config(name)
        pending = list(cfg.guest.get("pending") or [])
        if not pending:
            return
        cfg.guest = {k: v for k, v in cfg.guest.items() if k != "pending"}
        host.save_config(cfg)  # the password leaves the config before it is used
    for action in pending:
        if "userpasswd" in action:
            apply(host, name, userpasswd=tuple(action["userpasswd"]))  # type: ignore[arg-type]
        if "timezone" in action:
            apply(host, name, timezone=action["timezone"])


def files(cfg: Any) -> dict[str, tuple[bytes, int]]:
    """The guest files kept in the config, written by the init before it execs."""
    out: dict[str, tuple[bytes, int]] = {}
    keys = cfg.guest.get("ssh_keys") or []
    if keys:
        out["/root/.ssh/authorized_keys"] = (("\n".join(keys) + "\n").encode(), 0o600)
    return out


def _run(host: Host, name: str, script: str, *args: str) -> None:
    from corral.runtime.spec import ExecSpec

    code = host.exec(name, ExecSpec(argv=("/bin/sh", "-c", script, "sh", *args)))
    if code != 0:
        raise InvalidStateError(f"setting up the guest of '{name}' failed (exit {code})",
                                hint="Its output is above.")


def apply(host: Host, name: str, *, hostname: str | None = None,
          userpasswd: tuple[str, str] | None = None, ssh_keys: list[str] | None = None,
          timezone: str | None = None) -> list[str]:
    """Change the guest; returns what was done.  Files persist; the rest needs it running."""
    from corral.model import validate_hostname

    if hostname is not None:
        validate_hostname(hostname)
    if timezone is not None:
        validate_timezone(timezone)
    done = []
    with host.lock(name):
        cfg = host.load_config(name)
        running = host.status(name) != STOPPED
        if (userpasswd or timezone) and not running:
            # Done with the guest's own tools at its next start (see run_pending);
            # kept in the root-only config until then.
            pending = list(cfg.guest.get("pending") or [])
            if userpasswd:
                pending.append({"userpasswd": list(userpasswd)})
                done.append(f"password of {userpasswd[0]} (at the next start)")
            if timezone:
                pending.append({"timezone": timezone})
                done.append(f"time zone {timezone} (at the next start)")
            cfg.guest = {**cfg.guest, "pending": pending}
            userpasswd = timezone = None
        if hostname is not None:
            cfg.hostname = hostname
            done.append(f"hostname {hostname}")
        if ssh_keys is not None:
            cfg.guest = {**cfg.guest, "ssh_keys": ssh_keys}
            done.append(f"{len(ssh_keys)} SSH key(s) for root")
        host.save_config(cfg)
    if not running:
        return done
    if hostname is not None:
        _run(host, name, 'hostname "$1" && echo "$1" > /etc/hostname', hostname)
    if ssh_keys is not None:
        _run(host, name, 'umask 077; mkdir -p /root/.ssh && printf "%s\\n" "$1" > '
             "/root/.ssh/authorized_keys", "\n".join(ssh_keys))
    if userpasswd is not None:
        user, password = userpasswd
        _run(host, name, 'id "$1" >/dev/null 2>&1 || useradd -m -s /bin/sh "$1" 2>/dev/null '
             '|| adduser -D "$1"; printf "%s:%s\\n" "$1" "$2" | chpasswd', user, password)
        done.append(f"password of {user}")
    if timezone is not None:
        _run(host, name, 'test -e "/usr/share/zoneinfo/$1" || { echo "unknown time zone $1" >&2;'
             ' exit 1; }; ln -sf "/usr/share/zoneinfo/$1" /etc/localtime && '
             'echo "$1" > /etc/timezone', timezone)
        done.append(f"time zone {timezone}")
    return done


def set_dns(host: Host, name: str, nameservers: list[str] | None,
            searchdomains: list[str] | None) -> list[str]:
    """Resolvers and search domains: kept in the network config, /etc/resolv.conf now."""
    import ipaddress

    for ns_ in nameservers or []:
        try:
            ipaddress.ip_address(ns_)
        except ValueError:
            raise ValidationError(f"invalid --nameserver '{ns_}'") from None
    for dom in searchdomains or []:
        if not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", dom):
            raise ValidationError(f"invalid --searchdomain '{dom}'")
    with host.lock(name):
        cfg = host.load_config(name)
        if cfg.network.get("mode", "none") == "none":
            raise ValidationError(f"container '{name}' has no network",
                                  hint="Resolvers are for containers created with a network.")
        net = dict(cfg.network)
        if nameservers is not None:
            net["nameservers"] = nameservers
        if searchdomains is not None:
            net["searchdomains"] = searchdomains
        cfg.network = net
        host.save_config(cfg)
        running = host.status(name) != STOPPED
    if running:
        from corral import network

        lines = [f"nameserver {n}" for n in net.get("nameservers") or network.host_nameservers()]
        if net.get("searchdomains"):
            lines.append("search " + " ".join(net["searchdomains"]))
        _run(host, name, 'printf "%s\\n" "$1" > /etc/resolv.conf', "\n".join(lines))
    return ["resolvers " + " ".join(net.get("nameservers") or ["(the host's)"])]
