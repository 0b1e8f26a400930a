"""Supervisor robustness with real processes: the keeper dying alone (handover to a successor), keeper and
daemon dying together while containers write (no SIGPIPE), OOM score of our processes vs containers, and
`tty: true` containers (a pty master read into the log, held by the keeper, handed back after a crash).

Fixtures and helpers come from test_supervise_root (own state root, private `pyc-test-...` cgroup parent,
teardown that kills every process of that root and removes cgroups and container directories).
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rootfs_fixture import busybox_rootfs
from test_supervise_root import (
    IMAGE,
    Env,
    _alive,
    _is_keeper,
    _now,
    _our_processes,
    _teardown,
    kill_supervision,
    start,
    wait_for,
)

from engine.containers.spec import ContainerSpec, Security
from engine.state.root import StateRoot
from engine.supervise import client

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


@pytest.fixture(scope="module")
def busybox() -> str:
    return str(busybox_rootfs())


@pytest.fixture
def sup(tmp_path: Path, busybox: str) -> Iterator[Env]:
    """test_supervise_root's `env`: own state root and cgroup parent, a running supervisor, full teardown."""
    root = StateRoot.open(tmp_path / "root")
    parent = f"pyc-test-{os.getpid()}-{secrets.token_hex(3)}"
    root.db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', 0, 'linux', 'amd64', ?)",
        (IMAGE, IMAGE, _now()),
    )
    try:
        client.ensure_supervisor(root, cgroup_parent=parent)
        yield Env(root, parent, busybox)
    finally:
        _teardown(root, parent)


COUNTER = "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"


def counts(env: Env, cid: str, stream: str = "stdout") -> list[int]:
    return [int(line) for s, line in env.log(cid) if s == stream]


def consecutive(values: list[int]) -> bool:
    """Strictly increasing by one: nothing lost, nothing repeated."""
    return bool(values) and values == list(range(values[0], values[0] + len(values)))


def daemon_pid(env: Env) -> int:
    return int(client.request(env.root, "ping")["pid"])


def keeper_pids(env: Env) -> list[int]:
    return [p for p in _our_processes(env.root.path) if _is_keeper(p)]


def oom_score_adj(pid: int) -> int:
    return int(Path(f"/proc/{pid}/oom_score_adj").read_text())


def create_tty(env: Env, *args: str, **kw: Any) -> str:
    """A container row like Env.create, with `tty: true`."""
    cid = env.create(*args, **kw)
    spec = ContainerSpec.from_json(env.row(cid)["spec"])
    spec = dataclasses.replace(spec, process=dataclasses.replace(spec.process, tty=True))
    env.root.db.execute("UPDATE containers SET spec = ? WHERE id = ?", (spec.to_json(), cid))
    assert ContainerSpec.from_json(env.row(cid)["spec"]).process.tty
    return cid


# -- item 1: the keeper dies alone --------------------------------------------------------------------


def test_keeper_sigkilled_alone_hands_over_to_a_new_keeper_and_daemon(sup: Env) -> None:
    env = sup
    plain = env.create("sh", "-c", COUNTER)
    always = env.create("sh", "-c", COUNTER, restart="always")
    errs = env.create("sh", "-c", COUNTER.replace("echo $i", "echo $i >&2"))
    pids = {cid: start(env, cid) for cid in (plain, always, errs)}
    wait_for(lambda: all(len(env.log(c)) >= 5 for c in pids), what="output of all three")
    old_daemon = daemon_pid(env)
    (old_keeper,) = keeper_pids(env)
    os.kill(old_keeper, signal.SIGKILL)
    killed_at = {cid: len(env.log(cid)) for cid in pids}

    wait_for(lambda: client.ping(env.root) and daemon_pid(env) != old_daemon, what="successor daemon")
    wait_for(lambda: not _alive(old_daemon), what="old daemon exits after the handover")
    (new_keeper,) = wait_for(lambda: keeper_pids(env), what="successor keeper")
    assert new_keeper != old_keeper
    assert all(_alive(pid) for pid in pids.values())
    status = {c["id"]: c for c in client.request(env.root, "status")["containers"]}
    assert all(status[cid]["watched"] and status[cid]["state"] == "running" for cid in pids)

    fresh = env.create("sh", "-c", "echo hello; exec sleep 60")  # the new pair starts containers
    start(env, fresh)
    wait_for(lambda: env.log(fresh) == [("stdout", "hello\n")], what="new container's output")

    time.sleep(1.0)
    for cid in pids:  # the logs go on across the handover: more lines, none lost or repeated
        stream = "stderr" if cid == errs else "stdout"
        values = counts(env, cid, stream)
        assert consecutive(values), (cid, values)
        assert len(values) >= killed_at[cid] + 10

    os.kill(pids[always], signal.SIGKILL)  # not a user stop: restart: always applies again
    wait_for(lambda: env.row(always)["restart_count"] == 1 and env.row(always)["state"] == "running")
    new_pid = env.row(always)["pid"]
    assert new_pid != pids[always] and _alive(new_pid)
    wait_for(lambda: counts(env, always)[-1] < counts(env, always)[-2], what="the restarted counter")
    client.request(env.root, "stop", id=always, timeout=1)
    assert env.row(always)["state"] == "exited" and env.row(always)["exit_code"] == 137  # a keeper child


def test_client_waits_for_the_handover_instead_of_starting_a_keeper(sup: Env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from engine.supervise import launcher

    launched: list[object] = []
    monkeypatch.setattr(launcher, "launch", lambda *args, **kwargs: launched.append(args))
    env = sup
    cid = env.create("sh", "-c", COUNTER)
    start(env, cid)
    old_daemon = daemon_pid(env)
    (old_keeper,) = keeper_pids(env)
    os.kill(old_keeper, signal.SIGKILL)
    wait_for(lambda: client._probe(env.root) == "handover", what="the old daemon handing over")
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)  # during the handover
    assert launched == [], "the client launched a keeper of its own during the handover"
    assert daemon_pid(env) != old_daemon
    # the successor keeper's launcher forks and exits (`--detach`): for a moment both carry the argv
    wait_for(lambda: len(keeper_pids(env)) == 1, what="one keeper")
    status = client.request(env.root, "status", id=cid)["containers"][0]
    assert status["watched"] and status["state"] == "running"


# -- item 2: keeper and daemon both die while containers write ---------------------------------------


def test_both_dead_a_writing_container_gets_no_sigpipe_and_its_lines_are_kept(sup: Env) -> None:
    """The writer is a subshell: PID 1 of a PID namespace ignores a kernel SIGPIPE (it would only see
    EPIPE), any other process of the container dies of it when no read end exists."""
    env = sup
    loop = "i=0; while true; do i=$((i+1)); echo $i; echo e$i >&2; sleep 0.02; done"
    cid = env.create("sh", "-c", f"({loop}); echo writer-died; exec sleep 60")
    pid = start(env, cid)
    wait_for(lambda: len(counts(env, cid)) >= 5, what="output")
    kill_supervision(env)
    at_kill = counts(env, cid)[-1]
    time.sleep(1.5)  # the writer goes on while no pycompose process exists
    client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    wait_for(lambda: counts(env, cid)[-1] > at_kill + 60, what="the lines written in the gap and after")
    values = counts(env, cid)
    assert consecutive(values) and values[0] == 1
    errs = [line for s, line in env.log(cid) if s == "stderr"]
    assert errs[: len(values) - 1] == [f"e{n}\n" for n in values[: len(values) - 1]]
    assert env.row(cid)["state"] == "running" and _alive(pid)


def has_cap_sys_resource() -> bool:
    """Lowering an oom_score_adj needs it (this host's test sandbox may not have it)."""
    status = Path("/proc/self/status").read_text()
    eff = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(eff, 16) >> 24 & 1)


def test_keeper_and_daemon_lower_their_oom_score_and_containers_do_not_inherit_it(sup: Env) -> None:
    """Supervision is (re)started from a process at oom_score_adj 500, so that even without
    CAP_SYS_RESOURCE (keeper and daemon then stay at 500) a container that inherited it would show."""
    env = sup
    client.shutdown(env.root, timeout=10)
    own = Path("/proc/self/oom_score_adj")
    saved = own.read_text().strip()
    try:
        own.write_text("500")
        client.ensure_supervisor(env.root, cgroup_parent=env.parent)
    finally:
        own.write_text(saved)  # back down to our oom_score_adj_min: no privilege needed
    (keeper_pid,) = keeper_pids(env)
    wanted = (-999, -500) if has_cap_sys_resource() else (500, 500)
    assert (oom_score_adj(keeper_pid), oom_score_adj(daemon_pid(env))) == wanted
    plain = env.create("sh", "-c", "cat /proc/self/oom_score_adj; exec sleep 60")
    script = "cat /proc/self/oom_score_adj; exec sleep 60"
    own_value = env.create("sh", "-c", script, security=Security(oom_score_adj=300))
    assert oom_score_adj(start(env, plain)) == 0
    assert oom_score_adj(start(env, own_value)) == 300
    wait_for(lambda: env.log(plain) == [("stdout", "0\n")], what="container sees 0")
    wait_for(lambda: env.log(own_value) == [("stdout", "300\n")], what="container sees its own value")


# -- item 5: tty containers --------------------------------------------------------------------------


def test_tty_container_gets_a_pty_read_into_the_log_as_stdout(sup: Env) -> None:
    env = sup
    cid = create_tty(env, "sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; tty; echo to-err >&2; exit 3")
    start(env, cid)
    wait_for(lambda: env.row(cid)["state"] == "exited", what="exit")
    assert env.row(cid)["exit_code"] == 3
    assert env.log(cid) == [
        ("stdout", "is-a-tty\r\n"),
        ("stdout", "/dev/pts/0\r\n"),
        ("stdout", "to-err\r\n"),
    ]


def test_tty_container_survives_a_daemon_crash_and_keeps_logging(sup: Env) -> None:
    env = sup
    cid = create_tty(env, "sh", "-c", COUNTER, restart="always")
    pid = start(env, cid)
    wait_for(lambda: len(env.log(cid)) >= 5, what="output")
    old = daemon_pid(env)
    os.kill(old, signal.SIGKILL)  # the keeper restarts the daemon and hands the pty master back
    wait_for(lambda: client.ping(env.root) and daemon_pid(env) != old, what="new daemon")
    before = len(env.log(cid))
    time.sleep(1.0)
    values = counts(env, cid)
    assert _alive(pid) and consecutive(values) and len(values) >= before + 10
    assert all(line.endswith("\r\n") for _, line in env.log(cid))
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: env.row(cid)["restart_count"] == 1 and env.row(cid)["state"] == "running", what="restart"
    )


def test_tty_container_survives_the_keeper_handover(sup: Env) -> None:
    env = sup
    cid = create_tty(env, "sh", "-c", COUNTER)
    pid = start(env, cid)
    wait_for(lambda: len(env.log(cid)) >= 5, what="output")
    old = daemon_pid(env)
    (keeper_pid,) = keeper_pids(env)
    os.kill(keeper_pid, signal.SIGKILL)
    wait_for(lambda: client.ping(env.root) and daemon_pid(env) != old, what="successor daemon")
    wait_for(lambda: not _alive(old), what="old daemon gone")
    before = len(env.log(cid))
    time.sleep(1.0)
    values = counts(env, cid)
    assert _alive(pid) and consecutive(values) and len(values) >= before + 10
