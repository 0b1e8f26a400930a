"""Container lifecycle on one state root: create, start/stop (via the supervisor), kill, pause, remove,
and the read-only views (inspect, list, logs, stats, top) plus exec.

The supervisor (engine/supervise) owns running containers and writes their exits; this class writes only
what the CLI decides: the row at create, the paused state, and the removal. Removal deletes the row LAST,
so a crash half-way leaves a row whose `rm` can simply be repeated (every step is idempotent).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import pwd
import re
import signal as signals
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import errors
from engine.containers import logs, records, rootfs
from engine.containers.cgroups import DEFAULT_PARENT, Cgroup, runs_in
from engine.containers.spec import ContainerSpec, Healthcheck, Mount
from engine.errors import ContainerConflict, ContainerNotFound, EngineError
from engine.state.root import StateRoot
from engine.supervise.protocol import CGROUP_PARENT_ENV, LAUNCH_TIMEOUT, SOCKET_NAME, UNKNOWN_EXIT
from engine.volumes.store import ANONYMOUS_LABEL, VolumeStore

if TYPE_CHECKING:
    import subprocess

    from engine.containers.spawn import Stdio
    from engine.images.store import Image, ImageStore

NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
ACTIVE_STATES = ("running", "paused", "restarting")
KILL_WAIT = 10.0
# state roots whose supervisor answered a ping in this process (set.add/discard are atomic under the GIL)
_SUPERVISOR_ANSWERED: set[str] = set()
_SUPERVISOR_LAUNCH = threading.Lock()
_KEEPER_LAUNCHED: dict[str, subprocess.Popen[bytes]] = {}  # root -> a keeper launched by warm_supervisor
# connect failures: nobody listens on the socket, so the request was not delivered and may be repeated
_UNREACHABLE = (FileNotFoundError, ConnectionRefusedError)


def cgroup_name(container_id: str) -> str:
    """The container's cgroup under the cgroup parent: its full id (the supervisor creates it at start)."""
    return container_id


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ContainerManager:
    """Every container operation on `root`; methods take a full id, a unique id prefix or a name."""

    def __init__(self, root: StateRoot, *, cgroup_parent: str | None = None) -> None:
        self.root = root
        self.db = root.db
        self.cgroup_parent = cgroup_parent or os.environ.get(CGROUP_PARENT_ENV) or DEFAULT_PARENT
        self.volumes = VolumeStore(root)
        self._networks = None
        self._images: ImageStore | None = None
        self._created_from: dict[str, Image] = {}  # image id -> image: replicas read it once

    @property
    def images(self) -> ImageStore:
        """The image store, made on first use (a `down` never needs it: ~25 ms of imports saved)."""
        if self._images is None:
            from engine.images.store import ImageStore

            self._images = records.bind_image_hooks(ImageStore(self.root), self.db)
        return self._images

    # -- lookup ----------------------------------------------------------------------------------------

    def get(self, id_or_name: str) -> dict[str, Any]:
        record = records.get(self.db, id_or_name)
        if record is None:
            raise ContainerNotFound(f"no such container: {id_or_name}", subject=id_or_name)
        return record

    def spec_of(self, record: dict[str, Any]) -> ContainerSpec:
        return ContainerSpec.from_json(record["spec"])

    # -- create ----------------------------------------------------------------------------------------

    def create(self, spec: ContainerSpec) -> dict[str, Any]:
        """Record the container and prepare its directories and volumes; it is not started.

        The image must be in the store (it stays "in use" while the row exists); an empty id gets a random
        one, an empty name the id's first 12 characters; empty `layer_dirs` come from the image. Volume
        mounts without a source get an anonymous volume; an empty volume receives the image's files at
        the mount point (docker's copy-up) unless `nocopy`. Any failure undoes what was done.
        """
        image = self._created_from.get(spec.image_id) or self.images.get_image(spec.image_id)
        self._created_from[spec.image_id] = image  # an id names one content: layers and config stay
        spec = self._complete(spec, image)
        spec = with_image_defaults(spec, image.config)
        spec = dataclasses.replace(spec, mounts=spec.mounts + self._mounts_from(spec))
        anonymous: list[str] = []
        mounts = tuple(self._volume_mount(m, anonymous) for m in spec.mounts)
        spec = dataclasses.replace(spec, mounts=mounts)
        try:
            record = records.insert(
                self.db,
                id=spec.id,
                name=spec.name,
                image_id=spec.image_id,
                spec_json=spec.to_json(),
                labels=dict(spec.labels),
                created=now_rfc3339(),
            )
        except BaseException:
            self._drop_volumes(anonymous)
            raise
        try:
            if spec.network_mode == "bridge" and spec.networks:
                self.networks.register(spec)  # the networks exist, static addresses fit
            self._prepare(spec)
        except BaseException:
            self._undo_create(spec.id, anonymous)
            raise
        return self.get(record["id"])

    @property
    def networks(self):  # type: ignore[no-untyped-def]
        """The network manager of this root (engine.net), made on first use."""
        if self._networks is None:
            from engine.net.manager import NetworkManager

            self._networks = NetworkManager(self.root)
        return self._networks

    def _complete(self, spec: ContainerSpec, image: Image) -> ContainerSpec:
        cid = spec.id or os.urandom(32).hex()
        name = spec.name or cid[:12]
        if not NAME_RE.fullmatch(name):
            raise ContainerConflict(
                f"invalid container name {name!r}: [a-zA-Z0-9][a-zA-Z0-9_.-]+", subject=name
            )
        layer_dirs = spec.layer_dirs or tuple(self.images.layer_dirs(image))
        return dataclasses.replace(spec, id=cid, name=name, layer_dirs=layer_dirs)

    def _mounts_from(self, spec: ContainerSpec) -> tuple[Mount, ...]:
        """volumes_from: the volume and bind mounts of other containers, at targets the spec leaves free.

        As Docker: mode "ro" makes them read-only, "rw" keeps each mount's own mode; the volumes are
        already populated, so no copy-up (nocopy).
        """
        taken = {m.target for m in spec.mounts}
        inherited: list[Mount] = []
        for source_id, mode in spec.volumes_from:
            if mode not in ("ro", "rw"):
                raise errors.InvalidCommand(
                    f"volumes_from mode must be ro or rw, not {mode!r}", subject=source_id
                )
            for mount in self.spec_of(self.get(source_id)).mounts:
                if mount.type not in ("volume", "bind") or mount.target in taken:
                    continue
                taken.add(mount.target)
                read_only = mount.read_only or mode == "ro"
                inherited.append(dataclasses.replace(mount, read_only=read_only, nocopy=True))
        return tuple(inherited)

    def _volume_mount(self, mount: Mount, anonymous: list[str]) -> Mount:
        """A volume mount with its source filled in (anonymous volumes are created here)."""
        if mount.type != "volume" or mount.source:
            return mount
        volume = self.volumes.create()
        anonymous.append(volume.name)
        return dataclasses.replace(mount, source=volume.name)

    def _prepare(self, spec: ContainerSpec) -> None:
        for mount in spec.mounts:
            if mount.type == "volume" and mount.source:
                self.volumes.mark_in_use(mount.source, spec.id)
                if not mount.subpath:
                    self._copy_up(spec, mount)
        paths = rootfs.make_dirs(self.root, spec.id)  # the /etc files come at start
        if spec.log_driver in ("json-file", ""):
            records.set_log_path(self.db, spec.id, str(logs.log_path(paths.base, spec.id)))

    def _copy_up(self, spec: ContainerSpec, mount: Mount) -> None:
        """Fill an empty volume from the image: the directory of the topmost layer that has it."""
        volume = self.volumes.get(mount.source or "")
        for layer in spec.layer_dirs:
            candidate = Path(layer, mount.target.lstrip("/"))
            if candidate.is_dir() and not candidate.is_symlink():
                self.volumes.populate_from_image(volume, candidate, nocopy=mount.nocopy)
                return

    def _undo_create(self, cid: str, anonymous: list[str]) -> None:
        with contextlib.suppress(EngineError, OSError):
            rootfs.cleanup(self.root, cid)
        with contextlib.suppress(EngineError, OSError):
            self.networks.unregister(cid)
        self.volumes.release_all(cid)
        self._drop_volumes(anonymous)
        with contextlib.suppress(ContainerNotFound):
            records.delete(self.db, cid)

    def _drop_volumes(self, names: Sequence[str]) -> None:
        for name in names:
            with contextlib.suppress(EngineError):
                self.volumes.remove(name, force=True)

    def volume_sources(self, spec: ContainerSpec) -> dict[str, str]:
        """Volume name -> host directory, the `volumes` argument of spawn.start (for the supervisor)."""
        return volume_sources(self.volumes, spec)

    # -- start / stop (the supervisor) -----------------------------------------------------------------

    def start(self, id_or_name: str) -> dict[str, Any]:
        """Ask the supervisor (started if needed) to start the container; a running one is left alone."""
        record = self.get(id_or_name)
        if record["state"] in ("running", "restarting"):
            return record
        if record["state"] == "paused":
            raise ContainerConflict("the container is paused: unpause it instead", subject=record["name"])
        self._ask_supervisor("start", id=record["id"])
        return self.get(record["id"])

    def stop(self, id_or_name: str, timeout: float | None = None) -> dict[str, Any]:
        """Stop signal, SIGKILL after `timeout` (default: the grace period); the supervisor does it."""
        record = self.get(id_or_name)
        if record["state"] not in ACTIVE_STATES:
            return record
        options = {} if timeout is None else {"timeout": timeout}
        self._ask_supervisor("stop", id=record["id"], **options)
        return self.get(record["id"])

    def _ask_supervisor(self, op: str, **args: Any) -> dict[str, Any]:
        """One request, pinging (and launching) the supervisor only the first time in this process: a ping
        is a whole round trip per start/stop. If the one that answered has died since, the connect fails;
        then ensure_supervisor starts a new one and the request is sent once more (nothing was done)."""
        from engine.supervise import client

        key = str(self.root.path)
        if key not in _SUPERVISOR_ANSWERED:
            self._ensure_supervisor(key)
            return client.request(self.root, op, **args)
        try:
            return client.request(self.root, op, **args)
        except errors.SupervisorError as exc:
            if not isinstance(exc.__cause__, _UNREACHABLE):
                raise
        _SUPERVISOR_ANSWERED.discard(key)
        self._ensure_supervisor(key)
        return client.request(self.root, op, **args)

    def warm_supervisor(self) -> None:
        """Launch this root's keeper now, without waiting, unless a supervisor answers or one was launched:
        the first start waits for it. Launching takes ~0.25 s (two Python starts); begun before the
        images and the plan, it overlaps them. No thread is left running: a build may fork after this."""
        key = str(self.root.path)
        if key in _SUPERVISOR_ANSWERED or key in _KEEPER_LAUNCHED:
            return
        if (self.root.path / "run" / SOCKET_NAME).exists():
            return  # one answers, or did: the first start pings it (and relaunches it if it died)
        from engine.supervise import launcher

        with contextlib.suppress(OSError):  # the first start tries again and reports the error
            _KEEPER_LAUNCHED[key] = launcher.launch(self.root.path, self.cgroup_parent, wait=False)

    def _ensure_supervisor(self, key: str) -> None:
        """One thread of this process makes sure a supervisor answers; the others wait for it. (Twenty
        threads of a parallel `up` on a fresh root each launched a keeper: ~1.3 s each.)"""
        from engine.supervise import client

        with _SUPERVISOR_LAUNCH:
            if key not in _SUPERVISOR_ANSWERED:
                launched = _KEEPER_LAUNCHED.pop(key, None)
                try:
                    client.ensure_supervisor(
                        self.root, cgroup_parent=self.cgroup_parent, launched=launched is not None
                    )
                finally:
                    if launched is not None:
                        _reap(launched)
                _SUPERVISOR_ANSWERED.add(key)

    # -- signals and freezing --------------------------------------------------------------------------

    def kill(self, id_or_name: str, signal: int | str = signals.SIGKILL) -> None:
        """Send `signal` to the container's PID 1 (docker kill); a paused container is thawed for SIGKILL.

        SIGKILL and the container's stop signal count as a user stop (written before the signal), so the
        restart policy does not bring the container back; other signals (SIGHUP to reload) do not.
        """
        record = self._require_running(id_or_name, allow_paused=True)
        number = parse_signal(signal)
        supervisor = self._supervisor()
        if supervisor is not None:  # it must know whether the user stopped the container
            supervisor.kill(self.root, record["id"], number)
            return
        pid = self._checked_pid(record)
        if number in (signals.SIGKILL, parse_signal(self.spec_of(record).stop_signal)):
            records.set_stopped_by_user(self.db, record["id"], True)
        os.kill(pid, number)
        if record["state"] == "paused" and number == signals.SIGKILL:
            self._cgroup(record["id"]).thaw()

    def pause(self, id_or_name: str) -> None:
        """Freeze every process of the container (cgroup freezer); state becomes paused."""
        record = self._require_running(id_or_name)
        supervisor = self._supervisor()
        if supervisor is not None:  # so it neither probes the frozen container nor takes it for dead
            supervisor.pause(self.root, record["id"])
            return
        self._cgroup(record["id"]).freeze()
        records.set_state(self.db, record["id"], "paused")

    def unpause(self, id_or_name: str) -> None:
        record = self.get(id_or_name)
        if record["state"] != "paused":
            raise ContainerConflict("the container is not paused", subject=record["name"])
        supervisor = self._supervisor()
        if supervisor is not None:
            supervisor.unpause(self.root, record["id"])
            return
        self._cgroup(record["id"]).thaw()
        records.set_state(self.db, record["id"], "running")

    def _supervisor(self):  # type: ignore[no-untyped-def]
        """The supervisor client module when a supervisor is running on this root, else None.

        Containers started through the supervisor must be signalled and frozen through it; without one
        (containers started directly, tests) the manager acts on the cgroup and pid itself.
        """
        from engine.supervise import client

        return client if client.ping(self.root) else None

    def _require_running(self, id_or_name: str, *, allow_paused: bool = False) -> dict[str, Any]:
        record = self.get(id_or_name)
        allowed = ("running", "paused") if allow_paused else ("running",)
        if record["state"] not in allowed or not record["pid"]:
            state = record["state"]
            raise ContainerConflict(f"the container is not running (state {state})", subject=record["name"])
        return record

    def _checked_pid(self, record: dict[str, Any]) -> int:
        """The recorded pid, only if that process is still in the container's cgroup (pid reuse guard)."""
        pid = int(record["pid"])
        try:
            text = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            raise ContainerConflict("the container's process is gone", subject=record["name"]) from None
        wanted = f"/{self.cgroup_parent}/{cgroup_name(record['id'])}"
        if not any(line.rstrip().endswith(wanted) for line in text.splitlines()):
            raise ContainerConflict("the recorded pid is not the container's", subject=record["name"])
        return pid

    def _cgroup(self, cid: str) -> Cgroup:
        return Cgroup.open(cgroup_name(cid), parent=self.cgroup_parent)

    # -- remove ----------------------------------------------------------------------------------------

    def remove(self, id_or_name: str, force: bool = False, volumes: bool = False) -> str:
        """Delete the container: processes, cgroup, files, volume use (anonymous volumes too with
        `volumes`), then its row. A running one needs `force` (killed, as docker rm -f). Returns the id."""
        record = self.get(id_or_name)
        cid = record["id"]
        if record["state"] in ACTIVE_STATES:
            if not force:
                raise ContainerConflict(
                    "cannot remove a running container: stop it first or force", subject=record["name"]
                )
            self._kill_all(record)
        with contextlib.suppress(errors.CgroupError):
            self._cgroup(cid).remove()
        rootfs.cleanup(self.root, cid)
        self.networks.release(cid)  # a crashed supervisor may have left the namespace and addresses
        self.networks.unregister(cid)
        used = self.volumes.release_all(cid)
        if volumes:
            self._drop_volumes([n for n in used if self._is_anonymous(n)])
        records.delete(self.db, cid)
        return cid

    def _kill_all(self, record: dict[str, Any]) -> None:
        """Every process of the container dies; a running supervisor is asked first (a stop with no grace
        period) so it marks the stop as the user's and restarts nothing."""
        with contextlib.suppress(ImportError, EngineError):
            from engine.supervise import client

            if str(self.root.path) in _SUPERVISOR_ANSWERED or client.ping(self.root):
                client.request(self.root, "stop", id=record["id"], timeout=0)
        try:
            group = self._cgroup(record["id"])
        except errors.CgroupError:
            return
        group.thaw()
        group.kill_all(signals.SIGKILL, timeout=KILL_WAIT)

    def _is_anonymous(self, name: str) -> bool:
        try:
            return ANONYMOUS_LABEL in self.volumes.get(name).labels
        except errors.VolumeNotFound:
            return False

    # -- views -----------------------------------------------------------------------------------------

    def list(self, all: bool = False, labels: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
        """Running (and paused, restarting) containers, newest first; every one with `all`."""
        found = self._as_supervision_will_record(records.list_all(self.db, labels=labels))
        if not all:
            found = [r for r in found if r["state"] in ACTIVE_STATES]
        return list(reversed(found))

    def _as_supervision_will_record(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows, with the exits nobody recorded: while neither keeper nor daemon lives (both were
        killed), an active row whose PID 1 is gone, or is not in the container's cgroup (a reused pid),
        shows exited 255 (Docker's unknown status), as the next supervisor will record it at start. Only
        the view changes: the next supervisor writes the row and applies the restart policy."""
        if not any(r["state"] in ACTIVE_STATES for r in rows):
            return rows
        from engine.supervise import client

        if client.supervised(self.root):
            return rows
        now = now_rfc3339()
        return [
            r
            if r["state"] not in ACTIVE_STATES or runs_in(r["pid"], f"/{r['id']}")
            else {**r, "state": "exited", "exit_code": UNKNOWN_EXIT, "pid": None, "finished_at": now}
            for r in rows
        ]

    def inspect(self, id_or_name: str) -> dict[str, Any]:
        """The document `docker container inspect` prints, for the fields we have."""
        record = self.get(id_or_name)
        spec = self.spec_of(record)
        document = inspect_document(record, spec)
        document["NetworkSettings"] = self._network_settings(record["id"])
        return document

    def _network_settings(self, cid: str) -> dict[str, Any]:
        """docker inspect's NetworkSettings: Networks by name (address, gateway, MAC, aliases) and Ports."""
        from engine.net.store import NetworkStore

        store = NetworkStore(self.db)
        networks: dict[str, Any] = {}
        for ep in store.endpoints_of(cid):
            network = store.get(ep.network_id)
            subnet = network.subnets[0] if network.subnets else None
            networks[network.name] = {
                "NetworkID": network.id,
                "IPAddress": ep.ipv4 or "",
                "IPPrefixLen": int(subnet.subnet.rpartition("/")[2]) if subnet and ep.ipv4 else 0,
                "Gateway": subnet.gateway if subnet and ep.ipv4 else "",
                "GlobalIPv6Address": ep.ipv6 or "",
                "MacAddress": ep.mac or "",
                "Aliases": list(ep.names),
            }
        ports: dict[str, Any] = {}
        for port in store.ports_of(cid):
            binding = {"HostIp": port.host_ip, "HostPort": str(port.host_port)}
            ports.setdefault(f"{port.container_port}/{port.protocol}", []).append(binding)
        return {"Networks": networks, "Ports": ports}

    def logs(
        self,
        id_or_name: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        since: str | float | None = None,
        until: str | float | None = None,
        timestamps: bool = False,
    ) -> Iterator[logs.LogRecord]:
        """The container's log entries; following ends once the container is no longer running."""
        record = self.get(id_or_name)
        if not record["log_path"]:
            raise EngineError("the container's logging driver keeps no log to read", subject=record["name"])
        cid = record["id"]

        def finished() -> bool:
            current = records.get(self.db, cid)
            return current is None or current["state"] not in ACTIVE_STATES

        return logs.read_logs(
            record["log_path"],
            since=since,
            until=until,
            tail=tail,
            timestamps=timestamps,
            follow=follow,
            stop=finished if follow else None,
        )

    # -- exec ------------------------------------------------------------------------------------------

    def exec(
        self,
        id_or_name: str,
        args: Sequence[str],
        *,
        env: Sequence[tuple[str, str]] = (),
        user: str | None = None,
        workdir: str | None = None,
        tty: bool = False,
        stdio: Stdio = (0, 1, 2),
        privileged: bool = False,
    ) -> int:
        """Run `args` inside the running container and return its exit code (`privileged`: every
        capability and no seccomp filter for this command only, as `docker exec --privileged`).

        spawn.exec_in must run in a single-threaded process: a helper is forked for it, which waits for
        the command and exits with its code; an error before exec comes back as the engine error it was.
        """
        from engine.containers import spawn  # the runtime, loaded only by the commands that run things

        record = self._require_running(id_or_name)
        spec = self.spec_of(record)
        pid = self._checked_pid(record)
        env = tuple(spec.process.env) + tuple(env)
        security = dataclasses.replace(spec.security, privileged=True) if privileged else spec.security
        group = self._cgroup(record["id"])
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        helper = os.fork()
        if helper == 0:  # pragma: no cover - the forked helper
            os.close(err_r)
            _exec_helper(
                pid,
                args,
                env,
                user or spec.process.user,
                workdir or spec.process.working_dir,
                spec,
                security,
                tty,
                stdio,
                group,
                err_w,
            )
        os.close(err_w)
        with os.fdopen(err_r, "rb") as pipe:
            raw = pipe.read()
        code = spawn.wait(helper)
        if raw:
            raise _error_from_json(raw, record["name"])
        return code

    # -- stats and top ---------------------------------------------------------------------------------

    def stats(self, id_or_name: str, interval: float = 0.5) -> dict[str, Any]:
        """One `docker stats` row: CPU % over `interval` seconds from two cgroup samples, memory, pids, IO."""
        record = self._require_running(id_or_name, allow_paused=True)
        group = self._cgroup(record["id"])
        first, t0 = group.stats(), time.monotonic()
        time.sleep(interval)
        second, t1 = group.stats(), time.monotonic()
        networks = container_networks(record["pid"], self.spec_of(record).network_mode)
        return stats_row(record, first, second, t1 - t0, networks=networks)

    def top(self, id_or_name: str) -> dict[str, Any]:
        """The container's processes as `docker top` shows them (ps -ef columns), from /proc."""
        record = self._require_running(id_or_name, allow_paused=True)
        processes = [row for pid in sorted(self._cgroup(record["id"]).pids()) if (row := ps_row(pid))]
        return {"Titles": list(PS_TITLES), "Processes": processes}


# -- exec helper ----------------------------------------------------------------------------------------


def _exec_helper(pid, args, env, user, workdir, spec, security, tty, stdio, group, err_w) -> None:  # type: ignore[no-untyped-def]
    """In the forked helper: start the command, wait for it, exit with its code (never returns)."""
    from engine.containers import spawn  # imported by `exec` before the fork: only a lookup here

    code = spawn.CHILD_FAILED
    try:
        child = spawn.exec_in(
            pid,
            args,
            env,
            user,
            workdir,
            group_add=spec.process.group_add,
            security_opts=security,
            host_network=spec.network_mode == "host",
            tty=tty,
            stdio=stdio,
            cgroup=group,
        )
        os.close(err_w)
        err_w = -1
        code = spawn.wait(child)
    except BaseException as exc:  # everything goes back to the parent
        if err_w >= 0:
            with contextlib.suppress(OSError):
                os.write(err_w, _error_json(exc))
    finally:
        os._exit(code)


def _error_json(exc: BaseException) -> bytes:
    kind = type(exc).__name__ if isinstance(exc, EngineError) else "ContainerStartError"
    subject = getattr(exc, "subject", None)
    return json.dumps(
        {"type": kind, "message": getattr(exc, "message", str(exc)), "subject": subject}
    ).encode()


def _error_from_json(raw: bytes, name: str) -> EngineError:
    data = json.loads(raw)
    cls = getattr(errors, data.get("type", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, EngineError)):
        cls = errors.ContainerStartError
    return cls(data.get("message", "exec failed"), subject=data.get("subject") or name)


# -- pure helpers (unit tested) -----------------------------------------------------------------------


def _reap(launched: subprocess.Popen[bytes]) -> None:
    """Reap a launched keeper's `--detach` parent: it exits right after its fork."""
    from subprocess import TimeoutExpired

    with contextlib.suppress(TimeoutExpired):
        launched.wait(timeout=LAUNCH_TIMEOUT)


@atexit.register
def _reap_launched() -> None:
    """At exit, the keepers launched by warm_supervisor that no start waited for (an `up` that failed
    after launching one)."""
    for launched in _KEEPER_LAUNCHED.values():
        _reap(launched)


def parse_signal(value: int | str) -> int:
    """9, "9", "KILL", "SIGKILL", "sigterm" -> the signal number; anything else is InvalidCommand."""
    if isinstance(value, int):
        number = value
    elif value.isdigit():
        number = int(value)
    else:
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        number = getattr(signals.Signals, name, None) or 0
    if not 0 < int(number) < signals.NSIG:
        raise errors.InvalidCommand(f"invalid signal: {value}", subject=str(value))
    return int(number)


def inspect_document(record: dict[str, Any], spec: ContainerSpec) -> dict[str, Any]:
    """Docker's inspect layout (Id, Name with its leading slash, State, Config, Mounts...)."""
    state = record["state"]
    health = json.loads(record["health"]) if record["health"] else None
    zero = "0001-01-01T00:00:00Z"
    return {
        "Id": record["id"],
        "Created": record["created"],
        "Path": spec.process.args[0] if spec.process.args else "",
        "Args": list(spec.process.args[1:]),
        "State": {
            "Status": state,
            "Running": state in ("running", "paused"),
            "Paused": state == "paused",
            "Restarting": state == "restarting",
            "OOMKilled": record["oom_killed"],
            "Dead": state == "dead",
            "Pid": record["pid"] or 0,
            "ExitCode": record["exit_code"] or 0,
            "StartedAt": record["started_at"] or zero,
            "FinishedAt": record["finished_at"] or zero,
            **({"Health": health} if health is not None else {}),
        },
        "Image": record["image_id"],
        "Name": "/" + record["name"],
        "RestartCount": record["restart_count"],
        "LogPath": record["log_path"] or "",
        "HostConfig": _host_config(spec),
        "Mounts": [_mount_doc(m) for m in spec.mounts],
        "Config": _config_doc(record, spec),
    }


def _host_config(spec: ContainerSpec) -> dict[str, Any]:
    r, s = spec.resources, spec.security
    name, _, count = spec.restart.partition(":")
    return {
        "NetworkMode": spec.network_mode,
        "RestartPolicy": {"Name": name, "MaximumRetryCount": int(count or 0)},
        "LogConfig": {"Type": spec.log_driver, "Config": dict(spec.log_options)},
        "Privileged": s.privileged,
        "CapAdd": list(s.cap_add) or None,
        "CapDrop": list(s.cap_drop) or None,
        "ReadonlyRootfs": s.read_only_rootfs,
        "Memory": r.memory or 0,
        "NanoCpus": int((r.cpus or 0) * 1e9),
        "PidsLimit": r.pids_limit,
        "ShmSize": spec.shm_size,
    }


def _mount_doc(mount: Mount) -> dict[str, Any]:
    doc: dict[str, Any] = {"Type": mount.type, "Destination": mount.target, "RW": not mount.read_only}
    if mount.type == "volume":
        doc.update({"Name": mount.source, "Driver": "local"})
    elif mount.type == "bind":
        doc["Source"] = mount.source
    return doc


def _config_doc(record: dict[str, Any], spec: ContainerSpec) -> dict[str, Any]:
    p = spec.process
    config: dict[str, Any] = {
        "Hostname": rootfs.container_hostname(spec),
        "Domainname": spec.domainname or "",
        "User": p.user or "",
        "Tty": p.tty,
        "OpenStdin": p.stdin_open,
        "Env": [f"{k}={v}" for k, v in p.env],
        "Cmd": list(p.args),
        "Image": spec.image or record["image_id"],
        "WorkingDir": p.working_dir or "",
        "Labels": record["labels"],
        "StopSignal": spec.stop_signal,
        "StopTimeout": spec.stop_grace_period,
    }
    if spec.healthcheck is not None:
        test, interval, timeout, start_period, start_interval, retries = spec.healthcheck
        config["Healthcheck"] = {
            "Test": list(test),
            "Interval": _ns(interval),
            "Timeout": _ns(timeout),
            "StartPeriod": _ns(start_period),
            "StartInterval": _ns(start_interval),
            "Retries": retries or 0,
        }
    return config


def _ns(seconds: float | None) -> int:
    return int((seconds or 0) * 1e9)


def stats_row(
    record: dict[str, Any],
    first: Any,
    second: Any,
    elapsed: float,
    *,
    networks: dict[str, dict[str, int]] | None = None,
) -> dict[str, Any]:
    """Docker's columns from two CgroupStats samples `elapsed` seconds apart.

    CPU % is container CPU time over wall time (100 % = one full core, as docker's multi-core figure);
    MEM USAGE subtracts the inactive file cache, as docker does; the limit is the host's memory when
    the container has none. NET I/O sums `networks` (container_networks: per interface, lo excluded).
    """
    networks = networks or {}
    cpu = 0.0
    if first.cpu_usage_ns is not None and second.cpu_usage_ns is not None and elapsed > 0:
        cpu = max(0, second.cpu_usage_ns - first.cpu_usage_ns) / (elapsed * 1e9) * 100.0
    usage = max(0, (second.memory_usage or 0) - (second.memory_inactive_file or 0))
    limit = second.memory_limit or host_memory()
    return {
        "ID": record["id"],
        "Name": record["name"],
        "CPUPerc": round(cpu, 2),
        "MemUsage": usage,
        "MemLimit": limit,
        "MemPerc": round(usage / limit * 100.0, 2) if limit else 0.0,
        "PIDs": second.pids_current or 0,
        "BlockRead": second.blkio_read_bytes or 0,
        "BlockWrite": second.blkio_write_bytes or 0,
        "NetRx": sum(n["rx_bytes"] for n in networks.values()),
        "NetTx": sum(n["tx_bytes"] for n in networks.values()),
        "Networks": networks,
    }


# /proc/net/dev columns after "iface:": 8 receive then 8 transmit counters; docker's stats JSON keeps these
NET_DEV_FIELDS = {
    "rx_bytes": 0,
    "rx_packets": 1,
    "rx_errors": 2,
    "rx_dropped": 3,
    "tx_bytes": 8,
    "tx_packets": 9,
    "tx_errors": 10,
    "tx_dropped": 11,
}


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """Interface -> docker's `networks` counters, from a /proc/<pid>/net/dev text; lo is left out, as
    docker counts only the container's own interfaces. Big counters touch the colon ("eth0:1234")."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16 or name.strip() == "lo":
            continue
        out[name.strip()] = {key: int(values[i]) for key, i in NET_DEV_FIELDS.items()}
    return out


def container_networks(pid: int | None, network_mode: str) -> dict[str, dict[str, int]]:
    """The counters of the network namespace the container's PID 1 lives in (its own, or the one it
    shares with `container:`). Host mode has none of its own, so nothing (docker shows 0B / 0B too);
    a process that is gone reads as no interfaces."""
    if not pid or network_mode == "host":
        return {}
    try:
        text = Path(f"/proc/{pid}/net/dev").read_text()
    except OSError:
        return {}
    return parse_net_dev(text)


def host_memory() -> int:
    """MemTotal in bytes (docker's memory limit column for an unlimited container)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


PS_TITLES = ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")


def ps_row(pid: int) -> list[str] | None:
    """One `ps -ef` line for `pid` from /proc, or None if it exited meanwhile."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks
    started = _boot_time() + int(fields[19]) / ticks
    age = max(time.time() - started, 1e-9)
    uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
    args = [a.decode(errors="replace") for a in cmdline.split(b"\0") if a]
    return [
        _user_name(uid),
        str(pid),
        fields[1],
        str(int(cpu_s / age * 100)),
        time.strftime("%H:%M", time.localtime(started)),
        _tty_name(int(fields[4])),
        time.strftime("%H:%M:%S", time.gmtime(cpu_s)),
        " ".join(args) if args else f"[{comm}]",
    ]


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _tty_name(tty_nr: int) -> str:
    if tty_nr == 0:
        return "?"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    return f"pts/{minor}" if 136 <= major <= 143 else f"tty{minor}"


def volume_sources(volumes: VolumeStore, spec: ContainerSpec) -> dict[str, rootfs.VolumeSource]:
    """Volume name -> what spawn.start mounts: the shared host directory (a plain volume, or a tmpfs/nfs
    volume mounted on the host by VolumeStore.acquire_mounts), else (type, source, options) from
    VolumeStore.mount_source (an `o=bind` device with flags; a filesystem volume nobody acquired gets
    a private mount of its own, the behaviour before acquire_mounts is called by the supervisor)."""
    sources: dict[str, rootfs.VolumeSource] = {}
    for mount in spec.mounts:
        if mount.type == "volume" and mount.source:
            volume = volumes.get(mount.source)
            shared = volumes.host_source(volume)
            if shared is not None:
                sources[mount.source] = shared
                continue
            kind, source, options = volumes.mount_source(volume)
            plain = kind == "bind" and not options
            sources[mount.source] = source if plain else (kind, source, options)
    return sources


# -- image defaults (create) ------------------------------------------------------------------------------


def with_image_defaults(spec: ContainerSpec, image_config: dict[str, Any]) -> ContainerSpec:
    """Fill what the spec leaves unset from the image's config, as Docker's create does.

    env: the image's under the spec's (the spec wins, image order first); user and working_dir when
    None; stop_signal when it is the default SIGTERM (an explicit SIGTERM cannot be told apart, and
    means the same unless the image says otherwise); the healthcheck: the image's when the spec has
    none, else the spec's with its unset (None) fields taken from the image's, Docker's merge.
    """
    config = image_config.get("config") or {}
    process = spec.process
    env = dict(e.partition("=")[::2] for e in config.get("Env") or ())
    env.update(dict(process.env))
    process = dataclasses.replace(
        process,
        env=tuple(env.items()),
        user=process.user if process.user is not None else (config.get("User") or None),
        working_dir=process.working_dir
        if process.working_dir is not None
        else (config.get("WorkingDir") or None),
    )
    stop_signal = spec.stop_signal
    if stop_signal == "SIGTERM" and config.get("StopSignal"):
        stop_signal = str(config["StopSignal"])
    healthcheck = merge_healthcheck(spec.healthcheck, image_healthcheck(config.get("Healthcheck")))
    return dataclasses.replace(spec, process=process, stop_signal=stop_signal, healthcheck=healthcheck)


def image_healthcheck(config: dict[str, Any] | None) -> Healthcheck | None:
    """The image's HEALTHCHECK (durations in ns) as a spec healthcheck in seconds; 0 = not set (None).

    ["NONE"] is kept as it is: it disables the checks (the supervisor runs none)."""
    if not config or not config.get("Test"):
        return None

    def seconds(key: str) -> float | None:
        value = config.get(key) or 0
        return value / 1e9 if value else None

    retries = config.get("Retries") or None
    test = tuple(str(t) for t in config["Test"])
    return (
        test,
        seconds("Interval"),
        seconds("Timeout"),
        seconds("StartPeriod"),
        seconds("StartInterval"),
        retries,
    )


def merge_healthcheck(spec: Healthcheck | None, image: Healthcheck | None) -> Healthcheck | None:
    """Docker's merge: the spec's healthcheck, each unset field (empty test, None) from the image's."""
    if spec is None or image is None:
        return spec if spec is not None else image
    test = spec[0] or image[0]
    rest = tuple(
        mine if mine is not None else theirs for mine, theirs in zip(spec[1:], image[1:], strict=True)
    )
    return (test, *rest)  # type: ignore[return-value]
