"""End-to-end fixtures: one state root for the session, released (and checked clean) at its end.

The helpers (Stack, brought_up, release_root) live in e2e_stacks.py, imported by name as the test files do.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stacks import BASE_IMAGE, CLI_TIMEOUT, PYCOMPOSE, ROOT, STACKS, cgroup_dirs, release_root


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here needs root and the real stacks: mark them so `-m "not e2e"` leaves them out."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.root)
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    """The CLI's wall times per stack: the figures a first run and a rerun are compared by."""
    for stack in STACKS:
        for command, seconds in stack.timings:
            terminalreporter.write_line(f"e2e {stack.sample}: pycompose {command}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def e2e_root() -> Iterator[Path]:
    """The session's state root with the Debian base image in it; afterwards nothing of it runs.

    One session at a time per root (an exclusive lock, waited for): the teardown removes everything in
    the root, which would stop the stacks of another session running beside this one."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "e2e-session.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ours = not cgroup_dirs()  # the default cgroup parent did not exist: the session made it
        try:
            yield from _bootstrapped(ROOT)
        finally:
            for path in cgroup_dirs() if ours else ():
                with contextlib.suppress(OSError):  # not empty: someone else's containers run there
                    path.rmdir()


def _bootstrapped(root: Path) -> Iterator[Path]:
    """The root with the base image (from the cached tar); released and checked clean afterwards."""
    try:
        result = subprocess.run(
            [str(PYCOMPOSE), "--root", str(root), "image", "bootstrap", BASE_IMAGE, "-q"],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
        assert result.returncode == 0, f"image bootstrap failed:\n{result.stderr}"
        yield root
    finally:
        release_root(root)
