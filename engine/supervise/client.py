"""The CLI side of supervision: make sure a keeper + supervisor run for a state root, and talk to them.

`ensure_supervisor(root)` pings `run/supervisor.sock`; if nothing answers it starts a keeper detached
from the caller (new session, cwd /, stdin /dev/null, output to `run/supervisor.log`; the keeper forks once
more so it is not our child) and waits for the socket. A keeper that finds `locks/keeper.lock` taken
exits at once, so two racing CLIs start one keeper. A daemon that answers "handover" (its keeper died and
it is passing its containers to a successor keeper) is waited for, never raced with a keeper of ours.
`request(root, op, **args)` sends one JSON line and returns the reply, re-raising an error reply as the
engine error class it names; `kill`, `restart`, `pause`, `unpause` are its typed shorthands. The daemon
answers root or the state root's owner only.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from engine import errors
from engine.state.root import StateRoot
from engine.supervise.protocol import KEEPER_LOCK, LOG_NAME, SOCKET_NAME, SUPERVISOR_LOCK
from engine.supervise.protocol import error_from as _error_from

START_TIMEOUT = 10.0
REQUEST_TIMEOUT = 120.0
CONNECT_RETRY = 5.0  # a full accept queue or a daemon about to listen: how long to keep trying


def socket_path(root: StateRoot) -> Path:
    return run_dir(root) / SOCKET_NAME


def run_dir(root: StateRoot) -> Path:
    """<root>/run: the control socket and the supervisor's own log (made on first use, 0700)."""
    path = root.path / "run"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def ping(root: StateRoot) -> bool:
    """True if a supervisor answers on the socket (or is handing over to a successor: `request` waits)."""
    return _probe(root) != "none"


def _probe(root: StateRoot) -> str:
    """ "ok" (a daemon serves), "handover" (a daemon is passing its work to a successor) or "none"."""
    try:
        reply = _call(root, {"op": "ping"}, timeout=2.0)
    except (OSError, ValueError):
        return "none"
    if reply.get("ok"):
        return "ok"
    return "handover" if reply.get("handover") else "none"


def ensure_supervisor(
    root: StateRoot,
    *,
    cgroup_parent: str | None = None,
    timeout: float = START_TIMEOUT,
    launched: bool = False,
) -> None:
    """Start the keeper (and through it the supervisor) unless one answers; wait until it does.
    `launched`: the caller has just launched one (launcher.launch(wait=False)): only wait."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _probe(root)
        if state == "ok":
            return
        if state == "none" and not launched:  # a keeper that finds the lock taken exits at once
            from engine.supervise import launcher

            launcher.launch(root.path, cgroup_parent)
            launched = True
        time.sleep(0.02)
    raise errors.SupervisorError(
        f"supervisor did not answer within {timeout:g}s (see {run_dir(root) / LOG_NAME})",
        subject=str(root.path),
    )


def request(root: StateRoot, op: str, **args: Any) -> dict[str, Any]:
    """One request to the supervisor; an error reply is raised as its engine error. During a handover
    (the old daemon answers "handover", then nobody listens until the successor binds) it waits."""
    handing_over = False
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            reply = _call(root, {"v": 1, "op": op, **args}, timeout=REQUEST_TIMEOUT)
        except OSError as exc:
            if not handing_over or time.monotonic() >= deadline:
                raise errors.SupervisorError(
                    f"cannot reach the supervisor: {exc}", subject=str(root.path)
                ) from exc
            reply = {"handover": True}  # between the old daemon's exit and the successor's bind
        handing_over = bool(reply.get("handover"))
        if not handing_over or time.monotonic() >= deadline:
            break
        time.sleep(0.02)  # a handover reply means nothing was done: asking again is safe
    if not reply.get("ok"):
        raise _error_from(reply)
    return reply


def kill(root: StateRoot, cid: str, sig: str | int = "SIGKILL") -> dict[str, Any]:
    """docker kill via the daemon: SIGKILL or the stop signal is recorded as a user stop before it lands."""
    return request(root, "kill", id=cid, signal=sig)


def restart(root: StateRoot, cid: str, timeout: float | None = None) -> dict[str, Any]:
    """Stop (stop signal, SIGKILL after `timeout` or the grace period) then a user start."""
    return request(root, "restart", id=cid, **({} if timeout is None else {"timeout": timeout}))


def pause(root: StateRoot, cid: str) -> dict[str, Any]:
    """Freeze through the daemon, which then neither probes the container nor takes it for dead."""
    return request(root, "pause", id=cid)


def unpause(root: StateRoot, cid: str) -> dict[str, Any]:
    return request(root, "unpause", id=cid)


def shutdown(root: StateRoot, timeout: float = 15.0) -> None:
    """For tests: kill every supervised container and stop supervisor and keeper; waits for the keeper.

    A keeper whose daemon does not listen yet (launched by a CLI that has just exited) is asked again
    once it does: asked once, it was left running, holding its lock, and the wait below timed out."""
    deadline = time.monotonic() + timeout
    lock = root.lock("keeper")
    while True:
        try:
            request(root, "shutdown")
            break
        except errors.SupervisorError:
            if time.monotonic() >= deadline or not _lock_held(lock.path):
                break
            time.sleep(0.05)
    lock.acquire(timeout=max(0.0, deadline - time.monotonic()))  # the keeper releases it when it exits
    lock.release()


def supervised(root: StateRoot) -> bool:
    """Whether this root's keeper or daemon lives (each holds its lock while it does). Either keeps the
    container rows true: the keeper records every exit of its children, a daemon those it watches."""
    locks = root.path / "locks"
    return _lock_held(locks / KEEPER_LOCK) or _lock_held(locks / SUPERVISOR_LOCK)


def _daemon_alive(root: StateRoot) -> bool:
    """The daemon holds locks/supervisor.lock while it lives (the kernel drops a flock at death)."""
    return _lock_held(root.path / "locks" / SUPERVISOR_LOCK)


def _lock_held(path: Path) -> bool:
    """Whether some process holds a flock on `path` (a shared probe, given back at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock, if we got it
    return False


def _connect(root: StateRoot, sock: socket.socket) -> None:
    """Connect, retrying while the accept queue is full (EAGAIN: many parallel starts) and while a
    refusal comes from a living daemon that is between its bind and its listen (ECONNREFUSED)."""
    deadline = time.monotonic() + CONNECT_RETRY
    pause = 0.002
    while True:
        try:
            sock.connect(str(socket_path(root)))
            return
        except (BlockingIOError, ConnectionRefusedError) as exc:
            busy = exc.errno == errno.EAGAIN or _daemon_alive(root)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _call(root: StateRoot, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        _connect(root, sock)
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("supervisor closed the connection")
            buf += chunk
    return json.loads(buf)


class SupervisedBridges:
    """A network's bridge made by the supervisor when one runs: it has the netlink library loaded, so a
    CLI that creates or removes a network (every `up` and `down`) never imports it (~0.17 s). With no
    supervisor, or one of an older pycompose that does not know the request, this process does it."""

    def __init__(self, root: StateRoot) -> None:
        self.root = root

    def ensure(self, name: str, addresses: list[str] | tuple[str, ...], mtu: int) -> None:
        if not self._asked("ensure", name=name, addresses=list(addresses), mtu=mtu):
            from engine.net.manager import LocalBridges

            LocalBridges().ensure(name, addresses, mtu)

    def delete(self, name: str) -> None:
        if not self._asked("delete", name=name):
            from engine.net.manager import LocalBridges

            LocalBridges().delete(name)

    def retire(self, name: str) -> bool:
        """The supervisor syncs the firewall and deletes the bridge in the background, then the bridge's
        note (~35 ms of iptables and netlink a `down` need not wait for); False with no supervisor, or one
        that does not know the request."""
        try:
            return self._asked("retire", name=name)
        except errors.SupervisorError as exc:
            if "unknown bridge action" in exc.message:
                return False
            raise

    def _asked(self, action: str, **args: Any) -> bool:
        """True when a supervisor did it; its error reply is raised as the engine error it names."""
        if not socket_path(self.root).exists():
            return False
        try:
            request(self.root, "bridge", action=action, **args)
        except errors.SupervisorError as exc:
            if isinstance(exc.__cause__, OSError) or "unknown op" in exc.message:
                return False
            raise
        return True
