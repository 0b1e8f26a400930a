"""`cp` between a container's filesystem and the host, as tar streams (docker cp's semantics).

Every path inside a container is looked up from inside it, never through a host path that an image's
symlink could redirect: for a running container a forked child joins the container's mount namespace
(setns), so `/` is the container's root and its volumes are where the container sees them; for a
stopped one the child mounts the overlay view in a private mount namespace (engine/build/run_step's
in_merged_view), binds the container's volumes and bind mounts into it, and chroots there. Nothing is
mounted on the host in either case. The tar travels through an unlinked spool file: the child and the
parent never wait on each other, and a failure half-way leaves nothing behind.

Placement of what arrives (`unpack`) is docker cp's: into an existing directory under the source's own
name; to a path that does not exist under that new name; `SRC/.` copies a directory's contents.
Without `archive`, files arriving in a container belong to root (docker cp's default), files arriving on
the host to the caller; with `archive` the tar's uid/gid are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

from engine.containers import spawn
from engine.containers import syscalls as sc
from engine.errors import ContainerConflict, CopyError, EngineError

CONTENTS = "."  # the top entry's name when `SRC/.` asks for a directory's contents
CHUNK = 1 << 20


def top_name(path: str) -> str:
    """The tar's top entry for `path`: its base name, or "." for `dir/.` (contents only)."""
    if path.endswith("/.") or path == ".":
        return CONTENTS
    name = os.path.basename(path.rstrip("/"))
    return name or CONTENTS


def pack(path: str, out: BinaryIO, *, follow_links: bool = False) -> None:
    """Write `path` (file or directory tree) as a tar stream named by `top_name(path)`.

    `follow_links` (-L) resolves a symlink named by `path` itself; links inside a tree stay links."""
    source = os.path.realpath(path) if follow_links else path
    if not os.path.lexists(source):
        raise FileNotFoundError(2, "no such file or directory", path)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=top_name(path), recursive=True)


def unpack(stream: BinaryIO, dest: str, *, archive: bool = False) -> None:
    """Place a `pack` stream at `dest` with docker cp's rules (see the module docstring)."""
    owner = None if archive else (os.geteuid(), os.getegid())
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        members = _Members(tar, owner)
        first = members.peek()
        if first is None:
            return
        top = first.name.split("/", 1)[0]
        into_dir = os.path.isdir(dest)
        if top == CONTENTS:
            if os.path.exists(dest) and not into_dir:
                raise NotADirectoryError(20, "cannot copy a directory's contents onto a file", dest)
            os.makedirs(dest, exist_ok=True)
            members.extract_all(dest, rename=None)
        elif into_dir:
            members.extract_all(dest, rename=None)
        else:
            parent = os.path.dirname(dest.rstrip("/")) or "/"
            if not os.path.isdir(parent):
                raise FileNotFoundError(2, "no such directory", parent)
            members.extract_all(parent, rename=(top, os.path.basename(dest.rstrip("/"))))


class _Members:
    """A streamed tar's members, renamed and re-owned on the way out (tarfile's `r|` reads once)."""

    def __init__(self, tar: tarfile.TarFile, owner: tuple[int, int] | None) -> None:
        self.tar = tar
        self.owner = owner
        self.first = tar.next()

    def peek(self) -> tarfile.TarInfo | None:
        return self.first

    def extract_all(self, target: str, rename: tuple[str, str] | None) -> None:
        member = self.first
        while member is not None:
            member = self._adjusted(member, rename)
            if member.name in ("", "."):
                self._set_dir_attrs(member, target)
            else:
                self.tar.extract(member, target, filter=self._filter, numeric_owner=self.owner is None)
            member = self.tar.next()

    def _adjusted(self, member: tarfile.TarInfo, rename: tuple[str, str] | None) -> tarfile.TarInfo:
        name = member.name
        if rename is not None:
            old, new = rename
            if name == old or name.startswith(old + "/"):
                name = new + name[len(old) :]
        elif name == CONTENTS or name.startswith(CONTENTS + "/"):
            name = name[2:]
        return member.replace(name=name, deep=False)

    def _filter(self, member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        safe = tarfile.tar_filter(member, path)  # no absolute names, nothing outside the target
        member = safe if self.owner is not None else safe.replace(mode=member.mode, deep=False)
        if self.owner is not None:
            member = member.replace(uid=self.owner[0], gid=self.owner[1], uname="", gname="", deep=False)
        return member

    def _set_dir_attrs(self, member: tarfile.TarInfo, target: str) -> None:
        with contextlib.suppress(OSError):
            os.chmod(target, member.mode & 0o7777)


# -- inside a container ------------------------------------------------------------------------------


def copy_out(manager: Any, ref: str, path: str, out: BinaryIO, *, follow_links: bool = False) -> None:
    """A tar stream of `path` in the container (running or not) written to `out`."""
    with tempfile.TemporaryFile() as spool:
        fd = spool.fileno()
        _in_container(manager, ref, lambda: _pack_to_fd(path, fd, follow_links))
        spool.seek(0)
        shutil.copyfileobj(spool, out, CHUNK)


def copy_in(manager: Any, ref: str, path: str, stream: BinaryIO, *, archive: bool = False) -> None:
    """Place a `pack` stream at `path` in the container (running or not), docker cp's rules."""
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(stream, spool, CHUNK)
        spool.flush()
        fd = spool.fileno()
        _in_container(manager, ref, lambda: _unpack_from_fd(fd, path, archive))


def _pack_to_fd(path: str, fd: int, follow_links: bool) -> None:
    with os.fdopen(os.dup(fd), "wb") as out:
        pack(path, out, follow_links=follow_links)


def _unpack_from_fd(fd: int, path: str, archive: bool) -> None:
    with os.fdopen(os.dup(fd), "rb") as stream:
        stream.seek(0)
        unpack(stream, path, archive=archive)


def _in_container(manager: Any, ref: str, work: Callable[[], None]) -> None:
    """Run `work` in a forked child whose `/` is the container's filesystem; its error is raised here."""
    record = manager.get(ref)
    subject = record["name"]
    if record["state"] in ("running", "paused") and record["pid"]:
        pid = manager._checked_pid(record)
        _forked(lambda: _enter_namespace(pid, work), subject)
        return
    spec = manager.spec_of(record)
    binds = _stopped_binds(manager, spec)
    from engine.build.run_step import in_merged_view
    from engine.containers import rootfs

    paths = rootfs.container_paths(manager.root, spec.id)
    if not paths.upper.is_dir():
        raise ContainerConflict("the container has no filesystem (removed?)", subject=subject)
    try:
        in_merged_view(paths, spec.layer_dirs, lambda merged, _: _enter_view(merged, binds, work))
    except EngineError as exc:
        raise _as_copy_error(exc, subject) from None


def _enter_namespace(pid: int, work: Callable[[], None]) -> None:
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    sc.setns(fd, sc.CLONE_NEWNS)  # our root and cwd become the container's
    os.close(fd)
    os.chdir("/")
    work()


def _stopped_binds(manager: Any, spec: Any) -> list[tuple[str, str]]:
    """(host dir, container path) of the volumes and bind mounts a stopped container would see."""
    from engine.containers.manager import volume_sources

    sources = volume_sources(manager.volumes, spec)
    binds: list[tuple[str, str]] = []
    for mount in spec.mounts:
        if mount.type == "bind" and mount.source:
            binds.append((mount.source, mount.target))
        elif mount.type == "volume" and isinstance(sources.get(mount.source or ""), str):
            binds.append((str(sources[mount.source]), mount.target))
    return binds


def _enter_view(merged: str, binds: list[tuple[str, str]], work: Callable[[], None]) -> None:
    """In in_merged_view's private namespace: the mounts bound in, then chroot into the view."""
    from engine.containers import rootfs

    for source, target in binds:
        with contextlib.suppress(OSError, EngineError):
            where = rootfs._target_like(merged, target, source)
            sc.mount(source, where, None, sc.MS_BIND | sc.MS_REC)
    os.chroot(merged)
    os.chdir("/")
    work()


def _forked(work: Callable[[], None], subject: str) -> None:
    """Fork (the child must be single-threaded to setns); errors come back as engine errors."""
    spawn.run_forked(work, subject, translate=lambda exc: _as_copy_error(exc, subject), failed=CopyError)


def _as_copy_error(exc: BaseException, subject: str) -> BaseException:
    """OSError / tarfile errors as an engine error naming the path (docker: `Could not find the file`)."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, OSError):
        where = exc.filename or subject
        return CopyError(f"{where}: {exc.strerror or exc}", subject=str(where))
    if isinstance(exc, tarfile.TarError):
        return CopyError(f"bad archive: {exc}", subject=subject)
    return exc
