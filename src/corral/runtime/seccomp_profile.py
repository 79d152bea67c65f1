"""Corral's default seccomp profile: allow everything, refuse a short list.

Docker's default profile is an allow-list of ~350 syscalls; LXC's is a
deny-list.  Corral runs system containers (systemd, mounts, nested
namespaces) in their own user namespace, where the kernel already refuses
what needs real host privilege, so like LXC we deny: the list covers what
the user namespace does *not* fence off well -- interfaces that reach
host-global state (keyrings, kernel modules, kexec, the clock, swap,
accounting), big attack surfaces of little use in a container (bpf,
perf_event_open, userfaultfd, AF_VSOCK), and nested user namespaces, which
hand an unprivileged process a fresh set of capabilities to attack the
kernel with (allowed when the container is made for nesting).

Denied calls fail with EPERM, as if the container lacked the capability,
which every program must already cope with.  Foreign-ABI syscalls (i386
``int 0x80``, arm32 compat) kill the process -- the filter matches native
numbers only; x32 calls fail with ENOSYS.

Deliberately allowed, since the user namespace or other limits already
contain them: mount and the new mount API (systemd needs them),
pivot_root, name_to_handle_at, ptrace, process_vm_readv/writev, kcmp,
mknod/mknodat (device cgroup), reboot (in a PID namespace it ends the
container's init, which Corral turns into a restart), vhangup.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from corral.linux import seccomp
from corral.linux.seccomp import ALLOW, ENOSYS, EPERM, USER_NOTIF, Arg, Rule, masked_eq, ne

CLONE_NEWUSER = 0x1000_0000
AF_VSOCK = 40
_U32 = 0xFFFF_FFFF

# Refused outright with EPERM, whatever the arguments.  Names an
# architecture lacks (iopl on aarch64, stime on both) are skipped there.
DENIED: tuple[str, ...] = (
    # kernel code: modules and kexec
    "init_module", "finit_module", "delete_module", "create_module",
    "kexec_load", "kexec_file_load",
    # kernel attack surface with no place in a container
    "bpf", "perf_event_open", "userfaultfd", "lookup_dcookie", "nfsservctl", "uselib",
    # keyrings are not namespaced: a container could read or fill the host's
    "keyctl", "add_key", "request_key",
    # file handles bypass path-based checks and can reach outside the root
    "open_by_handle_at",
    # raw I/O ports
    "iopl", "ioperm",
    # host-wide state: swap, the clock, process accounting, quotas, kernel log
    "swapon", "swapoff",
    "settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
    "acct", "quotactl", "quotactl_fd", "syslog",
)

# personality(2) values that are allowed (as in Docker's profile): PER_LINUX,
# PER_LINUX32, UNAME26, PER_LINUX32|UNAME26 and 0xffffffff, which only asks.
# Others switch on legacy emulation such as READ_IMPLIES_EXEC or ADDR_NO_RANDOMIZE.
PERSONALITY_ALLOWED: tuple[int, ...] = (0x0, 0x8, 0x20000, 0x20008, 0xFFFF_FFFF)

# Calls refused only for some arguments (for docs): name -> when, and the errno.
RESTRICTED: dict[str, str] = {
    "personality": "EPERM unless the persona is one of "
                   + ", ".join(f"{v:#x}" for v in PERSONALITY_ALLOWED),
    "socket": "EPERM for the AF_VSOCK family (host/VM sockets)",
    "unshare": "EPERM with CLONE_NEWUSER (unless nesting)",
    "clone": "EPERM with CLONE_NEWUSER (unless nesting)",
    "clone3": "ENOSYS so libc falls back to clone, whose flags can be checked "
              "(unless nesting)",
}


@dataclass
class Profile:
    """Rules tried in order (first match per syscall wins), and what everything else gets."""

    rules: list[Rule] = field(default_factory=list)
    default_action: int = ALLOW

    def names(self) -> set[str]:
        return {r.syscall for r in self.rules if isinstance(r.syscall, str)}

    def without(self, names: Iterable[str]) -> Profile:
        """A copy with every rule for ``names`` removed (those calls get the default)."""
        drop = set(names)
        for n in drop:
            if n not in seccomp.SYSCALLS:
                raise KeyError(f"unknown syscall {n!r}")
        return Profile([r for r in self.rules if r.syscall not in drop], self.default_action)

    def with_rules(self, rules: Iterable[Rule]) -> Profile:
        """A copy with ``rules`` tried before the existing ones, so they override them."""
        return Profile([*rules, *self.rules], self.default_action)


def default_profile(nesting: bool = False, allow: Iterable[str] = ()) -> Profile:
    """Corral's default profile; ``nesting`` lets the container make user namespaces.

    ``allow`` names syscalls to take out of the profile (e.g. ``("keyctl",)``).
    """
    rules = [Rule(name, EPERM) for name in DENIED]
    # The kernel reads personality's argument as an unsigned int: compare the
    # low word only, or garbage in the upper half would dodge the check.
    rules.append(Rule("personality", EPERM,
                      tuple(ne(0, v, _U32) for v in PERSONALITY_ALLOWED)))
    rules.append(Rule("socket", EPERM, (Arg(0, "eq", AF_VSOCK, _U32),)))
    if not nesting:
        # clone and unshare take flags in arg 0 on both arches (s390 differs);
        # the kernel uses only their low word, where CLONE_NEWUSER lives.
        newuser = masked_eq(0, CLONE_NEWUSER, CLONE_NEWUSER)
        rules.append(Rule("unshare", EPERM, (newuser,)))
        rules.append(Rule("clone", EPERM, (newuser,)))
        # clone3 passes its flags in memory, out of the filter's reach.
        rules.append(Rule("clone3", ENOSYS))
    profile = Profile(rules)
    return profile.without(allow) if allow else profile


def build(profile: Profile | None = None, arch: str | None = None, *,
          extra_rules: Iterable[Rule] = (), allow: Iterable[str] = ()) -> bytes:
    """The BPF program for ``profile`` (default: :func:`default_profile`) on ``arch``.

    ``arch`` defaults to this machine's.  ``extra_rules`` are tried before
    the profile's; ``allow`` removes syscalls from it.  Install the result
    with :func:`corral.linux.seccomp.install`.
    """
    p = profile if profile is not None else default_profile()
    if allow:
        p = p.without(allow)
    extra = list(extra_rules)
    if extra:
        p = p.with_rules(extra)
    return seccomp.compile_filter(p.rules, arch, p.default_action)


# For a container whose sysinfo(2) the host's agent answers (runtime/sysinfo_agent.py):
# sysinfo waits on the listener the agent holds.  It is a rule of the container's
# one program, not a second program beside it: every seccomp filter a process
# carries is a BPF program of its own in kernel memory (~6 KB each: the program,
# its aux data, its JIT image), which counts at a thousand containers.
SYSINFO_NOTIFY = Rule("sysinfo", USER_NOTIF)
