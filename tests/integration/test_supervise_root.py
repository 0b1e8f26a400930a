"""The real keeper + supervisor with busybox containers: exits, logs, restarts, stop, re-adoption, health.

Each test has its own state root and a private cgroup parent `pyc-test-<pid>-<hex>`. Teardown shuts the
supervisor down (it SIGKILLs every container), then kills whatever still runs with this root in its
argv (keeper, daemon) or as a recorded container pid, removes the cgroups and container directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import records, spawn
from engine.containers.cgroups import Cgroup, remove_parent
from engine.containers.spec import ContainerSpec, Process
from engine.errors import EngineError
from engine.state.root import StateRoot
from engine.supervise import client

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "sha256:" + "ab" * 32
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Env:
    root: StateRoot
    parent: str
    layer: str

    def create(self, *args: str, **kw: Any) -> str:
        """Insert a container row (state created) running `args`; returns its id."""
        cid = "pyc-test-" + secrets.token_hex(8)
        spec = ContainerSpec(
            id=cid, name=cid, image_id=IMAGE, layer_dirs=(self.layer,), process=Process(args=args), **kw
        )
        db, made = self.root.db, _now()
        records.insert(
            db, id=cid, name=cid, image_id=IMAGE, spec_json=spec.to_json(), labels={}, created=made
        )
        return cid

    def row(self, cid: str) -> dict[str, Any]:
        row = records.get(self.root.db, cid)
        assert row is not None
        return row

    def log(self, cid: str) -> list[tuple[str, str]]:
        path = self.row(cid)["log_path"]
        lines = Path(path).read_text().splitlines() if path and Path(path).exists() else []
        return [(r["stream"], r["log"]) for r in map(json.loads, lines)]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _our_processes(root: Path) -> list[int]:
    """Keeper/daemon processes of this root (their argv names it: nobody else's match)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if str(root).encode() in argv and b"engine.supervise" in b" ".join(argv):
                    found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def layer() -> str:
    return str(busybox_rootfs())


@pytest.fixture
def env(tmp_path: Path, layer: str) -> Iterator[Env]:
    root = StateRoot.open(tmp_path / "root")
    parent = f"pyc-test-{os.getpid()}-{secrets.token_hex(3)}"
    root.db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', 0, 'linux', 'amd64', ?)",
        (IMAGE, IMAGE, _now()),
    )
    try:
        client.ensure_supervisor(root, cgroup_parent=parent)
        yield Env(root, parent, layer)
    finally:
        _teardown(root, parent)


def _teardown(root: StateRoot, parent: str) -> None:
    try:
        with contextlib.suppress(EngineError):
            client.shutdown(root, timeout=10)
    finally:
        for pid in _our_processes(root.path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        rows = records.list_all(root.db)
        for row in rows:
            if row["pid"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(row["pid"], signal.SIGKILL)
            with contextlib.suppress(EngineError):
                group = Cgroup.open(row["id"], parent=parent)
                group.kill_all(signal.SIGKILL, timeout=2)
                group.remove()
            spawn.cleanup(root, row["id"])
        remove_parent(parent)
        root.close()


def start(env: Env, cid: str) -> int:
    return int(client.request(env.root, "start", id=cid)["pid"])


def test_container_outlives_the_client_and_its_exit_and_logs_are_recorded(env: Env) -> None:
    cid = env.create("sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2; sleep 1.5; exit 3")
    code = (
        "import sys; from engine.state.root import StateRoot; from engine.supervise import client\n"
        f"r = StateRoot.open({str(env.root.path)!r}, repair=False)\n"
        f"client.ensure_supervisor(r, cgroup_parent={env.parent!r}); client.request(r, 'start', id={cid!r})\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=30)
    row = env.row(cid)
    assert row["state"] == "running" and _alive(row["pid"])
    wait_for(lambda: env.row(cid)["state"] == "exited", what="exit")
    row = env.row(cid)
    assert row["exit_code"] == 3 and not row["oom_killed"] and row["finished_at"]
    got = env.log(cid)
    assert [line for s, line in got if s == "stdout"] == ["out1\n", "out2\n"]
    assert [line for s, line in got if s == "stderr"] == ["err1\n", "err2\n"]


def test_on_failure_2_restarts_twice_then_gives_up(env: Env) -> None:
    cid = env.create("sh", "-c", "echo run; exit 1", restart="on-failure:2")
    start(env, cid)

    def settled() -> bool:
        status = client.request(env.root, "status", id=cid)["containers"][0]
        return status["state"] == "exited" and not status["watched"]

    wait_for(settled, what="on-failure to give up")
    row = env.row(cid)
    assert (row["restart_count"], row["exit_code"]) == (2, 1)
    assert [line for _, line in env.log(cid)] == ["run\n"] * 3


def test_always_restarts_with_growing_backoff(env: Env) -> None:
    cid = env.create("sh", "-c", "exit 0", restart="always")
    began = time.monotonic()
    start(env, cid)
    wait_for(lambda: env.row(cid)["restart_count"] >= 4, what="4 restarts")
    elapsed = time.monotonic() - began
    assert elapsed >= 0.1 + 0.2 + 0.4  # the first three delays of Docker's back-off
    client.request(env.root, "stop", id=cid)
    wait_for(lambda: env.row(cid)["state"] == "exited", what="stopped")
    count = env.row(cid)["restart_count"]
    time.sleep(1.0)
    assert env.row(cid)["restart_count"] == count and env.row(cid)["state"] == "exited"


def test_stop_sends_stop_signal_then_sigkill_after_the_grace_period(env: Env) -> None:
    script = 'trap "echo got-term" TERM; while true; do sleep 0.1; done'
    cid = env.create("sh", "-c", script, stop_grace_period=1.0, restart="always")
    start(env, cid)
    time.sleep(0.3)
    began = time.monotonic()
    reply = client.request(env.root, "stop", id=cid)
    took = time.monotonic() - began
    assert reply["exit_code"] == 137 and 1.0 <= took < 5.0
    row = env.row(cid)
    assert (row["state"], row["exit_code"], row["stopped_by_user"]) == ("exited", 137, True)
    assert ("stdout", "got-term\n") in env.log(cid)


def test_stop_signal_is_used(env: Env) -> None:
    cid = env.create("sh", "-c", 'trap "exit 7" USR1; while true; do sleep 0.1; done', stop_signal="SIGUSR1")
    start(env, cid)
    time.sleep(0.3)
    began = time.monotonic()
    assert client.request(env.root, "stop", id=cid)["exit_code"] == 7
    assert time.monotonic() - began < 3.0


def test_daemon_sigkill_spares_the_container_and_the_new_daemon_readopts_it(env: Env) -> None:
    cid = env.create("sh", "-c", "echo one; sleep 1.5; echo two; echo three >&2; exit 5")
    pid = start(env, cid)
    daemon = client.request(env.root, "ping")["pid"]
    os.kill(daemon, signal.SIGKILL)
    assert _alive(pid)
    new_daemon = lambda: client.ping(env.root) and client.request(env.root, "ping")["pid"] != daemon  # noqa: E731
    wait_for(new_daemon, what="new daemon")
    assert _alive(pid) and env.row(cid)["state"] == "running"
    wait_for(lambda: env.row(cid)["state"] == "exited", what="exit after re-adoption")
    assert env.row(cid)["exit_code"] == 5
    assert env.log(cid) == [("stdout", "one\n"), ("stdout", "two\n"), ("stderr", "three\n")]


def test_healthcheck_goes_starting_then_healthy(env: Env) -> None:
    check = (("CMD-SHELL", "test -f /tmp/ready"), 0.3, 2.0, None, None, 2)
    cid = env.create("sh", "-c", "sleep 0.5; touch /tmp/ready; sleep 60", healthcheck=check)
    start(env, cid)
    assert json.loads(env.row(cid)["health"])["Status"] == "starting"
    wait_for(lambda: json.loads(env.row(cid)["health"])["Status"] == "healthy", what="healthy")
    log = json.loads(env.row(cid)["health"])["Log"]
    assert log[-1]["ExitCode"] == 0


def test_failing_healthcheck_turns_unhealthy_after_retries(env: Env) -> None:
    check = (("CMD", "false"), 0.2, 2.0, None, None, 3)
    cid = env.create("sleep", "60", healthcheck=check)
    start(env, cid)
    health = wait_for(lambda: json.loads(env.row(cid)["health"]), what="health")
    wait_for(lambda: json.loads(env.row(cid)["health"])["Status"] == "unhealthy", what="unhealthy")
    health = json.loads(env.row(cid)["health"])
    assert health["FailingStreak"] == 3 and all(r["ExitCode"] == 1 for r in health["Log"])
