"""The modules of `run` and `exec`, loaded without importlib's per-module machinery.

An `import` of a module not loaded yet runs ~40 µs of importlib's own Python
code before the module's: the finders over sys.path and the package's path,
a spec, a module lock, the module's attributes, the parent's binding, and for
`from package import module` a failed getattr first.  A `run` loads ~36
modules of ours, so that is ~1.4 ms of every `run` and `exec` (measured: the
same modules imported in a fresh interpreter, 15.1 ms with importlib against
13.7 ms loaded here; 60 alternating runs).

For these latency-critical commands, once the fast parser has recognised
them (``main._fast_parse``), the modules they are known to need are loaded
here from the bytecode files Python itself wrote, under the rules of
Python's own loader: the file's magic number must be this interpreter's,
and the source's mtime and size recorded in it must match the source;
otherwise that module is left to the normal import, which recompiles it.
A module comes out as an imported one would: same spec, loader, __file__,
__cached__, __path__ and binding on its package.  Each list is in the order a
real run finishes importing them, the modules a package imports before the
package itself; tests/integration/test_preload.py fails when a command
imports a module of ours that is not in its list.
"""

from __future__ import annotations

import marshal
import os
import sys

# Paths under corral/, without .py.
RUN = (
    "errors", "cli/hot", "store", "model", "paths", "host/__init__", "revert",
    "host/lifecycle", "linux/__init__", "linux/ffi", "linux/_libc", "linux/ns",
    "templates/__init__", "host/templates", "host/idmaps", "storage/__init__", "storage/layers",
    "linux/fs", "linux/proc", "runtime/__init__", "runtime/lxcfs", "linux/caps", "linux/filter",
    "linux/mount", "runtime/spec", "runtime/rootfs", "linux/sysprog", "runtime/initprog",
    "runtime/spawn", "cgroups/base",
    "cgroups/__init__", "cgroups/fs", "cgroups/mounts", "runtime/filters",
    "linux/unixsock", "runtime/sysinfo_client", "linux/devices", "runtime/cgjoin",
)
# What a networked `run` adds (its address lease and veth).
NETWORK = ("network/__init__", "network/ipam", "network/netlink", "network/rtnl")
EXEC = (
    "errors", "cli/hot", "store", "model", "paths", "host/__init__", "runtime/__init__",
    "runtime/spec", "revert", "host/lifecycle", "linux/__init__", "linux/ffi", "linux/_libc",
    "linux/ns", "linux/proc", "runtime/exec", "cgroups/base", "cgroups/__init__", "cgroups/fs",
    "runtime/cgjoin", "linux/caps", "runtime/filters", "linux/filter", "linux/unixsock",
    "runtime/sysinfo_client", "linux/clone",
)


def load(stems: tuple[str, ...]) -> list[str]:
    """Load the modules ``stems`` names that are not loaded yet; the names of those
    loaded here (the rest are left to ``import``)."""
    if sys.flags.optimize:
        return []  # -O/-OO read .opt-N.pyc files: leave those to importlib
    bootstrap = sys.modules["_frozen_importlib"]  # importlib._bootstrap, as loaded at startup
    external = sys.modules["_frozen_importlib_external"]
    magic = external.MAGIC_NUMBER
    tag = sys.implementation.cache_tag
    base = os.path.dirname(sys.modules["corral"].__file__ or "")
    modules = sys.modules
    loaded: list[str] = []
    for stem in stems:
        package = stem.endswith("/__init__")
        name = "corral." + (stem[:-len("/__init__")] if package else stem).replace("/", ".")
        if name in modules:
            continue
        source = f"{base}/{stem}.py"
        directory, _, leaf = source.rpartition("/")
        cached = f"{directory}/__pycache__/{leaf[:-3]}.{tag}.pyc"
        try:
            st = os.stat(source)
            with open(cached, "rb") as f:
                data = f.read()
        except OSError:
            continue
        # Python's own checks of a timestamp-based bytecode file (PEP 552: flags 0).
        if (data[:4] != magic or data[4:8] != b"\0\0\0\0"
                or int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF
                or int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF):
            continue
        spec = bootstrap.ModuleSpec(name, external.SourceFileLoader(name, source),
                                    origin=source, is_package=package)
        spec.has_location = True
        spec.cached = cached
        if package:
            spec.submodule_search_locations = [directory]
        module = bootstrap.module_from_spec(spec)
        modules[name] = module
        try:
            exec(marshal.loads(memoryview(data)[16:]), module.__dict__)  # noqa: S102 - our bytecode
        except BaseException:
            del modules[name]  # as importlib does: no half-made module stays
            raise
        loaded.append(name)
    for name in loaded:  # bound on its package, as importlib does (packages load last)
        parent, _, child = name.rpartition(".")
        if parent in modules:
            setattr(modules[parent], child, modules[name])
    return loaded
