"""`pycompose stats` and `pycompose top` on a real project: a compose.yaml with two services whose
containers (busybox, started through the engine API with Compose's labels, since `up` comes later) run
under the supervisor; the CLI runs in a subprocess with --root.

Teardown, even on failure: supervisor shut down, survivors of this root killed, every container removed,
the private cgroup parent removed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rootfs_fixture import busybox_tar

from compose.cli.commands import project_containers as pc
from engine.api import Engine
from engine.containers import cgroups, manager, records
from engine.containers.spec import ContainerSpec, Process, Resources
from engine.errors import EngineError

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
MIB = 1024 * 1024
COMPOSE_YAML = """\
services:
  web:
    image: pyc-test/busybox:1
    command: sleep 1000
    labels:
      pyc-test.role: web
  db:
    image: pyc-test/busybox:1
    command: sh -c "sleep 1000 & sleep 1000 & wait"
    labels:
      pyc-test.role: db
"""
CLI = "import sys; from compose.cli.main import main; sys.exit(main(sys.argv[1:]))"


@dataclass
class Project:
    engine: Engine
    directory: Path
    name: str
    parent: str
    ids: dict[str, str]  # container name -> id

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-c", CLI, *self.argv(*args)],
            capture_output=True,
            text=True,
            cwd=self.directory,
            env=self.env(),
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pycompose {' '.join(args)} -> {result.returncode}\n{result.stderr}")
        return result

    def argv(self, *args: str) -> list[str]:
        return ["--root", str(self.engine.root.path), "-p", self.name, *args]

    def env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), manager.CGROUP_PARENT_ENV: self.parent}
        env.pop("PYCOMPOSE_ROOT", None)
        return env


def _supervisor_processes(root: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                if str(root).encode() in argv and b"engine.supervise" in argv:
                    found.append(int(entry))
    return found


def _create(engine: Engine, name: str, labels: dict[str, str], *args: str, **kw) -> str:  # type: ignore[no-untyped-def]
    image = engine.store.resolve(IMAGE)
    spec = ContainerSpec(
        id="",
        name=name,
        image_id=image.id,
        layer_dirs=(),
        process=Process(args=args, env=(("PATH", "/bin"),)),
        image=IMAGE,
        labels=tuple(labels.items()),
        **kw,
    )
    return engine.create_container(spec)["id"]


def _labels(project: str, service: str) -> dict[str, str]:
    return {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.container-number": "1",
        "com.docker.compose.oneoff": "False",
        "pyc-test.role": service,
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """web-1 and db-1 running, a stopped `job` container of the project, a running container of another."""
    from engine.supervise import client

    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    monkeypatch.setenv(manager.CGROUP_PARENT_ENV, parent)
    directory = tmp_path / "proj"
    directory.mkdir()
    (directory / "compose.yaml").write_text(COMPOSE_YAML)
    name = "pyc-test-" + uuid.uuid4().hex[:6]
    engine = Engine.open(str(tmp_path / "root"))
    try:
        buffer = io.BytesIO(busybox_tar())
        engine.import_image(buffer, IMAGE)
        ids = {
            f"{name}-web-1": _create(
                engine, f"{name}-web-1", _labels(name, "web"), "sleep", "1000",
                resources=Resources(memory=64 * MIB),
            ),
            f"{name}-db-1": _create(
                engine, f"{name}-db-1", _labels(name, "db"), "sh", "-c", "sleep 1000 & sleep 1000 & wait",
            ),
            f"{name}-job-1": _create(engine, f"{name}-job-1", _labels(name, "job"), "true"),
            f"{name}x-web-1": _create(engine, f"{name}x-web-1", _labels(name + "x", "web"), "sleep", "1000"),
        }  # fmt: skip
        for cid in ids.values():
            engine.start_container(cid)
        yield Project(engine, directory, name, parent, ids)
    finally:
        try:
            with contextlib.suppress(EngineError):
                client.shutdown(engine.root, timeout=10)
        finally:
            for pid in _supervisor_processes(engine.root.path):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            try:
                for record in records.list_all(engine.root.db):
                    engine.remove_container(record["id"], force=True, volumes=True)
            finally:
                cgroups.remove_parent(parent)
                engine.close()


def _wait_running(p: Project) -> None:
    """web, db and the other project's container up; job has run and exited."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        states = {n: p.engine.get_container(cid)["state"] for n, cid in p.ids.items()}
        if states[f"{p.name}-job-1"] == "exited" and list(states.values()).count("running") == 3:
            return
        time.sleep(0.05)
    raise AssertionError(f"containers did not settle: {states}")


def test_stats_no_stream_shows_the_projects_running_containers(project: Project) -> None:
    _wait_running(project)
    out = project.cli("stats", "--no-stream").stdout
    header, *lines = out.splitlines()
    assert header.split("   ")[0] == "CONTAINER ID"
    for title in pc.STATS_TITLES:
        assert title in header
    names = [line.split()[1] for line in lines]
    assert names == [f"{project.name}-db-1", f"{project.name}-web-1"]  # not job (stopped), not the other
    web = next(line for line in lines if f"{project.name}-web-1" in line)
    assert web.startswith(project.ids[f"{project.name}-web-1"][:12])
    assert "/ 64MiB" in web and web.split()[-1] == "1"
    db = next(line for line in lines if f"{project.name}-db-1" in line)
    assert db.split()[-1] == "3"  # sh and two sleeps
    assert "0B / 0B" in web  # NET I/O of a container without a network


def test_stats_json_services_and_all(project: Project) -> None:
    _wait_running(project)
    out = project.cli("stats", "--no-stream", "--format", "json", "web").stdout
    (doc,) = [json.loads(line) for line in out.splitlines()]
    assert doc["Name"] == f"{project.name}-web-1" and doc["PIDs"] == "1"
    assert doc["MemUsage"].endswith("/ 64MiB") and doc["CPUPerc"].endswith("%")
    assert set(doc) == {
        "BlockIO",
        "CPUPerc",
        "Container",
        "ID",
        "MemPerc",
        "MemUsage",
        "Name",
        "NetIO",
        "PIDs",
    }

    out = project.cli("stats", "--no-stream", "-a", "--format", "json").stdout
    docs = {d["Name"]: d for d in map(json.loads, out.splitlines())}
    assert set(docs) == {f"{project.name}-{s}-1" for s in ("db", "job", "web")}
    job = docs[f"{project.name}-job-1"]
    assert (job["CPUPerc"], job["MemUsage"], job["PIDs"]) == ("0.00%", "0B / 0B", "0")

    missing = project.cli("stats", "--no-stream", "nosuch", check=False)
    assert missing.returncode != 0 and "nosuch" in missing.stderr


def test_stats_streams_plain_samples_until_interrupted(project: Project) -> None:
    _wait_running(project)
    process = subprocess.Popen(
        [sys.executable, "-c", CLI, *project.argv("stats", "--format", "json", "web")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project.directory,
        env=project.env(),
    )
    try:
        samples = [process.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert code == 0
    assert [json.loads(s)["Name"] for s in samples] == [f"{project.name}-web-1"] * 3


def test_top_lists_each_containers_processes(project: Project) -> None:
    _wait_running(project)
    out = project.cli("top").stdout
    blocks = [b.splitlines() for b in out.split("\n\n")]
    assert [b[0] for b in blocks] == [f"{project.name}-db-1", f"{project.name}-web-1"]
    for block in blocks:
        assert block[1].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    db, web = blocks
    assert [line.split(None, 7)[-1] for line in db[2:]] == [
        "sh -c sleep 1000 & sleep 1000 & wait",
        "sleep 1000",
        "sleep 1000",
    ]
    assert len(web) == 3 and web[2].split()[0] == "root" and web[2].endswith("sleep 1000")
    web_pid = project.engine.get_container(project.ids[f"{project.name}-web-1"])["pid"]
    assert web[2].split()[1] == str(web_pid)  # host PIDs, as docker top shows

    only = project.cli("top", "web").stdout
    assert only.splitlines()[0] == f"{project.name}-web-1" and "\n\n" not in only


def test_formatting_matches_docker() -> None:
    assert pc.binary_size(0) == "0B" and pc.binary_size(64 * MIB) == "64MiB"
    assert pc.binary_size(1536 * 1024) == "1.5MiB" and pc.binary_size(123456789) == "117.7MiB"
    assert pc.decimal_size(999) == "999B" and pc.decimal_size(1234567) == "1.23MB"
    row = {"ID": "a" * 64, "Name": "p-web-1", "CPUPerc": 1.234, "MemUsage": 2 * MIB, "MemLimit": 64 * MIB,
           "MemPerc": 3.125, "PIDs": 4, "BlockRead": 4096, "BlockWrite": 0}  # fmt: skip
    assert pc.stats_cells(row) == [
        "a" * 12, "p-web-1", "1.23%", "2MiB / 64MiB", "3.12%", "0B / 0B", "4.1kB / 0B", "4",
    ]  # fmt: skip
    assert pc.stats_cells(row, no_trunc=True)[0] == "a" * 64
    assert pc.in_services({"labels": {pc.SERVICE_LABEL: "web"}}, ["web", "db"])
    assert not pc.in_services({"labels": {pc.SERVICE_LABEL: "job"}}, ["web"])
    assert pc.in_services({"labels": {}}, [])
