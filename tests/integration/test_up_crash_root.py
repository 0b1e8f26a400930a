"""Crash safety of `up -d` (issue 7): `kill -9` of the CLI early, in the middle and late in a 20-service
`up -d`, then `up -d` again must leave every service running exactly once, and `down` must then leave no
container, veth, mount or cgroup behind — every round.

The moment is found by polling the state root's database from the test (rows of the containers table,
or containers already running), so the kill lands while the executor is creating or starting. Rounds per
moment: PYCT_CRASH_ROUNDS (default 3).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_up_down_root import Project
from test_up_down_root import project as project

from engine.containers.cgroups import detect_layout
from engine.net.manager import VETH_PREFIX

pytestmark = [pytest.mark.root, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

SERVICES = 20
ROUNDS = int(os.environ.get("PYCT_CRASH_ROUNDS", "3"))
# (what to count, how many): the kill lands once that many containers exist / run
MOMENTS = {
    "network": ("networks", 1),
    "early": ("rows", 1),
    "middle": ("rows", 10),
    "late": ("running", 17),
}


def twenty() -> str:
    lines = ["services:"]
    for i in range(1, SERVICES + 1):
        lines += [
            f"  s{i:02d}:",
            "    image: pyc-test/busybox:1",
            "    command: SLEEPER",
            "    stop_grace_period: 2s",
        ]
    return "\n".join(lines) + "\n"


def count(root: Path, what: str) -> int:
    """Container rows (running ones, or networks) in the state root's database, read without the engine."""
    db = root / "pycompose.db"
    if not db.exists():
        return 0
    query = "SELECT count(*) FROM networks" if what == "networks" else "SELECT count(*) FROM containers"
    if what == "running":
        query += " WHERE state = 'running'"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as conn:
            return conn.execute(query).fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # table not there yet, or busy: look again


def newer(root: Path, since: str) -> int:
    """Containers created after `since` (RFC 3339 text, as the engine writes `created`)."""
    try:
        with sqlite3.connect(f"file:{root / 'pycompose.db'}?mode=ro", uri=True, timeout=0.2) as conn:
            return conn.execute("SELECT count(*) FROM containers WHERE created > ?", (since,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def killed_when(project: Project, args: list[str], reached) -> bool:  # type: ignore[no-untyped-def]
    """Run the CLI with `args`, kill -9 it once `reached()` is true; False when it finished first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "compose.cli.main", "--progress", "quiet", *args],
        cwd=project.directory,
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if reached():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
    return code == -signal.SIGKILL


def up_killed(project: Project, what: str, at: int) -> bool:
    """`up -d`, killed once `at` containers are counted."""
    return killed_when(project, ["up", "-d"], lambda: count(project.root, what) >= at)


def check_once_each(project: Project) -> None:
    containers = project.containers()
    expected = {f"{project.name}-s{i:02d}-1" for i in range(1, SERVICES + 1)}
    assert set(containers) == expected
    assert {r["state"] for r in containers.values()} == {"running"}
    numbers = [
        (r["labels"]["com.docker.compose.service"], r["labels"]["com.docker.compose.container-number"])
        for r in containers.values()
    ]
    assert len(numbers) == len(set(numbers)) == SERVICES


def settled_leftovers(project: Project, ids: set[str], timeout: float = 3.0) -> list[str]:
    """`leftovers` once they are gone, or what is still there after `timeout`: the supervisor deletes
    stopped containers' host veths in the background (4 at a time, ~25 ms each), after `down` returned."""
    deadline = time.monotonic() + timeout
    while (found := leftovers(project, ids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def leftovers(project: Project, ids: set[str]) -> list[str]:
    """Kernel objects of these containers: veths, mounts under the root, cgroups under the parent."""
    found = []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    prefixes = tuple(VETH_PREFIX + cid[:10] for cid in ids)
    found += [
        line.split(":")[1].strip()
        for line in links.splitlines()
        if prefixes and line.split(":")[1].strip().split("@")[0].startswith(prefixes)
    ]
    with open("/proc/self/mountinfo") as mounts:
        found += [f"mount {line.split()[4]}" for line in mounts if str(project.root) in line]
    layout = detect_layout()
    bases = [Path(p) for p in layout.v1.values()] + ([Path(layout.unified)] if layout.unified else [])
    for base in bases:
        parent = base / project.parent
        if parent.is_dir():
            found += [f"cgroup {d}" for d in parent.iterdir() if d.is_dir()]
    return found


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_kill_9_during_up_then_up_again_runs_each_service_once(project: Project, moment: str) -> None:
    project.write(twenty())
    what, at = MOMENTS[moment]
    killed = 0
    for _ in range(ROUNDS):
        killed += up_killed(project, what, at)
        project("up", "-d")
        check_once_each(project)
        ids = {r["id"] for r in project.containers().values()}
        project("down")
        assert project.containers() == {}
        assert project.networks() == set()
        assert settled_leftovers(project, ids) == []
    assert killed >= 1, "up -d always finished before the kill: the test proved nothing"


def test_kill_9_during_force_recreate_and_during_down(project: Project) -> None:
    """Half a recreate (old ones removed, some new ones made), then half a `down`: the next command
    finishes the job, one container per service, nothing left in the kernel."""
    from engine.containers.manager import now_rfc3339

    project.write(twenty())
    killed = 0
    for _ in range(ROUNDS):
        project("up", "-d")
        old = {r["id"] for r in project.containers().values()}
        since = now_rfc3339()
        killed += killed_when(
            project, ["up", "-d", "--force-recreate"], lambda since=since: newer(project.root, since) >= 8
        )
        project("up", "-d")
        check_once_each(project)
        ids = old | {r["id"] for r in project.containers().values()}
        killed += killed_when(project, ["down"], lambda: count(project.root, "rows") <= 12)
        project("down")
        assert project.containers() == {}
        assert project.networks() == set()
        assert settled_leftovers(project, ids) == []
    assert killed >= 2, "the commands finished before the kills: the test proved nothing"
