"""ContainerManager on a real state root with the busybox image: create/remove leave nothing behind;
pause, kill, exec, stats, top and logs on a running container.

Until the supervisor lands, a running container is started here the way it will start one: its cgroup
under a private parent, spawn.start, records.record_started. Every fixture kills, reaps and removes what
it made, even when the test fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rootfs_fixture import busybox_tar, run_to_end

from engine.containers import cgroups, logs, manager, records, spawn
from engine.containers.cgroups import Cgroup
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, Mount, Process
from engine.errors import (
    ContainerConflict,
    ContainerNotFound,
    ContainerStartError,
    EngineError,
    ImageInUse,
    InvalidCommand,
    VolumeNotFound,
)
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


@pytest.fixture
def mgr(tmp_path: Path, rootfs_tar: bytes) -> Iterator[ContainerManager]:
    root = StateRoot.open(tmp_path / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    m = ContainerManager(root, cgroup_parent=parent)
    try:
        m.images.import_rootfs(io.BytesIO(rootfs_tar), "pyc-test/busybox:1")
        yield m
    finally:
        try:
            for record in records.list_all(root.db):
                m.remove(record["id"], force=True, volumes=True)
        finally:
            cgroups.remove_parent(parent)
            root.close()


def _spec(m: ContainerManager, *args: str, **kw) -> ContainerSpec:  # type: ignore[no-untyped-def]
    image = m.images.resolve("pyc-test/busybox:1")
    name = kw.pop("name", "pyc-test-" + uuid.uuid4().hex[:8])
    process = Process(args=args or ("sleep", "1000"), env=(("PATH", "/bin"),))
    return ContainerSpec(
        id="", name=name, image_id=image.id, layer_dirs=(), process=process, image="pyc-test/busybox:1", **kw
    )


class Running:
    """A container started as the supervisor will: own cgroup, spawn.start, row marked running."""

    def __init__(self, m: ContainerManager, record: dict) -> None:
        self.m, self.record = m, record
        spec = m.spec_of(record)
        self.group = Cgroup.create(manager.cgroup_name(record["id"]), parent=m.cgroup_parent)
        self.read, write = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY)
        try:
            self.pid = spawn.start(
                spec, m.root, stdio=(null, write, write), volumes=m.volume_sources(spec), cgroup=self.group
            )
        finally:
            os.close(write)
            os.close(null)
        records.record_started(m.db, record["id"], self.pid, manager.now_rfc3339())

    def reap(self) -> int | None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            return spawn.wait(self.pid)
        except ChildProcessError:
            return None
        finally:
            os.close(self.read)


@pytest.fixture
def running(mgr: ContainerManager) -> Iterator[Running]:
    record = mgr.create(_spec(mgr))
    box = Running(mgr, record)
    try:
        yield box
    finally:
        box.reap()
        if records.get(mgr.db, record["id"]) is not None:
            mgr.remove(record["id"], force=True)


def _mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if str(path) in line]


def test_create_inspect_remove_leaves_nothing(mgr: ContainerManager) -> None:
    named = mgr.volumes.create("pyc-test-named")
    spec = _spec(
        mgr,
        "true",
        mounts=(Mount(type="volume", target="/etc", source=named.name), Mount(type="volume", target="/data")),
        labels=(("pyc-test", "yes"),),
    )
    record = mgr.create(spec)
    cid = record["id"]
    assert len(cid) == 64 and record["state"] == "created"
    anonymous = next(m.source for m in mgr.spec_of(record).mounts if m.target == "/data")
    assert set(mgr.volumes.users(named.name)) == {cid} and mgr.volumes.users(anonymous) == [cid]
    assert (Path(named.mountpoint) / "passwd").exists()  # copy-up from the image on first use
    base = mgr.root.path / "containers" / cid
    assert (base / "upper").is_dir() and (base / "work").is_dir()
    assert not (base / "hosts").exists()  # the /etc files are written at start, as Docker writes them

    doc = mgr.inspect(record["name"])
    assert doc["Id"] == cid and doc["Name"] == "/" + spec.name
    assert doc["State"]["Status"] == "created" and doc["State"]["Running"] is False
    assert doc["Config"]["Image"] == "pyc-test/busybox:1" and doc["Config"]["Cmd"] == ["true"]
    assert doc["Config"]["Labels"] == {"pyc-test": "yes"}
    assert doc["LogPath"].endswith(f"{cid}-json.log")
    assert {m["Name"] for m in doc["Mounts"]} == {named.name, anonymous}
    assert [r["id"] for r in mgr.list(all=True, labels={"pyc-test": None})] == [cid]
    assert mgr.list() == []  # not running

    with pytest.raises(ImageInUse):
        mgr.images.remove(spec.image_id, force=False)
    with pytest.raises(ContainerConflict):
        mgr.create(dataclasses.replace(_spec(mgr, "true"), name=spec.name))

    assert mgr.remove(cid[:8], volumes=True) == cid
    assert records.get(mgr.db, cid) is None and not base.exists()
    assert mgr.volumes.users(named.name) == [] and mgr.volumes.get(named.name)
    assert anonymous not in {v.name for v in mgr.volumes.list()}
    assert _mounts_under(mgr.root.path) == []
    assert mgr.images.containers_using(spec.image_id) == []
    with pytest.raises(ContainerNotFound):
        mgr.inspect(cid)
    mgr.volumes.remove(named.name)


def test_failed_create_undoes_everything(mgr: ContainerManager) -> None:
    with pytest.raises(ContainerConflict):
        mgr.create(_spec(mgr, name="bad name!"))
    spec = _spec(mgr, mounts=(Mount(type="volume", target="/data", source="pyc-test-missing"),))
    with pytest.raises(VolumeNotFound):
        mgr.create(spec)
    assert records.list_all(mgr.db) == []
    assert not (mgr.root.path / "containers").exists() or not any((mgr.root.path / "containers").iterdir())


def test_pause_freezes_and_unpause_thaws(running: Running) -> None:
    m, cid = running.m, running.record["id"]
    m.pause(cid)
    assert m.get(cid)["state"] == "paused" and m.inspect(cid)["State"]["Paused"] is True
    assert _proc_state(running.pid) in ("D", "S")  # frozen tasks sleep in the freezer
    with pytest.raises(ContainerConflict):
        m.pause(cid)
    with pytest.raises(ContainerConflict):
        m.exec(cid, ["true"])
    m.unpause(cid)
    assert m.get(cid)["state"] == "running"
    assert m.exec(cid, ["true"]) == 0  # it runs again


def _proc_state(pid: int) -> str:
    text = Path(f"/proc/{pid}/status").read_text()
    return next(line.split()[1] for line in text.splitlines() if line.startswith("State:"))


def test_exec_sees_the_container(running: Running, tmp_path: Path) -> None:
    m, cid = running.m, running.record["id"]
    out = tmp_path / "out"
    with open(out, "wb") as f, open(os.devnull, "rb") as null:
        code = m.exec(
            cid,
            ["sh", "-c", "hostname; cat /proc/1/cmdline; exit 3"],
            stdio=(null.fileno(), f.fileno(), f.fileno()),
        )
    assert code == 3
    hostname, cmdline = out.read_text().split("\n", 1)
    assert hostname == cid[:12] and cmdline.startswith("sleep\x001000")
    with pytest.raises(ContainerStartError, match="No such file"):
        m.exec(cid, ["/no/such/binary"])  # the helper's error comes back as the engine error it was


def test_stats_and_top(running: Running) -> None:
    m, cid = running.m, running.record["id"]
    row = m.stats(cid, interval=0.2)
    assert row["PIDs"] >= 1 and row["MemUsage"] > 0 and row["MemLimit"] > 0
    assert 0.0 <= row["CPUPerc"] < 50.0  # sleep uses no CPU
    top = m.top(cid)
    assert top["Titles"][:2] == ["UID", "PID"]
    assert [p[1] for p in top["Processes"]] == [str(running.pid)]
    assert top["Processes"][0][-1] == "sleep 1000"


def test_kill_signals_pid1(running: Running) -> None:
    m, cid = running.m, running.record["id"]
    with pytest.raises(InvalidCommand):
        m.kill(cid, "NOTASIGNAL")
    m.kill(cid, "KILL")
    assert running.reap() == 137
    running.reap = lambda: None  # type: ignore[method-assign]


def test_remove_running_needs_force(running: Running) -> None:
    m, cid = running.m, running.record["id"]
    with pytest.raises(ContainerConflict):
        m.remove(cid)
    m.remove(cid, force=True)
    assert running.reap() == 137
    running.reap = lambda: None  # type: ignore[method-assign]
    assert records.get(m.db, cid) is None
    assert not any(path.exists() for path in running.group.directories())
    assert not (m.root.path / "containers" / cid).exists()


def test_logs_read_the_json_file(mgr: ContainerManager) -> None:
    record = mgr.create(_spec(mgr, "true"))
    writer = logs.open_log(Path(record["log_path"]).parent, record["id"], "json-file", {})
    writer.feed("stdout", b"one\ntwo\n", now=1_700_000_000_000_000_000)
    writer.feed("stderr", b"three\n", now=1_700_000_001_000_000_000)
    writer.close()
    lines = [r.line for r in mgr.logs(record["id"])]
    assert lines == ["one\n", "two\n", "three\n"]
    assert [r.stream for r in mgr.logs(record["id"], tail=1)] == ["stderr"]
    deadline = time.monotonic() + 5  # follow of a container that is not running ends by itself
    assert len(list(mgr.logs(record["id"], follow=True))) == 3 and time.monotonic() < deadline


# -- the CLI group (registered here the way the integrator will register it) -----------------------------


def _cli(root: Path, *argv: str) -> tuple[int, str, str]:
    import argparse

    from compose.cli.commands import container as container_cli
    from compose.cli.context import CliContext

    parser = argparse.ArgumentParser(prog="pycompose")
    parser.add_argument("--root")
    container_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--root", str(root), "container", *argv])
    out, err = io.StringIO(), io.StringIO()
    try:
        code = args.handler(args, CliContext(out, err))
    except EngineError as exc:  # what compose.cli.main does with it
        err.write(f"{exc}\n")
        code = exc.exit_code
    return code, out.getvalue(), err.getvalue()


def test_cli_create_ls_inspect_rm(mgr: ContainerManager) -> None:
    root = mgr.root.path
    name = "pyc-test-" + uuid.uuid4().hex[:8]
    code, out, _ = _cli(root, "create", "--name", name, "-e", "A=1", "-l", "pyc-test=1", "-v", "/data",
                        "pyc-test/busybox:1", "sleep", "1000")  # fmt: skip
    cid = out.strip()
    assert code == 0 and len(cid) == 64
    code, out, _ = _cli(root, "ls", "-a")
    header, line = out.splitlines()
    assert header.split()[:3] == ["CONTAINER", "ID", "IMAGE"] and "NAMES" in header
    assert line.startswith(cid[:12]) and line.endswith(name) and "Created" in line
    assert '"sleep 1000"' in line
    assert _cli(root, "ls")[1].splitlines()[1:] == []  # not running
    assert _cli(root, "ls", "-aq", "--filter", "label=pyc-test")[1] == cid[:12] + "\n"
    code, out, _ = _cli(root, "inspect", name)
    (doc,) = __import__("json").loads(out)
    assert doc["Id"] == cid and "A=1" in doc["Config"]["Env"] and doc["Config"]["Cmd"] == ["sleep", "1000"]
    code, out, err = _cli(root, "inspect", "pyc-test-none")
    assert code == 1 and "no such container" in err
    anonymous = doc["Mounts"][0]["Name"]
    assert _cli(root, "rm", "-v", name) == (0, name + "\n", "")
    assert records.get(mgr.db, cid) is None and anonymous not in {v.name for v in mgr.volumes.list()}


def test_cli_on_a_running_container(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    root, cid = running.m.root.path, running.record["id"]
    monkeypatch.setenv(manager.CGROUP_PARENT_ENV, running.m.cgroup_parent)
    code, out, _ = _cli(root, "ls")
    assert out.splitlines()[1].startswith(cid[:12]) and "Up " in out
    code, out, _ = _cli(root, "top", cid[:12])
    assert code == 0 and out.splitlines()[1].endswith("sleep 1000")
    code, out, _ = _cli(root, "stats", "--no-stream", cid)
    assert code == 0 and out.splitlines()[0].startswith("CONTAINER ID") and "%" in out.splitlines()[1]
    assert "NET I/O" in out.splitlines()[0] and "0B / 0B" in out.splitlines()[1]  # only a loopback
    code, out, _ = _cli(root, "stats", "--no-stream", "--format", "json", cid)
    assert code == 0 and json.loads(out)["NetIO"] == "0B / 0B" and json.loads(out)["ID"] == cid[:12]
    assert _cli(root, "pause", cid)[0] == 0 and "(Paused)" in _cli(root, "ls")[1]
    assert _cli(root, "unpause", cid)[0] == 0
    code, _, err = _cli(root, "rm", cid)
    assert code == 1 and "running" in err
    assert _cli(root, "kill", "-s", "KILL", cid) == (0, cid + "\n", "")
    assert running.reap() == 137
    running.reap = lambda: None  # type: ignore[method-assign]


# -- through the supervisor (engine.supervise) ------------------------------------------------------------


def _supervisor_processes(root: Path) -> list[int]:
    """Keeper/supervisor processes of this state root (to kill if shutdown failed)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(root).encode() in argv and b"engine.supervise" in argv:
                found.append(int(entry))
    return found


@pytest.fixture
def supervised(mgr: ContainerManager) -> Iterator[ContainerManager]:
    from engine.errors import EngineError
    from engine.supervise import client

    try:
        yield mgr
    finally:
        try:
            with contextlib.suppress(EngineError):
                client.shutdown(mgr.root, timeout=10)
        finally:
            for pid in _supervisor_processes(mgr.root.path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_start_stop_logs_remove_through_the_supervisor(supervised: ContainerManager) -> None:
    m = supervised
    record = m.create(_spec(m, "sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"))
    cid = record["id"]
    started = m.start(record["name"])
    assert started["state"] == "running" and started["pid"]
    assert m.start(cid)["pid"] == started["pid"]  # already running: left alone
    assert _wait_for(lambda: len(list(m.logs(cid))) == 2)
    assert [(r.stream, r.line) for r in m.logs(cid)] == [("stdout", "hello\n"), ("stderr", "oops\n")]
    assert m.exec(cid, ["true"]) == 0

    stopped = m.stop(cid, timeout=0.5)  # sleep as PID 1 ignores SIGTERM: SIGKILL after the grace period
    assert stopped["state"] == "exited" and stopped["exit_code"] == 137 and stopped["stopped_by_user"]
    doc = m.inspect(cid)["State"]
    assert doc["Running"] is False and doc["ExitCode"] == 137 and doc["FinishedAt"] != "0001-01-01T00:00:00Z"

    again = m.start(cid)
    assert again["state"] == "running" and again["pid"] != started["pid"]
    m.remove(cid, force=True)
    assert records.get(m.db, cid) is None
    assert not (m.root.path / "containers" / cid).exists()
    layout = cgroups.detect_layout()
    directories = [Path(layout.v1[c], m.cgroup_parent, cid) for c in layout.v1]
    assert _wait_for(lambda: not any(d.exists() for d in directories))


def test_named_volume_through_the_supervisor_keeps_data_after_removal(supervised: ContainerManager) -> None:
    m = supervised
    m.volumes.create("pyc-test-data")
    try:
        mounts = (Mount(type="volume", source="pyc-test-data", target="/data"),)
        spec = _spec(m, "sh", "-c", "echo kept > /data/file; cat /data/file", mounts=mounts)
        record = m.create(spec)
        m.start(record["id"])
        assert _wait_for(lambda: m.get(record["id"])["state"] == "exited")
        assert m.get(record["id"])["exit_code"] == 0
        assert [r.line for r in m.logs(record["id"])] == ["kept\n"]
        m.remove(record["id"])
        data = m.volumes.data_path(m.volumes.get("pyc-test-data"))
        assert (data / "file").read_text() == "kept\n"  # a named volume outlives its container
    finally:
        m.volumes.remove("pyc-test-data", force=True)


# -- volumes_from, volumes with driver_opts, image defaults ---------------------------------------------


def test_volumes_from_copies_mounts_and_ro_makes_them_read_only(
    mgr: ContainerManager, tmp_path: Path
) -> None:
    host = tmp_path / "pyc-test-bind"
    host.mkdir()
    mounts = (Mount(type="volume", target="/data"), Mount(type="bind", source=str(host), target="/b"))
    first = mgr.create(_spec(mgr, "sh", "-c", "echo one > /data/f; echo b > /b/f", mounts=mounts))
    assert run_to_end(mgr, first)[0] == 0
    volume = mgr.spec_of(first).mounts[0].source
    own = (Mount(type="tmpfs", target="/b"),)  # the spec's own mount at /b wins over the inherited one
    second = mgr.create(
        _spec(
            mgr,
            "sh",
            "-c",
            "cat /data/f; echo x > /data/g || echo refused",
            volumes_from=((first["name"], "ro"),),
        )
    )
    third = mgr.create(_spec(mgr, "sh", "-c", "ls /b", mounts=own, volumes_from=((first["id"], "rw"),)))
    inherited = mgr.spec_of(second).mounts
    assert [(m.type, m.target, m.read_only) for m in inherited] == [
        ("volume", "/data", True),
        ("bind", "/b", True),
    ]
    assert inherited[0].source == volume
    assert sorted(mgr.volumes.users(volume)) == sorted([first["id"], second["id"], third["id"]])
    assert [(m.type, m.read_only) for m in mgr.spec_of(third).mounts] == [("tmpfs", False), ("volume", False)]
    code, out = run_to_end(mgr, second)
    assert code == 0 and out.splitlines()[0] == "one" and "refused" in out
    with pytest.raises(InvalidCommand):
        mgr.create(_spec(mgr, volumes_from=((first["id"], "rx"),)))
    with pytest.raises(ContainerNotFound):
        mgr.create(_spec(mgr, volumes_from=(("pyc-test-nosuch", "ro"),)))


def test_volumes_with_driver_opts_are_mounted_at_start(mgr: ContainerManager, tmp_path: Path) -> None:
    device = tmp_path / "pyc-test-device"
    device.mkdir()
    (device / "f").write_text("dev\n")
    tmp = "pyc-test-tmpfs-" + uuid.uuid4().hex[:6]
    bound = "pyc-test-bound-" + uuid.uuid4().hex[:6]
    mgr.volumes.create(tmp, driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=2m,mode=1777"})
    mgr.volumes.create(bound, driver_opts={"type": "none", "device": str(device), "o": "bind,ro"})
    try:
        mounts = (
            Mount(type="volume", source=tmp, target="/t"),
            Mount(type="volume", source=bound, target="/d"),
        )
        script = "grep ' /t ' /proc/mounts; stat -c %a /t; cat /d/f; echo x > /d/g || echo refused"
        record = mgr.create(_spec(mgr, "sh", "-c", script, mounts=mounts))
        sources = mgr.volume_sources(mgr.spec_of(record))
        assert sources == {
            tmp: ("tmpfs", "tmpfs", ("size=2m", "mode=1777")),
            bound: ("bind", str(device), ("ro",)),
        }
        code, out = run_to_end(mgr, record)
        mgr.remove(record["id"])
    finally:
        mgr.volumes.remove(tmp, force=True)
        mgr.volumes.remove(bound, force=True)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split()[2] == "tmpfs" and "size=2048k" in lines[0]
    assert lines[1:3] == ["1777", "dev"] and "refused" in out
    assert not (device / "g").exists()


def test_create_takes_env_user_workdir_and_stop_signal_from_the_image(mgr: ContainerManager) -> None:
    changes = ["ENV A=image B=image", "WORKDIR /srv", "USER app", "STOPSIGNAL SIGQUIT"]
    buffer = io.BytesIO(busybox_tar())
    image = mgr.images.import_rootfs(buffer, "pyc-test/defaults:1", changes=changes)
    process = Process(args=("sh", "-c", 'echo "$A $B $(id -un) $(pwd)"'), env=(("B", "spec"),))
    spec = ContainerSpec(
        id="", name="pyc-test-" + uuid.uuid4().hex[:8], image_id=image.id, layer_dirs=(), process=process
    )
    record = mgr.create(spec)
    stored = mgr.spec_of(record)
    assert (stored.stop_signal, stored.process.user, stored.process.working_dir) == (
        "SIGQUIT",
        "app",
        "/srv",
    )
    code, out = run_to_end(mgr, record)
    assert code == 0 and out == "image spec app /srv\n"


def test_pause_and_kill_go_through_the_supervisor(supervised: ContainerManager) -> None:
    m = supervised
    record = m.create(dataclasses.replace(_spec(m, "sleep", "1000"), restart="always"))
    cid = record["id"]
    m.start(cid)
    m.pause(cid)
    assert m.get(cid)["state"] == "paused"
    time.sleep(0.3)
    assert m.get(cid)["state"] == "paused"  # the supervisor does not take the frozen container for dead
    m.unpause(cid)
    assert m.get(cid)["state"] == "running"
    m.kill(cid, "SIGKILL")  # a user stop: `always` must not bring it back
    assert _wait_for(lambda: m.get(cid)["state"] == "exited")
    time.sleep(0.5)
    final = m.get(cid)
    assert (final["state"], final["exit_code"], final["restart_count"]) == ("exited", 137, 0)
    m.remove(cid)


def test_supervisor_is_pinged_once_and_found_again_after_it_died(
    supervised: ContainerManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts and stops skip the ping round trip once the supervisor answered; when it has gone since,
    the failed connect leads to a new supervisor and the request is sent again."""
    from engine.supervise import client

    m = supervised
    probes: list[str] = []
    real_probe = client._probe
    monkeypatch.setattr(client, "_probe", lambda root: probes.append("ping") or real_probe(root))
    monkeypatch.setattr(manager, "_SUPERVISOR_ANSWERED", set())
    one = m.create(_spec(m, "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"))
    two = m.create(_spec(m, "sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"))
    assert m.start(one["id"])["state"] == "running"
    pings = len(probes)
    assert pings >= 1
    assert m.start(two["id"])["state"] == "running"
    assert m.stop(one["id"], timeout=2)["state"] == "exited"
    assert len(probes) == pings  # no round trip before the second start nor before the stop

    client.shutdown(m.root, timeout=10)  # kills the supervised container `two` too
    assert not client.ping(m.root)
    restarted = m.start(one["id"])  # the connect fails: a new supervisor, the start sent once more
    assert restarted["state"] == "running"
    assert client.ping(m.root)
    m.remove(one["id"], force=True)
    m.remove(two["id"], force=True)
