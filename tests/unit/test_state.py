"""State root: layout, database (schema, migrations, transactions, concurrency), locks and crash repair."""

from __future__ import annotations

import multiprocessing
import os
import select
import sqlite3
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from engine.errors import InvalidReference, LockTimeout, StateError
from engine.state import SCHEMA_VERSION, Database, FileLock, StateRoot, resolve_root
from engine.state.db import MIGRATIONS
from engine.state.root import DEFAULT_ROOT, spread_subdirectories

FORK = multiprocessing.get_context("fork")
SPAWN = multiprocessing.get_context("spawn")
NOW = "2026-11-02T10:00:00Z"


def digest(n: int | str) -> str:
    return "sha256:" + format(int(n) if not isinstance(n, str) else int(n, 16), "064x")


@pytest.fixture
def root(tmp_path: Path):
    state = StateRoot.open(tmp_path / "state")
    try:
        yield state
    finally:
        state.close()


class Signal:
    """A one-shot flag between forked processes over a pipe.

    multiprocessing.Event is not used on purpose: setting it waits for every waiter to wake, and a waiter
    the test killed never does, which hangs the teardown.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    def set(self) -> None:
        try:
            os.write(self._write, b"x")
        except OSError:
            pass

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self._read], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        os.close(self._read)
        os.close(self._write)


def _kill(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(timeout=10)


# -- where the root is ----------------------------------------------------------------------------------


def test_resolve_root_prefers_flag_then_environment_then_default(tmp_path):
    env = {"PYCOMPOSE_ROOT": str(tmp_path / "env")}
    assert resolve_root(str(tmp_path / "flag"), env) == tmp_path / "flag"
    assert resolve_root(None, env) == tmp_path / "env"
    assert resolve_root(None, {}) == DEFAULT_ROOT == Path("/var/lib/pycompose")
    assert resolve_root("", {"PYCOMPOSE_ROOT": ""}) == DEFAULT_ROOT


def test_resolve_root_makes_relative_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_root("rel/state", {}) == tmp_path / "rel" / "state"
    monkeypatch.setenv("PYCOMPOSE_ROOT", "from-env")
    assert resolve_root() == tmp_path / "from-env"


# -- layout ---------------------------------------------------------------------------------------------


def test_open_creates_private_layout_and_current_schema(root):
    assert stat.S_IMODE(root.path.stat().st_mode) == 0o700
    for directory in (root.blobs_dir, root.layers_dir, root.tmp_dir, root.locks_dir):
        assert directory.is_dir()
        assert directory.is_relative_to(root.path)
    assert root.blobs_dir == root.path / "blobs" / "sha256"
    assert (root.path / "pycompose.db").is_file()
    assert root.db.schema_version() == SCHEMA_VERSION == 6
    tables = {r[0] for r in root.db.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "meta",
        "blobs",
        "layers",
        "images",
        "image_layers",
        "image_blobs",
        "tags",
        "repo_digests",
    } <= tables
    assert root.db.scalar("PRAGMA journal_mode") == "wal"
    assert root.db.scalar("PRAGMA foreign_keys") == 1


def test_containers_dir_spreads_its_subdirectories_where_the_filesystem_can(tmp_path):
    """ext2/3/4: `chattr +T` on containers/ (each container's directory in a block group of its own);
    elsewhere nothing is set and opening still works."""
    root = StateRoot.open(tmp_path / "root")
    try:
        containers = root.path / "containers"
        assert containers.is_dir()
        ext = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout
        attributes = subprocess.run(["lsattr", "-d", str(containers)], capture_output=True, text=True)
        if ext.startswith("ext"):
            assert spread_subdirectories(containers) is True
            assert "T" in attributes.stdout.split()[0]
        else:
            assert spread_subdirectories(containers) is False
    finally:
        root.close()
    shm = Path("/dev/shm")
    if shm.is_dir():  # tmpfs: no such flag, no error
        probe = shm / f"pyc-test-topdir-{os.getpid()}"
        probe.mkdir()
        try:
            assert spread_subdirectories(probe) is False
        finally:
            probe.rmdir()


def test_open_tightens_a_world_readable_root_and_reopens_cleanly(tmp_path):
    path = tmp_path / "loose"
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    with StateRoot.open(path) as first:
        first.db.execute("INSERT INTO blobs VALUES (?, 1, NULL, ?)", (digest(1), NOW))
        first.blob_path(digest(1)).write_bytes(b"x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    with StateRoot.open(path) as second:
        assert second.db.scalar("SELECT count(*) FROM blobs") == 1


def test_root_that_is_a_file_is_a_state_error(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StateError) as caught:
        StateRoot.open(tmp_path / "file")
    assert caught.value.subject == str(tmp_path / "file")
    with pytest.raises(StateError):
        StateRoot.open(tmp_path / "file" / "below")


def test_database_that_is_not_sqlite_is_a_state_error(tmp_path):
    path = tmp_path / "state"
    path.mkdir()
    (path / "pycompose.db").write_bytes(b"this is not an sqlite database at all, just text" * 40)
    with pytest.raises(StateError, match=r"corrupt|not a database") as caught:
        StateRoot.open(path)
    assert caught.value.subject == str(path / "pycompose.db")


def test_paths_by_digest_and_bad_digests(root):
    hex64 = "ab" * 32
    assert root.blob_path(f"sha256:{hex64}") == root.path / "blobs" / "sha256" / hex64
    assert root.layer_path(f"sha256:{hex64}") == root.path / "layers" / hex64
    for bad in ("sha256:../../etc", "sha512:" + hex64, hex64, "sha256:" + hex64.upper(), "sha256:abc"):
        with pytest.raises(InvalidReference) as caught:
            root.blob_path(bad)
        assert caught.value.subject == bad


def test_new_temp_path_is_fresh_and_in_the_store_filesystem(root):
    first, second = root.new_temp_path("blob"), root.new_temp_path("blob")
    assert first != second
    assert not first.exists()
    assert first.parent.parent == root.tmp_dir
    assert first.name.startswith("blob-")
    assert os.stat(first.parent).st_dev == os.stat(root.blobs_dir).st_dev
    with pytest.raises(ValueError):
        root.new_temp_path("../escape")


def test_close_removes_own_staging(tmp_path):
    state = StateRoot.open(tmp_path / "state")
    leftover = state.new_temp_path("layer")
    (leftover / "usr" / "bin").mkdir(parents=True)
    (leftover / "usr" / "bin" / "tool").write_text("x")
    (leftover / "usr").chmod(0o555)  # unpacked layers have read-only directories
    state.close()
    assert list(state.tmp_dir.iterdir()) == []
    assert not [p for p in state.locks_dir.iterdir() if p.name.startswith("session-")]


# -- schema and migrations ------------------------------------------------------------------------------


def test_newer_schema_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "state"
    StateRoot.open(path).close()
    raw = sqlite3.connect(path / "pycompose.db")
    raw.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    raw.commit()
    raw.close()
    with pytest.raises(StateError) as caught:
        StateRoot.open(path)
    message = str(caught.value)
    assert "7" in message and f"({SCHEMA_VERSION})" in message and "newer" in message
    assert caught.value.subject == str(path / "pycompose.db")


def test_migrations_run_once_in_order_and_record_the_version(tmp_path):
    path = tmp_path / "db.sqlite"
    Database(path).close()  # a database as the released code writes it
    calls: list[int] = []
    released = len(MIGRATIONS)

    def add_containers(conn):
        calls.append(released + 1)
        conn.execute("CREATE TABLE pyc_future (id TEXT PRIMARY KEY)")

    def add_name(conn):
        calls.append(released + 2)
        conn.execute("ALTER TABLE pyc_future ADD COLUMN name TEXT")

    newer = (*MIGRATIONS, add_containers, add_name)
    db = Database(path, migrations=newer)
    assert calls == [released + 1, released + 2]
    assert db.schema_version() == released + 2
    db.execute("INSERT INTO pyc_future (id, name) VALUES ('c1', 'web')")
    db.close()
    again = Database(path, migrations=newer)  # nothing left to do
    assert calls == [released + 1, released + 2]
    again.close()
    with pytest.raises(StateError, match=f"{released + 2} is newer"):
        Database(path)


def test_a_failing_migration_leaves_the_old_version_intact(tmp_path):
    path = tmp_path / "db.sqlite"
    Database(path).close()

    def broken(conn):
        conn.execute("CREATE TABLE half_done (x)")
        raise RuntimeError("migration bug")

    with pytest.raises(RuntimeError):
        Database(path, migrations=(*MIGRATIONS, broken))
    db = Database(path)
    assert db.schema_version() == SCHEMA_VERSION
    assert db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'") == 0
    db.close()


# -- transactions ---------------------------------------------------------------------------------------


def _add_blob(db: Database, n: int) -> None:
    db.execute(
        "INSERT INTO blobs (digest, size, media_type, created) VALUES (?, ?, NULL, ?)", (digest(n), n, NOW)
    )


def test_transaction_commits_or_rolls_back_everything(root):
    db = root.db
    with db.transaction():
        _add_blob(db, 1)
        _add_blob(db, 2)
    with pytest.raises(ZeroDivisionError), db.transaction():
        _add_blob(db, 3)
        _ = 1 / 0
    with pytest.raises(KeyboardInterrupt), db.transaction():  # Ctrl-C mid-way keeps nothing either
        _add_blob(db, 4)
        raise KeyboardInterrupt
    assert [r["size"] for r in db.query("SELECT size FROM blobs ORDER BY size")] == [1, 2]
    assert not db.in_transaction


def test_nested_transaction_is_a_savepoint(root):
    db = root.db
    with db.transaction():
        _add_blob(db, 1)
        with pytest.raises(ValueError), db.transaction():
            _add_blob(db, 2)
            raise ValueError("inner step failed")
        with db.transaction():
            _add_blob(db, 3)
        assert db.in_transaction
    assert [r[0] for r in db.query("SELECT size FROM blobs ORDER BY size")] == [1, 3]


def test_uncommitted_writes_are_invisible_to_other_threads(root):
    seen: list[int] = []
    with root.db.transaction():
        _add_blob(root.db, 1)
        reader = threading.Thread(target=lambda: seen.append(root.db.scalar("SELECT count(*) FROM blobs")))
        reader.start()
        reader.join()
    assert seen == [0]
    assert root.db.scalar("SELECT count(*) FROM blobs") == 1


def test_foreign_keys_protect_used_layers_and_tagged_images(root):
    db = root.db
    with db.transaction():
        db.execute("INSERT INTO layers VALUES (?, ?, NULL, NULL, 10, ?)", (digest(1), digest(1), NOW))
        db.execute(
            "INSERT INTO images VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', NULL, NULL, 10,"
            " 'linux', 'amd64', NULL, ?)",
            (digest(2), digest(3), NOW),
        )
        db.execute("INSERT INTO image_layers VALUES (?, 0, ?)", (digest(2), digest(1)))
        db.execute("INSERT INTO tags VALUES ('docker.io/library/busybox:latest', ?)", (digest(2),))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM layers WHERE chain_id = ?", (digest(1),))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("DELETE FROM images WHERE id = ?", (digest(2),))
    with db.transaction():
        db.execute("DELETE FROM tags WHERE image_id = ?", (digest(2),))
        db.execute("DELETE FROM images WHERE id = ?", (digest(2),))
    assert db.scalar("SELECT count(*) FROM image_layers") == 0  # cascaded
    db.execute("DELETE FROM layers WHERE chain_id = ?", (digest(1),))  # now unused


def test_threads_share_a_database_without_losing_writes(root):
    def work(worker: int) -> None:
        for i in range(25):
            with root.db.transaction():
                _add_blob(root.db, worker * 1000 + i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert root.db.scalar("SELECT count(*) FROM blobs") == 150


def _count_up(path: str, worker: int, rounds: int) -> None:
    """Read-modify-write a counter and add a row per round: a lost update shows as a wrong total."""
    with StateRoot.open(path) as state:
        db = state.db
        for i in range(rounds):
            with db.transaction():
                value = int(db.scalar("SELECT value FROM meta WHERE key = 'counter'") or 0)
                db.execute(
                    "INSERT INTO meta VALUES ('counter', ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(value + 1),),
                )
                n = worker * 100_000 + i
                state.blob_path(digest(n)).write_bytes(b"b" * n)  # file first, then its row
                _add_blob(db, n)


@pytest.mark.parametrize("context", [FORK, SPAWN], ids=["fork", "spawn"])
def test_processes_write_concurrently_without_lost_updates(tmp_path, context):
    path = tmp_path / "state"
    parent = StateRoot.open(path)  # the parent's open connection must not leak into forked children
    try:
        parent.db.scalar("SELECT count(*) FROM blobs")
        workers = [context.Process(target=_count_up, args=(str(path), n, 40)) for n in (1, 2, 3)]
        try:
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=60)
            assert [w.exitcode for w in workers] == [0, 0, 0]
        finally:
            for worker in workers:
                _kill(worker)
        assert parent.db.scalar("SELECT value FROM meta WHERE key = 'counter'") == "120"
        assert parent.db.scalar("SELECT count(*) FROM blobs") == 120
        assert parent.db.scalar("PRAGMA integrity_check") == "ok"
    finally:
        parent.close()


def _open_at_once(path: str, start: Signal) -> None:
    start.wait(10)
    with StateRoot.open(path) as state:
        assert state.db.schema_version() == SCHEMA_VERSION


def test_processes_creating_the_same_root_at_once_all_succeed(tmp_path):
    """Switching a new database to WAL answers "locked" without waiting: every opener must still win."""
    for attempt in range(5):
        path = tmp_path / f"state-{attempt}"
        start = Signal()
        openers = [FORK.Process(target=_open_at_once, args=(str(path), start)) for _ in range(6)]
        try:
            for opener in openers:
                opener.start()
            start.set()
            for opener in openers:
                opener.join(30)
            assert [o.exitcode for o in openers] == [0] * 6
        finally:
            for opener in openers:
                _kill(opener)
            start.close()


# -- locks ----------------------------------------------------------------------------------------------


def _hold(path: str, shared: bool, ready, release) -> None:
    with FileLock(path, shared=shared):
        ready.set()
        release.wait(30)


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds a lock until the test ends (it is killed even when the test fails)."""
    started = []

    def start(path: Path, shared: bool = False):
        ready, release = Signal(), Signal()
        process = FORK.Process(target=_hold, args=(str(path), shared, ready, release))
        process.start()
        started.append((process, release, ready))
        assert ready.wait(10), "lock holder did not start"
        return process, release

    yield start
    for process, release, ready in started:
        release.set()
        process.join(timeout=5)
        _kill(process)
        release.close()
        ready.close()


def test_exclusive_lock_excludes_another_process_until_it_ends(tmp_path, holder):
    path = tmp_path / "layer-abc.lock"
    process, release = holder(path)
    begun = time.monotonic()
    with pytest.raises(LockTimeout) as caught:
        FileLock(path, timeout=0.3).acquire()
    assert 0.25 <= time.monotonic() - begun < 2
    assert caught.value.subject == "lock layer-abc"
    assert f"pid {process.pid}" in str(caught.value)
    with pytest.raises(LockTimeout):
        FileLock(path, shared=True, timeout=0).acquire()
    release.set()
    with FileLock(path, timeout=5) as lock:  # released as soon as the holder is done
        assert lock.locked
    assert not lock.locked


def test_lock_of_a_killed_process_is_released_by_the_kernel(tmp_path, holder):
    path = tmp_path / "crash.lock"
    process, _ = holder(path)
    process.kill()
    process.join(5)
    with FileLock(path, timeout=5):
        pass


def test_shared_locks_coexist_and_keep_writers_out(tmp_path, holder):
    path = tmp_path / "store.lock"
    holder(path, shared=True)
    with FileLock(path, shared=True, timeout=0):
        pass
    with pytest.raises(LockTimeout, match="exclusive"):
        FileLock(path, timeout=0.1).acquire()


def test_waiting_lock_gets_it_when_released(tmp_path, holder):
    path = tmp_path / "wait.lock"
    _, release = holder(path)
    threading.Timer(0.2, release.set).start()
    begun = time.monotonic()
    with FileLock(path, timeout=10):
        waited = time.monotonic() - begun
    assert 0.15 <= waited < 5


def test_timed_waiter_takes_the_lock_soon_after_its_release(tmp_path):
    """A timed wait must not sleep through the moment the lock is free (growing pauses did: 16 threads
    behind one lock formed a convoy). The median lag from release to acquisition over 5 rounds."""
    path = tmp_path / "handover.lock"
    lags = []
    for _ in range(5):
        holder = FileLock(path).acquire()
        got: list[float] = []
        waiter = threading.Thread(target=_acquire_and_release, args=(path, got))
        waiter.start()
        try:
            time.sleep(0.2)  # the waiter has polled a while (long enough for a grown pause)
            released = time.monotonic()
        finally:
            holder.release()
            waiter.join(10)
        assert got, "the waiter did not get the lock"
        lags.append(got[0] - released)
    assert sorted(lags)[2] < 0.008, lags


def _acquire_and_release(path: Path, got: list[float]) -> None:
    with FileLock(path, timeout=10):
        got.append(time.monotonic())


def test_two_lock_objects_in_one_process_exclude_each_other(root):
    first = root.lock("layer-x").acquire()
    try:
        with pytest.raises(LockTimeout):
            root.lock("layer-x", timeout=0).acquire()
        with pytest.raises(RuntimeError):
            first.acquire()
    finally:
        first.release()
    with root.lock("layer-x", timeout=0):
        assert (root.locks_dir / "layer-x.lock").exists()
    with pytest.raises(ValueError):
        root.lock("../outside")


# -- repair ---------------------------------------------------------------------------------------------


def _dead_session(state: StateRoot) -> Path:
    """Staging left behind by a process that died: a session directory whose lock nobody holds."""
    token = "999999-deadbeef"
    (state.locks_dir / f"session-{token}.lock").touch()
    staged = state.tmp_dir / token / "layer-1234" / "etc"
    staged.mkdir(parents=True)
    (staged / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    staged.chmod(0o500)
    return state.tmp_dir / token


def _session_of_live_process(path: str, ready, release) -> None:
    with StateRoot.open(path) as state:
        state.new_temp_path("blob").write_bytes(b"downloading")
        ready.set()
        release.wait(30)


def test_repair_removes_staging_of_dead_processes_only(tmp_path):
    path = tmp_path / "state"
    ready, release = Signal(), Signal()
    live = FORK.Process(target=_session_of_live_process, args=(str(path), ready, release))
    with StateRoot.open(path) as state:
        try:
            live.start()
            assert ready.wait(10)
            dead = _dead_session(state)
            old_stray = state.tmp_dir / "partial-download"
            old_stray.write_bytes(b"x")
            os.utime(old_stray, (1_000_000, 1_000_000))
            young_stray = state.tmp_dir / "not-ours-yet"
            young_stray.write_bytes(b"x")
            live_sessions = [p for p in state.tmp_dir.iterdir() if p.name.startswith(f"{live.pid}-")]
            assert len(live_sessions) == 1
            mine = state.new_temp_path("manifest")
            mine.write_text("{}")

            report = state.repair()

            assert not dead.exists()
            assert not (state.locks_dir / "session-999999-deadbeef.lock").exists()
            assert not old_stray.exists()
            assert sorted(report.temp_removed) == sorted([str(dead), str(old_stray)])
            assert live_sessions[0].exists() and any(live_sessions[0].iterdir())
            assert young_stray.exists()  # younger than this process: may be another's work in progress
            assert mine.exists()
        finally:
            release.set()
            live.join(10)
            _kill(live)
        assert live.exitcode == 0
        assert not live_sessions[0].exists()  # the live process cleaned up after itself


def test_open_repairs_leftovers_of_a_crash(tmp_path):
    path = tmp_path / "state"
    with StateRoot.open(path) as state:
        dead = _dead_session(state)
    with StateRoot.open(path) as state:
        assert not dead.exists()


def _register_image(state: StateRoot, image: int, chain: list[int], blobs: list[int], tag: str) -> None:
    """Rows and files of an image as the store writes them (blob/layer files first, then rows)."""
    db = state.db
    with db.transaction():
        for n in blobs:
            state.blob_path(digest(n)).write_bytes(b"b" * n)
            db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?, NULL, ?)", (digest(n), n, NOW))
        parent = None
        for n in chain:
            state.layer_path(digest(n)).mkdir(exist_ok=True)
            db.execute(
                "INSERT OR IGNORE INTO layers VALUES (?, ?, ?, NULL, 0, ?)",
                (digest(n), digest(n), parent, NOW),
            )
            parent = digest(n)
        db.execute(
            "INSERT INTO images VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', NULL, NULL, 0,"
            " 'linux', 'amd64', NULL, ?)",
            (digest(image), digest(blobs[0]), NOW),
        )
        for position, n in enumerate(chain):
            db.execute("INSERT INTO image_layers VALUES (?, ?, ?)", (digest(image), position, digest(n)))
        for n in blobs:
            db.execute("INSERT INTO image_blobs VALUES (?, ?)", (digest(image), digest(n)))
        db.execute("INSERT INTO tags VALUES (?, ?)", (tag, digest(image)))
        db.execute(
            "INSERT INTO repo_digests VALUES (?, ?)",
            (tag.split(":")[0] + "@" + digest(blobs[0]), digest(image)),
        )


def _ids(state: StateRoot, sql: str) -> set[str]:
    return {r[0] for r in state.db.query(sql)}


def test_repair_drops_rows_whose_layer_directory_is_gone(root):
    # base (layer 1) shared by two images; "web" stacks layers 2 and 3 on it, "tool" stacks layer 4.
    _register_image(root, 100, [1, 2, 3], [101, 102], "docker.io/library/web:1")
    _register_image(root, 200, [1, 4], [201, 202], "docker.io/library/tool:1")
    root.layer_path(digest(2)).rmdir()  # damaged from outside

    report = root.repair()

    assert report.images_removed == [digest(100)]
    assert report.layers_removed == [digest(3), digest(2)]  # the broken chain, children first
    assert _ids(root, "SELECT id FROM images") == {digest(200)}
    assert _ids(root, "SELECT chain_id FROM layers") == {digest(1), digest(4)}
    assert _ids(root, "SELECT name FROM tags") == {"docker.io/library/tool:1"}
    assert _ids(root, "SELECT image_id FROM image_layers") == {digest(200)}
    assert _ids(root, "SELECT image_id FROM repo_digests") == {digest(200)}
    assert root.db.scalar("PRAGMA foreign_key_check") is None
    assert not root.repair().changed  # idempotent


def test_repair_drops_rows_whose_blob_is_missing_or_truncated(root):
    _register_image(root, 100, [1], [101, 102], "docker.io/library/web:1")
    _register_image(root, 200, [1], [201, 202], "docker.io/library/tool:1")
    _register_image(root, 300, [1], [301], "docker.io/library/ok:1")
    root.blob_path(digest(102)).unlink()
    root.blob_path(digest(201)).write_bytes(b"short")  # truncated

    assert root.repair().blobs_removed == [digest(102)]  # the quick pass only notices missing files
    report = root.repair(thorough=True)

    assert report.blobs_removed == [digest(201)]
    assert report.images_removed == [digest(200)]
    assert _ids(root, "SELECT id FROM images") == {digest(300)}
    assert _ids(root, "SELECT digest FROM blobs") == {digest(101), digest(202), digest(301)}
    assert _ids(root, "SELECT chain_id FROM layers") == {digest(1)}  # still used by "ok"


def test_repair_of_a_healthy_store_changes_nothing(root):
    _register_image(root, 100, [1, 2], [101, 102], "docker.io/library/web:1")
    before = root.db.scalar("SELECT total_changes()")
    report = root.repair()
    assert not report.changed and not report.skipped
    assert root.db.scalar("SELECT total_changes()") == before


def test_repair_is_skipped_while_another_process_repairs(root, holder):
    holder(root.locks_dir / "repair.lock")
    dead = _dead_session(root)
    assert root.repair().skipped
    assert dead.exists()


def test_collect_orphans_removes_files_without_rows(root, holder):
    _register_image(root, 100, [1], [101], "docker.io/library/web:1")
    orphan_blob = root.blob_path(digest(999))
    orphan_blob.write_bytes(b"renamed, then crashed before commit")
    orphan_layer = root.layer_path(digest(998))
    (orphan_layer / "bin").mkdir(parents=True)
    (orphan_layer / "bin").chmod(0o555)

    _, release = holder(root.locks_dir / "publish.lock", shared=True)  # someone is publishing right now
    with pytest.raises(LockTimeout):
        root.collect_orphans(timeout=0.1)
    assert orphan_blob.exists()
    release.set()

    removed = root.collect_orphans(timeout=5)
    assert sorted(removed) == sorted([str(orphan_blob), str(orphan_layer)])
    assert not orphan_blob.exists() and not orphan_layer.exists()
    assert root.blob_path(digest(101)).exists() and root.layer_path(digest(1)).is_dir()


def test_a_version_1_database_migrates_to_the_pulls_table(tmp_path):
    path = tmp_path / "db.sqlite"
    Database(path, migrations=MIGRATIONS[:1]).close()  # what the first release wrote
    db = Database(path)
    assert db.schema_version() == SCHEMA_VERSION
    db.execute("INSERT INTO pulls (name, pulled) VALUES ('docker.io/library/nginx:latest', '2026-11-21')")
    assert db.scalar("SELECT count(*) FROM pulls") == 1
    db.close()


def test_a_runtime_transaction_commits_without_its_own_fsync_and_leaves_the_connection_durable(tmp_path):
    """durable=False: synchronous NORMAL for that commit only (FULL before, after, and after a failure);
    nested blocks keep the outer choice; the rows are committed all the same."""
    db = Database(tmp_path / "state.db")

    def synchronous(conn: sqlite3.Connection) -> int:
        return conn.execute("PRAGMA synchronous").fetchone()[0]

    full, normal = 2, 1
    conn = db.connection()
    assert synchronous(conn) == full
    with db.transaction(durable=False) as inner:
        assert synchronous(inner) == normal
        inner.execute("INSERT INTO meta(key, value) VALUES ('runtime', '1')")
        with db.transaction() as nested:  # a savepoint: the outer block decides
            assert synchronous(nested) == normal
    assert synchronous(conn) == full
    with pytest.raises(RuntimeError), db.transaction(durable=False):
        raise RuntimeError("undone")
    assert synchronous(conn) == full
    with db.transaction() as durable:
        assert synchronous(durable) == full
    other = Database(tmp_path / "state.db")
    assert other.scalar("SELECT value FROM meta WHERE key = 'runtime'") == "1"
    other.close()
    db.close()
