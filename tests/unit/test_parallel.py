"""compose/run/parallel.py: every call finishes, the first failure wins, limits hold across nested pools,
and a failure skips what has not begun."""

from __future__ import annotations

import threading
import time

import pytest

from compose.run import parallel


class Peak:
    """How many calls ran at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_thread_limit_follows_parallel_up_to_the_cap() -> None:
    assert parallel.MAX_THREADS == 32  # a 20-service up starts every service at once
    assert parallel.thread_limit(None) == parallel.thread_limit(-1) == parallel.thread_limit(0) == 32
    assert parallel.thread_limit(1) == 1 and parallel.thread_limit(20) == 20
    assert parallel.thread_limit(500) == 32


def test_every_call_finishes_then_the_first_failure_in_item_order_is_raised() -> None:
    done: list[int] = []

    def work(n: int) -> None:
        if n in (1, 3):
            time.sleep(0.05 if n == 1 else 0)  # item 3 fails first in time, item 1 first in order
            raise ValueError(f"bad {n}")
        time.sleep(0.02)
        done.append(n)

    with pytest.raises(ValueError, match="bad 1"):
        parallel.run_all([0, 1, 2, 3, 4], work)
    assert sorted(done) == [0, 2, 4]


def test_calls_run_side_by_side_up_to_the_limit() -> None:
    peak = Peak()

    def work(_: int) -> None:
        with peak:
            time.sleep(0.03)

    parallel.run_all(list(range(8)), work, limit=3)
    assert peak.peak == 3
    peak.peak = 0
    parallel.run_all(list(range(6)), work)
    assert peak.peak == 6


def test_one_item_runs_in_the_callers_thread() -> None:
    seen: list[threading.Thread] = []
    parallel.run_all([1], lambda _: seen.append(threading.current_thread()))
    assert seen == [threading.current_thread()]


def test_a_gate_limits_calls_across_nested_pools() -> None:
    peak = Peak()
    gate = threading.BoundedSemaphore(2)

    def leaf(_: int) -> None:
        with peak:
            time.sleep(0.02)

    def branch(_: int) -> None:
        parallel.run_all([1, 2, 3], parallel.limited(gate, leaf))

    parallel.run_all([1, 2, 3], branch)
    assert peak.peak == 2


def test_after_a_failure_calls_not_begun_are_skipped() -> None:
    halt = parallel.Halt()
    ran: list[int] = []

    def work(n: int) -> None:
        ran.append(n)
        if n == 0:
            raise RuntimeError("first fails")

    with pytest.raises(RuntimeError, match="first fails"):
        parallel.run_all([0, 1, 2, 3], halt.guard(work), limit=1)  # one at a time: 0 fails, then none
    assert ran == [0] and halt.failed
