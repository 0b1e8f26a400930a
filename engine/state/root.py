"""The state root: where it is, its directory layout, staging space, locks and crash repair.

Every write follows one protocol (see LAYOUT.md): build the thing under `tmp/<session>/`, fsync, rename it
into `blobs/` or `layers/`, then record it in the database in one transaction; removal goes the other way
(commit the row deletion, then delete the files). A crash therefore leaves at worst a temp entry or a file
without a row, never a row without its file; `repair()` clears the first kind and anything damaged from
outside, `collect_orphans()` the second.
"""

from __future__ import annotations

import array
import fcntl
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidReference, LockTimeout, StateError
from engine.state.db import DEFAULT_BUSY_TIMEOUT, Database
from engine.state.locks import FileLock

DEFAULT_ROOT = Path("/var/lib/pycompose")
ROOT_ENV = "PYCOMPOSE_ROOT"
DB_NAME = "pycompose.db"
REPAIR_LOCK = "repair"
PUBLISH_LOCK = "publish"
FS_IOC_GETFLAGS = 0x80086601  # linux/fs.h, as _IOR('f', 1, long) on 64-bit (the kernel reads an int)
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SESSION = re.compile(r"[0-9]+-[0-9a-f]{8}")
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,199}")


def resolve_root(flag: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The state root to use: the --root flag, else $PYCOMPOSE_ROOT, else /var/lib/pycompose."""
    env = os.environ if environ is None else environ
    chosen = flag or env.get(ROOT_ENV) or str(DEFAULT_ROOT)
    return Path(chosen).expanduser().absolute()


@dataclass
class RepairReport:
    """What repair() cleared, so callers and tests can see it did something (paths and digests)."""

    temp_removed: list[str] = field(default_factory=list)
    blobs_removed: list[str] = field(default_factory=list)
    layers_removed: list[str] = field(default_factory=list)
    images_removed: list[str] = field(default_factory=list)
    skipped: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.temp_removed or self.blobs_removed or self.layers_removed or self.images_removed)


class StateRoot:
    """An opened state root. Use `StateRoot.open(path)`; close it (or use `with`) when done."""

    def __init__(self, path: Path, db: Database) -> None:
        self.path = path
        self.db = db
        self.blobs_dir = path / "blobs" / "sha256"
        self.layers_dir = path / "layers"
        self.tmp_dir = path / "tmp"
        self.locks_dir = path / "locks"
        self._session: tuple[int, str, FileLock] | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, repair: bool = True, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> StateRoot:
        """Create the layout if needed, open (and migrate) the database, clear crash leftovers."""
        root = Path(path).absolute()
        _make_layout(root)
        root_obj = cls(root, Database(root / DB_NAME, busy_timeout=busy_timeout))
        if repair:
            root_obj.repair()
        return root_obj

    # -- paths -------------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        """blobs/sha256/<hex> for "sha256:<hex>"."""
        return self.blobs_dir / _hex_of(digest)

    def layer_path(self, chain_id: str) -> Path:
        """layers/<hex> for the chain id "sha256:<hex>": the layer's unpacked directory."""
        return self.layers_dir / _hex_of(chain_id)

    def new_temp_path(self, prefix: str) -> Path:
        """A fresh, not yet existing path in this process's staging directory (same filesystem as the store).

        The staging directory is protected by a lock this process holds, so repair() in another process
        never removes work in progress; once this process dies, its leftovers are removed.
        """
        if not prefix or "/" in prefix or prefix.startswith("."):
            raise ValueError(f"bad temp prefix {prefix!r}")
        return self._session_dir() / f"{prefix}-{os.urandom(6).hex()}"

    # -- locks -------------------------------------------------------------------------------------

    def lock(self, name: str, shared: bool = False, timeout: float | None = None) -> FileLock:
        """A lock named `name` in locks/ (not yet taken: use `with root.lock(...)`)."""
        if not _LOCK_NAME.fullmatch(name):
            raise ValueError(f"bad lock name {name!r}")
        return FileLock(self.locks_dir / f"{name}.lock", shared=shared, timeout=timeout)

    def publishing(self, timeout: float | None = None) -> FileLock:
        """Hold this (shared) from renaming files into blobs/ or layers/ until their rows are committed.

        collect_orphans() takes it exclusively, so it never deletes a file whose row is about to appear.
        """
        return self.lock(PUBLISH_LOCK, shared=True, timeout=timeout)

    # -- repair ------------------------------------------------------------------------------------

    def repair(self, *, thorough: bool = False) -> RepairReport:
        """Remove dead processes' temp entries and rows whose files are gone (skipped if another repairs).

        The default pass lists directories only (cheap enough for every command); `thorough` also stats
        every blob and treats one of the wrong size (truncated from outside) as missing.
        """
        report = RepairReport()
        try:
            guard = self.lock(REPAIR_LOCK).acquire(timeout=0)
        except LockTimeout:
            report.skipped = True
            return report
        try:
            report.temp_removed = self._clear_temp()
            self._clear_dangling_rows(report, thorough)
        finally:
            guard.release()
        return report

    def collect_orphans(self, timeout: float | None = 0) -> list[str]:
        """Delete blob files and layer directories no row describes (a crash between rename and commit)."""
        removed: list[str] = []
        with self.lock(PUBLISH_LOCK, timeout=timeout):
            known_blobs = self._known_hexes("SELECT digest FROM blobs")
            known_layers = self._known_hexes("SELECT chain_id FROM layers")
            for directory, known in ((self.blobs_dir, known_blobs), (self.layers_dir, known_layers)):
                for entry in _entries(directory):
                    if entry.name not in known:
                        remove_tree(entry)
                        removed.append(str(entry))
        return removed

    def _known_hexes(self, sql: str) -> set[str]:
        return {_hex_of(r[0]) for r in self.db.query(sql) if _is_digest(r[0])}

    def close(self) -> None:
        """Drop this process's staging directory and its lock, then the database connections."""
        session, self._session = self._session, None
        if session is not None and session[0] == os.getpid():
            _, token, guard = session
            remove_tree(self.tmp_dir / token)
            _unlink(guard.path)
            guard.release()
        self.db.close()

    def __enter__(self) -> StateRoot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<StateRoot {self.path}>"

    # -- internals ---------------------------------------------------------------------------------

    def _session_dir(self) -> Path:
        """Create this process's staging directory on first use: lock, then mkdir (repair relies on it)."""
        if self._session is None or self._session[0] != os.getpid():
            token = f"{os.getpid()}-{os.urandom(4).hex()}"
            guard = self.lock(f"session-{token}").acquire(timeout=0)
            try:
                (self.tmp_dir / token).mkdir(mode=0o700)
            except OSError as exc:
                guard.release()
                message = f"cannot create staging directory: {exc.strerror}"
                raise StateError(message, subject=str(self.tmp_dir)) from exc
            self._session = (os.getpid(), token, guard)
        return self.tmp_dir / self._session[1]

    def _clear_temp(self) -> list[str]:
        """Staging left by dead processes, stray temp entries older than us, locks of dead sessions."""
        removed: list[str] = []
        mine = self._session[1] if self._session else None
        started = process_start_time()
        for entry in _entries(self.tmp_dir):
            if entry.name == mine:
                continue
            if _SESSION.fullmatch(entry.name):
                if self._reap_session(entry.name):
                    removed.append(str(entry))
            elif _mtime(entry) < started:
                remove_tree(entry)
                removed.append(str(entry))
        for entry in _entries(self.locks_dir):
            token = entry.name.removeprefix("session-").removesuffix(".lock")
            if not entry.name.startswith("session-") or token == mine or (self.tmp_dir / token).exists():
                continue
            if _mtime(entry) < started:  # a younger one may belong to a process about to mkdir
                self._reap_session(token)
        return removed

    def _reap_session(self, token: str) -> bool:
        """Remove a session's staging directory and lock file if its owner is gone (its lock is free)."""
        try:
            guard = self.lock(f"session-{token}").acquire(timeout=0)
        except LockTimeout:
            return False
        try:
            remove_tree(self.tmp_dir / token)
            _unlink(guard.path)
        finally:
            guard.release()
        return True

    def _clear_dangling_rows(self, report: RepairReport, thorough: bool) -> None:
        """Rows whose blob file or layer directory is gone go, with every image that needed them."""
        if not (self._missing_blobs(thorough) or self._missing_layers()):
            return  # the common case stays read-only: no write lock taken
        with self.db.transaction():  # look again under the write lock: a remover may have just committed
            blobs, layers = self._missing_blobs(thorough), self._missing_layers()
            report.images_removed = self._delete_images_needing(blobs, layers)
            report.layers_removed = self._delete_layers(layers)
            self.db.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d in blobs])
            report.blobs_removed = blobs

    def _missing_blobs(self, thorough: bool) -> list[str]:
        present = _listing(self.blobs_dir, dirs=False)
        missing = []
        for digest, size in self.db.query("SELECT digest, size FROM blobs"):
            entry = present.get(digest.removeprefix("sha256:"))  # a malformed digest matches no file name
            if entry is None or (thorough and _size(entry) != size):
                missing.append(digest)
        return missing

    def _missing_layers(self) -> list[str]:
        present = _listing(self.layers_dir, dirs=True)
        return [r[0] for r in self.db.query("SELECT chain_id FROM layers") if r[0][7:] not in present]

    def _delete_images_needing(self, blobs: list[str], layers: list[str]) -> list[str]:
        doomed_layers = self._with_descendants(layers)
        images: set[str] = set()
        for digest in blobs:
            images.update(
                r[0]
                for r in self.db.query(
                    "SELECT id FROM images WHERE id = ? OR manifest_digest = ?"
                    " UNION SELECT image_id FROM image_blobs WHERE digest = ?",
                    (digest, digest, digest),
                )
            )
        for chain_id in doomed_layers:
            rows = self.db.query("SELECT image_id FROM image_layers WHERE chain_id = ?", (chain_id,))
            images.update(r[0] for r in rows)
        for image_id in sorted(images):
            self.db.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
            self.db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        return sorted(images)

    def _with_descendants(self, chain_ids: list[str]) -> list[str]:
        """The layers plus every layer stacked on them (their chain is broken too), children first."""
        if not chain_ids:
            return []
        marks = ",".join("?" * len(chain_ids))
        rows = self.db.query(
            f"WITH RECURSIVE doomed(chain_id, depth) AS ("
            f" SELECT chain_id, 0 FROM layers WHERE chain_id IN ({marks})"
            f" UNION SELECT l.chain_id, d.depth + 1 FROM layers l JOIN doomed d ON l.parent = d.chain_id)"
            f" SELECT chain_id, max(depth) AS depth FROM doomed GROUP BY chain_id ORDER BY depth DESC",
            chain_ids,
        )
        return [r["chain_id"] for r in rows]

    def _delete_layers(self, missing: list[str]) -> list[str]:
        doomed = self._with_descendants(missing)
        for chain_id in doomed:
            self.db.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,))
        return doomed


# -- helpers ---------------------------------------------------------------------------------------


def _make_layout(root: Path) -> None:
    """mkdir the root (0700: layers hold setuid binaries other users must not reach) and its subdirs."""
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = root.stat()
        if not stat.S_ISDIR(info.st_mode):
            raise StateError("state root is not a directory", subject=str(root))
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            root.chmod(0o700)
        for sub in ("blobs/sha256", "layers", "tmp", "locks"):
            (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        containers = root / "containers"
        containers.mkdir(mode=0o755, exist_ok=True)
        spread_subdirectories(containers)
    except FileExistsError:
        raise StateError("state root is not a directory", subject=str(root)) from None
    except NotADirectoryError:
        raise StateError("state root is not a directory", subject=str(root)) from None
    except OSError as exc:
        raise StateError(f"cannot create the state root: {exc.strerror}", subject=str(root)) from exc


def spread_subdirectories(directory: Path) -> bool:
    """Mark `directory` as a top of hierarchy (ext2/3/4 FS_TOPDIR_FL, `chattr +T`), so each directory
    made in it goes to a block group of its own (Orlov), with the files made inside it; returns whether
    the mark is there (other filesystems have no such flag: False, nothing done).

    Why: on an ext4 without a journal (this project's test host), allocating an inode skips, one buffer
    lookup each, every inode of the group freed in the last minutes (`recently_deleted`); with every
    container's ~17 inodes made and freed in one group, a 20-service `up -d` after some churn spent a
    fifth of its CPU there. Spread over groups, each scan stays short."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = array.array("i", [0])
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags, True)
        if not flags[0] & FS_TOPDIR_FL:
            flags[0] |= FS_TOPDIR_FL
            fcntl.ioctl(fd, FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _hex_of(digest: str) -> str:
    if not _is_digest(digest):
        raise InvalidReference("not a sha256 digest", subject=digest)
    return digest[7:]


def _is_digest(digest: str) -> bool:
    return digest.startswith("sha256:") and _HEX64.fullmatch(digest[7:]) is not None


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except FileNotFoundError:
        return []


def _listing(directory: Path, *, dirs: bool) -> dict[str, os.DirEntry[str]]:
    """Regular files (or directories) of a directory by name, from one scandir (d_type, no stat each)."""
    try:
        with os.scandir(directory) as entries:
            if dirs:
                return {e.name: e for e in entries if e.is_dir(follow_symlinks=False)}
            return {e.name: e for e in entries if e.is_file(follow_symlinks=False)}
    except FileNotFoundError:
        return {}


def _size(entry: os.DirEntry[str]) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return -1


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def remove_tree(path: Path) -> None:
    """Delete a file, symlink or tree, even with read-only directories inside (unpacked layers have them)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        _unlink(path)
        return

    def retry_writable(func, failed, exc_info):  # type: ignore[no-untyped-def]
        parent = os.path.dirname(failed)
        os.chmod(parent, stat.S_IRWXU | stat.S_IMODE(os.lstat(parent).st_mode))
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, stat.S_IRWXU)
        func(failed)

    shutil.rmtree(path, onerror=retry_writable)


def process_start_time() -> float:
    """When this process started (epoch seconds), from /proc; temp entries older than this are not ours."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED


_IMPORTED = time.time()
