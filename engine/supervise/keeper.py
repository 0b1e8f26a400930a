"""The keeper: the long-lived, nearly idle parent of the supervisor daemon and of every container PID 1.

Why it exists (DESIGN.md): a container's exit status can only be read by its parent, and a pipe whose
readers all died SIGPIPEs its writer. The keeper is a child subreaper (PR_SET_CHILD_SUBREAPER), so it
adopts the daemon's spawn workers, which clone every container PID 1 as its child (CLONE_PARENT); it
holds a copy of every container's stdout/stderr read ends (sent by the daemon with SCM_RIGHTS), reaps,
records exits in the database and tells the daemon, and restarts the daemon when it dies. It has no
asyncio and no timers of its own.

Protocol with the daemon: one SOCK_SEQPACKET socketpair, one JSON object per packet, fds alongside.
daemon -> keeper  {"op": "hold", "id", "pid", "streams"} + fds  | {"op": "forget", "id"} | hello | quit
keeper -> daemon  {"op": "exit", "id", "pid", "code", "oom", "finished_at"}   (re-sent after each hello
                  until the daemon forgets the container) | {"op": "held", "items": [...]} + fds
Handover (a daemon whose keeper died starts a successor with `--handover-fd N`): before starting its own
daemon the successor reads `hold` packets then `done` on that socket, answers `{"op": "taken", "n"}`, and
hands everything to its daemon at `hello` as usual (DESIGN.md "Keeper dies alone").
Syscall via ctypes here (its only user): prctl(PR_SET_CHILD_SUBREAPER).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import errno
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from engine.containers.cgroups import DEFAULT_PARENT, Cgroup
from engine.state.db import Database
from engine.state.locks import FileLock
from engine.supervise.protocol import CGROUP_PARENT_ENV, KEEPER_LOCK, LAUNCH_TIMEOUT

PR_SET_CHILD_SUBREAPER = 36
MAX_PACKET = 1 << 20
MAX_FDS = 250  # SCM_RIGHTS per message is capped by the kernel at 253
FD_SIZE = array.array("i").itemsize
KEEPER_OOM_SCORE_ADJ = -999  # the OOM killer takes containers (0 or their own value) long before us
DAEMON_OOM_SCORE_ADJ = -500  # dockerd's long-time value


def set_child_subreaper() -> None:
    """Become the reaper of orphaned descendants (the stdlib has no prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_oom_score_adj(value: int) -> None:
    """Our own OOM badness; lowering it needs CAP_SYS_RESOURCE, so a non-root run keeps the default."""
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write(str(value))
    except OSError as exc:
        print(f"pycompose: oom_score_adj {value} not set: {exc.strerror}", file=sys.stderr, flush=True)


def now_rfc3339() -> str:
    """The state database's time format (RFC 3339 UTC, nanoseconds cut to micro)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def exit_code_of(status: int) -> int:
    """A wait status as Docker reports it: the code, or 128 + the signal number."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def send(sock: socket.socket, message: dict[str, object], fds: Sequence[int] | None = None) -> None:
    """One JSON packet, with fds if any (SCM_RIGHTS)."""
    send_packet(sock, json.dumps(message).encode(), fds)


def send_packet(sock: socket.socket, data: bytes, fds: Sequence[int] | None = None) -> None:
    """One packet of bytes, with fds if any (SCM_RIGHTS)."""
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[dict[str, object] | None, list[int]]:
    """One packet and the fds it carried; (None, []) at end of stream."""
    data, fds = receive_packet(sock)
    if not data:
        close_all(fds)
        return None, []
    return json.loads(data), fds


def receive_packet(
    sock: socket.socket, *, max_fds: int = MAX_FDS, size: int = MAX_PACKET, flags: int = 0
) -> tuple[bytes, list[int]]:
    """One packet of bytes and the fds it carried (b"" at end of stream). A packet longer than `size`
    is refused (OSError EMSGSIZE, its fds closed), not cut. (Python 3.11's socket.recv_fds drops its
    `flags`, MSG_DONTWAIT for one.)"""
    data, ancillary, got, _ = sock.recvmsg(size, socket.CMSG_LEN(max_fds * FD_SIZE), flags)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % FD_SIZE])
    if got & socket.MSG_TRUNC:
        close_all(list(fds))
        raise OSError(errno.EMSGSIZE, "a packet longer than expected was refused")
    return data, list(fds)


def close_all(fds: Sequence[int]) -> None:
    """Close every fd, ignoring those already closed."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass
class Held:
    """A container the keeper watches: its PID 1 and the pipe read ends it keeps open."""

    id: str
    pid: int
    fds: list[int] = field(default_factory=list)
    exit: dict[str, object] | None = None  # set once reaped, until the daemon forgets it
    streams: list[str] = field(default_factory=lambda: ["stdout", "stderr"])  # what each fd carries


class Keeper:
    """The state and loop of the keeper process."""

    def __init__(self, root: Path, cgroup_parent: str) -> None:
        self.root = root
        self.cgroup_parent = cgroup_parent
        self.held: dict[str, Held] = {}
        self.early: dict[int, tuple[int, str]] = {}  # pid -> (code, finished_at) reaped before "hold"
        self.daemon_pid = 0
        self.sock: socket.socket | None = None
        self.quitting = False
        self.backoff = 0.0
        self.daemon_started = 0.0
        self.restart_at: float | None = None
        self.db: Database | None = None
        self.sel = selectors.DefaultSelector()

    # -- daemon ----------------------------------------------------------------------------------

    def start_daemon(self) -> None:
        """fork+exec the daemon with its end of a fresh socketpair."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)
        argv = [sys.executable, "-m", "engine.supervise.daemon", "--root", str(self.root)]
        argv += ["--keeper-fd", str(theirs.fileno()), "--cgroup-parent", self.cgroup_parent]
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                os.execv(sys.executable, argv)
            finally:
                os._exit(127)
        theirs.close()
        if self.sock is not None:
            self.sel.unregister(self.sock)
            self.sock.close()
        self.sock = ours
        self.sel.register(ours, selectors.EVENT_READ, self.on_message)
        self.daemon_pid = pid
        self.daemon_started = time.monotonic()

    def on_daemon_exit(self) -> None:
        """Restart the daemon (100 ms doubling, reset after 10 s of life) unless we are quitting."""
        self.daemon_pid = 0
        if self.sock is not None:
            self.sel.unregister(self.sock)
            self.sock.close()
            self.sock = None
        if self.quitting:
            return
        ran = time.monotonic() - self.daemon_started
        self.backoff = 0.1 if ran >= 10 or self.backoff <= 0 else min(self.backoff * 2, 60.0)
        self.restart_at = time.monotonic() + self.backoff

    # -- messages --------------------------------------------------------------------------------

    def on_message(self) -> None:
        assert self.sock is not None
        try:
            message, fds = receive(self.sock)
        except (ConnectionError, OSError):
            message, fds = None, []
        if message is None:  # the daemon closed its end: it is dying; its exit comes through waitid
            self.sel.unregister(self.sock)
            self.sock.close()
            self.sock = None
            return
        op = message.get("op")
        if op == "hold":
            self.hold_message(message, fds)
        else:
            for fd in fds:
                os.close(fd)
        if op == "forget":
            self.forget(str(message["id"]))
        elif op == "hello":
            self.hello()
        elif op == "quit":
            self.quitting = True

    def hold_message(self, message: dict[str, object], fds: list[int]) -> None:
        streams = message.get("streams")
        names = [str(s) for s in streams] if isinstance(streams, list) else None
        self.hold(str(message["id"]), int(message["pid"]), fds, names)  # type: ignore[call-overload]

    def hold(self, cid: str, pid: int, fds: list[int], streams: list[str] | None = None) -> None:
        """Watch `pid` as container `cid` and keep its pipe ends (a restart replaces the old entry)."""
        old = self.held.pop(cid, None)
        if old is not None:
            close_all(old.fds)
        entry = Held(cid, pid, fds)
        if streams is not None:
            entry.streams = streams[: len(fds)]
        self.held[cid] = entry
        if pid in self.early:
            code, finished = self.early.pop(pid)
            self.exited(entry, code, finished)

    def forget(self, cid: str) -> None:
        entry = self.held.pop(cid, None)
        if entry is not None:
            close_all(entry.fds)

    def hello(self) -> None:
        """A (new) daemon: every held container with dups of its fds, then the unacknowledged exits."""
        assert self.sock is not None
        items = [
            {"id": h.id, "pid": h.pid, "nfds": len(h.fds), "streams": h.streams, "exited": h.exit is not None}
            for h in self.held.values()
        ]
        fds = [fd for h in self.held.values() for fd in h.fds]
        send(self.sock, {"op": "held", "items": items}, fds)
        for entry in self.held.values():
            if entry.exit is not None:
                self.tell(entry.exit)

    def tell(self, message: dict[str, object]) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                send(self.sock, message)

    # -- reaping ---------------------------------------------------------------------------------

    def reap(self) -> None:
        """Collect every exited child; never blocks."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.daemon_pid:
                self.on_daemon_exit()
                continue
            code, finished = exit_code_of(status), now_rfc3339()
            entry = next((h for h in self.held.values() if h.pid == pid and h.exit is None), None)
            if entry is None:
                self.early[pid] = (code, finished)  # a spawn worker or a container not yet announced
                if len(self.early) > 4096:
                    self.early.pop(next(iter(self.early)))
            else:
                self.exited(entry, code, finished)

    def exited(self, entry: Held, code: int, finished: str) -> None:
        """Record the exit (so it survives a daemon crash), then tell the daemon."""
        oom = self.oom_killed(entry.id)
        self.record(entry.id, code, oom, finished)
        entry.exit = {
            "op": "exit",
            "id": entry.id,
            "pid": entry.pid,
            "code": code,
            "oom": oom,
            "finished_at": finished,
        }
        self.tell(entry.exit)

    def oom_killed(self, cid: str) -> bool:
        try:
            return Cgroup.open(cid, parent=self.cgroup_parent).oom_killed()
        except Exception:  # no cgroup (already removed): no OOM evidence
            return False

    def record(self, cid: str, code: int, oom: bool, finished: str) -> None:
        from engine.containers import records

        try:
            if self.db is None:
                self.db = Database(self.root / "pycompose.db")
            records.record_exited(self.db, cid, code, oom, finished)
        except Exception as exc:  # the daemon records it again from our message
            print(f"keeper: recording exit of {cid}: {exc}", file=sys.stderr, flush=True)

    def take_over(self, sock: socket.socket) -> None:
        """From a daemon whose keeper died: hold what it sends until `done`, then acknowledge. Blocking,
        before our own daemon starts (which receives all of it at `hello`)."""
        with sock:
            sock.settimeout(LAUNCH_TIMEOUT)
            while True:
                try:
                    message, fds = receive(sock)
                except OSError:
                    break
                if message is None or message.get("op") == "done":
                    break
                if message.get("op") == "hold":
                    self.hold_message(message, fds)
                else:
                    close_all(fds)
            with contextlib.suppress(OSError):
                send(sock, {"op": "taken", "n": len(self.held)})

    # -- loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        """Until told to quit and the daemon is gone."""
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        self.sel.register(wake_r, selectors.EVENT_READ, lambda: _drain(wake_r))
        self.start_daemon()
        while not (self.quitting and self.daemon_pid == 0):
            timeout = None if self.restart_at is None else max(0.0, self.restart_at - time.monotonic())
            for key, _ in self.sel.select(timeout if timeout is not None else 5.0):
                key.data()
            self.reap()
            if self.restart_at is not None and time.monotonic() >= self.restart_at and not self.quitting:
                self.restart_at = None
                self.start_daemon()

    def _on_term(self, *_: object) -> None:
        self.quitting = True
        if self.daemon_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.daemon_pid, signal.SIGTERM)


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.supervise.keeper --root R [--cgroup-parent P]`: exits at once if a keeper lives."""
    import argparse

    parser = argparse.ArgumentParser(prog="pycompose-keeper")
    parser.add_argument("--root", required=True)
    parser.add_argument("--cgroup-parent", default=os.environ.get(CGROUP_PARENT_ENV, DEFAULT_PARENT))
    parser.add_argument("--detach", action="store_true", help="fork and let the parent exit (client use)")
    parser.add_argument("--handover-fd", type=int, help="a predecessor daemon's socket (keeper died alone)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.detach and os.fork() != 0:
        os._exit(0)
    lock = FileLock(root / "locks" / KEEPER_LOCK)
    try:
        lock.acquire(timeout=0)
    except Exception:
        return 0  # another keeper holds the lock: it is alive
    set_child_subreaper()
    set_oom_score_adj(KEEPER_OOM_SCORE_ADJ)
    keeper = Keeper(root, args.cgroup_parent)
    if args.handover_fd is not None:
        keeper.take_over(socket.socket(fileno=args.handover_fd))
    keeper.run()
    lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
