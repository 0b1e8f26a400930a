"""The real keeper + supervisor with busybox containers: exits, logs, restarts, stop, re-adoption, health.

Each test has its own state root and a private cgroup parent `pyc-test-<pid>-<hex>`. Teardown shuts the
supervisor down (it SIGKILLs every container), then kills whatever still runs with this root in its
argv (keeper, daemon) or as a recorded container pid, removes the cgroups and container directories.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
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
from engine.supervise import client, spawner

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
    # The count is bumped just before the restart's spawn: this stop usually lands while the helper
    # starts the container again (it used to be left running there, unwatched: 1 run in 3).
    client.request(env.root, "stop", id=cid)
    wait_for(lambda: env.row(cid)["state"] == "exited", what="stopped")
    count = env.row(cid)["restart_count"]
    time.sleep(1.0)
    assert env.row(cid)["restart_count"] == count and env.row(cid)["state"] == "exited"


def test_sigkill_answers_once_the_exit_is_recorded(env: Env) -> None:
    """As `docker kill`: the request returns with the container already exited (kill, then ps)."""
    cid = env.create("sh", "-c", "sleep 100")
    start(env, cid)
    client.request(env.root, "kill", id=cid, signal="SIGKILL")
    row = env.row(cid)
    assert (row["state"], row["exit_code"]) == ("exited", 137)


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


# -- robustness: both processes dead, vanished containers, ops, socket access -------------------------


def kill_supervision(env: Env) -> None:
    """SIGKILL keeper and daemon of this root (keeper first, so it cannot restart the daemon)."""
    procs = sorted(_our_processes(env.root.path), key=lambda pid: not _is_keeper(pid))
    assert procs, "no keeper/daemon found"
    for pid in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(_alive(pid) for pid in procs), what="keeper and daemon gone")
    assert not client.ping(env.root)


def _is_keeper(pid: int) -> bool:
    """The keeper, not the daemon (whose argv has --keeper-fd)."""
    try:
        return b"engine.supervise.keeper" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_keeper_and_daemon_sigkilled_the_container_is_readopted_with_its_logs(env: Env) -> None:
    script = "echo before; sleep 2; echo after1; echo after2 >&2; sleep 0.5; echo after3; exit 4"
    cid = env.create("sh", "-c", script)
    pid = start(env, cid)
    wait_for(lambda: ("stdout", "before\n") in env.log(cid), what="first line")
    kill_supervision(env)
    assert _alive(pid) and env.row(cid)["state"] == "running"
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    status = client.request(env.root, "status", id=cid)["containers"][0]
    assert status["watched"] and status["state"] == "running" and status["pid"] == pid
    wait_for(lambda: env.row(cid)["state"] == "exited", what="exit after re-adoption")
    row = env.row(cid)
    assert (row["exit_code"], row["oom_killed"]) == (255, False)  # not our child: status unknown
    got = env.log(cid)
    assert [line for s, line in got if s == "stdout"] == ["before\n", "after1\n", "after3\n"]
    assert [line for s, line in got if s == "stderr"] == ["after2\n"]


def test_with_keeper_and_daemon_dead_a_vanished_container_lists_as_exited(env: Env) -> None:
    """Nobody records exits then: listing shows a container whose PID 1 is gone as the next supervisor
    will record it (exited 255), without writing; the living one stays running."""
    from engine.containers.manager import ContainerManager

    gone, alive = env.create("sleep", "60"), env.create("sleep", "60")
    gone_pid, alive_pid = start(env, gone), start(env, alive)
    kill_supervision(env)
    os.kill(gone_pid, signal.SIGKILL)
    wait_for(lambda: not _alive(gone_pid), what="the container to die")
    listed = {r["id"]: r for r in ContainerManager(env.root, cgroup_parent=env.parent).list(all=True)}
    assert (listed[gone]["state"], listed[gone]["exit_code"], listed[gone]["pid"]) == ("exited", 255, None)
    assert (listed[alive]["state"], listed[alive]["pid"]) == ("running", alive_pid)
    running = {r["id"] for r in ContainerManager(env.root, cgroup_parent=env.parent).list()}
    assert running == {alive}
    assert env.row(gone)["state"] == "running"  # only the view: the next supervisor writes the exit
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    wait_for(lambda: env.row(gone)["state"] == "exited", what="the exit recorded at re-adoption")
    assert env.row(gone)["exit_code"] == 255 and env.row(alive)["state"] == "running"


def test_readopted_orphan_restarts_under_its_policy_and_stops(env: Env) -> None:
    cid = env.create("sleep", "60", restart="always")
    pid = start(env, cid)
    kill_supervision(env)
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    os.kill(pid, signal.SIGKILL)  # not the user: the policy restarts it
    wait_for(
        lambda: env.row(cid)["restart_count"] == 1 and env.row(cid)["state"] == "running", what="restart"
    )
    new_pid = env.row(cid)["pid"]
    assert new_pid != pid and _alive(new_pid)
    assert client.request(env.root, "stop", id=cid, timeout=1)["exit_code"] == 137  # a keeper child again


def test_rows_running_without_a_process_are_exited_255_and_boot_policies_apply(env: Env) -> None:
    kill_supervision(env)
    finished = subprocess.Popen(["true"])
    finished.wait()
    gone = finished.pid  # reaped: gone (and, if reused, in no container's cgroup)
    ids = {
        "always": env.create("sleep", "60", restart="always"),
        "unless": env.create("sleep", "60", restart="unless-stopped"),
        "stopped": env.create("sleep", "60", restart="unless-stopped"),
        "no": env.create("sleep", "60"),
    }
    for cid in ids.values():
        records.record_started(env.root.db, cid, gone, _now())
    records.set_stopped_by_user(env.root.db, ids["stopped"], True)
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    for key in ("always", "unless"):
        cid = ids[key]
        wait_for(lambda cid=cid: env.row(cid)["state"] == "running", what=f"{key} restarted")
        assert env.row(cid)["restart_count"] == 1 and _alive(env.row(cid)["pid"])
    for key in ("stopped", "no"):
        cid = ids[key]
        wait_for(lambda cid=cid: env.row(cid)["state"] == "exited", what=f"{key} exited")
        row = env.row(cid)
        assert (row["exit_code"], row["pid"], row["restart_count"]) == (255, None, 0)


def test_kill_with_sigkill_is_a_user_stop_and_other_signals_are_not(env: Env) -> None:
    script = 'trap "echo hup" HUP; while true; do sleep 0.1; done'
    cid = env.create("sh", "-c", script, restart="always")
    pid = start(env, cid)
    time.sleep(0.3)
    client.kill(env.root, cid, "SIGHUP")
    wait_for(lambda: ("stdout", "hup\n") in env.log(cid), what="HUP handled")
    assert env.row(cid)["pid"] == pid and not env.row(cid)["stopped_by_user"]
    client.request(env.root, "kill", id=cid)
    wait_for(lambda: env.row(cid)["state"] == "exited", what="killed")
    time.sleep(0.5)
    row = env.row(cid)
    assert (row["state"], row["exit_code"], row["stopped_by_user"], row["restart_count"]) == (
        "exited",
        137,
        True,
        0,
    )


def test_restart_op_gives_a_new_process_and_start_resets_the_restart_count(env: Env) -> None:
    cid = env.create("sleep", "60", restart="always", stop_grace_period=0.5)
    pid = start(env, cid)
    os.kill(pid, signal.SIGKILL)  # a crash: restarted by the policy, counted
    wait_for(
        lambda: env.row(cid)["restart_count"] == 1 and env.row(cid)["state"] == "running", what="restart"
    )
    client.request(env.root, "stop", id=cid, timeout=0.5)
    assert env.row(cid)["stopped_by_user"] and env.row(cid)["restart_count"] == 1
    start(env, cid)
    row = env.row(cid)
    assert (row["state"], row["stopped_by_user"], row["restart_count"]) == ("running", False, 0)
    old = row["pid"]
    new = int(client.request(env.root, "restart", id=cid, timeout=0.5)["pid"])
    assert new != old and _alive(new) and not _alive(old)
    row = env.row(cid)
    assert (row["state"], row["pid"], row["restart_count"]) == ("running", new, 0)


def test_pause_freezes_without_being_taken_for_dead_and_unpause_resumes(env: Env) -> None:
    cid = env.create("sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done")
    pid = start(env, cid)
    wait_for(lambda: len(env.log(cid)) >= 2, what="output")
    client.pause(env.root, cid)
    assert env.row(cid)["state"] == "paused"
    time.sleep(0.3)
    count = len(env.log(cid))
    time.sleep(1.0)
    assert len(env.log(cid)) == count  # frozen: nothing written
    status = client.request(env.root, "status", id=cid)["containers"][0]
    assert status["state"] == "paused" and status["watched"] and _alive(pid)
    client.unpause(env.root, cid)
    assert env.row(cid)["state"] == "running"
    wait_for(lambda: len(env.log(cid)) > count + 1, what="output after unpause")
    client.pause(env.root, cid)
    reply = client.request(env.root, "stop", id=cid, timeout=2)  # a paused container stops too
    assert reply["state"] == "exited" and env.row(cid)["state"] == "exited"
    lines = [int(line) for _, line in env.log(cid)]
    assert lines == list(range(1, len(lines) + 1))  # nothing lost or repeated across the freeze


def test_socket_refuses_peers_that_are_neither_root_nor_the_owner(env: Env) -> None:
    run = env.root.path / "run"
    sock = run / "supervisor.sock"
    modes = (run.stat().st_mode & 0o7777, sock.stat().st_mode & 0o7777)
    code = (  # cwd is run/ (entered as root): the relative connect needs no search of its parents
        "import os, socket\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX); s.connect('supervisor.sock')\n"
        "s.sendall(b'{\"op\": \"ping\"}\\n'); print(s.makefile().readline(), end='')\n"
    )
    try:
        os.chmod(run, 0o711)
        os.chmod(sock, 0o666)  # let the other user reach the socket: the daemon must still refuse
        out = subprocess.run([sys.executable, "-c", code], cwd=run, capture_output=True, timeout=10)
    finally:
        os.chmod(run, modes[0])
        os.chmod(sock, modes[1])
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert not reply["ok"] and "permission" in reply["error"]
    assert client.request(env.root, "ping")["ok"]  # root still gets in


def test_keeper_sigkilled_alone_the_daemon_still_records_the_exit(env: Env) -> None:
    cid = env.create("sh", "-c", "sleep 1; echo late; exit 9")
    pid = start(env, cid)
    keepers = [p for p in _our_processes(env.root.path) if _is_keeper(p)]
    assert len(keepers) == 1
    os.kill(keepers[0], signal.SIGKILL)
    wait_for(lambda: not _alive(keepers[0]), what="keeper gone")
    assert _alive(pid)
    wait_for(lambda: client.ping(env.root), what="a daemon again (handover to a new keeper)")
    wait_for(lambda: env.row(cid)["state"] == "exited", what="exit seen through the pidfd")
    assert env.row(cid)["exit_code"] == 255  # reaped by init: the status is lost
    assert env.log(cid) == [("stdout", "late\n")]


# -- spawn workers (engine/supervise/spawner.py) -------------------------------------------------------
# Starts fork no per-start helper: at most MAX_WORKERS workers, each the keeper's child, start the
# containers as the keeper's children. A worker keeps nothing of the daemon's open, dies with its
# daemon, and a killed worker costs only what it was doing: the next start makes a new one.


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _argv_has(pid: int, word: bytes) -> bool:
    return word in Path(f"/proc/{pid}/cmdline").read_bytes()


def _keeper(env: Env) -> int:
    return next(pid for pid in _our_processes(env.root.path) if _argv_has(pid, b"engine.supervise.keeper"))


def _workers(env: Env) -> list[int]:
    return [pid for pid in _our_processes(env.root.path) if _alive(pid) and _comm(pid) == "pyc-spawner"]


def _fd_targets(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
    return out


def test_parallel_starts_give_the_keeper_children_through_at_most_two_workers(env: Env) -> None:
    ids = [env.create("sleep", "60") for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        pids = list(pool.map(lambda cid: start(env, cid), ids))
    keeper = _keeper(env)
    assert all(_ppid(pid) == keeper for pid in pids)  # from their first instruction: CLONE_PARENT
    workers = _workers(env)
    assert 1 <= len(workers) <= spawner.MAX_WORKERS
    assert all(_ppid(pid) == keeper for pid in workers)
    for worker in workers:  # nothing of the daemon's: no lock, database, log pipe or listening socket
        kept = [target for fd, target in _fd_targets(worker).items() if fd > 2]
        assert sorted("socket" if t.startswith("socket:") else t for t in kept) == ["/dev/null", "socket"], (
            kept
        )
    assert all(env.row(cid)["state"] == "running" for cid in ids)


def test_a_killed_worker_is_replaced_at_the_next_start(env: Env) -> None:
    first = start(env, env.create("sleep", "60"))
    old = _workers(env)
    assert old
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not any(_alive(pid) for pid in old), what="the workers to die")
    cid = env.create("sh", "-c", "echo again; sleep 60")
    pid = start(env, cid)
    assert _alive(first) and _alive(pid) and env.row(cid)["state"] == "running"
    new = _workers(env)
    assert new and not set(new) & set(old)
    wait_for(lambda: ("stdout", "again\n") in env.log(cid), what="the new container's output")


def test_a_start_whose_worker_dies_fails_cleanly_and_the_next_one_works(env: Env) -> None:
    """A worker killed in the middle of a start (here: while the container's PID 1 cannot be made
    because the worker is stopped, then killed) fails that start only."""
    start(env, env.create("sleep", "60"))
    for pid in _workers(env):
        os.kill(pid, signal.SIGSTOP)
    stuck = env.create("sleep", "60")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(start, env, stuck)
        wait_for(lambda: any(map(_queued, _workers(env))), what="the job to reach a worker")
        for pid in _workers(env):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="spawn worker"):
            pending.result(timeout=20)
    assert env.row(stuck)["state"] == "created"  # nothing recorded as running
    cid = env.create("sleep", "60")
    assert _alive(start(env, cid))


def _queued(worker: int) -> bool:
    """A packet waits in the worker's socket (`ss`: Recv-Q of its unix sockets)."""
    out = subprocess.run(["ss", "-xanp"], capture_output=True, text=True, check=True).stdout
    return any(f"pid={worker}," in line and int(line.split()[2]) > 0 for line in out.splitlines()[1:])


def test_workers_exit_with_their_daemon(env: Env) -> None:
    start(env, env.create("sleep", "60"))
    workers = _workers(env)
    daemon = next(
        pid
        for pid in _our_processes(env.root.path)
        if b"engine.supervise.daemon" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and _comm(pid) != "pyc-spawner"
    )
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not any(_alive(pid) for pid in workers), what="the workers to see the end of stream")
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)  # the keeper's new daemon
    assert _alive(start(env, env.create("sleep", "60")))


def test_a_large_environment_reaches_the_container_through_a_worker(env: Env) -> None:
    """The job travels as one packet: 300 KB of environment is above the default socket buffer."""
    big = tuple((f"BIG{i}", str(i) * 10_000) for i in range(30))
    cid = env.create("sh", "-c", 'echo "${#BIG7} ${BIG29%${BIG29#??}}"; sleep 60')
    spec = ContainerSpec.from_json(env.row(cid)["spec"])
    spec = dataclasses.replace(spec, process=dataclasses.replace(spec.process, env=big))
    env.root.db.execute("UPDATE containers SET spec = ? WHERE id = ?", (spec.to_json(), cid))
    start(env, cid)
    wait_for(lambda: ("stdout", "10000 29\n") in env.log(cid), what="the environment's echo")
