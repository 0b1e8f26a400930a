"""Start a container, or run a command inside a running one: the ordered steps, no policy.

Call these from a single-threaded process (the CLI before it starts threads, the supervisor, or a helper
it forks first): they fork, and a fork of a multi-threaded Python process can deadlock on a lock another
thread held. They also briefly switch this process's `pid_for_children` namespace around the fork.

`start()`: the child is PID 1 of a new PID namespace and our direct child (so `wait()` works, no
double fork): we unshare(CLONE_NEWPID), fork, and switch our own `pid_for_children` back at once. The
child waits until the parent has put it in its cgroup, then unshares mount, UTS and IPC (and network
for `network_mode: none`), builds the root filesystem (`rootfs.enter`), sets hostname and domainname,
resolves the user in the container's own /etc/passwd, creates the working directory, applies the
security hook, switches user and execs. Any failure before exec travels back through a close-on-exec
pipe as the engine error it was, so `start()` either returns a running pid or raises.

`init: true` execs `/dev/init -- <args>`: Debian's static tini (rootfs binds it read-only at /dev/init,
as Docker does) is PID 1, reaps orphans and forwards signals to the command (PID 2).

`start_with_tty()` returns (pid, pty master fd): the child opens a pty from the container's own devpts
instance after pivot_root (so the container sees /dev/pts/0, as under runc), makes the slave its
stdin/stdout/stderr, controlling terminal and /dev/console, and sends the master back over a socketpair
(SCM_RIGHTS) before exec. `start()` keeps its signature and returns the pid only.

`exec_in()`: the same, but joining a running container's namespaces with setns(2) instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import termios  # imported here: after pivot_root the child cannot import anything
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from engine import errors
from engine.containers import clone, rootfs, security, userdb
from engine.containers import syscalls as sc
from engine.containers.spec import ContainerSpec, NetworkSetup, Security
from engine.errors import ContainerStartError, EngineError
from engine.state.root import StateRoot

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
JOINED_NAMESPACES = (("ipc", sc.CLONE_NEWIPC), ("uts", sc.CLONE_NEWUTS), ("net", sc.CLONE_NEWNET))
CHILD_FAILED = 125  # the exit status of a child that could not reach exec (Docker's "daemon error")

Stdio = tuple[int, int, int]


class CgroupLike(Protocol):
    """What spawn needs of engine/containers/cgroups.Cgroup."""

    def add(self, pid: int) -> None: ...


def start(
    spec: ContainerSpec,
    root: StateRoot,
    *,
    stdio: Stdio = (0, 1, 2),
    volumes: Mapping[str, rootfs.VolumeSource] | None = None,
    cgroup: CgroupLike | None = None,
    network: NetworkSetup | None = None,
    sibling: bool = False,
) -> int:
    """Create and start the container's PID 1; returns its host pid (wait for it with `wait`).

    With `process.tty` the caller's stdin (if a terminal) becomes the controlling terminal and
    /dev/console; `start_with_tty` instead gives the container a pty of its own. `network` (bridge and
    `container:` modes) is the prepared network namespace the container joins instead of a new one.
    `sibling`: the container is our parent's child, not ours (CLONE_PARENT): the supervisor's spawn
    workers hand it to the keeper that way; the parent, not we, then reaps it, a failed one too.
    """
    console = _console_of(stdio) if spec.process.tty else None
    return _start(
        spec, root, stdio, volumes, cgroup, network, console=console, pty_sock=None, sibling=sibling
    )


def start_with_tty(
    spec: ContainerSpec,
    root: StateRoot,
    *,
    volumes: Mapping[str, rootfs.VolumeSource] | None = None,
    cgroup: CgroupLike | None = None,
    network: NetworkSetup | None = None,
    sibling: bool = False,
) -> tuple[int, int]:
    """Start the container on a new pty; returns (host pid, master fd), the master is the caller's.

    The pty is opened inside the container (from its own devpts instance, as runc does), so the
    container sees /dev/pts/0 as stdin/stdout/stderr, controlling terminal and /dev/console; the
    master travels back over a socketpair (SCM_RIGHTS). The caller closes the master when done.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        pid = _start(
            spec,
            root,
            (0, 1, 2),
            volumes,
            cgroup,
            network,
            console=None,
            pty_sock=theirs.fileno(),
            sibling=sibling,
        )
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    finally:
        theirs.close()
        ours.close()
    if not fds:  # cannot happen: the child sends the master before exec
        raise ContainerStartError("the container's pty did not arrive", subject=spec.name)
    return pid, fds[0]


def _start(
    spec: ContainerSpec,
    root: StateRoot,
    stdio: Stdio,
    volumes: Mapping[str, rootfs.VolumeSource] | None,
    cgroup: CgroupLike | None,
    network: NetworkSetup | None,
    *,
    console: str | None,
    pty_sock: int | None,
    sibling: bool,
) -> int:
    """start() and start_with_tty(): the steps of the module docstring, in the forked child."""
    args = _init_args(spec)
    paths = rootfs.prepare(spec, root, network)
    flags = sc.CLONE_NEWPID | sc.CLONE_NEWNS | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
    if spec.network_mode != "host" and network is None:
        flags |= sc.CLONE_NEWNET  # none, or bridge without networks: only a loopback
    if sibling:
        flags |= sc.CLONE_PARENT
    plan = _plan(spec.security, spec.network_mode == "host")
    netns = os.open(network.netns_path, os.O_RDONLY | os.O_CLOEXEC) if network is not None else -1

    def child() -> None:
        if netns >= 0:
            sc.setns(netns, sc.CLONE_NEWNET)  # before the mounts: sysfs shows the namespace it is mounted in
        rootfs.enter(spec, paths, volumes, console=console, sysctls=plan.sysctls)
        if spec.network_mode != "host" or spec.hostname:
            sc.sethostname(rootfs.container_hostname(spec))
        if spec.domainname:
            sc.setdomainname(spec.domainname)
        p = spec.process
        fds = stdio if pty_sock is None else _own_pty(pty_sock)
        _become(args, p.env, p.user, p.group_add, p.working_dir, plan, p.tty or pty_sock is not None, fds)

    try:
        return _launch(child, spec.name, cgroup, flags=flags, pid_ns_fd=None, reap_failed=not sibling)
    finally:
        if netns >= 0:
            os.close(netns)


def _init_args(spec: ContainerSpec) -> tuple[str, ...]:
    """The argv to exec: the command, behind `/dev/init --` (tini as PID 1) with `init: true`."""
    if not spec.process.args:
        raise errors.InvalidCommand("no command specified", subject=spec.name)
    if not spec.process.init:
        return spec.process.args
    if not os.access(rootfs.INIT_BINARY, os.X_OK):
        raise ContainerStartError(
            f"init: true needs {rootfs.INIT_BINARY} (Debian package tini)", subject=spec.name
        )
    return (rootfs.INIT_PATH, "--", *spec.process.args)


def _own_pty(sock: int) -> Stdio:
    """In the child, after pivot_root: a pty from the container's devpts, master sent to the parent."""
    master, slave = os.openpty()
    with socket.socket(fileno=os.dup(sock)) as channel:  # closed here: the child leaves nothing to finalize
        socket.send_fds(channel, [b"m"], [master])
    os.close(master)
    os.close(sock)
    rootfs.bind_console(os.ttyname(slave))
    return (slave, slave, slave)


def exec_in(
    pid: int,
    args: Sequence[str],
    env: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    workdir: str | None = None,
    *,
    group_add: Sequence[str] = (),
    security_opts: Security | None = None,
    host_network: bool = False,
    tty: bool = False,
    stdio: Stdio = (0, 1, 2),
    cgroup: CgroupLike | None = None,
) -> int:
    """Run `args` in the namespaces of the container whose PID 1 is `pid`; returns the new host pid."""
    if not args:
        raise errors.InvalidCommand("no command specified", subject=str(pid))
    plan = _plan(security_opts or Security(), host_network)
    with _namespace_fds(pid) as fds:

        def child() -> None:
            for name, nstype in JOINED_NAMESPACES:
                sc.setns(fds[name], nstype)
            sc.setns(fds["mnt"], sc.CLONE_NEWNS)  # last: it changes our root and cwd
            _become(args, env, user, group_add, workdir, plan, tty, stdio)

        return _launch(child, str(pid), cgroup, flags=0, pid_ns_fd=fds["pid"])


def wait(pid: int) -> int:
    """Reap `pid` and return its exit code the Docker way (128 + signal number when killed)."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def cleanup(root: StateRoot, container_id: str) -> None:
    """Remove the container's writable layer and generated files (after its processes are gone)."""
    rootfs.cleanup(root, container_id)


@functools.lru_cache(maxsize=64)
def _plan(options: Security, host_network: bool) -> security.SecurityPlan:
    """plan_security, remembered: compiling the seccomp filter is ~1 ms and the same for most containers."""
    return security.plan_security(options, host_network=host_network)


# -- the clone --------------------------------------------------------------------------------------


def _launch(  # type: ignore[no-untyped-def]
    child,
    subject: str,
    cgroup: CgroupLike | None,
    *,
    flags: int,
    pid_ns_fd: int | None,
    reap_failed: bool = True,
) -> int:
    """Clone (vfork semantics, `clone.clone_vfork`) a child that runs `child`; report its failure.

    When the clone returns, the child has exec'd or died: its error, if any, is already in the pipe.
    A failed child is reaped here unless it is not ours (`reap_failed=False`: CLONE_PARENT).
    """
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = clone.clone_vfork(lambda: _child_main(child, cgroup, err_w, err_r), flags, pid_ns_fd=pid_ns_fd)
        os.close(err_w)
        err_w = -1
        failure = _read_all(err_r)
    except OSError as exc:
        raise ContainerStartError(f"cannot create the container process: {exc}", subject=subject) from exc
    finally:
        for fd in (err_r, err_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    if failure:
        if reap_failed:
            wait(pid)
        raise _error_from(failure, subject)
    return pid


def _child_main(child, cgroup: CgroupLike | None, err_w: int, err_r: int) -> None:  # type: ignore[no-untyped-def]
    """In the cloned child: join the cgroup first (pid 0 is "the writer"), run the steps; never returns."""
    try:
        os.close(err_r)
        if cgroup is not None:
            cgroup.add(0)  # before anything of the container runs, and while the host's /sys is visible
        os.umask(0o022)  # what containers get under Docker, whatever the caller's umask
        child()
        raise ContainerStartError("exec returned")
    except BaseException as exc:  # everything goes back to the parent
        with contextlib.suppress(BaseException):
            os.write(err_w, _encode_error(exc)[:60000])  # below the pipe's capacity: never blocks
        os._exit(CHILD_FAILED)


def _become(
    args: Sequence[str],
    env: Sequence[tuple[str, str]],
    user: str | None,
    group_add: Sequence[str],
    workdir: str | None,
    plan: security.SecurityPlan,
    tty: bool,
    stdio: Stdio,
) -> None:
    """The common tail (already inside the container's root): stdio, user, cwd, env, security, exec."""
    _setup_stdio(stdio, tty)
    who = userdb.read_and_resolve(user, group_add)
    cwd = workdir or "/"
    os.makedirs(cwd, mode=0o755, exist_ok=True)
    environ = _environment(env, who.home, tty)

    def switch_user() -> None:
        os.setgroups(list(who.sgids))
        os.setgid(who.gid)
        os.setuid(who.uid)

    # The user switch runs inside apply_plan, after the bounding set is cut and with PR_SET_KEEPCAPS (runc's
    # order): so cap_drop SETUID/SETGID still lets the container start as its user, and a non-root user
    # ends with no effective capabilities after exec, as under Docker.
    security.apply_plan(plan, switch_user=switch_user)
    os.chdir(cwd)
    clone.reset_signals()
    try:
        os.execvpe(args[0], list(args), environ)
    except OSError as exc:
        raise ContainerStartError(f"exec {args[0]}: {exc.strerror}", subject=args[0]) from exc


def _setup_stdio(stdio: Stdio, tty: bool) -> None:
    """A new session, the given fds as 0/1/2 (and the terminal as controlling tty), nothing else open."""
    os.setsid()
    moved = [os.dup(fd) for fd in stdio]  # stdio may name 0..2 in another order
    for target, fd in enumerate(moved):
        os.dup2(fd, target)
        os.close(fd)
    if tty and os.isatty(0):
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if sc.cloexec_from(3):  # one call, instead of one per descriptor the helper inherited
        return
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(int(fd), False)


def _environment(env: Sequence[tuple[str, str]], home: str, tty: bool) -> dict[str, str]:
    """Image + service env with Docker's additions: PATH default, HOSTNAME, TERM for a tty, HOME."""
    result = {"PATH": DEFAULT_PATH, "HOSTNAME": os.uname().nodename}
    if tty:
        result["TERM"] = "xterm"
    result.update(userdb.with_home(env, home))
    return result


def _console_of(stdio: Stdio) -> str | None:
    """The terminal device behind stdin, bound as the container's /dev/console."""
    try:
        return os.ttyname(stdio[0])
    except OSError:
        return None


# -- helpers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _namespace_fds(pid: int) -> Iterator[dict[str, int]]:
    """Open /proc/<pid>/ns/* first (before joining any: the mount namespace changes what /proc is)."""
    fds: dict[str, int] = {}
    try:
        for name in ("ipc", "uts", "net", "pid", "mnt"):
            fds[name] = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
        yield fds
    except FileNotFoundError as exc:
        raise ContainerStartError("container process is not running", subject=str(pid)) from exc
    finally:
        for fd in fds.values():
            os.close(fd)


def run_forked(
    work: Callable[[], None],
    subject: str,
    *,
    translate: Callable[[BaseException], BaseException] | None = None,
    failed: type[EngineError] = ContainerStartError,
) -> None:
    """Run `work` in a forked child and wait for it: the child is single-threaded, so it may unshare,
    setns, mount or chroot without touching this process. An exception raised there comes back here as
    the engine error it was (`translate` first turns foreign exceptions into one); a child that dies
    without reporting raises `failed`."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 0
        try:
            os.close(read_fd)
            work()
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                os.write(write_fd, _encode_error(translate(exc) if translate else exc)[:60000])
            status = 1
        os._exit(status)
    os.close(write_fd)
    try:
        raw = _read_all(read_fd)
    finally:
        os.close(read_fd)
        code = wait(pid)
    if raw:
        raise _error_from(raw, subject)
    if code != 0:
        raise failed(f"the helper process exited with {code}", subject=subject)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _encode_error(exc: BaseException) -> bytes:
    """The child's failure as JSON: an engine error keeps its class and subject across the fork."""
    if isinstance(exc, EngineError):
        body = {"type": type(exc).__name__, "message": exc.message, "subject": exc.subject}
    else:
        text = f"{type(exc).__name__}: {exc}"
        body = {"type": "ContainerStartError", "message": text, "trace": traceback.format_exc(limit=4)}
    return json.dumps(body).encode()


def _error_from(raw: bytes, subject: str) -> EngineError:
    """Rebuild the child's error in the parent (unknown classes become ContainerStartError)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return ContainerStartError(raw.decode(errors="replace"), subject=subject)
    cls = getattr(errors, str(body.get("type")), ContainerStartError)
    if not (isinstance(cls, type) and issubclass(cls, EngineError)):
        cls = ContainerStartError
    return cls(str(body.get("message")), subject=body.get("subject") or subject)
