"""Session-wide guard: the whole run leaves no bridge of ours behind.

Each test's teardown checks the bridges of its own state root's rows; a bridge whose row is gone (made again
by a race after its network was removed) escapes those checks. Bridges present before the run (a stack the
README's main job left up, say) are not ours to judge.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

BRIDGE_PREFIX = "pyc-"  # engine.net.manager.BRIDGE_PREFIX, without importing the engine here


def _bridges() -> set[str]:
    return {n for n in os.listdir("/sys/class/net") if n.startswith(BRIDGE_PREFIX)}


@pytest.fixture(scope="session", autouse=True)
def no_stray_bridges() -> Iterator[None]:
    before = _bridges()
    yield
    if os.geteuid() != 0:
        return
    deadline = time.monotonic() + 5.0  # a supervisor's background work may still be finishing
    while (left := _bridges() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"the run left bridges behind: {sorted(left)}"
