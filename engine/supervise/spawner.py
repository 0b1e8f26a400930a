"""Spawn workers: long-lived processes that start containers for the supervisor, so a start forks nothing.

Why: the daemon used to fork a helper for every start. Forking the 30-40 MB daemon cost more than the
start itself: the copy of its page tables, copy-on-write faults in both processes while the helper lived,
and the teardown of the copy. In a 20-service `up -d` (perf, whole host) that was about half of the
daemon's CPU and a third of the helpers'.

How a container still ends up the keeper's child: a worker is forked twice from the daemon (the middle
process exits at once), so the keeper, the subreaper above the daemon, adopts it; the worker then clones
each container with CLONE_PARENT (`spawn.start(sibling=True)`), which makes the container the keeper's
child from its first instruction, as the old helper's container became once the helper exited. The
worker keeps the daemon's imported modules (pyroute2, the seccomp plans) and does one job at a time:
the cgroup, the network namespace and veths (the kernel steps `NetworkManager.prepare` left), the
clone. The loop meanwhile handles the next starts: up to MAX_WORKERS run side by side.

Protocol: a SEQPACKET socketpair. A job is one packet, a pickle of `Job` (our own records, between two
processes of ours on a private socketpair), with the container's stdout and stderr write ends as
SCM_RIGHTS (none for a tty). The worker answers each job, in order, with one JSON packet: `{"pid"}`,
plus the pty master for a tty, or an error body (`protocol.error_body`). So replies pair with jobs
first-in first-out. A worker holds at most MAX_QUEUE jobs (the one it does and the next), so a send
never blocks and a start that hangs holds up at most one other (`Spawners._pick`).

Lifetime: the daemon closes a worker's socket after IDLE_TIMEOUT without jobs, after MAX_JOBS jobs
(each vfork child leaves its unfinished Python frames, a few KB, in the worker's memory), at handover and
at shutdown; a worker exits at end of stream, so also when its daemon dies. The keeper reaps it as a
child it does not know.

A worker must not touch what it inherited from the daemon but its code and the state root's paths: the
daemon's files, sockets, locks and database are closed in it (their objects are still in its memory).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import gc
import json
import os
import pickle
import signal
import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn

from engine.containers import spawn
from engine.containers.cgroups import Cgroup
from engine.containers.rootfs import VolumeSource
from engine.containers.spec import ContainerSpec, NetworkSetup
from engine.errors import ContainerStartError
from engine.frozen import frozen
from engine.state.root import StateRoot
from engine.supervise import keeper
from engine.supervise.protocol import error_body, error_from

MAX_WORKERS = 4  # more than this host's 2 cores: a start also sleeps in the kernel (RCU grace periods)
MAX_QUEUE = 2  # jobs a worker holds: the one it does and the next, ready when it is done
STUCK_AFTER = 5.0  # s a job may take before its worker stops counting (a start takes ~0.01-0.1 s)
IDLE_TIMEOUT = 5.0  # s without a job before a worker is let go
MAX_JOBS = 500  # jobs per worker: bounds what vfork children leave in its memory
MAX_PACKET = 4 << 20  # a job: a few KB, more with a large environment or many labels
SO_SNDBUFFORCE = 32  # root may raise the send buffer past net.core.wmem_max
PR_SET_NAME = 15
Reply = tuple[dict[str, Any], list[int]]  # a worker's answer: its JSON body and the fds it sent
WORKER_NAME = b"pyc-spawner"  # its comm, in ps and top


@frozen
class Job:
    """Everything a worker needs to start one container (pickled; the fds travel beside it)."""

    spec: ContainerSpec
    cgroup_parent: str
    network: NetworkSetup | None = None
    kernel_steps: tuple[Callable[[], None], ...] = ()  # namespace and veths, in order
    volumes: Mapping[str, VolumeSource] | None = None


def container_cgroup(spec: ContainerSpec, parent: str) -> Cgroup:
    """The container's cgroup (made if missing) with the spec's limits applied."""
    group = Cgroup.open_or_create(spec.id, parent=parent)
    group.apply(spec.resources, privileged=spec.security.privileged)
    return group


# -- the daemon's side --------------------------------------------------------------------------------


class _Worker:
    """One worker as the daemon sees it: its socket and the replies it owes, oldest first."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending: collections.deque[asyncio.Future[Reply]] = collections.deque()
        self.since = 0.0  # when it began its current job (monotonic)
        self.jobs = 0
        self.retiring = False  # takes no new job; closed once it has answered
        self.idle: asyncio.TimerHandle | None = None


class Spawners:
    """The daemon's workers: picks one for each start, forks a new one when all are busy.

    `fork_ready` is awaited before each fork (the daemon's fork-safety: no thread of it may run), `forked`
    runs in the daemon right after, and `reap` reaps the middle process without blocking the loop.
    """

    def __init__(
        self,
        root: StateRoot,
        *,
        fork_ready: Callable[[], Awaitable[None]],
        forked: Callable[[], None],
        reap: Callable[[int], None],
    ) -> None:
        self.root = root
        self._fork_ready = fork_ready
        self._forked = forked
        self._reap = reap
        self._workers: list[_Worker] = []
        self._forking: asyncio.Future[None] | None = None
        self._freed: asyncio.Event | None = None  # set when a reply frees a slot (all queues were full)

    async def start(self, job: Job, fds: Sequence[int]) -> tuple[int, int | None]:
        """Send the job (the fds are copied into the worker); returns the PID 1's pid and, for a tty, the
        pty master (ours to close). Raises the engine error the worker reported."""
        worker = await self._pick()
        data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        try:
            keeper.send_packet(worker.sock, data, fds)
        except OSError as exc:
            if exc.errno == errno.EMSGSIZE:
                raise ContainerStartError(
                    f"the container's configuration is too large to start ({len(data)} bytes)",
                    subject=job.spec.name,
                ) from exc
            self._lost(worker)
            raise ContainerStartError(f"the spawn worker is gone: {exc}") from exc
        if not worker.pending:
            worker.since = time.monotonic()
        worker.pending.append(reply)
        worker.jobs += 1
        if worker.jobs >= MAX_JOBS:
            worker.retiring = True
        body, got = await reply
        if "pid" not in body:
            keeper.close_all(got)
            raise error_from(body)
        return int(body["pid"]), (got[0] if got else None)

    def close(self) -> None:
        """Let every worker go (handover, shutdown); what they still owe fails."""
        for worker in list(self._workers):
            self._lost(worker)

    async def _pick(self) -> _Worker:
        """An idle worker, else a new one while fewer than MAX_WORKERS work, else the least loaded with
        room. A worker whose current job has run for STUCK_AFTER (a mount of an unreachable NFS server)
        stops counting and gets no more jobs: a new one takes its place (at most MAX_WORKERS more), so a
        start that hangs holds up only the one job queued behind it. There is no await between the last
        look at the workers and the caller's send: no other start takes the same slot."""
        while True:
            open_ = [w for w in self._workers if not w.retiring]
            for worker in open_:
                if not worker.pending:
                    return self._busy(worker)
            now = time.monotonic()
            working = [w for w in open_ if now - w.since < STUCK_AFTER]
            if len(working) < MAX_WORKERS and len(self._workers) < 2 * MAX_WORKERS:
                if self._forking is None:
                    self._forking = asyncio.ensure_future(self._add_worker())
                await asyncio.shield(self._forking)  # several starts may wait for the same fork
                continue
            least = min(working, key=lambda w: len(w.pending), default=None)
            if least is not None and len(least.pending) < MAX_QUEUE:
                return self._busy(least)
            self._freed = self._freed or asyncio.Event()
            with contextlib.suppress(TimeoutError):  # (look again: a worker may have got stuck)
                await asyncio.wait_for(self._freed.wait(), STUCK_AFTER)

    def _busy(self, worker: _Worker) -> _Worker:
        if worker.idle is not None:
            worker.idle.cancel()
            worker.idle = None
        return worker

    async def _add_worker(self) -> None:
        try:
            self._workers.append(await self._fork())
        finally:
            self._forking = None

    async def _fork(self) -> _Worker:
        """Fork twice (the middle exits at once): the worker becomes the keeper's child, as its
        containers will."""
        await self._fork_ready()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.suppress(OSError):  # a packet must fit the send buffer whole (else EMSGSIZE)
            ours.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, MAX_PACKET // 2)  # the kernel doubles it
        try:
            middle = os.fork()  # no await since _fork_ready: no thread of the daemon runs
        except OSError as exc:
            ours.close()
            theirs.close()
            raise ContainerStartError(f"cannot fork a spawn worker: {exc}") from exc
        if middle == 0:
            try:
                if os.fork() == 0:
                    serve(theirs, self.root)
            finally:
                os._exit(0)
        self._forked()
        theirs.close()
        self._reap(middle)
        worker = _Worker(ours)
        asyncio.get_running_loop().add_reader(ours.fileno(), self._on_replies, worker)
        return worker

    def _on_replies(self, worker: _Worker) -> None:
        """Every reply waiting on the socket, each to the oldest unanswered job; at end of stream (or any
        error) the worker is gone and what it owes fails."""
        while True:
            try:
                data, fds = keeper.receive_packet(worker.sock, max_fds=1, flags=socket.MSG_DONTWAIT)
            except BlockingIOError:
                break
            except OSError:
                data, fds = b"", []
            if not data or not worker.pending:
                keeper.close_all(fds)
                self._lost(worker)
                return
            reply = worker.pending.popleft()
            worker.since = time.monotonic()  # it begins the next job, if any
            if reply.cancelled():  # its start was abandoned; the container is the keeper's to reap
                keeper.close_all(fds)
            else:
                reply.set_result((json.loads(data), fds))
        self._wake()
        if not worker.pending:
            if worker.retiring:
                self._lost(worker)
            else:
                loop = asyncio.get_running_loop()
                worker.idle = loop.call_later(IDLE_TIMEOUT, self._let_go, worker)

    def _let_go(self, worker: _Worker) -> None:
        worker.idle = None
        if not worker.pending:
            self._lost(worker)

    def _lost(self, worker: _Worker) -> None:
        """Forget a worker and close its socket (so it exits); its unanswered jobs fail."""
        if worker in self._workers:
            self._workers.remove(worker)
        if worker.idle is not None:
            worker.idle.cancel()
            worker.idle = None
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(worker.sock.fileno())
        worker.sock.close()
        while worker.pending:
            reply = worker.pending.popleft()
            if not reply.done():
                reply.set_exception(ContainerStartError("the spawn worker died"))
        self._wake()

    def _wake(self) -> None:
        """A slot came free (or a worker went): starts waiting in `_pick` look again."""
        if self._freed is not None:
            self._freed.set()
            self._freed = None


# -- the worker's side -----------------------------------------------------------------------------


def serve(sock: socket.socket, root: StateRoot) -> NoReturn:
    """The worker's whole life, in the twice-forked child: jobs one at a time until end of stream."""
    status = 0
    try:
        _become_worker(sock.fileno())
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        sock.setblocking(True)
        while True:
            data, fds = keeper.receive_packet(sock, max_fds=2, size=MAX_PACKET)
            if not data:
                break
            body, out = run_job(data, fds, root, null)
            try:
                keeper.send(sock, body, out)
            finally:
                keeper.close_all(out)
    except BaseException:  # its daemon sees the end of stream and fails the job
        traceback.print_exc()
        status = 1
    os._exit(status)


def run_job(data: bytes, fds: list[int], root: StateRoot, null: int) -> tuple[dict[str, Any], list[int]]:
    """One start: the reply body and the fds to send with it (the pty master). Closes `fds`."""
    try:
        job: Job = pickle.loads(data)
        group = container_cgroup(job.spec, job.cgroup_parent)
        for step in job.kernel_steps:
            step()
        options: dict[str, Any] = {"volumes": job.volumes, "cgroup": group, "network": job.network}
        if not fds:
            pid, master = spawn.start_with_tty(job.spec, root, sibling=True, **options)
            return {"pid": pid}, [master]
        pid = spawn.start(job.spec, root, stdio=(null, fds[0], fds[1]), sibling=True, **options)
        return {"pid": pid}, []
    except BaseException as exc:
        return error_body(exc), []
    finally:
        keeper.close_all(fds)


def _become_worker(keep: int) -> None:
    """Drop what the daemon left us: its fds but `keep` and stdio, its signal handlers and wakeup fd, its
    oom_score_adj (containers inherit ours). Inherited objects go to the collector's permanent
    generation: a collection would walk, and so copy, every page we share with the daemon."""
    with contextlib.suppress(ValueError):  # (only the main thread may; the loop's thread is)
        signal.set_wakeup_fd(-1)
    os.closerange(3, keep)
    os.closerange(keep + 1, 1 << 20)
    child_defaults()
    gc.freeze()
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(WORKER_NAME), 0, 0, 0)


def child_defaults() -> None:
    """What a container must not inherit from us: our SIG_IGNs and our oom_score_adj (raising it back to
    0 needs no privilege; spawn then applies the spec's own value, if any)."""
    import _signal  # signal's C core: no enum conversion per call

    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP) or _signal.getsignal(signum) == _signal.SIG_DFL:
            continue  # already the default (None, a handler set outside Python, is reset too)
        with contextlib.suppress(OSError, ValueError):
            _signal.signal(signum, _signal.SIG_DFL)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as handle:
        handle.write("0")
