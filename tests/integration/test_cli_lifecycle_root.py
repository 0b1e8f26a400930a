"""start, stop, restart, pause, unpause, kill and rm through the CLI (a subprocess on its own state root)
on real containers: a three-service chain db <- api <- web (api's edge to db with `restart: true`), plus a
`tool` that depends on nothing. The project is brought up through engine.api from compose/plan/specs, as
`up` will; each container writes `start <service>` / `stop <service>` to a shared file, so the order of
the lines is the order the CLI acted in. Every container, the supervisor and the cgroup parent are gone
at the end, even when a test fails.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_fixture import clean_root, wait_for

from compose.labels import ProjectIdentity
from compose.loader.pipeline import ProjectOptions, load_project
from compose.plan.specs import ImageFacts, Placement, container_spec
from engine.api import Engine
from engine.containers import cgroups

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
SCRIPT = (
    "echo start $$SVC >> /shared/log; trap 'echo stop $$SVC >> /shared/log; exit 0' TERM;"
    " while :; do sleep 0.1; done"
)
COMPOSE = """
name: {project}
x-common: &common
  image: {image}
  network_mode: none
  command: ["sh", "-c", "{script}"]
  stop_grace_period: 5s
  volumes: ["{shared}:/shared", "/anon"]
services:
  db:
    <<: *common
    environment: {{SVC: db}}
  api:
    <<: *common
    environment: {{SVC: api}}
    depends_on:
      db: {{condition: service_started, restart: true}}
  web:
    <<: *common
    environment: {{SVC: web}}
    depends_on: [api]
  tool:
    <<: *common
    environment: {{SVC: tool}}
  empty:
    <<: *common
    environment: {{SVC: empty}}
"""


class Project:
    """The project's directory, state root and engine; `cli(...)` runs pycompose there."""

    def __init__(self, tmp_path: Path, engine: Engine, name: str) -> None:
        self.dir = tmp_path / "project"
        self.shared = tmp_path / "shared"
        self.root = tmp_path / "root"
        self.engine = engine
        self.name = name

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "compose.cli.main", "--root", str(self.root), "--progress=plain", *args],
            cwd=self.dir,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def log(self) -> list[str]:
        path = self.shared / "log"
        return path.read_text().splitlines() if path.exists() else []

    def states(self) -> dict[str, str]:
        rows = self.engine.list_containers(all=True, labels={"com.docker.compose.project": self.name})
        return {row["name"].removeprefix(self.name + "-"): row["state"] for row in rows}

    def up(self, services: tuple[str, ...] = ("db", "api", "web", "tool")) -> None:
        """Create and start one container per service through engine.api, dependencies first."""
        loaded = load_project(ProjectOptions(cwd=str(self.dir), environ={"HOME": "/root"}))
        model = loaded.model
        identity = ProjectIdentity(model.name, str(self.dir), (str(self.dir / "compose.yaml"),))
        image = self.engine.inspect_image(IMAGE)
        config = image.config.get("config") or {}
        facts = ImageFacts(image.id, IMAGE, config.get("Entrypoint"), config.get("Cmd"))
        for name in services:
            spec = container_spec(model, model.services[name], Placement(1, facts, "c" * 64), identity)
            record = self.engine.create_container(spec)
            self.engine.start_container(record["id"])
        wait_for(lambda: len(self.log()) >= len(services))


@pytest.fixture
def project(tmp_path: Path, rootfs_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("PYCOMPOSE_CGROUP_PARENT", parent)
    name = "pyct" + uuid.uuid4().hex[:8]
    engine = Engine.open(str(tmp_path / "root"))
    state = Project(tmp_path, engine, name)
    state.dir.mkdir()
    state.shared.mkdir()
    text = COMPOSE.format(project=name, image=IMAGE, script=SCRIPT, shared=state.shared)
    (state.dir / "compose.yaml").write_text(textwrap.dedent(text))
    try:
        engine.import_image(io.BytesIO(rootfs_tar), IMAGE)
        state.up()
        yield state
    finally:
        try:
            clean_root(state.root)
        finally:
            cgroups.remove_parent(parent)
            engine.close()


def test_stop_then_start_in_dependency_order(project: Project) -> None:
    begin = len(project.log())
    result = project.cli("stop", "-t", "5")
    assert result.returncode == 0, result.stderr
    assert set(project.states().values()) == {"exited"}
    stops = project.log()[begin:]
    assert stops.index("stop web") < stops.index("stop api") < stops.index("stop db")
    assert f"Container {project.name}-api-1  Stopped" in result.stderr

    begin = len(project.log())
    result = project.cli("start", "web")  # and what it depends on, first
    assert result.returncode == 0, result.stderr
    starts = project.log()[begin:]
    assert starts == ["start db", "start api", "start web"]
    assert project.states() == {"db-1": "running", "api-1": "running", "web-1": "running", "tool-1": "exited"}
    assert f"Container {project.name}-web-1  Started" in result.stderr


def test_start_of_a_service_without_containers_fails(project: Project) -> None:
    result = project.cli("start", "empty")
    assert result.returncode == 1
    assert result.stderr.strip().endswith('service "empty" has no container to start')
    result = project.cli("start", "nope")
    assert result.returncode == 1 and "no such service: nope" in result.stderr


def test_restart_restarts_restart_true_dependents(project: Project) -> None:
    before = {r["name"]: r["started_at"] for r in project.engine.list_containers(all=True)}
    begin = len(project.log())
    result = project.cli("restart", "db", "-t", "5")
    assert result.returncode == 0, result.stderr
    lines = project.log()[begin:]
    assert lines == ["stop db", "start db", "stop api", "start api"]  # web's edge has no restart: true
    after = {r["name"]: r["started_at"] for r in project.engine.list_containers(all=True)}
    assert after[f"{project.name}-web-1"] == before[f"{project.name}-web-1"]
    assert f"Container {project.name}-db-1  Restarting" in result.stderr


def test_pause_and_unpause(project: Project) -> None:
    result = project.cli("pause", "web", "tool")
    assert result.returncode == 0, result.stderr
    assert project.states() == {"db-1": "running", "api-1": "running", "web-1": "paused", "tool-1": "paused"}
    assert f"Container {project.name}-tool-1  Paused" in result.stderr
    result = project.cli("unpause")
    assert result.returncode == 0, result.stderr
    assert set(project.states().values()) == {"running"}
    begin = len(project.log())
    assert project.cli("stop", "web").returncode == 0  # a thawed container still hears SIGTERM
    assert project.log()[begin:] == ["stop web"]


def test_kill_with_a_signal_then_rm(project: Project) -> None:
    begin = len(project.log())
    result = project.cli("kill", "-s", "SIGTERM", "tool")
    assert result.returncode == 0, result.stderr
    wait_for(lambda: project.states()["tool-1"] == "exited")
    assert project.log()[begin:] == ["stop tool"]  # the trap ran: SIGTERM, not SIGKILL
    result = project.cli("kill", "tool")
    assert result.returncode == 0 and "no container to kill" in result.stderr

    result = project.cli("rm", stdin="n\n")  # the question, declined
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Going to remove {project.name}-tool-1\nAre you sure? [yN] "
    assert "tool-1" in project.states()
    anonymous = {v.name for v in project.engine.list_volumes()}
    result = project.cli("rm", "-f", "-v")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Going to remove {project.name}-tool-1\n"
    assert "tool-1" not in project.states() and len(project.states()) == 3
    assert len({v.name for v in project.engine.list_volumes()}) == len(anonymous) - 1  # its /anon

    result = project.cli("rm", "-f")
    assert result.returncode == 0 and "No stopped containers" in result.stderr


def test_rm_stop_removes_running_containers_dependents_first(project: Project) -> None:
    begin = len(project.log())
    result = project.cli("rm", "-s", "-f", "api", "web")
    assert result.returncode == 0, result.stderr
    assert project.log()[begin:] == ["stop web", "stop api"]
    assert project.states() == {"db-1": "running", "tool-1": "running"}
    assert f"Container {project.name}-web-1  Removed" in result.stderr
    result = project.cli("kill")
    assert result.returncode == 0, result.stderr
    assert set(project.states().values()) == {"exited"}


def test_dry_run_changes_nothing(project: Project) -> None:
    result = project.cli("--dry-run", "stop")
    assert result.returncode == 0, result.stderr
    assert "Stopped" in result.stderr
    assert set(project.states().values()) == {"running"}
