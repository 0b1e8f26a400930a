"""Concurrent starts and stops through one supervisor, and the client's connect retries.

The daemon awaits its spawn helpers in the loop, so requests overlap: many starts in parallel must each
get their own running container, and parallel stops must each see their exit. The client must ride out a
daemon that holds its lock but does not listen yet (ECONNREFUSED) instead of failing at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import test_supervise_root as base

from engine.containers.cgroups import remove_parent
from engine.state.locks import FileLock
from engine.supervise import client
from engine.supervise.protocol import SOCKET_NAME, SUPERVISOR_LOCK

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

Env = base.Env
env = base.env  # the fixtures: a state root with its own supervisor and cgroup parent, torn down after
layer = base.layer
wait_for = base.wait_for
SHELL = ("sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait")


def test_parallel_starts_and_stops_each_get_their_own_container(env: Env) -> None:
    ids = [env.create(*SHELL) for _ in range(12)]
    with ThreadPoolExecutor(12) as pool:
        pids = list(pool.map(lambda cid: int(client.request(env.root, "start", id=cid)["pid"]), ids))
    assert len(set(pids)) == 12
    for cid, pid in zip(ids, pids, strict=True):
        row = env.row(cid)
        assert row["state"] == "running" and row["pid"] == pid
        assert Path(f"/proc/{pid}").exists()
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda cid: client.request(env.root, "stop", id=cid, timeout=5), ids))
    assert [r["exit_code"] for r in replies] == [0] * 12  # the trap ran: SIGTERM, not the SIGKILL
    for cid, pid in zip(ids, pids, strict=True):
        assert env.row(cid)["state"] == "exited"
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), 5.0, f"pid {pid} gone")


def test_a_container_restarted_at_once_runs_again(env: Env) -> None:
    cid = env.create(*SHELL)
    first = int(client.request(env.root, "start", id=cid)["pid"])
    second = int(client.request(env.root, "restart", id=cid, timeout=5)["pid"])
    assert second != first and env.row(cid)["state"] == "running"


def test_client_retries_while_a_living_daemon_is_not_listening_yet(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir()
    (tmp_path / "run").mkdir()
    root = SimpleNamespace(path=tmp_path)
    lock = FileLock(tmp_path / "locks" / SUPERVISOR_LOCK).acquire(timeout=1)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(tmp_path / "run" / SOCKET_NAME))  # bound, not listening: connect is refused

        def listen_later() -> None:
            time.sleep(0.3)
            server.listen(1)
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b'{"ok": true, "pid": 1}\n')

        thread = threading.Thread(target=listen_later)
        thread.start()
        started = time.monotonic()
        reply = client.request(root, "ping")  # type: ignore[arg-type]
        thread.join(5)
        assert reply["ok"] and time.monotonic() - started >= 0.25
    finally:
        server.close()
        lock.release()


def test_client_fails_at_once_when_no_daemon_holds_the_lock(tmp_path: Path) -> None:
    (tmp_path / "locks").mkdir()
    (tmp_path / "run").mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(tmp_path / "run" / SOCKET_NAME))  # a stale socket file: nobody will listen
        started = time.monotonic()
        with pytest.raises(Exception, match="cannot reach the supervisor"):
            client.request(SimpleNamespace(path=tmp_path), "ping")  # type: ignore[arg-type]
        assert time.monotonic() - started < 1.0
    finally:
        server.close()


def test_threads_starting_on_a_fresh_root_launch_one_keeper(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A parallel `up` on a root with no supervisor: its first requests come from many threads at once;
    one of them launches the keeper, the others wait for it (each launched its own: ~1.3 s each)."""
    from engine.containers import manager as containers
    from engine.state.root import StateRoot
    from engine.supervise import launcher

    launches: list[float] = []
    real_launch = launcher.launch

    def counting_launch(*args, **kwargs):  # type: ignore[no-untyped-def]
        launches.append(time.monotonic())
        return real_launch(*args, **kwargs)

    monkeypatch.setattr(launcher, "launch", counting_launch)
    root = StateRoot.open(tmp_path / "root")
    parent = f"pyc-test-{os.getpid()}-launch"
    managers = [containers.ContainerManager(root, cgroup_parent=parent) for _ in range(8)]
    try:
        managers[0].warm_supervisor()
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda m: m._ask_supervisor("ping"), managers))
        assert len({r["pid"] for r in replies}) == 1
        assert len(launches) == 1, f"{len(launches)} keepers launched"
    finally:
        client.shutdown(root, timeout=10)
        remove_parent(parent)
