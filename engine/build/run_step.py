"""The filesystem steps of a build: RUN in a container of the engine, COPY/ADD onto a merged view.

Both give back an overlayfs upper directory (what the step changed) for commit.write_diff, and both
leave nothing behind on the host whatever happens: the RUN container is removed (row, directories,
network namespace and addresses), the COPY overlay lives only in the mount namespace of a forked child.

Forks: call these from a single-threaded process (spawn's rule). The builder runs its stages in the
main thread, or in forked single-threaded stage workers, never from a thread.

RUN networking: "default" joins the engine's bridge network `pycompose-build` (created on first use,
kept; outbound NAT), "host" shares the host's, "none" has only a loopback. resolv.conf names the
host's non-loopback resolvers (our DNS responder only runs inside the supervisor daemon).
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.containers import rootfs, spawn
from engine.containers import syscalls as sc
from engine.containers.spec import ContainerSpec, NetworkAttachment, NetworkSetup, Process
from engine.errors import BuildError, EngineError, NetworkNotFound
from engine.frozen import frozen
from engine.state.root import StateRoot, remove_tree

BUILD_NETWORK = "pycompose-build"
BUILD_LABEL = "io.pycompose.build"
TAIL_LINES = 10
# Mount points the runtime creates in the root for a RUN; dropped from the diff when the image lacks them.
STUBS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "dev", "proc", "sys", "etc")

OutputFn = Callable[[bytes], None]


@frozen
class RunOptions:
    """How a RUN container is isolated (from the BuildRequest)."""

    network: str = "default"
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None


@dataclass(slots=True)
class StepResult:
    """What a RUN left: its exit code, its last output lines, and the upper dir (valid inside `with`)."""

    exit_code: int
    upper: Path
    tail: list[str] = field(default_factory=list)


# -- RUN ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_container(
    root: StateRoot,
    image_id: str,
    layer_dirs: Sequence[str],
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    user: str | None,
    workdir: str | None,
    options: RunOptions,
    output: OutputFn | None = None,
) -> Iterator[StepResult]:
    """Run `args` on the image; yields the result while its upper dir exists, then removes everything."""
    from engine.containers.manager import ContainerManager

    manager = ContainerManager(root)
    spec = _spec(image_id, layer_dirs, args, env, user, workdir, options)
    if options.network == "default":
        ensure_network(manager.networks)
    record = manager.create(spec)
    cid = record["id"]
    try:
        spec = manager.spec_of(record)
        upper = rootfs.container_paths(root, cid).upper
        code, tail = _run(manager, spec, root, output)
        _drop_stubs(upper, layer_dirs)
        yield StepResult(code, upper, tail)
    finally:
        with contextlib.suppress(EngineError, OSError):
            manager.networks.release(cid)
        manager.remove(cid, force=True)


def _spec(
    image_id: str,
    layer_dirs: Sequence[str],
    args: Sequence[str],
    env: Mapping[str, str],
    user: str | None,
    workdir: str | None,
    options: RunOptions,
) -> ContainerSpec:
    cid = os.urandom(32).hex()
    mode = {"default": "bridge", "host": "host", "none": "none"}.get(options.network)
    if mode is None:
        raise BuildError("network must be default, host or none", subject=options.network)
    networks = (NetworkAttachment(BUILD_NETWORK),) if mode == "bridge" else ()
    return ContainerSpec(
        id=cid,
        name=f"pyc-build-{cid[:12]}",
        image_id=image_id,
        layer_dirs=tuple(layer_dirs),
        process=Process(
            args=tuple(args), env=tuple(env.items()), user=user or None, working_dir=workdir or "/"
        ),
        network_mode=mode,
        networks=networks,
        extra_hosts=tuple(options.extra_hosts),
        shm_size=options.shm_size or 64 * 1024 * 1024,
        labels=((BUILD_LABEL, "run"),),
    )


def ensure_network(networks: Any) -> None:
    """The build network, created on first use and kept (two builders racing: the loser reuses it)."""
    from engine.net.types import NetworkSpec

    try:
        networks.get_network(BUILD_NETWORK)
        return
    except NetworkNotFound:
        pass
    try:
        networks.create_network(NetworkSpec(name=BUILD_NETWORK, labels=((BUILD_LABEL, "network"),)))
    except EngineError:
        networks.get_network(BUILD_NETWORK)  # created meanwhile by another build; else the real error


def _run(
    manager: Any, spec: ContainerSpec, root: StateRoot, output: OutputFn | None
) -> tuple[int, list[str]]:
    """Start the container (network joined), stream its output, wait; (exit code, last lines)."""
    setup = manager.networks.prepare(spec)
    if setup is not None:  # the host's resolvers, not our responder's address (no daemon here)
        setup = NetworkSetup(netns_path=setup.netns_path, hosts=setup.hosts, nameservers=())
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid = spawn.start(spec, root, stdio=(devnull, write_fd, write_fd), network=setup)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        os.close(devnull)
    try:
        tail = _pump(read_fd, output)
    finally:
        os.close(read_fd)
        code = spawn.wait(pid)
    return code, tail


def _pump(fd: int, output: OutputFn | None) -> list[str]:
    """Read the container's output to EOF; hand every chunk to `output`, keep the last lines."""
    lines: collections.deque[bytes] = collections.deque(maxlen=TAIL_LINES)
    partial = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            sel.select()
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if output is not None:
                output(chunk)
            parts = (partial + chunk).split(b"\n")
            partial = parts.pop()
            lines.extend(parts)
    if partial:
        lines.append(partial)
    return [line.decode(errors="replace") for line in lines]


def _drop_stubs(upper: Path, layer_dirs: Sequence[str]) -> None:
    """Remove mount points the runtime made (empty, absent from the image) so they are not in the layer."""
    for rel in STUBS:
        path = upper / rel
        if not os.path.lexists(path) or any(os.path.lexists(os.path.join(d, rel)) for d in layer_dirs):
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()  # only when empty: a RUN may have written there
            elif path.is_file() and path.stat().st_size == 0:
                path.unlink()


# -- COPY / ADD ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def scratch_dirs(root: StateRoot) -> Iterator[rootfs.ContainerPaths]:
    """upper/work/merged for one step, in the state root's staging area (same filesystem as layers)."""
    base = root.new_temp_path("build")
    paths = rootfs.ContainerPaths(base)
    try:
        for directory in (paths.upper, paths.work, paths.merged):
            directory.mkdir(parents=True, mode=0o755)
        os.chmod(paths.upper, 0o755)
        yield paths
    finally:
        remove_tree(base)


def in_merged_view(
    paths: rootfs.ContainerPaths,
    layer_dirs: Sequence[str],
    work: Callable[[str, dict[str, str]], None],
    sources: Mapping[str, Sequence[str]] = {},
) -> None:
    """Call `work(merged, source_roots)` in a forked child with its own mount namespace, where `merged` is
    the image's layers under `paths.upper` (overlayfs) and every `sources[name]` layer list is mounted
    read-only; nothing is mounted on the host. An error in the child is raised here."""
    spawn.run_forked(lambda: _child(paths, layer_dirs, work, sources), "COPY", failed=BuildError)


def _child(
    paths: rootfs.ContainerPaths,
    layer_dirs: Sequence[str],
    work: Callable[[str, dict[str, str]], None],
    sources: Mapping[str, Sequence[str]],
) -> None:
    """In the forked helper: private mounts, the views, the work."""
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    merged = str(paths.upper)
    if layer_dirs:
        rootfs.mount_overlay(tuple(layer_dirs), paths)
        merged = str(paths.merged)
    roots = {
        name: _readonly_view(paths.base / f"src-{i}", dirs) for i, (name, dirs) in enumerate(sources.items())
    }
    work(merged, roots)


def _readonly_view(target: Path, layer_dirs: Sequence[str]) -> str:
    """An image's files, read-only: its one layer bound, or an overlay of its layers (no upper)."""
    target.mkdir(mode=0o755)
    if not layer_dirs:
        return str(target)
    if len(layer_dirs) == 1:
        sc.mount(layer_dirs[0], str(target), None, sc.MS_BIND | sc.MS_REC)
        sc.mount(None, str(target), None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY)
        return str(target)
    sc.mount("overlay", str(target), "overlay", sc.MS_RDONLY, "lowerdir=" + ":".join(layer_dirs))
    return str(target)
