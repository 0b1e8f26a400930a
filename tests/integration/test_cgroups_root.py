"""engine.containers.cgroups on the real kernel: limits are enforced, freeze/kill work, nothing is left.

Every cgroup lives under a parent named `pyc-test-<pid>-<random>`; every process a test starts is killed
and reaped, and every cgroup directory removed, even when the test fails.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.containers.cgroups import Cgroup, Layout, detect_layout, remove_parent
from engine.containers.spec import Resources
from engine.errors import CgroupError, UnsupportedSetting

pytestmark = pytest.mark.root

MIB = 1 << 20


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def parent() -> Iterator[str]:
    """A private parent cgroup, removed in every hierarchy afterwards."""
    name = f"pyc-test-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_parent(name)
        left = [p for p in _roots(detect_layout()) if Path(p, name).exists()]
        assert not left, f"parent cgroup left behind in {left}"


@pytest.fixture
def make(parent: str) -> Iterator:
    """Factory for cgroups under `parent`; each is emptied (SIGKILL) and removed at teardown."""
    made: list[Cgroup] = []

    def factory(resources: Resources | None = None, layout: Layout | None = None) -> Cgroup:
        group = Cgroup.create(f"pyc-test-{secrets.token_hex(4)}", parent=parent, layout=layout)
        made.append(group)
        if resources is not None:
            group.apply(resources)
        return group

    try:
        yield factory
    finally:
        for group in made:
            try:
                if group.pids():
                    group.kill_all(signal.SIGKILL)
            finally:
                group.remove()


def _roots(layout: Layout) -> list[str]:
    return sorted(set(layout.v1.values()) | ({layout.unified} if layout.unified else set()))


@contextmanager
def child(code: str, group: Cgroup | None = None) -> Iterator[subprocess.Popen]:
    """A Python child that waits for one byte on stdin before running `code` (so it starts inside
    `group`); killed and reaped on exit."""
    script = f"import sys\nsys.stdin.read(1)\n{code}"
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        if group is not None:
            group.add(proc.pid)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def go(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"x")
    proc.stdin.flush()


# -- layout ---------------------------------------------------------------------------------------


def test_this_host_is_detected() -> None:
    layout = detect_layout()
    v2_only = Path("/sys/fs/cgroup/cgroup.controllers").exists()
    assert layout.mode == ("v2" if v2_only else "hybrid" if layout.unified else "v1")


# -- limits ---------------------------------------------------------------------------------------


def test_memory_hog_is_oom_killed(make) -> None:
    group = make(Resources(memory=32 * MIB, memory_swap=32 * MIB))
    assert not group.oom_killed()
    with child("data = b'x' * (100 << 20)\nprint('survived')", group) as proc:
        go(proc)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, out
    assert group.oom_killed()


def test_pids_limit_stops_a_fork_loop(make) -> None:
    group = make(Resources(pids_limit=8))
    code = (
        "import os, time\n"
        "kids = []\n"
        "try:\n"
        "    for _ in range(50):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(60)\n"
        "            os._exit(0)\n"
        "        kids.append(pid)\n"
        "except OSError as exc:\n"
        "    print(len(kids), exc.errno, flush=True)\n"
        "time.sleep(60)\n"
    )
    with child(code, group) as proc:
        go(proc)
        assert proc.stdout is not None
        forked, err = proc.stdout.readline().split()
        assert int(forked) == 7 and int(err) == 11  # 8 tasks in all, then EAGAIN
        assert group.stats().pids_current == 8
        group.kill_all(signal.SIGKILL)
        assert group.pids() == []


def test_half_a_cpu_gives_about_half_a_core(make) -> None:
    group = make(Resources(cpus=0.5))
    code = (
        "import time\n"
        "start = time.monotonic()\n"
        "while time.monotonic() - start < 1.0:\n"
        "    pass\n"
        "print(time.process_time(), flush=True)\n"
    )
    with child(code, group) as proc:
        before = group.stats().cpu_usage_ns or 0
        go(proc)
        out, _ = proc.communicate(timeout=10)
    used = (group.stats().cpu_usage_ns or 0) - before
    assert 0.2e9 < used < 0.7e9, (used, out)  # unlimited it would be ~1.0 s


def test_stats_are_sane(make) -> None:
    group = make(Resources(memory=256 * MIB, pids_limit=50))
    code = "import time\ndata = b'x' * (20 << 20)\nprint('ok', flush=True)\ntime.sleep(60)\n"
    with child(code, group) as proc:
        go(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ok"
        stats = group.stats()
        assert stats.cpu_usage_ns and stats.cpu_usage_ns > 0
        assert stats.memory_usage is not None and 20 * MIB <= stats.memory_usage <= 256 * MIB
        assert stats.memory_limit == 256 * MIB
        assert (stats.pids_current, stats.pids_limit) == (1, 50)
        assert group.pids() == [proc.pid]


def test_limits_can_be_raised_and_lowered_again(make) -> None:
    """v1 refuses memory.limit > memsw at any moment: both orders must work on an existing cgroup."""
    group = make(Resources(memory=32 * MIB, memory_swap=32 * MIB))
    group.apply(Resources(memory=128 * MIB, memory_swap=256 * MIB))
    assert group.stats().memory_limit == 128 * MIB
    group.apply(Resources(memory=16 * MIB, memory_swap=16 * MIB))
    assert group.stats().memory_limit == 16 * MIB


def test_unsupported_setting_is_named(make) -> None:
    """On this host v2 has no controllers: a v2-only view must refuse a memory limit, not ignore it."""
    layout = detect_layout()
    if layout.mode != "hybrid":
        pytest.skip("hybrid host only")
    group = make(layout=Layout("v2", {}, layout.unified))
    with pytest.raises(UnsupportedSetting) as info:
        group.apply(Resources(memory=64 * MIB))
    assert info.value.subject == "memory"


# -- freeze, kill, remove ---------------------------------------------------------------------------

COUNTER = (
    "import os, time\n"
    "fd = os.open({path!r}, os.O_WRONLY | os.O_CREAT)\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    os.pwrite(fd, str(n).encode().ljust(20), 0)\n"
    "    time.sleep(0.005)\n"
)


def _count(path: Path) -> int:
    text = path.read_text().strip()
    return int(text) if text else 0


def _check_freeze(group: Cgroup, tmp_path: Path) -> None:
    path = tmp_path / "counter"
    with child(COUNTER.format(path=str(path)), group) as proc:
        go(proc)
        deadline = time.monotonic() + 5
        while (not path.exists() or _count(path) < 3) and time.monotonic() < deadline:
            time.sleep(0.01)
        group.freeze()
        frozen = _count(path)
        time.sleep(0.3)
        assert _count(path) == frozen
        group.thaw()
        time.sleep(0.3)
        assert _count(path) > frozen + 5
        group.kill_all(signal.SIGKILL)
        proc.wait(timeout=5)


def test_freeze_stops_a_counter_and_thaw_resumes_it(make, tmp_path: Path) -> None:
    _check_freeze(make(), tmp_path)


def test_v2_freezer_on_the_unified_mount(make, tmp_path: Path) -> None:
    layout = detect_layout()
    if layout.unified is None:
        pytest.skip("no cgroup2 mount")
    _check_freeze(make(layout=Layout("v2", {}, layout.unified)), tmp_path)


def test_kill_all_without_cgroup_kill_loops_until_empty(make) -> None:
    """Pure-v1 path: freeze, signal every pid, thaw, repeat — children included."""
    layout = detect_layout()
    group = make(layout=Layout("v1", layout.v1, None))
    code = "import os, time\nfor _ in range(5):\n    os.fork()\ntime.sleep(60)\n"  # 32 processes
    with child(code, group) as proc:
        go(proc)
        deadline = time.monotonic() + 5
        while len(group.pids()) < 32 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group.pids()) == 32
        group.kill_all(signal.SIGKILL)
        assert group.pids() == []


def test_kill_all_with_a_catchable_signal_signals_each(make) -> None:
    group = make()
    with child("import time\ntime.sleep(60)\n", group) as proc:
        group.kill_all(signal.SIGTERM)
        assert proc.wait(timeout=5) == -signal.SIGTERM


def test_remove_leaves_nothing_and_refuses_while_busy(make, parent: str) -> None:
    group = make()
    directories = group.directories()
    assert directories and all(d.is_dir() for d in directories)
    assert Cgroup.open(group.name, parent=parent).directories() == directories
    with child("import time\ntime.sleep(60)\n", group):
        with pytest.raises(CgroupError, match="still has processes"):
            group.remove(timeout=0.1)
        group.kill_all(signal.SIGKILL)
    group.remove()
    assert not any(d.exists() for d in directories)
    with pytest.raises(CgroupError, match="no such cgroup"):
        Cgroup.open(group.name, parent=parent)


def test_cost_of_create_apply_add_remove(parent: str) -> None:
    """Median of 50 create+apply+add+remove (process start and reap not counted)."""
    resources = Resources(memory=64 * MIB, cpus=0.5, pids_limit=100)
    samples = []
    for i in range(50):
        proc = subprocess.Popen(["sleep", "60"])
        group = None
        try:
            start = time.perf_counter()
            group = Cgroup.create(f"pyc-test-bench-{i}", parent=parent)
            group.apply(resources)
            group.add(proc.pid)
            setup = time.perf_counter() - start
            proc.kill()
            proc.wait()
            start = time.perf_counter()
            group.remove()
            samples.append(setup + time.perf_counter() - start)
            group = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if group is not None:
                group.remove()
    median = statistics.median(samples) * 1000
    print(f"\ncgroup create+apply+add+remove: median {median:.2f} ms, max {max(samples) * 1000:.2f} ms")
    assert median < 100
