"""Which spawn worker a start goes to (engine/supervise/spawner.Spawners._pick), without processes: an
idle one, else a new one while fewer than MAX_WORKERS work, else the least loaded with room, else the
first to have room. A worker whose job has run longer than STUCK_AFTER gets no more jobs and stops
counting, so a start that hangs holds up at most the one job queued behind it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from engine.supervise import spawner


class FakeWorker(spawner._Worker):
    def __init__(self, jobs: int = 0, busy_for: float = 0.0) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no socket: never lost here
        loop = asyncio.get_running_loop()
        self.pending.extend(loop.create_future() for _ in range(jobs))
        self.since = time.monotonic() - busy_for


def _spawners(monkeypatch: pytest.MonkeyPatch, workers: list[Any]) -> tuple[spawner.Spawners, list[Any]]:
    """Spawners over `workers`; a fork appends a fresh idle FakeWorker (listed in the second value)."""

    async def ready() -> None:
        return None

    group = spawner.Spawners(None, fork_ready=ready, forked=lambda: None, reap=lambda _pid: None)  # type: ignore[arg-type]
    group._workers = list(workers)
    forked: list[Any] = []

    async def fork() -> spawner._Worker:
        worker = FakeWorker()
        forked.append(worker)
        return worker

    monkeypatch.setattr(group, "_fork", fork)
    return group, forked


def _give(worker: Any) -> None:
    """What start() does after its send."""
    if not worker.pending:
        worker.since = time.monotonic()
    worker.pending.append(asyncio.get_running_loop().create_future())


def test_an_idle_worker_first_then_a_new_one_then_the_least_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        busy, idle = FakeWorker(jobs=1), FakeWorker()
        group, forked = _spawners(monkeypatch, [busy, idle])
        assert await group._pick() is idle
        _give(idle)
        assert await group._pick() is forked[0]
        _give(forked[0])
        while len(group._workers) < spawner.MAX_WORKERS:
            _give(await group._pick())
        idle.pending.clear()  # answered
        assert await group._pick() is idle
        _give(idle)
        _give(idle)
        least = await group._pick()
        assert least is not idle and len(least.pending) == 1

    asyncio.run(main())


def test_with_every_worker_full_a_start_waits_for_room(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        workers = [FakeWorker(jobs=spawner.MAX_QUEUE) for _ in range(spawner.MAX_WORKERS)]
        group, forked = _spawners(monkeypatch, workers)
        pick = asyncio.ensure_future(group._pick())
        await asyncio.sleep(0.05)
        assert not pick.done() and forked == []
        workers[2].pending.popleft()  # what _on_replies does when an answer comes
        group._freed.set()  # type: ignore[union-attr]
        assert await asyncio.wait_for(pick, 1.0) is workers[2]

    asyncio.run(main())


def test_stuck_workers_get_no_job_and_stop_counting_up_to_twice_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def main() -> None:
        stuck = [FakeWorker(jobs=1, busy_for=spawner.STUCK_AFTER + 1) for _ in range(spawner.MAX_WORKERS)]
        group, forked = _spawners(monkeypatch, stuck)
        assert await group._pick() is forked[0]  # not queued behind a stuck one, though they have room
        for _ in range(spawner.MAX_WORKERS * spawner.MAX_QUEUE):  # fill the new ones
            _give(await group._pick())
        assert len(group._workers) == 2 * spawner.MAX_WORKERS and all(w not in stuck for w in forked)
        pick = asyncio.ensure_future(group._pick())  # at twice the limit, all full: it waits
        await asyncio.sleep(0.05)
        assert not pick.done() and all(len(w.pending) == spawner.MAX_QUEUE for w in forked)
        pick.cancel()

    asyncio.run(main())
