"""The service layer: ``Host`` is the one place where operations live.

Fronts (CLI, daemon) parse input, call a ``Host`` method and render what it
returns; they never reach past it.  Methods are split by area into modules
(``lifecycle``, ``templates``, ``doctor``); this class holds what they share:
the state root, its id, locks, config and state files, and status computed
from the kernel (never from the state file alone).
"""

from __future__ import annotations

import os

from corral import store
from corral.errors import NotFoundError, PrivilegeError, ValidationError
from corral.model import FROZEN, RUNNING, STOPPED, ContainerConfig, RuntimeState, Status, \
    validate_name
from corral.paths import DEFAULT_ROOT, StateRoot, root_id  # noqa: F401 (benches use it)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Host:
    """One state root: a "host" of containers."""

    def __init__(self, root: str, *, require_root: bool = True) -> None:
        root = os.path.abspath(root)
        if any(c in root for c in ",:\n"):
            # overlayfs mount options are comma- and colon-separated
            raise ValidationError(f"state root {root} contains ',' or ':'",
                                  hint="Choose a path without them.")
        if require_root and os.geteuid() != 0:
            raise PrivilegeError("corral must run as root",
                                 hint="Run it with sudo, or as root.")
        self.paths = StateRoot(root)
        self.id = self.paths.id
        self._cgroup_layout: str | None = None
        self._dirs_made = False

    # -- identity of this state root -------------------------------------------------

    @property
    def root(self) -> str:
        return self.paths.root

    @property
    def is_default_root(self) -> bool:
        return self.root == DEFAULT_ROOT

    @property
    def cgroup_top(self) -> str:
        return "corral" if self.is_default_root else f"corral-{self.id}"

    def ensure_dirs(self) -> None:
        if self._dirs_made:  # once per process: a start takes the lock twice
            return
        for d in (self.paths.root, self.paths.templates, self.paths.containers,
                  self.paths.locks, self.paths.console, self.paths.layers):
            os.makedirs(d, mode=0o700, exist_ok=True)
        self._dirs_made = True

    @property
    def net_dir(self) -> str:
        """Where this root keeps its network records; none there: no network was made."""
        return f"{self.root}/network"

    @property
    def net(self) -> Any:
        """This root's network context (records under ``net_dir``)."""
        from corral.network import NetContext

        return NetContext(self.net_dir, self.id, self.is_default_root)

    # -- cgroups ---------------------------------------------------------------------

    def cgroup(self, name: str) -> Any:
        from corral import cgroups

        if self._cgroup_layout is None:
            self._cgroup_layout = cgroups.detect()
        return cgroups.manager(f"{self.cgroup_top}/{name}", layout=self._cgroup_layout)

    # -- containers: config, state, status ---------------------------------------------

    def lock(self, name: str) -> Any:
        self.ensure_dirs()
        return store.locked(self.paths.lock_file(name), f"container '{name}'")

    def exists(self, name: str) -> bool:
        return os.path.exists(self.paths.config_file(name))

    def names(self) -> list[str]:
        try:
            entries = os.listdir(self.paths.containers)
        except FileNotFoundError:
            return []
        return sorted(n for n in entries
                      if not n.startswith(".") and os.path.exists(self.paths.config_file(n)))

    def require_exists(self, name: str) -> None:
        validate_name(name)
        if not self.exists(name):
            raise self._not_found(name)

    @staticmethod
    def _not_found(name: str) -> NotFoundError:
        return NotFoundError(f"no container named '{name}'",
                             hint="See 'corral list' for the containers on this host.")

    def load_config(self, name: str) -> ContainerConfig:
        validate_name(name)
        try:
            data = store.read_toml_cached(self.paths.config_file(name))
        except FileNotFoundError:
            raise self._not_found(name) from None
        return ContainerConfig.from_dict(data)

    def save_config(self, cfg: ContainerConfig, *, durable: bool = True) -> None:
        store.write_toml(self.paths.config_file(cfg.name), cfg.to_dict(), durable=durable)

    def load_state(self, name: str) -> RuntimeState:
        for path in (self.paths.state_file(name), self.paths.legacy_state_file(name)):
            try:
                return RuntimeState.from_dict(store.read_json(path))
            except FileNotFoundError:
                continue
            except ValueError:
                break
        return RuntimeState()

    def save_state(self, name: str, state: RuntimeState) -> None:
        # Never fsync'd: the record describes processes, which a power cut ends
        # anyway (a torn file then reads as "stopped"); the rename keeps it whole
        # against a crash of ours.  Two fsyncs per start cost ~7 ms each when
        # hundreds of containers start at once.
        os.makedirs(self.paths.runtime, 0o700, exist_ok=True)
        store.write_json(self.paths.state_file(name), state.to_dict(), durable=False)

    def clear_state(self, name: str) -> None:
        # The root's directory of records stays when its last container stops,
        # like its top cgroups (see tidy_idle): on a disk-backed /run, removing
        # and making it again cost ~0.1-0.3 ms of every `run --rm`.
        for path in (self.paths.state_file(name), self.paths.legacy_state_file(name)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def tidy_idle(self) -> None:
        """Remove the root's top cgroup in each hierarchy, shared by its containers,
        and its directory of runtime records, where none of them is left.

        They are not removed with the root's last container: the next start
        would make them again, and that pair of mkdir and rmdir in a dozen
        cgroup hierarchies is ~2 ms of every ``run --rm`` in an otherwise empty
        root (systemd's machine.slice and Docker's parent cgroup stay too).  A
        root's top holds no process and no limit.  A no-op while any container
        exists; a start racing with it makes the top again (see the cgroup
        driver's create).
        """
        if self.names():
            return
        from corral import cgroups

        cgroups.remove_top(self.cgroup_top)
        try:
            os.rmdir(self.paths.runtime)  # the records' directory, empty by now
        except OSError:
            pass  # gone already, or a start racing with us wrote a record

    def status(self, name: str, state: RuntimeState | None = None) -> Status:
        """Recomputed from the kernel: the init's PID *and* start time, then the freezer."""
        from corral.linux import proc

        state = state if state is not None else self.load_state(name)
        if state.pid is None or not proc.is_alive(state.pid, state.pid_start):
            return STOPPED
        try:
            if self.cgroup(name).frozen():
                return FROZEN
        except OSError:
            pass
        return RUNNING

    # -- operations (each area in its own module) ------------------------------------

    def template_build(self, kind: str, name: str | None = None, force: bool = False,
                       mirror: str | None = None, progress: Any = None) -> dict[str, Any]:
        from corral.host import templates

        return templates.build(self, kind, name or kind, force=force, mirror=mirror,
                               progress=progress)

    def template_list(self) -> list[dict[str, Any]]:
        from corral.host import templates

        return templates.list_all(self)

    def template_info(self, name: str) -> dict[str, Any]:
        from corral.host import templates

        return templates.info(self, name)

    def template_remove(self, name: str) -> None:
        from corral.host import templates

        templates.remove(self, name)

    def template_update(self, name: str, command: str | None = None) -> dict[str, Any]:
        from corral.host import templates

        return templates.update(self, name, command=command)

    def template_import(self, source: str, name: str, progress: Any = None) -> dict[str, Any]:
        from corral.host import templates

        return templates.import_(self, source, name, progress=progress)

    # -- snapshots, clones, rebase, backups (host/snapshots.py, host/backup.py) ---------

    def snapshot_create(self, name: str, snap: str) -> dict[str, Any]:
        from corral.host import snapshots

        return snapshots.snapshot_create(self, name, snap)

    def snapshot_list(self, name: str) -> list[dict[str, Any]]:
        from corral.host import snapshots

        return snapshots.snapshot_list(self, name)

    def snapshot_restore(self, name: str, snap: str, force: bool = False) -> dict[str, Any]:
        from corral.host import snapshots

        return snapshots.snapshot_restore(self, name, snap, force=force)

    def snapshot_delete(self, name: str, snap: str) -> None:
        from corral.host import snapshots

        snapshots.snapshot_delete(self, name, snap)

    def clone(self, src: str, dst: str, snapshot: str | None = None) -> ContainerConfig:
        from corral.host import snapshots

        return snapshots.clone(self, src, dst, snapshot=snapshot)

    def rebase(self, name: str, version: int | None = None,
               force: bool = False) -> dict[str, Any]:
        from corral.host import snapshots

        return snapshots.rebase(self, name, version, force=force)

    def backup(self, name: str, output: str, progress: Any = None) -> dict[str, Any]:
        from corral.host import backup

        return backup.backup(self, name, output, progress=progress)

    def restore(self, archive: str, name: str | None = None,
                progress: Any = None) -> dict[str, Any]:
        from corral.host import backup

        return backup.restore(self, archive, name, progress=progress)

    def create(self, cfg: ContainerConfig, *, durable: bool = True) -> ContainerConfig:
        from corral.host import lifecycle

        return lifecycle.create(self, cfg, durable=durable)

    def start(self, name: str, *, details: bool = True) -> dict[str, Any]:
        from corral.host import lifecycle

        return lifecycle.start(self, name, details=details)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        from corral.host import lifecycle

        lifecycle.stop(self, name, timeout=timeout)

    def stop_many(self, names: list[str], timeout: float = 10.0) -> list[tuple[str, Any]]:
        from corral.host import lifecycle

        return lifecycle.stop_many(self, names, timeout=timeout)

    def restart(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        from corral.host import lifecycle

        return lifecycle.restart(self, name, timeout=timeout)

    def destroy(self, name: str, force: bool = False) -> None:
        from corral.host import lifecycle

        lifecycle.destroy(self, name, force=force)

    def run(self, cfg: ContainerConfig, *, remove: bool) -> int:
        from corral.host import lifecycle

        return lifecycle.run(self, cfg, remove=remove)

    def exec(self, name: str, spec: Any) -> int:
        from corral.host import lifecycle

        return lifecycle.exec_in(self, name, spec)

    def info(self, name: str) -> dict[str, Any]:
        from corral.host import lifecycle

        return lifecycle.info(self, name)

    def list(self) -> list[dict[str, Any]]:
        from corral.host import lifecycle

        return lifecycle.list_all(self)

    def set_limits(self, name: str, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate ``raw`` flag texts, apply them live if running, persist them."""
        from corral.host import resources

        return resources.set_limits(self, name, resources.parse_limits(raw))

    def set_network(self, name: str, *, rate: str | None = None,
                    publish: list[str] | None = None,
                    unpublish: list[str] | None = None) -> dict[str, Any]:
        """Change a container's published ports and rate; live when it runs."""
        from corral import network
        from corral.errors import ValidationError as _VE

        with self.lock(name):
            cfg = self.load_config(name)
            spec = dict(cfg.network)
            if spec.get("mode", "none") == "none":
                raise _VE(f"container '{name}' has no network",
                          hint="Create it with --net bridge to publish ports or shape traffic.")
            ports = list(spec.get("publish", []))
            for text in unpublish or []:
                key = network.parse_unpublish(text)
                ports = [q for q in ports if (q["proto"], q["host_port"]) != key]
            for text in publish or []:
                p = network.parse_publish(text)
                ports = [q for q in ports if (q["proto"], q["host_port"]) !=
                         (p["proto"], p["host_port"])] + [p]
            spec["publish"] = ports
            if rate is not None:
                spec["rate"] = network.parse_rate(rate)
                if spec["rate"] is None:
                    del spec["rate"]
            state = self.load_state(name)
            if self.status(name, state) != STOPPED:
                network.update(self.net, name, spec, state.net, state.pid)
            cfg.network = spec
            self.save_config(cfg)
            return spec

    def set_autostart(self, name: str, **changes: Any) -> dict[str, Any]:
        with self.lock(name):
            cfg = self.load_config(name)
            for key, value in changes.items():
                setattr(cfg, key, value)
            self.save_config(cfg)
        return {"autostart": cfg.autostart, "boot_order": cfg.boot_order,
                "boot_delay": cfg.boot_delay}

    def autostart(self) -> list[tuple[str, Any]]:
        """Start the autostart containers by boot order; (name, error or None) each."""
        import time

        from corral.errors import CorralError

        configs = []
        for name in self.names():
            try:
                cfg = self.load_config(name)
            except CorralError as exc:
                configs.append((0, name, None, exc))
                continue
            if cfg.autostart:
                configs.append((cfg.boot_order, name, cfg, None))
        results: list[tuple[str, Any]] = []
        for _order, name, cfg, err in sorted(configs, key=lambda c: (c[0], c[1])):
            if err is None and self.status(name) == STOPPED:
                try:
                    self.start(name)
                except CorralError as exc:
                    err = exc
                else:
                    if cfg is not None and cfg.boot_delay:
                        time.sleep(cfg.boot_delay)
            results.append((name, err))
        return results

    def set_guest(self, name: str, *, hostname: str | None = None,
                  userpasswd: tuple[str, str] | None = None, ssh_keys: list[str] | None = None,
                  timezone: str | None = None, nameservers: list[str] | None = None,
                  searchdomains: list[str] | None = None) -> list[str]:
        from corral.host import guest

        done = guest.apply(self, name, hostname=hostname, userpasswd=userpasswd,
                           ssh_keys=ssh_keys, timezone=timezone)
        if nameservers is not None or searchdomains is not None:
            done += guest.set_dns(self, name, nameservers, searchdomains)
        return done

    def stats(self, name: str) -> dict[str, Any]:
        from corral.host import resources

        return resources.stats(self, name)

    def warm_for_start(self) -> None:
        """Import what starting containers needs, once, before mass operations fork
        their workers (not pyroute2: the start path does without it, and every
        page a worker holds makes its forks dearer)."""
        from corral.host import lifecycle  # noqa: F401
        from corral.runtime import spawn  # noqa: F401

        if os.path.isdir(self.net.state_dir):
            from corral.network import netlink, rtnl  # noqa: F401

    def network_list(self) -> list[dict[str, Any]]:
        from corral import network

        return network.list_networks(self.net)

    def network_create(self, name: str, *, subnet: str | None = None,
                       bridge: str | None = None) -> dict[str, Any]:
        from corral import network
        from corral.errors import ConflictError
        from corral.model import validate_name

        validate_name(name, "network")
        if any(n["name"] == name for n in self.network_list()):
            raise ConflictError(f"network '{name}' already exists")
        if bridge is not None:
            network.validate_bridge_name(bridge)
        return network.ensure_network(self.net, name, subnet=subnet, bridge=bridge)

    def network_info(self, name: str) -> dict[str, Any]:
        for n in self.network_list():
            if n["name"] == name:
                return n
        raise NotFoundError(f"no network named '{name}'",
                            hint="See 'corral network list'.")

    def network_delete(self, name: str) -> None:
        from corral import network

        network.delete_network(self.net, name)

    def doctor(self, fix: bool = False) -> list[str]:
        from corral.host import doctor

        return doctor.run(self, fix=fix)
