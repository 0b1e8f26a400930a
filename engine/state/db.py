"""The state database: SQLite in WAL mode, one connection per thread, versioned schema.

WAL lets readers run while one writer commits; `BEGIN IMMEDIATE` takes the write lock up front so two
processes never both read-then-write and deadlock on the upgrade; `busy_timeout` makes the second writer
wait instead of failing. The schema is described in LAYOUT.md; change it only by appending a migration.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from engine.errors import DiskFullError, StateError

DEFAULT_BUSY_TIMEOUT = 30.0
Params = Sequence[Any] | dict[str, Any]

_SCHEMA_V1 = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        media_type TEXT,
        created TEXT NOT NULL)""",
    """CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT NULL REFERENCES layers (chain_id),
        blob_digest TEXT NULL,
        size INTEGER NOT NULL,
        created TEXT NOT NULL)""",
    "CREATE INDEX layers_parent ON layers (parent)",
    """CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        index_digest TEXT NULL,
        created TEXT,
        size INTEGER NOT NULL,
        os TEXT NOT NULL,
        architecture TEXT NOT NULL,
        variant TEXT NULL,
        added TEXT NOT NULL)""",
    """CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        chain_id TEXT NOT NULL REFERENCES layers (chain_id),
        PRIMARY KEY (image_id, position))""",
    "CREATE INDEX image_layers_chain ON image_layers (chain_id)",
    """CREATE TABLE image_blobs (
        image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        digest TEXT NOT NULL,
        PRIMARY KEY (image_id, digest))""",
    "CREATE INDEX image_blobs_digest ON image_blobs (digest)",
    """CREATE TABLE tags (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images (id))""",
    "CREATE INDEX tags_image ON tags (image_id)",
    """CREATE TABLE repo_digests (
        name TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE)""",
    "CREATE INDEX repo_digests_image ON repo_digests (image_id)",
)


def _migrate_to_v1(conn: sqlite3.Connection) -> None:
    """The image store: blobs, shared layers, images, tags and repo digests."""
    for statement in _SCHEMA_V1:
        conn.execute(statement)


def _migrate_to_v2(conn: sqlite3.Connection) -> None:
    """When each reference was last pulled, for pull_policy daily / weekly / every_<duration>."""
    conn.execute("CREATE TABLE pulls (name TEXT PRIMARY KEY, pulled TEXT NOT NULL)")


def _migrate_to_v3(conn: sqlite3.Connection) -> None:
    """Named volumes, and which containers use each (a volume in use cannot be removed)."""
    conn.execute(
        """CREATE TABLE volumes (
            name TEXT PRIMARY KEY,
            driver TEXT NOT NULL,
            options TEXT NOT NULL,
            labels TEXT NOT NULL,
            created TEXT NOT NULL)"""
    )
    conn.execute(
        """CREATE TABLE volume_users (
            volume TEXT NOT NULL REFERENCES volumes (name),
            container TEXT NOT NULL,
            PRIMARY KEY (volume, container))"""
    )
    conn.execute("CREATE INDEX volume_users_container ON volume_users (container)")


# Append only: MIGRATIONS[n] takes a database from version n to n + 1. Never edit a released step.
def _migrate_to_v4(conn: sqlite3.Connection) -> None:
    """Containers: what was asked (the spec), what happened (state, pid, exit, health, restarts)."""
    conn.execute(
        """CREATE TABLE containers (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            image_id TEXT NOT NULL REFERENCES images (id),
            spec TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'created',
            pid INTEGER NULL,
            started_at TEXT NULL,
            finished_at TEXT NULL,
            exit_code INTEGER NULL,
            oom_killed INTEGER NOT NULL DEFAULT 0,
            restart_count INTEGER NOT NULL DEFAULT 0,
            stopped_by_user INTEGER NOT NULL DEFAULT 0,
            health TEXT NULL,
            log_path TEXT NULL)"""
    )
    conn.execute("CREATE INDEX containers_image ON containers (image_id)")
    conn.execute("CREATE INDEX containers_state ON containers (state)")


_SCHEMA_V5 = (
    """CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        bridge TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL,
        subnets TEXT NOT NULL,
        mtu INTEGER NOT NULL,
        created TEXT NOT NULL)""",
    """CREATE TABLE endpoints (
        container_id TEXT NOT NULL REFERENCES containers (id) ON DELETE CASCADE,
        network_id TEXT NOT NULL REFERENCES networks (id),
        position INTEGER NOT NULL,
        names TEXT NOT NULL,
        static_ipv4 TEXT NULL,
        static_ipv6 TEXT NULL,
        static_mac TEXT NULL,
        mac TEXT NULL,
        ipv4 TEXT NULL,
        ipv6 TEXT NULL,
        host_veth TEXT NULL,
        active INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (container_id, network_id))""",
    # the database itself refuses a second holder of an address, whatever the code does
    "CREATE UNIQUE INDEX endpoints_network_ipv4 ON endpoints (network_id, ipv4)",
    "CREATE UNIQUE INDEX endpoints_network_ipv6 ON endpoints (network_id, ipv6)",
    "CREATE INDEX endpoints_ipv4 ON endpoints (ipv4)",
    "CREATE INDEX endpoints_ipv6 ON endpoints (ipv6)",
    """CREATE TABLE endpoint_names (
        network_id TEXT NOT NULL,
        name TEXT NOT NULL,
        container_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (network_id, name, container_id),
        FOREIGN KEY (container_id, network_id) REFERENCES endpoints (container_id, network_id)
            ON DELETE CASCADE)""",
    "CREATE INDEX endpoint_names_endpoint ON endpoint_names (container_id, network_id)",
    """CREATE TABLE published_ports (
        container_id TEXT NOT NULL REFERENCES containers (id) ON DELETE CASCADE,
        protocol TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        container_ip TEXT NOT NULL,
        bridge TEXT NOT NULL,
        UNIQUE (host_ip, host_port, protocol))""",
    "CREATE INDEX published_ports_container ON published_ports (container_id)",
)


def _migrate_to_v5(conn: sqlite3.Connection) -> None:
    """Networks, the endpoints joining containers to them (addresses, DNS names), published ports."""
    for statement in _SCHEMA_V5:
        conn.execute(statement)


_SCHEMA_V6 = (
    """CREATE TABLE build_cache (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        parent_id TEXT NULL,
        created TEXT NOT NULL)""",
    "CREATE INDEX build_cache_image ON build_cache (image_id)",
    "CREATE INDEX build_cache_parent ON build_cache (parent_id)",
)


def _migrate_to_v6(conn: sqlite3.Connection) -> None:
    """The build cache: a step's key -> the image it produced (and the image it started from)."""
    for statement in _SCHEMA_V6:
        conn.execute(statement)


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _migrate_to_v1,
    _migrate_to_v2,
    _migrate_to_v3,
    _migrate_to_v4,
    _migrate_to_v5,
    _migrate_to_v6,
)
SCHEMA_VERSION = len(MIGRATIONS)


_OPEN: weakref.WeakSet[Database] = weakref.WeakSet()


class _WriterLock:
    """One writer at a time: first among this process's threads (a threading.Lock), then among the
    processes sharing the database (an flock on `<db>.writer`, which wakes the next writer the moment one
    commits). SQLite's own busy handler sleeps 1, 2, 5, 10... ms between retries instead: 20 threads of a
    parallel `up` waited ~0.1 s each for the lock, and the supervisor's event loop stalled ~25 ms per
    20-service `up` behind the CLI's commits. A writer that holds the lock past `timeout` (a stopped
    process) gets the same StateError as SQLite's busy timeout gave."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._threads = threading.Lock()
        self._fd = -1
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            self._lock_file()
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def after_fork(self) -> None:
        """In a forked child: the parent's lock may be held by a thread the child does not have, and
        the inherited descriptor shares the parent's flock (closing it here does not release theirs)."""
        self._threads = threading.Lock()
        if self._fd >= 0:
            with suppress(OSError):
                os.close(self._fd)
        self._fd, self._pid = -1, 0

    def _lock_file(self) -> None:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            try:
                self._fd = os.open(f"{self.path}.writer", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only root: SQLite's own locking still keeps writers apart
                self._fd = -1
        if self._fd < 0:
            return
        deadline = time.monotonic() + self.timeout
        delay = 0.00005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() > deadline:
                message = "database stayed busy (its writer lock is held); another pycompose holds it"
                raise StateError(message, subject=str(self.path))
            time.sleep(delay)
            delay = min(delay * 2, 0.001)


def _fresh_writer_locks() -> None:
    """After fork: see _WriterLock.after_fork."""
    for database in list(_OPEN):
        database._writer.after_fork()


os.register_at_fork(after_in_child=_fresh_writer_locks)


class Database:
    """The state database at `path`; safe to share between threads (each gets its own connection)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Callable[[sqlite3.Connection], None]] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._migrations = tuple(migrations)
        self._local = threading.local()
        self._all: list[tuple[int, sqlite3.Connection]] = []
        self._all_lock = threading.Lock()
        self._writer = _WriterLock(self.path, busy_timeout)
        _OPEN.add(self)
        self._enable_wal()
        self._migrate()

    # -- connections -------------------------------------------------------------------------------

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (a fresh one after fork: SQLite handles must not cross a fork)."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.conn = self._connect()
            local.pid = os.getpid()
            local.depth = 0
        return local.conn

    def _connect(self) -> sqlite3.Connection:
        with _translated(self.path):
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a commit survives power loss, so rows never outlive the files they were written after.
            conn.execute("PRAGMA synchronous = FULL")
        with self._all_lock:
            self._all.append((os.getpid(), conn))
        return conn

    def close(self) -> None:
        """Close every connection this process opened (call once, when no thread uses the database).

        Connections inherited over a fork stay referenced and untouched: closing them in the child could
        disturb the parent's locks (SQLite's "how to corrupt": never carry a connection across fork).
        """
        with self._all_lock:
            mine = [conn for pid, conn in self._all if pid == os.getpid()]
            self._all = [(pid, conn) for pid, conn in self._all if pid != os.getpid()]
        for conn in mine:
            conn.close()
        self._local = threading.local()

    # -- statements --------------------------------------------------------------------------------

    def execute(self, sql: str, params: Params = ()) -> sqlite3.Cursor:
        """One statement; outside a transaction it commits on its own."""
        with self._writing(sql), _translated(self.path):
            return self.connection().execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Params]) -> sqlite3.Cursor:
        with self._writing(sql), _translated(self.path):
            return self.connection().executemany(sql, rows)

    @contextmanager
    def _writing(self, sql: str) -> Iterator[None]:
        """Hold the in-process writer lock for a write that commits on its own (reads need none: WAL)."""
        if self.in_transaction or sql.lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
            yield
            return
        with self._writer:
            yield

    def query(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """All rows; a Row reads like a tuple and like a mapping (`dict(row)` for a plain dict)."""
        with _translated(self.path):
            return self.connection().execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        with _translated(self.path):
            return self.connection().execute(sql, params).fetchone()

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    # -- transactions ------------------------------------------------------------------------------

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "pid", None) == os.getpid() and self._local.depth > 0

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """All or nothing: commit when the block ends, roll back on any exception (Ctrl-C included).

        Nested blocks become savepoints: an inner failure that the outer block catches undoes only the
        inner block's work.

        `durable=False` is for runtime state that a power loss makes moot anyway (which container runs,
        with which address and pid): its commit is not fsynced (synchronous=NORMAL for it). It reaches
        the disk in order, with the next durable commit or checkpoint; a power loss may undo it, never
        corrupt anything. Under load each fsync of the WAL took 1-6 ms, two per container start on the
        supervisor's only thread. Only the outermost block's choice counts.
        """
        conn = self.connection()
        if self._local.depth == 0:
            with self._outer(conn, durable):
                yield conn
        else:
            with self._savepoint(conn):
                yield conn

    @contextmanager
    def _outer(self, conn: sqlite3.Connection, durable: bool) -> Iterator[None]:
        with self._writer, self._synchronous(conn, durable):
            with _translated(self.path):
                conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield
                with _translated(self.path):
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._local.depth = 0

    @staticmethod
    @contextmanager
    def _synchronous(conn: sqlite3.Connection, durable: bool) -> Iterator[None]:
        """FULL (each connection's setting) unless the transaction is not durable: NORMAL for it."""
        if durable:
            yield
            return
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            conn.execute("PRAGMA synchronous = FULL")

    @contextmanager
    def _savepoint(self, conn: sqlite3.Connection) -> Iterator[None]:
        name = f"sp{self._local.depth}"
        conn.execute(f"SAVEPOINT {name}")
        self._local.depth += 1
        try:
            yield
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            raise
        finally:
            self._local.depth -= 1
            conn.execute(f"RELEASE {name}")

    # -- schema ------------------------------------------------------------------------------------

    def schema_version(self) -> int:
        """The version recorded in `meta` (0 for a brand-new database)."""
        if self.scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") == 0:
            return 0
        value = self.scalar("SELECT value FROM meta WHERE key = 'schema_version'")
        try:
            return int(value or 0)
        except ValueError:
            raise StateError(f"schema_version {value!r} is not a number", subject=str(self.path)) from None

    def _enable_wal(self) -> None:
        """Switch a new database to WAL (persistent). The switch answers "locked" at once, without the
        busy handler, while another process opens the same new file: retry until busy_timeout."""
        deadline = time.monotonic() + self.busy_timeout
        conn = self.connection()
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                    with _translated(self.path):
                        raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise StateError(f"database cannot use WAL journaling (got {mode!r})", subject=str(self.path))

    def _migrate(self) -> None:
        """Bring the schema up to date; refuse a database written by a newer pycompose."""
        known = len(self._migrations)
        if self._check_version(self.schema_version(), known) == known:
            return
        with self.transaction() as conn:  # re-read under the write lock: another process may have migrated
            found = self._check_version(self.schema_version(), known)
            for version in range(found, known):
                self._migrations[version](conn)
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(version + 1),),
                )

    def _check_version(self, found: int, known: int) -> int:
        if found > known:
            raise StateError(
                f"database schema version {found} is newer than this pycompose supports ({known});"
                " use a newer pycompose",
                subject=str(self.path),
            )
        return found


@contextmanager
def _translated(path: Path) -> Iterator[None]:
    """SQLite failures that are about the state root, not our SQL, become StateError/DiskFullError."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # a constraint the caller violated: its own logic decides what that means
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        lowered = text.lower()
        if "full" in lowered:
            raise DiskFullError(f"no space left for the state database ({text})", subject=str(path)) from exc
        if "locked" in lowered or "busy" in lowered:
            message = f"database stayed busy ({text}); another pycompose holds it"
            raise StateError(message, subject=str(path)) from exc
        if "not a database" in lowered or "malformed" in lowered:
            raise StateError(f"database is corrupt ({text})", subject=str(path)) from exc
        if "unable to open" in lowered or "readonly" in lowered:
            raise StateError(f"cannot open the state database ({text})", subject=str(path)) from exc
        raise
