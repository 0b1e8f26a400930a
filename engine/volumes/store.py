"""Named volumes: a directory under the state root, a row in the database, and Docker's copy-up.

A volume is `volumes/<name>/_data` plus a `volumes` row (driver, driver_opts, labels, creation time).
`local` volumes with driver_opts for a filesystem (`type=tmpfs`, nfs, ...) are mounted once on the host
at `_data` while containers run and shared by them (`acquire_mounts` / `release_mounts`, see mounts.py);
`o=bind` volumes bind their device directly. Which containers use a volume is recorded in
`volume_users`; a volume in use or mounted is never removed. Only `remove()` and `prune()` delete one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import VolumeError, VolumeInUse, VolumeNotFound
from engine.frozen import frozen
from engine.state.root import StateRoot, remove_tree
from engine.volumes.mounts import HostMounts, needs_host_mount

LOCAL = "local"
ANONYMOUS_LABEL = "com.docker.volume.anonymous"  # docker's mark on anonymous volumes (prune's default)
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_MAX_NAME = 255  # one directory name
_LOCAL_OPTS = frozenset({"type", "o", "device"})
# docker's local driver: each option needs the others listed (a device without a type means nothing)
_REQUIRED_WITH = {"device": ("type",), "type": ("device",), "o": ("type", "device")}
_STORE_LOCK = "volumes"


@frozen
class Volume:
    """One named volume as stored (options are the driver_opts it was created with)."""

    name: str
    driver: str
    options: Mapping[str, str]
    labels: Mapping[str, str]
    created: str
    mountpoint: Path  # volumes/<name>/_data

    @property
    def is_bind(self) -> bool:
        return "bind" in _o_flags(self.options)

    @property
    def is_tmpfs(self) -> bool:
        return self.options.get("type") == "tmpfs"


@dataclass
class PruneReport:
    """What prune() removed and how many bytes that freed (docker's `Total reclaimed space`)."""

    deleted: list[str] = field(default_factory=list)
    reclaimed: int = 0


class VolumeStore:
    """The named volumes of one state root."""

    def __init__(self, root: StateRoot) -> None:
        self.root = root
        self.db = root.db
        self.volumes_dir = root.path / "volumes"
        self.host_mounts = HostMounts(root, self.db, self.volumes_dir)

    # -- create / read ---------------------------------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        *,
        driver: str = LOCAL,
        driver_opts: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Volume:
        """Create the volume, or return it when it exists with the same driver and driver_opts.

        No name makes an anonymous volume (64 hex characters, labelled like docker's). Labels of an
        existing volume are left as they are, as docker does.
        """
        opts = dict(driver_opts or {})
        tags = dict(labels or {})
        if name is None:
            name = os.urandom(32).hex()
            tags.setdefault(ANONYMOUS_LABEL, "")
        validate_name(name)
        _validate_options(name, driver, opts)
        with self.root.lock(_STORE_LOCK):
            existing = self._find(name)
            if existing is not None:
                return _same_or_conflict(existing, driver, opts)
            self._make_data_dir(name)
            created = _now()
            self.db.execute(
                "INSERT INTO volumes (name, driver, options, labels, created) VALUES (?, ?, ?, ?, ?)",
                (name, driver, _dump(opts), _dump(tags), created),
            )
        return self._volume(name, driver, opts, tags, created)

    def get(self, name: str, *, external: bool = False) -> Volume:
        """The volume, or VolumeNotFound (worded for Compose's `external: true` when `external`)."""
        volume = self._find(name)
        if volume is None:
            message = f'external volume "{name}" not found' if external else f"no such volume: {name}"
            raise VolumeNotFound(message, subject=None if external else name)
        return volume

    def list(self) -> list[Volume]:
        """Every volume, by name."""
        rows = self.db.query("SELECT * FROM volumes ORDER BY name")
        return [self._from_row(row) for row in rows]

    def users(self, name: str) -> list[str]:
        """The containers that use the volume (recorded with mark_in_use)."""
        rows = self.db.query(
            "SELECT container FROM volume_users WHERE volume = ? ORDER BY container", (name,)
        )
        return [row[0] for row in rows]

    def inspect(self, name: str) -> dict[str, object]:
        """The document `docker volume inspect` prints (Labels/Options null when empty, as docker)."""
        volume = self.get(name)
        return {
            "CreatedAt": volume.created,
            "Driver": volume.driver,
            "Labels": dict(volume.labels) or None,
            "Mountpoint": str(volume.mountpoint),
            "Name": volume.name,
            "Options": dict(volume.options) or None,
            "Scope": "local",
        }

    # -- in use ----------------------------------------------------------------------------------------

    def mark_in_use(self, name: str, container: str) -> None:
        """Record that `container` mounts the volume (idempotent); the volume must exist."""
        with self.db.transaction():
            self.get(name)
            self.db.execute(
                "INSERT OR IGNORE INTO volume_users (volume, container) VALUES (?, ?)", (name, container)
            )

    def release(self, name: str, container: str) -> None:
        """Forget that `container` uses the volume (idempotent)."""
        self.db.execute("DELETE FROM volume_users WHERE volume = ? AND container = ?", (name, container))

    def release_all(self, container: str) -> list[str]:
        """Forget every volume a removed container used; returns their names. A container that used
        none writes nothing (a durable commit, an fsync, for each container of a `down` otherwise)."""
        query = "SELECT volume FROM volume_users WHERE container = ?"
        if not self.db.query(query, (container,)):
            return []
        with self.db.transaction():
            rows = self.db.query(query, (container,))
            self.db.execute("DELETE FROM volume_users WHERE container = ?", (container,))
        return sorted(row[0] for row in rows)

    # -- shared host mounts (the supervisor calls these around each container start) -----------------

    def acquire_mounts(self, container_id: str, names: Iterable[str]) -> list[str]:
        """Before spawn: mount each volume with filesystem driver_opts at its `_data` (if not yet) and
        hold it for `container_id`; others are skipped. Returns the names held (undone on failure)."""
        volumes = [(name, dict(self.get(name).options)) for name in dict.fromkeys(names)]
        return self.host_mounts.acquire(container_id, volumes)

    def release_mounts(self, container_id: str) -> list[str]:
        """After the container exited: drop its holds; a volume no running container holds is unmounted.
        Idempotent; returns the names it held."""
        return self.host_mounts.release(container_id)

    def sweep_mounts(self) -> list[str]:
        """Unmount every volume no running container needs (after a crash); returns those still mounted."""
        return self.host_mounts.sweep_all()

    def is_mounted(self, name: str) -> bool:
        return self.host_mounts.is_mounted(name)

    def host_source(self, volume: Volume) -> str | None:
        """The shared host directory a container binds for this volume: `_data` of a plain volume, or of
        a filesystem volume while acquired (mounted); None for an `o=bind` volume (see mount_source)."""
        if not volume.options:
            return str(volume.mountpoint)
        if needs_host_mount(volume.options) and self.is_mounted(volume.name):
            return str(volume.mountpoint)
        return None

    # -- remove / prune --------------------------------------------------------------------------------

    def remove(self, name: str, *, force: bool = False) -> bool:
        """Delete the volume and its data; refused while in use, even with `force` (as docker).

        `force` only makes a missing volume not an error. Returns whether a volume was removed.
        """
        with self.root.lock(_STORE_LOCK):
            with self.db.transaction():
                if self._find(name) is None:
                    if force:
                        return False
                    raise VolumeNotFound(f"no such volume: {name}", subject=name)
                self._refuse_in_use(name)
                self._refuse_mounted(name)
                self.db.execute("DELETE FROM volumes WHERE name = ?", (name,))
            remove_tree(self.volumes_dir / name)
        return True

    def prune(
        self,
        *,
        all: bool = False,
        label: Iterable[str] = (),
        label_not: Iterable[str] = (),
    ) -> PruneReport:
        """Remove unused volumes: anonymous ones only unless `all` (docker >= 23), filtered by labels.

        `label` entries are `key` or `key=value` (all must match); `label_not` entries exclude volumes.
        """
        wanted, unwanted = list(label), list(label_not)
        report = PruneReport()
        with self.root.lock(_STORE_LOCK):
            for volume in self.list():
                if not all and ANONYMOUS_LABEL not in volume.labels:
                    continue
                if not labels_match(volume.labels, wanted, unwanted):
                    continue
                with self.db.transaction():
                    if self.users(volume.name) or self.host_mounts.sweep(volume.name):
                        continue
                    self.db.execute("DELETE FROM volumes WHERE name = ?", (volume.name,))
                report.reclaimed += disk_usage(self.volumes_dir / volume.name)
                remove_tree(self.volumes_dir / volume.name)
                report.deleted.append(volume.name)
        return report

    # -- for the container's rootfs ------------------------------------------------------------------

    def mount_source(self, volume: Volume) -> tuple[str, str, tuple[str, ...]]:
        """How to mount the volume: (type, source, options) for mount(2) at container start.

        A plain volume and `o=bind` are ("bind", host directory, extra flags such as "ro"); any other
        driver_opts are (type, device, the `o` list), e.g. ("tmpfs", "tmpfs", ("size=64m", "mode=1777")).
        """
        flags = _o_flags(volume.options)
        if not volume.options:
            return ("bind", str(volume.mountpoint), ())
        device = volume.options.get("device", "")
        if "bind" in flags or "rbind" in flags:
            _require_dir(volume.name, device)
            return ("bind", device, tuple(f for f in flags if f not in ("bind", "rbind")))
        return (volume.options.get("type", ""), device, flags)

    def data_path(self, volume: Volume) -> Path | None:
        """The host directory holding the volume's files; None for a filesystem volume not mounted now."""
        shared = self.host_source(volume)
        if shared is not None:
            return Path(shared)
        kind, source, _ = self.mount_source(volume)
        return Path(source) if kind == "bind" else None

    def populate_from_image(
        self,
        volume: Volume,
        image_dir: str | os.PathLike[str],
        *,
        nocopy: bool = False,
        into: Path | None = None,
    ) -> bool:
        """Docker's copy-up: fill an empty volume with the image's content at the mount point.

        Copies files, directories, symlinks, hard links, devices and fifos with owner, mode, xattrs and
        times, then gives the volume's root the owner and mode of the image directory. Does nothing when
        `nocopy`, when the volume already holds anything, or when the image has no such directory.
        `into` is where a per-container filesystem (tmpfs) is mounted. Returns whether it copied.
        """
        source = Path(image_dir)
        target = into if into is not None else self.data_path(volume)
        if nocopy or target is None or not _is_real_dir(source):
            return False
        with self.root.lock(_populate_lock(volume.name)):
            try:
                if not _is_empty(target):
                    return False
                _copy_tree(source, target)
                _copy_metadata(source, target, os.lstat(source))
            except OSError as exc:
                raise VolumeError(f"copy-up from {source} failed: {exc}", subject=volume.name) from exc
        return True

    def resolve_subpath(self, volume: Volume, subpath: str) -> Path:
        """The host path of `subpath` inside the volume: it must exist and stay inside, links included.

        The container's files can change after this check: mount from `open_subpath()` instead to be
        safe against a link swapped in between.
        """
        fd = self.open_subpath(volume, subpath)
        try:
            return Path(os.readlink(f"/proc/self/fd/{fd}"))
        finally:
            os.close(fd)

    def open_subpath(self, volume: Volume, subpath: str) -> int:
        """An O_PATH descriptor of `subpath` inside the volume, checked to be inside (mount it through
        /proc/self/fd/N so a symlink swapped in after the check cannot redirect the mount)."""
        base = self.data_path(volume)
        if base is None:
            raise VolumeError("subpath needs a volume whose files live on the host", subject=volume.name)
        parts = _subpath_parts(volume.name, subpath)
        real_base = os.path.realpath(base)
        candidate = os.path.realpath(os.path.join(real_base, *parts))
        if os.path.commonpath([real_base, candidate]) != real_base:
            raise VolumeError(f"subpath {subpath!r} leads outside the volume", subject=volume.name)
        try:
            fd = os.open(candidate, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise VolumeError(
                f"subpath {subpath!r} does not exist in the volume", subject=volume.name
            ) from None
        opened = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.commonpath([real_base, opened]) != real_base:
            os.close(fd)
            raise VolumeError(f"subpath {subpath!r} leads outside the volume", subject=volume.name)
        return fd

    # -- internals -------------------------------------------------------------------------------------

    def _find(self, name: str) -> Volume | None:
        row = self.db.query_one("SELECT * FROM volumes WHERE name = ?", (name,))
        return None if row is None else self._from_row(row)

    def _from_row(self, row) -> Volume:  # type: ignore[no-untyped-def]
        return self._volume(
            row["name"], row["driver"], json.loads(row["options"]), json.loads(row["labels"]), row["created"]
        )

    def _volume(self, name: str, driver: str, opts: dict, labels: dict, created: str) -> Volume:
        mountpoint = self.volumes_dir / name / "_data"
        return Volume(name, driver, dict(opts), dict(labels), created, mountpoint)

    def _make_data_dir(self, name: str) -> None:
        """volumes/<name>/_data, clearing a row-less leftover of a crashed create or remove first."""
        try:
            self.volumes_dir.mkdir(mode=0o700, exist_ok=True)
            remove_tree(self.volumes_dir / name)
            (self.volumes_dir / name).mkdir(mode=0o700)
            data = self.volumes_dir / name / "_data"
            data.mkdir()
            data.chmod(0o755)  # not subject to the umask, like docker's
        except OSError as exc:
            raise VolumeError(f"cannot create the volume directory: {exc.strerror}", subject=name) from exc

    def _refuse_mounted(self, name: str) -> None:
        """A mounted filesystem volume is in use even without a user row (a crash's leftover is swept
        first); deleting the directory would otherwise reach into the live filesystem."""
        if self.host_mounts.sweep(name):
            holders = ", ".join(self.host_mounts.holders(name))
            raise VolumeInUse(f"volume is mounted - [{holders}]", subject=name)

    def _refuse_in_use(self, name: str) -> None:
        users = self.users(name)
        if users:
            message = f"volume is in use - [{', '.join(users)}]"
            raise VolumeInUse(message, subject=name)


# -- validation --------------------------------------------------------------------------------------------


def validate_name(name: str) -> None:
    """Docker's rule for local volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so at least two characters)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise VolumeError(
            'invalid volume name: only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, at least two characters;'
            " to mount a host directory use an absolute path",
            subject=str(name),
        )


def _validate_options(name: str, driver: str, opts: Mapping[str, str]) -> None:
    if driver != LOCAL:
        raise VolumeError(f"volume driver {driver!r} is not supported (only 'local')", subject=name)
    for key, value in opts.items():
        if key not in _LOCAL_OPTS:
            raise VolumeError(f"invalid option: {key!r} (local driver knows type, o, device)", subject=name)
        if not isinstance(value, str):
            raise VolumeError(f"option {key!r} must be a string", subject=name)
    for key, required in _REQUIRED_WITH.items():
        for other in required:
            if key in opts and other not in opts:
                raise VolumeError(f"missing required option: {other!r} (needed with {key!r})", subject=name)
    if "bind" in _o_flags(opts) or "rbind" in _o_flags(opts):
        _require_dir(name, opts.get("device", ""))
    elif opts.get("type") == "tmpfs":
        _check_tmpfs_flags(name, _o_flags(opts))


def _require_dir(name: str, device: str) -> None:
    if not os.path.isabs(device):
        raise VolumeError(f"bind device must be an absolute host path, not {device!r}", subject=name)
    if not os.path.isdir(device):
        raise VolumeError(f"bind device {device} does not exist or is not a directory", subject=name)


def _check_tmpfs_flags(name: str, flags: tuple[str, ...]) -> None:
    """size= and mode= must parse, so a typo fails at create, not at container start."""
    for flag in flags:
        key, _, value = flag.partition("=")
        if key == "size" and not re.fullmatch(r"[0-9]+[kKmMgG%]?", value):
            raise VolumeError(f"bad tmpfs size {value!r}", subject=name)
        if key == "mode" and not re.fullmatch(r"[0-7]{1,4}", value):
            raise VolumeError(f"bad tmpfs mode {value!r} (octal)", subject=name)


def _same_or_conflict(existing: Volume, driver: str, opts: Mapping[str, str]) -> Volume:
    if existing.driver != driver or dict(existing.options) != dict(opts):
        raise VolumeError(
            f"volume already exists with different options (driver {existing.driver!r},"
            f" driver_opts {dict(existing.options)!r}); remove it first",
            subject=existing.name,
        )
    return existing


def _subpath_parts(name: str, subpath: str) -> list[str]:
    if not subpath or os.path.isabs(subpath):
        raise VolumeError(f"subpath must be a relative path, not {subpath!r}", subject=name)
    parts = [p for p in subpath.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise VolumeError(f"subpath {subpath!r} must not contain '..'", subject=name)
    return parts


def labels_match(labels: Mapping[str, str], wanted: Iterable[str], unwanted: Iterable[str] = ()) -> bool:
    """docker's `label=k`, `label=k=v` (all must hold) and `label!=k`, `label!=k=v` (none may hold)."""
    return all(_has_label(labels, f) for f in wanted) and not any(_has_label(labels, f) for f in unwanted)


def _has_label(labels: Mapping[str, str], entry: str) -> bool:
    key, sep, value = entry.partition("=")
    return key in labels and (not sep or labels[key] == value)


# -- copy-up -----------------------------------------------------------------------------------------------


def _copy_tree(source: Path, target: Path) -> None:
    """Copy the content of `source` into the existing, empty `target` (hard links kept as links)."""
    links: dict[tuple[int, int], str] = {}
    _copy_children(str(source), str(target), links)


def _copy_children(source: str, target: str, links: dict[tuple[int, int], str]) -> None:
    with os.scandir(source) as entries:
        children = list(entries)
    for entry in children:
        src, dst = entry.path, os.path.join(target, entry.name)
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            os.mkdir(dst, 0o700)
            _copy_children(src, dst, links)
        elif _link_existing(info, dst, links):
            continue
        else:
            _copy_leaf(src, dst, info)
            if info.st_nlink > 1:
                links[(info.st_dev, info.st_ino)] = dst
        _copy_metadata(src, dst, info)


def _link_existing(info: os.stat_result, dst: str, links: dict[tuple[int, int], str]) -> bool:
    first = links.get((info.st_dev, info.st_ino)) if info.st_nlink > 1 else None
    if first is None:
        return False
    os.link(first, dst, follow_symlinks=False)
    return True


def _copy_leaf(src: str, dst: str, info: os.stat_result) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        _copy_file(src, dst)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        os.mknod(dst, stat.S_IFMT(mode) | 0o600, info.st_rdev)
    else:
        raise OSError(errno.EINVAL, "unknown file type", src)


def _copy_file(src: str, dst: str) -> None:
    """Content by copy_file_range (reflinks or in-kernel copy); sparse holes are not preserved."""
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            while os.copy_file_range(fin, fout, 1 << 30):
                pass
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            _copy_by_read(fin, fout)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_by_read(fin: int, fout: int) -> None:
    os.lseek(fin, 0, os.SEEK_SET)
    os.lseek(fout, 0, os.SEEK_SET)
    os.ftruncate(fout, 0)
    while chunk := os.read(fin, 1 << 20):
        os.write(fout, chunk)


def _copy_metadata(src: str | Path, dst: str | Path, info: os.stat_result) -> None:
    """Owner first (chown clears setuid bits), then xattrs, mode (not for symlinks) and times."""
    os.chown(dst, info.st_uid, info.st_gid, follow_symlinks=False)
    _copy_xattrs(src, dst)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(dst, stat.S_IMODE(info.st_mode))
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_xattrs(src: str | Path, dst: str | Path) -> None:
    """Every extended attribute (security.capability, trusted.*, user.*); skipped only where the volume's
    filesystem has no xattr support at all."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for key in names:
        try:
            os.setxattr(dst, key, os.getxattr(src, key, follow_symlinks=False), follow_symlinks=False)
        except OSError as exc:
            if exc.errno != errno.ENOTSUP:
                raise


# -- helpers -----------------------------------------------------------------------------------------------


def disk_usage(path: Path) -> int:
    """Bytes allocated under `path` (hard-linked files counted once), for prune's reclaimed space."""
    total, seen = 0, set()
    for directory, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except FileNotFoundError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def _o_flags(opts: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(flag.strip() for flag in opts.get("o", "").split(",") if flag.strip())


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _is_empty(directory: Path) -> bool:
    with os.scandir(directory) as entries:
        return next(entries, None) is None


def _populate_lock(name: str) -> str:
    import hashlib  # OpenSSL's, ~4 ms to load: not for a `down` that only lists volumes

    return "volume-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _dump(values: Mapping[str, str]) -> str:
    return json.dumps(dict(values), sort_keys=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
