"""The state root under real concurrency and real crashes: several processes publishing blobs the way the
store does while others open (and so repair) the root and collect orphans, and a writer SIGKILLed in the
middle of a transaction and of staging. Needs neither root nor network, only processes and a filesystem.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import select
import signal
import threading
import time

import pytest

from engine.errors import LockTimeout
from engine.state import StateRoot

pytestmark = pytest.mark.slow

FORK = multiprocessing.get_context("fork")
NOW = "2026-11-02T10:00:00Z"


def _publish_blob(state: StateRoot, data: bytes) -> str:
    """The store's write protocol: stage, fsync, (publish lock) rename, fsync dir, commit the row."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    staged = state.new_temp_path("blob")
    with open(staged, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    with state.publishing(timeout=30):
        os.rename(staged, state.blob_path(digest))
        directory = os.open(state.blobs_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        with state.db.transaction():
            state.db.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, 'application/octet-stream', ?)",
                (digest, len(data), NOW),
            )
    return digest


def _writer(path: str, worker: int, count: int) -> None:
    with StateRoot.open(path) as state:
        for i in range(count):
            _publish_blob(state, f"worker {worker} blob {i} ".encode() * (i + 1))
            if i % 10 == 0:  # an abandoned staging file, as a failed download leaves
                state.new_temp_path("partial").write_bytes(b"half")


def _janitor(path: str, stop_read: int) -> None:
    """Open (repair), collect orphans, close, again and again: what many short CLI commands do."""
    while not select.select([stop_read], [], [], 0)[0]:
        with StateRoot.open(path) as state:
            try:
                state.collect_orphans(timeout=0)
            except LockTimeout:
                pass  # a writer is publishing: try again next round


def _join_all(processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.1, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(5)


def test_writers_race_repair_and_orphan_collection_without_losing_anything(tmp_path):
    path = tmp_path / "state"
    StateRoot.open(path).close()
    stop_read, stop_write = os.pipe()
    writers = [FORK.Process(target=_writer, args=(str(path), n, 60)) for n in range(3)]
    janitors = [FORK.Process(target=_janitor, args=(str(path), stop_read)) for _ in range(2)]
    try:
        for process in janitors + writers:
            process.start()
        _join_all(writers, 120)
        os.write(stop_write, b"x")
        _join_all(janitors, 30)
        assert [p.exitcode for p in writers + janitors] == [0] * 5
    finally:
        os.write(stop_write, b"x")
        _join_all(writers + janitors, 5)
        os.close(stop_read)
        os.close(stop_write)

    with StateRoot.open(path) as state:
        rows = {r["digest"]: r["size"] for r in state.db.query("SELECT digest, size FROM blobs")}
        assert len(rows) == 180
        for digest, size in rows.items():  # every committed row has its file, intact
            data = state.blob_path(digest).read_bytes()
            assert len(data) == size
            assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
        assert {p.name for p in state.blobs_dir.iterdir()} == {d[7:] for d in rows}
        assert state.db.scalar("PRAGMA integrity_check") == "ok"
        assert list(state.tmp_dir.iterdir()) == []  # abandoned partials went with their sessions


def _crash_mid_write(path: str, ready_write: int) -> None:
    state = StateRoot.open(path)
    staged = state.new_temp_path("layer")
    (staged / "usr" / "lib").mkdir(parents=True)
    (staged / "usr" / "lib" / "libc.so.6").write_bytes(b"\x7fELF" + b"\0" * 4096)
    held = state.lock("layer-" + "ab" * 32).acquire()
    with state.db.transaction():
        for n in range(50):
            state.db.execute("INSERT INTO blobs VALUES (?, 1, NULL, ?)", (f"sha256:{n:064x}", NOW))
        os.write(ready_write, b"x")
        time.sleep(60)  # killed here: the transaction is open, the staging dir and lock are held
    held.release()


def test_sigkill_mid_transaction_leaves_a_clean_store(tmp_path):
    path = tmp_path / "state"
    with StateRoot.open(path) as state:
        digest = _publish_blob(state, b"committed before the crash")
    ready_read, ready_write = os.pipe()
    victim = FORK.Process(target=_crash_mid_write, args=(str(path), ready_write))
    try:
        victim.start()
        assert select.select([ready_read], [], [], 20)[0], "writer did not reach its transaction"
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        assert victim.exitcode == -signal.SIGKILL
    finally:
        _join_all([victim], 1)
        os.close(ready_read)
        os.close(ready_write)

    begun = time.monotonic()
    with StateRoot.open(path, busy_timeout=5) as state:
        report = state.repair()  # open() already repaired; a second pass finds nothing
        assert not report.changed
        assert [r[0] for r in state.db.query("SELECT digest FROM blobs")] == [digest]
        assert list(state.tmp_dir.iterdir()) == []
        with state.db.transaction():  # the write lock died with the writer
            state.db.execute("INSERT INTO blobs VALUES (?, 1, NULL, ?)", ("sha256:" + "0" * 64, NOW))
        with state.lock("layer-" + "ab" * 32, timeout=0):  # so did its file lock
            pass
        assert state.db.scalar("PRAGMA integrity_check") == "ok"
    assert time.monotonic() - begun < 5


def _open_at_once(path: str, start_read: int) -> None:
    select.select([start_read], [], [], 10)
    with StateRoot.open(path) as state:
        assert state.db.schema_version() >= 1


def test_many_processes_creating_the_same_root_at_once(tmp_path):
    """The switch of a brand-new database to WAL can answer "locked" without calling the busy handler
    while other processes open it too (seen here: 5 of 120 openers failed before the retry)."""
    failures = 0
    for attempt in range(20):
        start_read, start_write = os.pipe()
        openers = [
            FORK.Process(target=_open_at_once, args=(str(tmp_path / f"state-{attempt}"), start_read))
            for _ in range(8)
        ]
        try:
            for opener in openers:
                opener.start()
            os.write(start_write, b"x")
            _join_all(openers, 30)
            failures += sum(opener.exitcode != 0 for opener in openers)
        finally:
            _join_all(openers, 1)
            os.close(start_read)
            os.close(start_write)
    assert failures == 0


def _hold_transaction(path: str, ready_w: int, release_r: int) -> None:
    """Child: take the write lock in a transaction, say so, hold it until told to commit."""
    from engine.state.db import Database

    db = Database(path)
    with db.transaction():
        db.execute("INSERT INTO meta(key, value) VALUES ('holder', 'x')")
        os.write(ready_w, b"1")
        select.select([release_r], [], [], 10)
    db.close()


def test_a_waiting_writer_goes_the_moment_the_other_process_commits_and_times_out_when_it_never_does(
    tmp_path,
):
    """The cross-process writer lock: the second writer neither polls at SQLite's 1-100 ms steps nor
    fails while the first holds the lock briefly; past the busy timeout it gets a StateError."""
    from engine.errors import StateError
    from engine.state.db import Database

    path = str(tmp_path / "state.db")
    Database(path).close()
    ready_r, ready_w = os.pipe()
    release_r, release_w = os.pipe()
    holder = FORK.Process(target=_hold_transaction, args=(path, ready_w, release_r))
    holder.start()
    try:
        assert select.select([ready_r], [], [], 10)[0], "the holder never took the lock"
        short = Database(path, busy_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(StateError, match="busy"), short.transaction():
            short.execute("INSERT INTO meta(key, value) VALUES ('short', 'x')")
        assert 0.2 <= time.monotonic() - started < 2
        waiting = Database(path)
        released_at: list[float] = []

        def release_soon() -> None:
            time.sleep(0.4)  # SQLite's busy handler would be retrying every 100 ms by now
            released_at.append(time.monotonic())
            os.write(release_w, b"1")

        releaser = threading.Thread(target=release_soon)
        releaser.start()
        with waiting.transaction():
            waiting.execute("INSERT INTO meta(key, value) VALUES ('waiter', 'x')")
        committed_at = time.monotonic()
        releaser.join()
        assert committed_at - released_at[0] < 0.02  # no busy-handler sleep (up to 100 ms) after the release
        rows = {
            r[0] for r in waiting.query("SELECT key FROM meta WHERE key IN ('holder', 'waiter', 'short')")
        }
        assert rows == {"holder", "waiter"}
        short.close()
        waiting.close()
    finally:
        os.write(release_w, b"1")
        holder.join(10)
        if holder.is_alive():
            holder.kill()
