"""Attached containers: a one-off started for the calling process with its terminal, and attaching to the
output of a container the supervisor runs.

Why not through the supervisor (`run_attached`): the supervisor gives its containers /dev/null as stdin
and keeps their output for the logs, so neither a shell's stdin nor an interactive terminal could reach
them. Here the caller's stdin/stdout/stderr ARE the container's (no copying), or, with a tty, the
container gets a pty of its own (spawn.start_with_tty) that the caller relays to its terminal in raw mode
with its window size.

Who is the parent: a waiter process forked by the caller (its own session, so the terminal's Ctrl-C
does not reach it) does the supervisor's steps — cgroup, networks (engine/net: namespace, veths, ports),
shared volume mounts, spawn.start (single-threaded), `record_started` — sends the pid (and the pty
master) back over a socketpair, waits for the container, records its real exit code, releases networks
and mounts, removes the cgroup (and the container with `remove`), and exits with the container's code,
which the caller passes on. So the row stays consistent even when the caller is killed (kill -9): the
waiter still records the end and cleans up. If the waiter itself is killed, the row says running with the
container's pid, which the supervisor re-adopts on its next start (readopt_orphans); `rm -f` kills through
the cgroup at any time. Limits: the supervisor does not watch the container, so `stop`/`kill` from
another shell reach it only through `rm -f`; its output is not in its log file.

Signals (docker's --sig-proxy): SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1/2 received by the caller are
sent to the container's PID 1; a second SIGINT kills it (a PID 1 without a handler ignores SIGINT).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import termios
import time
import tty as ttymod
from collections.abc import Callable, Iterator
from typing import Any

from engine.containers import records, spawn
from engine.containers.cgroups import Cgroup
from engine.errors import ContainerConflict, EngineError

PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
READ_CHUNK = 65536


def run_attached(
    manager: Any,
    ref: str,
    *,
    stdio: spawn.Stdio = (0, 1, 2),
    tty: bool = False,
    sig_proxy: bool = True,
    remove: bool = False,
) -> int:
    """Start the created container `ref` wired to `stdio` (or a relayed pty with `tty`) under a waiter
    process; return its exit code (128+n when killed by signal n). `remove` deletes it afterwards."""
    record = manager.get(ref)
    if record["state"] in ("running", "paused", "restarting"):
        raise ContainerConflict("the container is already running", subject=record["name"])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proxy = _SignalProxy() if sig_proxy else None
    with proxy or contextlib.nullcontext():  # installed first: a signal during the start is not lost
        waiter = os.fork()
        if waiter == 0:  # pragma: no cover - the waiter reports through the socket and its exit status
            ours.close()
            _waiter_main(manager.root.path, record["id"], stdio, tty, remove, theirs)
        theirs.close()
        with ours:
            pid, master = _started(ours, waiter, record["name"])
        if proxy is not None:
            proxy.attach(pid)
        if master is not None:
            _relay(master, stdio)
        return spawn.wait(waiter)


def _started(sock: socket.socket, waiter: int, subject: str) -> tuple[int, int | None]:
    """The waiter's first message: the container's pid (and pty master), or the error of the start."""
    message, fds, _, _ = socket.recv_fds(sock, 65536, 1)
    body = json.loads(message) if message else {"message": "the waiter died before the start"}
    if "pid" in body:
        return int(body["pid"]), (fds[0] if fds else None)
    for fd in fds:
        os.close(fd)
    spawn.wait(waiter)
    raise spawn._error_from(json.dumps(body).encode(), subject)


def _waiter_main(
    root_path: Any, cid: str, stdio: spawn.Stdio, tty: bool, remove: bool, sock: socket.socket
) -> None:
    """The container's parent: start, report, wait, record, clean up; exits with the container's code."""
    status = spawn.CHILD_FAILED
    try:
        os.setsid()
        from engine.containers.manager import ContainerManager
        from engine.state.root import StateRoot

        manager = ContainerManager(StateRoot.open(root_path))  # never the caller's database connection
        status = _wait_for_container(manager, cid, stdio, tty, remove, sock)
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            sock.send(spawn._encode_error(exc)[:60000])
    os._exit(status & 0xFF)


def _wait_for_container(
    manager: Any, cid: str, stdio: spawn.Stdio, tty: bool, remove: bool, sock: socket.socket
) -> int:
    spec = manager.spec_of(manager.get(cid))
    group, network = _prepare(manager, spec)
    try:
        pid, master = _spawn(manager, spec, stdio, tty, group, network)
        records.record_started(manager.db, spec.id, pid, _now())
    except BaseException:
        _release(manager, spec.id, group)
        raise
    for number in PROXIED:  # the caller forwards signals; ours must not end the waiter
        signal.signal(number, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], [master] if master is not None else [])
    sock.close()
    if master is not None:
        os.close(master)  # the caller holds it; when it is gone the container's terminal hangs up
    code = spawn.wait(pid)
    records.record_exited(manager.db, spec.id, code, _quiet_oom(group), _now())
    _release(manager, spec.id, group)
    if remove:
        with contextlib.suppress(EngineError):
            manager.remove(spec.id, force=True, volumes=True)
    return code


def _prepare(manager: Any, spec: Any) -> tuple[Cgroup, Any]:
    """The supervisor's steps before a spawn: cgroup with limits, networks, shared volume mounts."""
    group = Cgroup.open_or_create(spec.id, parent=manager.cgroup_parent)
    network = None
    try:
        group.apply(spec.resources, privileged=spec.security.privileged)
        if _has_networks(spec):
            network = manager.networks.prepare(spec)
        names = [m.source for m in spec.mounts if m.type == "volume" and m.source]
        if names:
            manager.volumes.acquire_mounts(spec.id, names)
    except BaseException:
        _release(manager, spec.id, group)
        raise
    return group, network


def _has_networks(spec: Any) -> bool:
    if spec.network_mode in ("none", "host"):
        return False
    return not (spec.network_mode == "bridge" and not spec.networks)


def _spawn(manager: Any, spec: Any, stdio: spawn.Stdio, tty: bool, group: Cgroup, network: Any):  # type: ignore[no-untyped-def]
    from engine.containers.manager import volume_sources

    volumes = volume_sources(manager.volumes, spec)
    if tty:
        pid, master = spawn.start_with_tty(spec, manager.root, volumes=volumes, cgroup=group, network=network)
        _copy_size(stdio[1], master)  # at once: the command may ask for its size as soon as it runs
        return pid, master
    return spawn.start(spec, manager.root, stdio=stdio, volumes=volumes, cgroup=group, network=network), None


def _release(manager: Any, cid: str, group: Cgroup | None) -> None:
    """Networks, shared mounts and the cgroup given back; never raises (the sweep repairs the rest)."""
    steps: list[Callable[[], object]] = [
        lambda: manager.volumes.release_mounts(cid),
        lambda: manager.networks.release(cid),
    ]
    if group is not None:
        steps.append(lambda: group.remove())
    for step in steps:
        with contextlib.suppress(EngineError, OSError):
            step()


def _quiet_oom(group: Cgroup) -> bool:
    try:
        return bool(group.oom_killed())
    except (EngineError, OSError):
        return False


def _now() -> str:
    from engine.containers.manager import now_rfc3339

    return now_rfc3339()


class _SignalProxy:
    """Forward the caller's signals to the container's PID 1 while it runs; a second SIGINT kills it.
    Signals that arrive before the container has a pid are kept and sent once it has one."""

    def __init__(self) -> None:
        self.pid: int | None = None
        self.pending: list[int] = []
        self.interrupts = 0
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalProxy:
        self.previous = {number: signal.signal(number, self._on_signal) for number in PROXIED}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def attach(self, pid: int) -> None:
        self.pid = pid
        pending, self.pending = self.pending, []
        for number in pending:
            self._send(number)

    def _on_signal(self, number: int, _frame: object) -> None:
        if number == signal.SIGINT:
            self.interrupts += 1
        if self.pid is None:
            self.pending.append(number)
        else:
            self._send(number)

    def _send(self, number: int) -> None:
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL if self.interrupts > 1 else number)


# -- tty relay ------------------------------------------------------------------------------------------


def _relay(master: int, stdio: spawn.Stdio) -> None:
    """Copy stdin -> pty and pty -> stdout until the container's side closes; the caller's terminal is
    raw meanwhile (keys such as Ctrl-C reach the container's line discipline) and sized like ours."""
    stdin, stdout = stdio[0], stdio[1]
    saved = _raw(stdin)
    _copy_size(stdout, master)
    previous = signal.signal(signal.SIGWINCH, lambda *_: _copy_size(stdout, master))
    try:
        _pump(stdin, stdout, master)
    finally:
        signal.signal(signal.SIGWINCH, previous)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)


def _raw(fd: int) -> list[Any] | None:
    if not os.isatty(fd):
        return None
    saved = termios.tcgetattr(fd)
    ttymod.setraw(fd)
    return saved


def _copy_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def _pump(stdin: int, stdout: int, master: int) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(master, selectors.EVENT_READ)
        with contextlib.suppress(ValueError, OSError):
            selector.register(stdin, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fd == master:
                    data = _read(master)
                    if not data:
                        return
                    _write_all(stdout, data)
                else:
                    data = _read(stdin)
                    if not data:  # our input ended: end-of-file for the container's reader
                        selector.unregister(stdin)
                        data = b"\x04"
                    _write_all(master, data)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_CHUNK)
    except OSError as exc:  # a pty master reads EIO once the container's side is closed
        if exc.errno == errno.EIO:
            return b""
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- attaching to a supervised container ----------------------------------------------------------------


def follow_output(
    manager: Any, ref: str, write: Callable[[str, str], None], *, sig_proxy: bool = True
) -> int:
    """Stream what the container prints from now on to `write(stream, text)` until it stops; its exit code.

    The supervisor keeps the container's output in its log: attaching follows that log (docker attach
    shows only new output too). With `sig_proxy`, our SIGINT/SIGTERM go to the container."""
    record = manager.get(ref)
    if record["state"] not in ("running", "paused", "restarting"):
        message = "cannot attach to a stopped container, start it first"
        raise ContainerConflict(message, subject=record["name"])
    cid = record["id"]
    entries = manager.logs(cid, follow=True, tail=0)
    with _kill_through(manager, cid, sig_proxy):
        try:
            for entry in entries:
                write(entry.stream, entry.line)
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()
    return _exit_code(manager, cid)


@contextlib.contextmanager
def _kill_through(manager: Any, cid: str, enabled: bool) -> Iterator[None]:
    """Signals for an attached container go through the manager (the supervisor records user stops)."""
    if not enabled:
        yield
        return

    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(EngineError):
            manager.kill(cid, number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _exit_code(manager: Any, cid: str, timeout: float = 10.0) -> int:
    """The recorded exit code once the row leaves the running states (a restart policy may bring it back)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = records.get(manager.db, cid)
        if row is None:
            return 0
        if row["state"] not in ("running", "paused") and row["exit_code"] is not None:
            return int(row["exit_code"])
        time.sleep(0.05)
    return 0


# -- exec with a terminal ---------------------------------------------------------------------------------


def exec_with_tty(
    manager: Any, ref: str, args: Any, *, stdio: spawn.Stdio = (0, 1, 2), **options: Any
) -> int:
    """`exec -t`: the command gets a new pty (its controlling terminal; the caller's own terminal belongs
    to the caller's session and cannot be taken), relayed to `stdio` in raw mode; returns its exit code.

    manager.exec blocks until the command ends, so the relay runs in a thread meanwhile; once the command
    is done our slave is closed, the master reads EIO and the relay ends."""
    import threading

    master, slave = _container_pty(manager, ref)
    stdin, stdout = stdio[0], stdio[1]
    _copy_size(stdout, master)
    saved = _raw(stdin)
    relay = threading.Thread(target=_quiet_pump, args=(stdin, stdout, master), daemon=True)
    relay.start()
    try:
        return manager.exec(ref, args, tty=True, stdio=(slave, slave, slave), **options)
    finally:
        os.close(slave)
        relay.join(timeout=2.0)
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)


def _quiet_pump(stdin: int, stdout: int, master: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        _pump(stdin, stdout, master)


DEVPTS_MAGIC = 0x1CD1
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441


def _container_pty(manager: Any, ref: str) -> tuple[int, int]:
    """(master, slave) from the container's own devpts instance, so the command's `tty` names a
    /dev/pts/N that exists inside the container (a host pty would read "not a tty" there): the
    container's ptmx opened through /proc/<pid>/root, checked to be a devpts ptmx, the slave taken
    with TIOCGPTPEER (no path lookup). A host pty when that is not possible."""
    pid = manager._checked_pid(manager._require_running(ref))
    try:
        master = os.open(f"/proc/{pid}/root/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return os.openpty()
    try:
        if os.major(os.fstat(master).st_rdev) != 5 or _fs_magic(master) != DEVPTS_MAGIC:
            raise OSError(errno.EINVAL, "not a devpts ptmx")
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    except OSError:
        os.close(master)
        return os.openpty()
    return master, slave


def _fs_magic(fd: int) -> int:
    """f_type of the filesystem holding `fd` (fstatfs), through libc."""
    import ctypes

    buffer = ctypes.create_string_buffer(120)  # struct statfs; f_type is its first word
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.fstatfs(fd, buffer) != 0:
        raise OSError(ctypes.get_errno(), "fstatfs")
    return struct.unpack_from("l", buffer)[0]
