"""The supervisor daemon: one asyncio process per state root that starts, watches and stops containers.

Its parent is the keeper (keeper.py), which reaps container PID 1s and restarts this process if it dies.
This process: starts containers through its spawn workers (spawner.py: long-lived grandchildren that
the keeper adopted, which make the cgroup, network namespace and veths and clone the container as the
keeper's child; the loop awaits their reply, so starts overlap), reads their stdout/stderr pipes into
json-file logs, runs health probes
(spawn.exec_in, forked from the loop thread), applies restart policies when the
keeper reports an exit, and answers the control socket `run/supervisor.sock` (one JSON object per line:
ops ping, start, stop, kill, restart, pause, unpause, status, shutdown; root or the state root's owner
only, checked with SO_PEERCRED). On start it re-adopts what the keeper holds, then every other row in an
active state (keeper and daemon both died): a living process is watched through a pidfd and its pipes
reopened through /proc; a vanished one is recorded as exited (255, or 137 + OOMKilled) and its restart
policy applies. It is the only writer of container rows besides the keeper's exit record.

Fork-safety: every fork (a spawn worker, a probe) happens on the loop thread while no other thread of
this process runs. The
threads are links._off_loop's netlink workers (joined before the loop resumes) and one veth deleter
after stops (a fork awaits its join, and none starts while a fork waits): see "fork-safety" below.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import errors
from engine.containers import logs, records, spawn
from engine.containers.cgroups import DEFAULT_PARENT, Cgroup, runs_in
from engine.containers.manager import volume_sources
from engine.containers.spec import ContainerSpec, NetworkSetup
from engine.errors import ContainerConflict, ContainerNotFound, EngineError
from engine.state.db import Database
from engine.state.locks import FileLock
from engine.state.root import StateRoot
from engine.supervise import health, keeper, launcher, restart
from engine.supervise.protocol import LAUNCH_TIMEOUT, SOCKET_NAME, SUPERVISOR_LOCK, UNKNOWN_EXIT
from engine.supervise.spawner import Job, Spawners
from engine.volumes import VolumeStore

PIPE_SIZE = 1 << 20  # DESIGN.md: room for a supervisor restart gap
F_SETPIPE_SZ = 1031
DRAIN_TIMEOUT = 2.0  # after an exit, how long the pipes may take to reach EOF
KILL_WAIT = 10.0  # how long a SIGKILL request waits for the exit to be recorded (Docker waits too)
ACTIVE_STATES = ("running", "paused", "restarting")
OOM_EXIT = 137  # 128 + SIGKILL: the OOM killer's signal
LISTEN_BACKLOG = 1024  # 100 parallel starts must not find the accept queue full (the kernel caps it)
RULES_DELAY = 0.2  # s an exit's firewall sync waits for (see Daemon._owe_rules)
DELETER_BATCH = 4  # host veths per deleter run: what a start may have to wait for (~25 ms each)
HANDOVER_POLL = 5.0  # a failed handover: how long to wait for another daemon before trying again


def log_dir(root: Path) -> Path:
    """Where container logs live: containers/<id>/ next to the writable layer."""
    return root / "containers"


def restart_policy_of(spec: ContainerSpec) -> restart.RestartPolicy:
    """Compose `deploy.restart_policy` wins over `restart`, as in Compose."""
    if spec.restart_policy is not None:
        return restart.from_deploy(*spec.restart_policy)
    return restart.parse_restart(spec.restart)


def health_config_of(spec: ContainerSpec) -> health.HealthConfig | None:
    """The spec's healthcheck as the scheduler's config (None or NONE = no probes)."""
    if spec.healthcheck is None:
        return None
    test, interval, timeout, start_period, start_interval, retries = spec.healthcheck
    config = health.HealthConfig(
        tuple(test), interval or 0.0, timeout or 0.0, start_period or 0.0, start_interval or 0.0, retries or 0
    )
    return None if config.disabled else config


def signal_of(name: str | int) -> int:
    """`SIGTERM`, `TERM`, `15` -> 15."""
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    return int(signal.Signals[text if text.startswith("SIG") else "SIG" + text])


@dataclass(eq=False)
class Watched:
    """One container this daemon looks after while it runs (and between an exit and its restart)."""

    spec: ContainerSpec
    pid: int = 0
    fds: dict[str, int] = field(default_factory=dict)  # stream -> read end still open
    sink: Any = None
    started: float = 0.0
    backoff: float = 0.0
    restart_times: list[float] = field(default_factory=list)
    exit: dict[str, Any] | None = None
    done: asyncio.Future[dict[str, Any]] | None = None
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    health: health.HealthState | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pidfd: int | None = None  # set while watched as an orphan (not the keeper's child)
    paused: bool = False
    respawning: asyncio.Future[None] | None = None  # set while a restart's spawn runs (see stop)

    @property
    def id(self) -> str:
        return self.spec.id


class Daemon:
    """The supervisor's state and handlers."""

    def __init__(
        self, root: Path, keeper_sock: socket.socket, cgroup_parent: str, lock: FileLock | None = None
    ) -> None:
        self.root = root
        self.lock = lock  # locks/supervisor.lock, released when handing over
        self.handing_over = False
        self.handed_over = False
        self.handover_task: asyncio.Task[None] | None = None
        self.db = Database(root / "pycompose.db")
        self.state_root = StateRoot(root, self.db)
        self.keeper = keeper_sock
        self.cgroup_parent = cgroup_parent
        self.watched: dict[str, Watched] = {}
        self.stopping = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self._networks: Any = None  # engine.net.manager.NetworkManager, made on first use (pyroute2)
        self.responder: Any = None  # engine.net.dns.Responder, while some network has a container
        # host veths deleted in the background (see _delete_later): waiting, and the batch in the thread
        self._veths: dict[str, str] = {}  # veth -> container id
        self._rules_owed = False  # a release left the firewall to sync (the deleter thread does it)
        self._rules_due = 0.0  # monotonic time from which the deleter takes the owed sync
        self._retired: list[str] = []  # bridges of removed networks, deleted by the deleter thread
        self._retiring: list[str] = []  # those the running deleter batch holds
        self._deleting: dict[str, str] = {}
        self._deleter: asyncio.Future[None] | None = None  # resolves once the thread has been joined
        self._fork_waiters = 0  # forks waiting for the thread to end: no new thread starts meanwhile
        self.spawners = Spawners(
            self.state_root, fork_ready=self._fork_ready, forked=self._kick_deleter, reap=self._reap
        )

    # -- keeper link -----------------------------------------------------------------------------

    def handshake(self) -> list[dict[str, Any]]:
        """hello -> held (blocking, before serving): returns other messages that arrived first."""
        keeper.send(self.keeper, {"op": "hello"})
        early = []
        while True:
            message, fds = keeper.receive(self.keeper)
            if message is None:
                raise errors.SupervisorError("keeper closed the link")
            if message.get("op") == "held":
                self.adopt(message["items"], fds)  # type: ignore[arg-type]
                return early
            early.append(message)

    def adopt(self, items: list[dict[str, Any]], fds: list[int]) -> None:
        """Take back containers the keeper holds: their pipes, logs and health state."""
        for item in items:
            mine, fds = fds[: item["nfds"]], fds[item["nfds"] :]
            streams = item.get("streams") or ("stdout", "stderr")
            row = records.get(self.db, item["id"])
            if row is None:
                keeper.send(self.keeper, {"op": "forget", "id": item["id"]})
                keeper.close_all(mine)
                continue
            w = Watched(ContainerSpec.from_json(row["spec"]), pid=item["pid"], started=time.monotonic())
            w.done = self.loop.create_future()
            self.watched[w.id] = w
            self._attach(w, dict(zip(streams, mine, strict=False)))
            w.paused = row["state"] == "paused"
            if not item.get("exited"):
                self._start_health(w, row.get("health"))
                if not self._keepers_child(w.pid):  # held by a keeper that lost it (keeper restarted)
                    self._watch_orphan(w)

    def on_keeper(self) -> None:
        try:
            message, fds = keeper.receive(self.keeper)
        except BlockingIOError:
            return
        keeper.close_all(fds)
        if message is None:  # the keeper died alone: hand everything to a successor (DESIGN.md)
            self.loop.remove_reader(self.keeper.fileno())
            if self.handover_task is None:
                self.handover_task = self.loop.create_task(self.hand_over())
            return
        self.handle_keeper(message)

    def handle_keeper(self, message: dict[str, Any]) -> None:
        if message.get("op") == "exit" and message["id"] in self.watched:
            w = self.watched[message["id"]]
            if w.exit is None and w.pid == message["pid"]:
                w.exit = message
                w.tasks.append(self.loop.create_task(self.on_exit(w)))

    # -- handover: our keeper died alone ----------------------------------------------------------

    async def hand_over(self) -> None:
        """Pass every running container to a successor keeper (which starts a new daemon), then exit.

        We stop acting at once (no reads, probes, restarts; clients are told to wait), but our read ends
        stay open until the successor holds its copies, so some reader exists at every moment; output
        written meanwhile waits in the pipes for the new daemon. If the successor cannot take them (a
        keeper of someone else's won keeper.lock), we keep them until another daemon answers, which
        re-adopts through /proc, and try again meanwhile."""
        self.handing_over = True
        running = self._quiesce()
        self.spawners.close()  # they are the dead keeper's children: a successor's start makes new ones
        if self.responder is not None:  # the successor listens on the same gateways
            await self.responder.close()
            self.responder = None
        if self.lock is not None:
            self.lock.release()  # the successor daemon takes it
        print(f"supervisor: keeper gone, handing {len(running)} containers over", file=sys.stderr, flush=True)
        while not await self._try_handover(running):
            if await self._other_daemon_answers(HANDOVER_POLL):
                break
        else:  # answer "handover" until the successor listens: clients never find nobody there
            await self._other_daemon_answers(LAUNCH_TIMEOUT)
        self.handed_over = True
        self.stopping.set()

    def _quiesce(self) -> list[Watched]:
        """Stop watching, reading, probing and restarting; returns the containers still running.

        A container between its exit and its restart is left as a `restarting` row with its exit code,
        which the successor's re-adoption turns into the policy's decision."""
        running = []
        for w in list(self.watched.values()):
            self._cancel(w)
            if w.pidfd is not None:
                self.loop.remove_reader(w.pidfd)
                keeper.close_all([w.pidfd])
                w.pidfd = None
            for fd in w.fds.values():
                self.loop.remove_reader(fd)
            if w.sink is not None:
                w.sink.close()
            if w.exit is None and w.pid:
                running.append(w)
            elif w.exit is not None:
                self._leave_for_successor(w)
        return running

    def _leave_for_successor(self, w: Watched) -> None:
        assert w.exit is not None
        with contextlib.suppress(ContainerNotFound):
            records.record_exited(
                self.db, w.id, int(w.exit["code"]), bool(w.exit["oom"]), str(w.exit["finished_at"])
            )
            records.set_state(self.db, w.id, "restarting")

    async def _try_handover(self, running: list[Watched]) -> bool:
        """Start a keeper with our end of a socketpair, send it every container; True once it confirms."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            try:
                launcher.launch(self.root, self.cgroup_parent, handover_fd=theirs.fileno())
            finally:
                theirs.close()
            ours.settimeout(LAUNCH_TIMEOUT)
            for w in running:
                self._hold(ours, w)
            keeper.send(ours, {"op": "done"})
            ours.setblocking(False)
            reply = await asyncio.wait_for(self._receive(ours), LAUNCH_TIMEOUT)
            return bool(reply) and reply.get("op") == "taken"
        except (OSError, subprocess.SubprocessError, TimeoutError) as exc:
            print(f"supervisor: handover failed: {exc}", file=sys.stderr, flush=True)
            return False
        finally:
            ours.close()

    async def _receive(self, sock: socket.socket) -> dict[str, Any] | None:
        """One packet from a SEQPACKET socket (made non-blocking), awaited in the loop; its fds closed."""
        sock.setblocking(False)
        while True:
            try:
                message, fds = keeper.receive(sock)
            except BlockingIOError:
                await self._readable(sock.fileno())
                continue
            keeper.close_all(fds)
            return message  # type: ignore[return-value]

    async def _readable(self, fd: int) -> None:
        ready: asyncio.Future[None] = self.loop.create_future()
        self.loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            self.loop.remove_reader(fd)

    async def _other_daemon_answers(self, within: float) -> bool:
        """Poll the socket path for a daemon other than us (it re-adopted through /proc)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, TimeoutError):
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(str(self.root / "run" / SOCKET_NAME)), 1.0
                )
                try:
                    writer.write(b'{"op": "ping"}\n')
                    reply = json.loads(await asyncio.wait_for(reader.readline(), 1.0))
                finally:
                    writer.close()
                if reply.get("ok") and reply.get("pid") != os.getpid():
                    return True
            await asyncio.sleep(0.2)
        return False

    # -- re-adoption of what no keeper holds (keeper and daemon both died) ------------------------

    def readopt_orphans(self) -> None:
        """Every row in an active state that the keeper did not hand back: watch it or record its end."""
        for row in records.list_all(self.db):
            if row["state"] not in ACTIVE_STATES or row["id"] in self.watched:
                continue
            spec = ContainerSpec.from_json(row["spec"])
            w = Watched(spec, pid=int(row["pid"] or 0), started=time.monotonic())
            w.done = self.loop.create_future()
            w.paused = row["state"] == "paused"
            self.watched[w.id] = w
            if runs_in(w.pid, f"/{self.cgroup_parent}/{w.id}") and self._watch_orphan(w):
                self._reopen_pipes(w)
                self._hold(self.keeper, w)
                self._start_health(w, row.get("health"))
            else:
                w.drained.set()
                self._orphan_exited(w, row)

    def _keepers_child(self, pid: int) -> bool:
        """The keeper (our parent) will report this exit with its real status."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        return int(stat.rsplit(")", 1)[1].split()[1]) == os.getppid()

    def _watch_orphan(self, w: Watched) -> bool:
        """Watch a pid that is not our keeper's child with a pidfd; False if it is already gone."""
        if w.pidfd is not None:
            return True
        try:
            w.pidfd = os.pidfd_open(w.pid)
        except ProcessLookupError:
            return False
        self.loop.add_reader(w.pidfd, self._on_orphan_exit, w)
        return True

    def _on_orphan_exit(self, w: Watched) -> None:
        """Its status went to someone else (init): only the cgroup's OOM counter tells us anything."""
        if w.pidfd is not None:
            self.loop.remove_reader(w.pidfd)
            os.close(w.pidfd)
            w.pidfd = None
        if w.exit is None:
            self._orphan_exited(w)

    def _orphan_exited(self, w: Watched, row: dict[str, Any] | None = None) -> None:
        """Exit facts without a wait status: 137 + OOMKilled if the cgroup's OOM counter moved, else 255.

        A row caught in `restarting` (the daemon died during the back-off) keeps its recorded exit."""
        if row is not None and row["state"] == "restarting" and row["exit_code"] is not None:
            code, oom = int(row["exit_code"]), bool(row["oom_killed"])
        else:
            group = self._try_cgroup(w.id)
            oom = group is not None and _quiet(group.oom_killed)
            code = OOM_EXIT if oom else UNKNOWN_EXIT
        w.exit = {"op": "exit", "id": w.id, "pid": w.pid, "code": code, "oom": oom}
        w.exit["finished_at"] = keeper.now_rfc3339()
        w.tasks.append(self.loop.create_task(self.on_exit(w)))

    def _reopen_pipes(self, w: Watched) -> None:
        """A new read end of the PID 1's stdout/stderr pipes, opened through /proc of the writer."""
        fds: dict[str, int] = {}
        seen: set[str] = set()
        for stream, n in (("stdout", 1), ("stderr", 2)):
            path = f"/proc/{w.pid}/fd/{n}"
            with contextlib.suppress(OSError):
                target = os.readlink(path)
                if target.startswith("pipe:") and target not in seen:
                    fds[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    seen.add(target)
        self._attach(w, fds)

    # -- start -----------------------------------------------------------------------------------

    async def start(self, cid: str) -> dict[str, Any]:
        """Start a created or exited container (a user start clears `stopped by user`)."""
        row = records.get(self.db, cid)
        if row is None:
            raise ContainerNotFound("no such container", subject=cid)
        w = self.watched.get(row["id"])
        if w is not None and w.exit is None:
            # Already running (or being started): nothing to do, as Docker answers 304. A client that
            # died after asking, whose successor saw the row still `created`, must not get an error.
            return {"id": w.id, "pid": w.pid}
        if w is not None:
            self._cancel(w)
        w = Watched(ContainerSpec.from_json(row["spec"]))
        self.watched[w.id] = w  # before any await: a second start now sees it running
        try:
            await self.spawn(w, user_start=True)
        except BaseException:
            self.watched.pop(w.id, None)
            raise
        return {"id": w.id, "pid": w.pid}

    async def spawn(self, w: Watched, *, user_start: bool = False) -> None:
        """Networks, shared volume mounts, pipes, then a spawn worker makes the cgroup, namespace and veths
        and starts the container; hand the pipes to the keeper, record. What was joined or mounted is given
        back if the start fails. A user start also clears `stopped by user` and the restart count, in the
        same commit as the start (no exit can be handled before it: on_exit runs as a task after this)."""
        await self._veths_settled(w.id)
        kernel_steps: list[Any] = []
        network = await self._join_networks(w.spec, kernel_steps)
        try:
            self._acquire_mounts(w.spec)
            reads, writes = ([], []) if w.spec.process.tty else _output_pipes()  # a tty: the pty master
            try:
                job = Job(w.spec, self.cgroup_parent, network, tuple(kernel_steps), self._volumes(w.spec))
                pid, master = await self.spawners.start(job, writes)
            except BaseException:
                keeper.close_all(reads)
                raise
            finally:
                keeper.close_all(writes)
        except BaseException:
            self._leave_networks_and_mounts(w.id)
            raise
        streams = (
            {"stdout": master} if master is not None else dict(zip(("stdout", "stderr"), reads, strict=True))
        )
        w.pid, w.exit, w.started = pid, None, time.monotonic()
        w.done = self.loop.create_future()
        w.drained = asyncio.Event()
        w.fds = streams
        self._hold(self.keeper, w)
        with self.db.transaction(durable=False):  # one commit for the row, its log path and health
            if user_start:
                records.reset_restart(self.db, w.id)
            records.record_started(self.db, w.id, pid, keeper.now_rfc3339())
            self._attach(w, streams)
            self._start_health(w, None)

    def _hold(self, sock: socket.socket, w: Watched) -> None:
        """Give a keeper a copy of the container's read ends (pipes or pty master), named by stream."""
        keeper.send(
            sock, {"op": "hold", "id": w.id, "pid": w.pid, "streams": list(w.fds)}, list(w.fds.values())
        )

    def _volumes(self, spec: ContainerSpec) -> dict[str, Any] | None:
        """What spawn mounts for the spec's named volumes (read here: a spawn worker has no database)."""
        if not any(m.type == "volume" and m.source for m in spec.mounts):
            return None
        return volume_sources(VolumeStore(self.state_root), spec)

    # -- networks and shared volume mounts ----------------------------------------------------------

    @property
    def networks(self) -> Any:
        """The network manager (engine/net), imported on first use: containers without networks never
        load it (nor pyroute2)."""
        if self._networks is None:
            from engine.net.manager import NetworkManager

            self._networks = NetworkManager(self.state_root)
        return self._networks

    async def _join_networks(self, spec: ContainerSpec, kernel_steps: list[Any]) -> NetworkSetup | None:
        """Endpoint rows, published ports and rules (engine/net), and our DNS listening on the networks'
        gateways BEFORE the container runs: nginx resolves `php` the moment it starts. The namespace and
        veths are left in `kernel_steps` for the spawn worker (netlink work off the event loop)."""
        if spec.network_mode in ("none", "host") or (spec.network_mode == "bridge" and not spec.networks):
            return None
        setup = self.networks.prepare(spec, kernel_steps=kernel_steps)
        if kernel_steps:
            from engine.net import links

            links.preload()
        if spec.network_mode == "bridge":
            try:
                await self._sync_dns()
            except BaseException:
                self.networks.release(spec.id)
                raise
        return setup

    async def _sync_dns(self) -> None:
        """Listen on the gateway of every network that has a running container (and on nothing else).

        A gateway we cannot listen on (port 53 taken by a host resolver bound to every address) is
        logged, not fatal: the containers still run, only names do not resolve there."""
        gateways = self.networks.gateways() if self._networks is not None or self.responder else []
        if self.responder is None:
            if not gateways:
                return
            from engine.net import dns

            self.responder = dns.Responder(self.networks.names())
        try:
            await self.responder.sync(gateways)
        except EngineError as exc:
            print(f"supervisor: {exc}", file=sys.stderr, flush=True)

    def _acquire_mounts(self, spec: ContainerSpec) -> None:
        """Filesystem volumes (tmpfs, nfs... driver_opts) mounted once on the host and shared."""
        names = [m.source for m in spec.mounts if m.type == "volume" and m.source]
        if names:
            VolumeStore(self.state_root).acquire_mounts(spec.id, names)

    def _leave_networks_and_mounts(self, cid: str) -> None:
        """After an exit (or a failed start): networks released, shared mounts let go. Never raises: an
        exit must always be recorded; what is left here is swept by the next daemon start."""
        veths: list[str] = []

        def networks() -> None:
            owed = True  # if the release fails, ports may be gone from the rows with their rules left
            try:  # the stop that waits for this exit need not wait for the rules too
                owed = self.networks.release(cid, defer_veths=veths, defer_rules=True)
            finally:
                if owed:
                    self._owe_rules(RULES_DELAY)

        steps = [lambda: VolumeStore(self.state_root).release_mounts(cid)]
        if self._networks is not None or (self.state_root.path / "run" / "netns" / cid).exists():
            steps.append(networks)
        for step in steps:
            try:
                step()
            except Exception as exc:  # logged; the sweep repairs
                print(f"supervisor: releasing {cid}: {exc}", file=sys.stderr, flush=True)
        self._delete_later(cid, veths)
        if self.responder is not None:
            self.loop.create_task(self._sync_dns())

    def _reap(self, pid: int) -> None:
        """Reap a child (a spawn worker's middle process) without blocking the loop: at once if it has
        exited, else when its pidfd fires."""
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
            pidfd = os.pidfd_open(pid)
        except (ChildProcessError, ProcessLookupError):
            return

        def reaped() -> None:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

        self.loop.add_reader(pidfd, reaped)

    # -- fork-safety and background veth deletion ----------------------------------------------------
    #
    # This process forks (spawn workers, health probes) from the loop thread and must then have no other
    # thread: a forked copy of a lock another thread held would deadlock the child. The only threads are
    # netlink workers: links._off_loop's, joined before the loop resumes (never alive at a fork), and
    # the one veth deleter below. A fork waits until the deleter has been joined (`_fork_ready`), and no
    # deleter starts while a fork waits; the fork itself follows the wait with no await in between.

    async def _fork_ready(self) -> None:
        """Return once no thread of ours runs; the caller forks before its next await."""
        self._fork_waiters += 1
        try:
            while self._deleter is not None:
                await asyncio.shield(self._deleter)
        finally:
            self._fork_waiters -= 1

    def _delete_later(self, cid: str, veths: list[str]) -> None:
        """Host veths of a stopped container, deleted in a thread (~25 ms of kernel time each): the stop
        does not wait. A crash before they go leaves them to the sweep at the next daemon start."""
        for name in veths:
            self._veths[name] = cid
        self._kick_deleter()

    def _owe_rules(self, delay: float) -> None:
        """A firewall sync is owed, due in `delay` s (at the latest: an earlier due time stays). An
        exit's is delayed: the `down` it belongs to goes on removing containers, each taking the network
        lock the sync holds for ~30 ms of iptables, and its network removal owes one anyway."""
        due = time.monotonic() + delay
        self._rules_due = min(self._rules_due, due) if self._rules_owed else due
        self._rules_owed = True
        if delay > 0:
            self.loop.call_later(delay, self._kick_deleter)
        self._kick_deleter()

    def _kick_deleter(self) -> None:
        """Start the deleter thread on the rules owed (see _leave_networks_and_mounts) and the next few
        veths waiting, unless it runs or a fork waits. Few: a start forks only once the batch is done,
        and each veth is ~25 ms of kernel time (a `down` of 100 containers queued 3 s of them, which the
        next `up`'s starts all waited for)."""
        if self._deleter is not None or self._fork_waiters:
            return
        rules = self._rules_owed and (time.monotonic() >= self._rules_due or self._retired)
        if not (self._veths or rules or self._retired):
            return
        names = list(self._veths)[:DELETER_BATCH]
        batch = {name: self._veths.pop(name) for name in names}
        if rules:
            self._rules_owed = False
        bridges, self._retired = self._retired, []
        self._retiring = bridges
        self._deleting = batch
        done: asyncio.Future[None] = self.loop.create_future()
        self._deleter = done
        from engine.net import links

        def work() -> None:
            if rules:
                try:
                    self.networks.sync_rules()
                except Exception as exc:  # logged: the next sync (any start or stop with ports) repairs
                    print(f"supervisor: syncing rules: {exc}", file=sys.stderr, flush=True)
            for bridge in bridges:
                try:
                    self.networks.delete_doomed(bridge)
                except Exception as exc:  # its note stays: the next daemon start's sweep repairs
                    print(f"supervisor: deleting bridge {bridge}: {exc}", file=sys.stderr, flush=True)
            try:
                failed = links.detach_many(list(batch)) if batch else []
            except Exception as exc:  # no netlink at all: the sweep repairs
                print(f"supervisor: deleting veths: {exc}", file=sys.stderr, flush=True)
                failed = []
            with contextlib.suppress(RuntimeError):  # the loop closed: the sweep repairs
                self.loop.call_soon_threadsafe(self._deleted, thread, failed, done)

        thread = threading.Thread(target=work, name="veth-deleter", daemon=True)
        thread.start()

    def _deleted(self, thread: threading.Thread, failed: list[str], done: asyncio.Future[None]) -> None:
        thread.join()  # really gone before any fork proceeds
        if failed:
            print(f"supervisor: veths left for the sweep: {', '.join(failed)}", file=sys.stderr, flush=True)
        self._deleting = {}
        self._retiring = []
        self._deleter = None
        done.set_result(None)
        self._kick_deleter()

    async def _veths_settled(self, cid: str) -> None:
        """Before a container joins its networks again (a restart): none of its old veths may be deleted
        after its new ones were made under the same names."""
        while cid in self._deleting.values() or cid in self._veths.values():
            if cid in self._deleting.values() and self._deleter is not None:
                await asyncio.shield(self._deleter)
                continue
            for name in [n for n, c in self._veths.items() if c == cid]:
                del self._veths[name]  # not started: the attach replaces a leftover pair itself

    async def _veths_deleted(self) -> None:
        """Wait for every pending veth and bridge deletion and rule sync (shutdown: leave nothing)."""
        self._rules_due = 0.0  # due now
        await self._deleter_run_while(
            lambda: bool(self._veths or self._rules_owed or self._retired or self._deleter is not None)
        )

    async def _deleter_run_while(self, pending: Callable[[], bool]) -> None:
        """Keep the deleter thread going (a fork waiting goes first) until `pending()` is false."""
        while pending():
            if self._deleter is None:
                self._kick_deleter()
                if self._deleter is None:
                    await asyncio.sleep(0.005)
                    continue
            await asyncio.shield(self._deleter)

    # -- logs ------------------------------------------------------------------------------------

    def _attach(self, w: Watched, fds: dict[str, int]) -> None:
        """Read each pipe in the loop into the container's log (json-file or none)."""
        options = dict(w.spec.log_options)
        w.sink = logs.open_log(log_dir(self.root) / w.id, w.id, w.spec.log_driver, options)
        path = logs.log_path(log_dir(self.root) / w.id, w.id)
        if w.spec.log_driver != "none":
            records.set_log_path(self.db, w.id, str(path))
        w.fds = dict(fds)
        for stream, fd in fds.items():
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._on_output, w, stream)
        if not fds:
            w.drained.set()

    def _on_output(self, w: Watched, stream: str) -> None:
        fd = w.fds[stream]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:  # a pty master reads EIO once every slave fd is closed: its EOF
            if exc.errno != errno.EIO:
                raise
            data = b""
        if data:
            w.sink.feed(stream, data)
            w.sink.flush()
            return
        self.loop.remove_reader(fd)
        os.close(fd)
        del w.fds[stream]
        w.sink.eof(stream)
        if not w.fds:
            w.sink.close()
            w.drained.set()

    def _detach(self, w: Watched) -> None:
        for fd in w.fds.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        w.fds.clear()
        if w.sink is not None:
            w.sink.close()
        w.drained.set()

    # -- exits and restarts ----------------------------------------------------------------------

    async def on_exit(self, w: Watched) -> None:
        """Drain the logs, record, tell the keeper to let go, then restart or settle."""
        assert w.exit is not None
        for task in list(w.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(w.drained.wait(), DRAIN_TIMEOUT)
        self._detach(w)
        code, oom = int(w.exit["code"]), bool(w.exit["oom"])
        with contextlib.suppress(ContainerNotFound):
            records.record_exited(self.db, w.id, code, oom, str(w.exit["finished_at"]))
        with contextlib.suppress(OSError):
            keeper.send(self.keeper, {"op": "forget", "id": w.id})
        self._leave_networks_and_mounts(w.id)  # a restart joins again (Docker re-allocates too)
        w.paused = False
        if w.done is not None and not w.done.done():
            w.done.set_result(w.exit)
        row = records.get(self.db, w.id)
        if row is None:
            self.watched.pop(w.id, None)
            return
        now = time.monotonic()
        facts = restart.ExitFacts(
            code,
            stopped_by_user=row["stopped_by_user"],
            restart_count=row["restart_count"],
            ran_for=now - w.started,
            backoff=w.backoff,
            restart_times=tuple(w.restart_times),
            now=now,
        )
        decision = restart.decide(restart_policy_of(w.spec), facts)
        w.backoff = decision.backoff
        if not decision.restart:
            self._settle(w)
            return
        records.set_state(self.db, w.id, "restarting")
        await asyncio.sleep(decision.delay)
        row = records.get(self.db, w.id)
        if row is None or row["stopped_by_user"]:
            self._settle(w)
            return
        records.bump_restart(self.db, w.id)
        w.restart_times.append(time.monotonic())
        w.tasks = []
        w.respawning = self.loop.create_future()
        try:
            await self.spawn(w)
        except EngineError as exc:
            print(f"supervisor: restarting {w.id}: {exc}", file=sys.stderr, flush=True)
            records.set_state(self.db, w.id, "exited")
            self._settle(w)
        finally:
            w.respawning.set_result(None)
            w.respawning = None

    def _settle(self, w: Watched) -> None:
        """A final exit: forget the container and remove its (now empty) cgroup."""
        if self.watched.get(w.id) is w:
            del self.watched[w.id]
        with contextlib.suppress(EngineError):
            Cgroup.open(w.id, parent=self.cgroup_parent).remove()
        with contextlib.suppress(ContainerNotFound):
            if (records.get(self.db, w.id) or {}).get("state") == "restarting":
                records.set_state(self.db, w.id, "exited")

    def _cancel(self, w: Watched) -> None:
        for task in w.tasks:
            task.cancel()
        w.tasks = []

    # -- stop ------------------------------------------------------------------------------------

    async def stop(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        """Mark stopped by the user, send stop_signal, SIGKILL after the grace period, wait for the exit."""
        row = records.get(self.db, cid)
        if row is None:
            raise ContainerNotFound("no such container", subject=cid)
        records.set_stopped_by_user(self.db, row["id"], True)
        w = self.watched.get(row["id"])
        if w is not None and w.respawning is not None:
            # A restart is starting it again (a spawn worker is at work and cannot be called back): let it
            # finish, then stop what it started. Cancelling here left that container running, unwatched.
            await asyncio.shield(w.respawning)
            w = self.watched.get(row["id"])
        if w is None:
            return {"id": row["id"], "state": (records.get(self.db, row["id"]) or row)["state"]}
        if w.exit is not None:  # between an exit and its restart: the restart is cancelled
            self._cancel(w)
            self._settle(w)
            return {"id": w.id, "state": "exited"}
        grace = w.spec.stop_grace_period if timeout is None else timeout
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, signal_of(w.spec.stop_signal))
        if w.paused:  # the signal is delivered once the cgroup thaws
            self._thaw(w)
        assert w.done is not None
        try:
            await asyncio.wait_for(asyncio.shield(w.done), grace)
        except TimeoutError:
            with contextlib.suppress(EngineError):
                Cgroup.open(w.id, parent=self.cgroup_parent).kill_all(signal.SIGKILL, timeout=1.0)
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
            await asyncio.wait_for(asyncio.shield(w.done), 10.0)
        return {"id": w.id, "state": "exited", "exit_code": w.done.result()["code"]}

    # -- kill, restart, pause ----------------------------------------------------------------------

    def _running(self, cid: str) -> tuple[dict[str, Any], Watched]:
        row = records.get(self.db, cid)
        if row is None:
            raise ContainerNotFound("no such container", subject=cid)
        w = self.watched.get(row["id"])
        if w is None or w.exit is not None or not w.pid:
            state = row["state"]
            raise ContainerConflict(f"the container is not running (state {state})", subject=row["name"])
        return row, w

    async def kill(self, cid: str, sig: str | int = "SIGKILL") -> dict[str, Any]:
        """docker kill: SIGKILL or the stop signal is a user stop (written before the signal, so the
        restart policy sees it); other signals (a reload's SIGHUP) leave the policy alone. As Docker's,
        a SIGKILL returns once the exit is recorded (at most KILL_WAIT s): `kill` then `ps` shows it."""
        _, w = self._running(cid)
        number = signal_of(sig)
        if number in (signal.SIGKILL, signal_of(w.spec.stop_signal)):
            records.set_stopped_by_user(self.db, w.id, True)
        os.kill(w.pid, number)
        if w.paused and number == signal.SIGKILL:  # a frozen task only dies once thawed
            self._thaw(w)
        if number == signal.SIGKILL and w.done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(w.done), KILL_WAIT)
        return {"id": w.id, "signal": number}

    async def restart(self, cid: str, timeout: float | None = None) -> dict[str, Any]:
        """docker restart: stop (if running), then a user start."""
        row = records.get(self.db, cid)
        if row is None:
            raise ContainerNotFound("no such container", subject=cid)
        w = self.watched.get(row["id"])
        if w is not None:
            await self.stop(row["id"], timeout)
        return await self.start(row["id"])

    def pause(self, cid: str) -> dict[str, Any]:
        """Freeze the cgroup; a paused process is alive (no exit, no probes) until unpaused."""
        row, w = self._running(cid)
        if w.paused:
            raise ContainerConflict("the container is already paused", subject=row["name"])
        Cgroup.open(w.id, parent=self.cgroup_parent).freeze()
        w.paused = True
        records.set_state(self.db, w.id, "paused")
        return {"id": w.id, "state": "paused"}

    def unpause(self, cid: str) -> dict[str, Any]:
        row, w = self._running(cid)
        if not w.paused:
            raise ContainerConflict("the container is not paused", subject=row["name"])
        self._thaw(w)
        return {"id": w.id, "state": "running"}

    def _thaw(self, w: Watched) -> None:
        with contextlib.suppress(EngineError):
            Cgroup.open(w.id, parent=self.cgroup_parent).thaw()
        w.paused = False
        with contextlib.suppress(ContainerNotFound):
            if (records.get(self.db, w.id) or {}).get("state") == "paused":
                records.set_state(self.db, w.id, "running")

    # -- health ----------------------------------------------------------------------------------

    def _start_health(self, w: Watched, saved: str | None) -> None:
        config = health_config_of(w.spec)
        if config is None:
            return
        if saved and w.health is None:
            data = json.loads(saved)
            w.health = health.HealthState.from_dict(config, float(data.get("started_at", time.time())), data)
        elif w.health is None:
            w.health = health.HealthState(config, time.time())
        else:
            w.health.restarted(time.time())
        self._save_health(w)
        w.tasks.append(self.loop.create_task(self._health_loop(w)))

    def _save_health(self, w: Watched) -> None:
        assert w.health is not None
        with contextlib.suppress(ContainerNotFound):
            records.set_health(self.db, w.id, json.dumps(w.health.to_dict()))

    async def _health_loop(self, w: Watched) -> None:
        assert w.health is not None
        argv = health.probe_command(w.health.config)
        assert argv is not None
        while w.exit is None:
            await asyncio.sleep(max(0.0, w.health.next_probe_at(time.time()) - time.time()))
            if w.exit is not None:
                return
            if w.paused:  # Docker does not probe a paused container
                await asyncio.sleep(0.2)
                continue
            w.health.record(await self._probe(w, argv))
            self._save_health(w)

    async def _probe(self, w: Watched, argv: tuple[str, ...]) -> health.ProbeResult:
        """One probe inside the container's namespaces and cgroup; killed at its timeout."""
        assert w.health is not None
        timeout, start = w.health.timeout, time.time()
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        p = w.spec.process
        await self._fork_ready()
        try:
            pid = spawn.exec_in(
                w.pid, argv, p.env, p.user, p.working_dir, group_add=p.group_add,
                security_opts=w.spec.security, host_network=w.spec.network_mode == "host",
                stdio=(null, out_w, out_w), cgroup=self._try_cgroup(w.id),
            )  # fmt: skip
        except EngineError as exc:
            keeper.close_all([out_r, out_w, null])
            return health.ProbeResult.finished(start, time.time(), -1, str(exc).encode())
        finally:
            self._kick_deleter()
        keeper.close_all([out_w, null])
        output = bytearray()
        try:
            code = await asyncio.wait_for(self._wait_probe(pid, out_r, output), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return health.ProbeResult.timed_out(start, time.time(), timeout, bytes(output))
        finally:
            with contextlib.suppress(ValueError):
                self.loop.remove_reader(out_r)
            os.close(out_r)
        return health.ProbeResult.finished(start, time.time(), code, bytes(output))

    async def _wait_probe(self, pid: int, out_r: int, output: bytearray) -> int:
        """Collect the probe's output to EOF, then reap it through a pidfd (never waitpid(-1))."""
        eof = asyncio.Event()
        os.set_blocking(out_r, False)

        def on_read() -> None:
            with contextlib.suppress(BlockingIOError):
                data = os.read(out_r, 65536)
                if data and len(output) < 2 * health.MAX_OUTPUT:
                    output.extend(data)
                elif not data:
                    self.loop.remove_reader(out_r)
                    eof.set()

        self.loop.add_reader(out_r, on_read)
        await eof.wait()
        pidfd = os.pidfd_open(pid)
        exited = asyncio.Event()
        self.loop.add_reader(pidfd, exited.set)
        try:
            await exited.wait()
        finally:
            self.loop.remove_reader(pidfd)
            os.close(pidfd)
        return keeper.exit_code_of(os.waitpid(pid, 0)[1])

    def _try_cgroup(self, cid: str) -> Cgroup | None:
        try:
            return Cgroup.open(cid, parent=self.cgroup_parent)
        except EngineError:
            return None

    # -- control socket --------------------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One JSON request per line, one JSON reply per line; peers other than root/owner are refused."""
        if not self._peer_allowed(writer):
            refusal = {"ok": False, "error": "permission denied", "type": "SupervisorError", "subject": None}
            with contextlib.suppress(ConnectionError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                # read the request first: closing on unread data would give the peer EPIPE, not the refusal
                await asyncio.wait_for(reader.readline(), 1.0)
            with contextlib.suppress(ConnectionError):
                writer.write(json.dumps(refusal).encode() + b"\n")
                await writer.drain()
            writer.close()
            return
        try:
            while line := await reader.readline():
                writer.write(json.dumps(await self.answer(line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        """SO_PEERCRED (the uid at connect time): root or the owner of the state root."""
        sock = writer.get_extra_info("socket")
        if sock is None:
            return False
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return uid == 0 or uid == self.root.stat().st_uid

    async def answer(self, line: bytes) -> dict[str, Any]:
        if self.handing_over:  # clients wait for our successor instead of starting a keeper
            message = "the supervisor's keeper died: handing over to a new supervisor, retry"
            return {
                "ok": False,
                "handover": True,
                "error": message,
                "type": "SupervisorError",
                "subject": None,
            }
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "ping":
                result: dict[str, Any] = {"pid": os.getpid()}
            elif op == "start":
                result = await self.start(str(request["id"]))
            elif op == "stop":
                result = await self.stop(str(request["id"]), request.get("timeout"))
            elif op == "kill":
                result = await self.kill(str(request["id"]), request.get("signal", "SIGKILL"))
            elif op == "restart":
                result = await self.restart(str(request["id"]), request.get("timeout"))
            elif op == "pause":
                result = self.pause(str(request["id"]))
            elif op == "unpause":
                result = self.unpause(str(request["id"]))
            elif op == "status":
                result = self.status(request.get("id"))
            elif op == "shutdown":
                result = await self.shutdown()
            elif op == "bridge":
                result = await self.bridge(request)
            else:
                raise errors.SupervisorError(f"unknown op {op!r}")
            return {"ok": True, **result}
        except EngineError as exc:
            return {"ok": False, "error": exc.message, "type": type(exc).__name__, "subject": exc.subject}
        except Exception as exc:  # a bug must not kill the daemon
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "type": "SupervisorError"}

    async def bridge(self, request: dict[str, Any]) -> dict[str, Any]:
        """Make or delete a network's bridge for a CLI (client.SupervisedBridges: we have pyroute2 loaded).
        links runs it in a thread joined before we return (no thread lives at a fork); the loop waits
        for it: a few ms to make one, ~50 ms of kernel time to delete one. `retire` answers at once: the
        deleter thread deletes the bridge, then the note NetworkManager.remove_network left for it. A
        bridge is made only once every retired one is gone (a new network may reuse the old subnet)."""
        from engine.net import links

        name = str(request["name"])
        action = request.get("action")
        if action == "ensure":
            await self._retired_gone()
            links.ensure_bridge(name, [str(a) for a in request["addresses"]], int(request["mtu"]))
        elif action == "delete":
            links.delete_bridge(name)
        elif action == "retire":
            self._retired.append(name)
            self._owe_rules(0.0)  # the network's rules go too: the CLI left them to us
        else:
            raise errors.SupervisorError(f"unknown bridge action {action!r}")
        return {}

    async def _retired_gone(self) -> None:
        """Until the deleter has deleted every retired bridge (not every queued veth: after a `down`
        of many containers those take ~25 ms each, which a new network need not wait for)."""
        await self._deleter_run_while(lambda: bool(self._retired or self._retiring))

    def status(self, cid: str | None) -> dict[str, Any]:
        rows = [records.get(self.db, cid)] if cid else records.list_all(self.db)
        if cid and rows[0] is None:
            raise ContainerNotFound("no such container", subject=cid)
        out = []
        for row in rows:
            assert row is not None
            row = {k: v for k, v in row.items() if k != "spec"}
            row["watched"] = row["id"] in self.watched
            out.append(row)
        return {"containers": out}

    async def shutdown(self) -> dict[str, Any]:
        """For tests: kill every container, wait for their exits, then keeper and daemon both exit."""
        for w in list(self.watched.values()):
            records.set_stopped_by_user(self.db, w.id, True)
            if w.exit is None:
                with contextlib.suppress(EngineError):
                    Cgroup.open(w.id, parent=self.cgroup_parent).kill_all(signal.SIGKILL, timeout=2.0)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.pid, signal.SIGKILL)
                if w.done is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(w.done), 5.0)
        for w in list(self.watched.values()):
            self._cancel(w)
            self._detach(w)
            self._settle(w)
        self.spawners.close()
        await self._veths_deleted()
        if self.responder is not None:
            await self.responder.close()
            self.responder = None
        keeper.send(self.keeper, {"op": "quit"})
        self.loop.call_later(0.05, self.stopping.set)
        return {"stopped": True}

    async def _recover_networks_and_mounts(self) -> None:
        """What a crash left (veths, namespaces, rules, mounts of containers no longer running) is swept;
        DNS resumes for the re-adopted containers. Before serving: no start is in flight."""
        steps: list[Any] = [VolumeStore(self.state_root).sweep_mounts]
        if self.db.query_one("SELECT 1 AS one FROM networks LIMIT 1") is not None:
            steps.append(self.networks.sweep)
        for step in steps:
            try:
                step()
            except Exception as exc:  # a failed sweep must not leave containers unwatched
                print(f"supervisor: sweep: {exc}", file=sys.stderr, flush=True)
        if self._networks is not None:
            await self._sync_dns()

    async def run(self) -> None:
        early = self.handshake()
        self.keeper.setblocking(False)
        self.loop.add_reader(self.keeper.fileno(), self.on_keeper)
        for message in early:
            self.handle_keeper(message)
        self.readopt_orphans()
        await self._recover_networks_and_mounts()
        path = self.root / "run" / SOCKET_NAME
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old = os.umask(0o077)
        try:
            server = await asyncio.start_unix_server(self.serve, path=str(path), backlog=LISTEN_BACKLOG)
        finally:
            os.umask(old)
        self.loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        async with server:
            await self.stopping.wait()
        if not self.handed_over:  # after a handover the path may already be our successor's socket
            with contextlib.suppress(TimeoutError):  # SIGTERM: finish what the deleter owes, briefly
                await asyncio.wait_for(self._veths_deleted(), 5.0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _output_pipes() -> tuple[list[int], list[int]]:
    """stdout and stderr pipes: (read ends, write ends for the container). The container's end is opened
    read-write through /proc, so the container itself counts as a reader: it never gets SIGPIPE, even
    with keeper and daemon both dead (DESIGN.md "Both dead"); unread output blocks it once the pipe is
    full, as it would with a stalled reader."""
    reads: list[int] = []
    writes: list[int] = []
    try:
        for _ in range(2):
            r, w = os.pipe2(os.O_CLOEXEC)
            reads.append(r)
            try:
                writes.append(os.open(f"/proc/self/fd/{w}", os.O_RDWR | os.O_CLOEXEC))
            finally:
                os.close(w)
            with contextlib.suppress(OSError):
                fcntl.fcntl(r, F_SETPIPE_SZ, PIPE_SIZE)
    except BaseException:
        keeper.close_all(reads + writes)
        raise
    return reads, writes


def _quiet(check: Any) -> bool:
    """A yes/no probe of the kernel that counts as no when it fails."""
    try:
        return bool(check())
    except (OSError, EngineError):
        return False


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.supervise.daemon --root R --keeper-fd N` (started by the keeper only)."""
    import argparse

    parser = argparse.ArgumentParser(prog="pycompose-supervisor")
    parser.add_argument("--root", required=True)
    parser.add_argument("--keeper-fd", type=int, required=True)
    parser.add_argument("--cgroup-parent", default=DEFAULT_PARENT)
    args = parser.parse_args(argv)
    root = Path(args.root)
    lock = FileLock(root / "locks" / SUPERVISOR_LOCK)
    lock.acquire(timeout=10)  # a dying predecessor may still hold it for a moment
    keeper.set_oom_score_adj(keeper.DAEMON_OOM_SCORE_ADJ)
    sock = socket.socket(fileno=args.keeper_fd)
    sock.set_inheritable(False)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    async def amain() -> None:
        await Daemon(root, sock, args.cgroup_parent, lock).run()

    asyncio.run(amain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
