"""Engine calls side by side, in threads (the calls block on the supervisor's socket and on sqlite; the
CPU work between them is small). One helper serves `up`'s generations and every lifecycle command.

Plain threads, not anyio: the first `anyio.run` of a process imports asyncio and anyio's backend, ~75 ms
of a 20-service `up -d` whose target is 0.6 s, for work that is only threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# Worker threads at most, whatever --parallel says. The supervisor serves starts and stops concurrently
# (listen backlog 1024), so a 20-service up runs every start at once; beyond 32, threads only add memory
# (unlimited: +24 MB of CLI RSS at 100 replicas) for no measured gain (bench/README.md).
MAX_THREADS = 32

T = TypeVar("T")


def thread_limit(parallel: int | None) -> int:
    """Engine calls in flight at once: --parallel (or COMPOSE_PARALLEL_LIMIT) when set, capped."""
    limit = parallel if parallel and parallel > 0 else MAX_THREADS
    return min(limit, MAX_THREADS)


class Halt:
    """Shared by the calls of one command: after the first failure, calls not yet begun are skipped
    (as a cancelled task group's would be); calls already running finish."""

    def __init__(self) -> None:
        self._failed = threading.Event()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def guard(self, work: Callable[[T], None]) -> Callable[[T], None]:
        """`work`, skipped once a call has failed, and marking the failure when it raises."""

        def guarded(item: T) -> None:
            if self._failed.is_set():
                return
            try:
                work(item)
            except BaseException:
                self._failed.set()
                raise

        return guarded


def run_all(items: Sequence[T], work: Callable[[T], None], limit: int | None = None) -> None:
    """`work(item)` for every item, at most `thread_limit(limit)` at once; every call finishes, then
    the first failure (in item order) is raised, so one bad container does not leave its siblings
    half-done. One item runs in the caller's thread.

    Plain threads pulling the next item: concurrent.futures would import logging with it, ~7 ms of
    every `up` and `down`."""
    if not items:
        return
    if len(items) == 1:
        work(items[0])
        return
    failures: list[BaseException | None] = [None] * len(items)
    claimed = threading.Lock()
    following = iter(range(len(items)))

    def worker() -> None:
        while True:
            with claimed:
                index = next(following, None)
            if index is None:
                return
            try:
                work(items[index])
            except BaseException as exc:  # handed to the caller below
                failures[index] = exc

    threads = [threading.Thread(target=worker) for _ in range(min(len(items), thread_limit(limit)))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for failure in failures:
        if failure is not None:
            raise failure


def limited(gate: threading.Semaphore, work: Callable[..., Any]) -> Callable[..., Any]:
    """`work` holding one of `gate`'s slots while it runs (a limit shared by nested `run_all`s)."""

    def held(*args: Any) -> Any:
        with gate:
            return work(*args)

    return held
