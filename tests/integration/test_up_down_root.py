"""`pycompose up`, `down`, `create` and `scale` through the real CLI on busybox containers.

Each test has its own state root (PYCOMPOSE_ROOT), its own cgroup parent and project name; teardown
removes every container, network, volume and the supervisor, then checks that no bridge, iptables rule,
mount or container row of that root is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_fixture import own_root

from engine.api import Engine

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
SLEEPER = """["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]"""


class Project:
    """A compose project directory and pycompose in a subprocess on its own state root."""

    def __init__(self, root: Path, directory: Path, name: str, parent: str) -> None:
        self.root, self.directory, self.name, self.parent = root, directory, name, parent

    def write(self, body: str) -> None:
        text = f"name: {self.name}\n" + textwrap.dedent(body).replace("SLEEPER", SLEEPER)
        (self.directory / "compose.yaml").write_text(text)

    def env(self) -> dict[str, str]:
        """The CLI's environment: this state root and cgroup parent, this checkout on the path."""
        return {
            **os.environ,
            "PYCOMPOSE_ROOT": str(self.root),
            "PYCOMPOSE_CGROUP_PARENT": self.parent,
            "PYTHONPATH": str(REPO),
        }

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "compose.cli.main", "--progress", "plain", *args],
            cwd=self.directory,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok:
            assert result.returncode == 0, result.stderr
        return result

    def containers(self) -> dict[str, dict]:
        """name -> record of every container under this state root."""
        with Engine.open(str(self.root)) as engine:
            return {r["name"]: r for r in engine.list_containers(all=True)}

    def inspect(self, name: str) -> dict:
        with Engine.open(str(self.root)) as engine:
            return engine.inspect_container(name)

    def volumes(self) -> set[str]:
        with Engine.open(str(self.root)) as engine:
            return {v.name for v in engine.list_volumes()}

    def networks(self) -> set[str]:
        with Engine.open(str(self.root)) as engine:
            return {n.name for n in engine.list_networks()}


@pytest.fixture
def project(tmp_path: Path, rootfs_tar: bytes) -> Iterator[Project]:
    with own_root(tmp_path, rootfs_tar, IMAGE) as (root, directory, name, parent):
        yield Project(root, directory, name, parent)


def statuses(stderr: str) -> list[tuple[str, str]]:
    """(resource, status) of the plain progress lines: ` Container x  Started`."""
    found = []
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] in ("Container", "Network", "Volume"):
            found.append((parts[1].strip('"'), parts[2]))
    return found


def env_of(project: Project, name: str) -> list[str]:
    return project.inspect(name)["Config"]["Env"]


TWO = """
services:
  db:
    image: pyc-test/busybox:1
    command: SLEEPER
    environment: {LEVEL: "1"}
    stop_grace_period: 2s
  web:
    image: pyc-test/busybox:1
    command: SLEEPER
    environment: {LEVEL: "1"}
    depends_on: [db]
    stop_grace_period: 2s
"""


def test_up_twice_changes_nothing_then_only_the_changed_service_is_recreated(project: Project) -> None:
    project.write(TWO)
    first = project("up", "-d")
    assert (f"{project.name}-db-1", "Started") in statuses(first.stderr)
    assert (f"{project.name}-web-1", "Started") in statuses(first.stderr)
    before = {n: r["id"] for n, r in project.containers().items()}
    assert {r["state"] for r in project.containers().values()} == {"running"}

    second = project("up", "-d")
    assert sorted(set(statuses(second.stderr))) == [
        (f"{project.name}-db-1", "Running"),
        (f"{project.name}-web-1", "Running"),
    ]
    assert {n: r["id"] for n, r in project.containers().items()} == before

    project.write(TWO.replace('{LEVEL: "1"}\n    depends_on', '{LEVEL: "2"}\n    depends_on'))
    third = project("up", "-d")
    after = {n: r["id"] for n, r in project.containers().items()}
    web, db = f"{project.name}-web-1", f"{project.name}-db-1"
    assert after[db] == before[db]
    assert after[web] != before[web]
    assert (web, "Recreated") in statuses(third.stderr)
    assert (db, "Running") in statuses(third.stderr)
    assert "LEVEL=2" in env_of(project, web)
    assert "LEVEL=1" in env_of(project, db)
    assert project.containers()[web]["state"] == "running"


def test_orphans_are_warned_about_then_removed_with_remove_orphans(project: Project) -> None:
    project.write(TWO)
    project("up", "-d")
    project.write(TWO.replace("  web:", "  api:"))
    warned = project("up", "-d")
    assert "Found orphan containers ([web])" in warned.stderr
    names = set(project.containers())
    assert {f"{project.name}-web-1", f"{project.name}-api-1"} <= names

    removed = project("up", "-d", "--remove-orphans")
    assert (f"{project.name}-web-1", "Removed") in statuses(removed.stderr)
    assert set(project.containers()) == {f"{project.name}-db-1", f"{project.name}-api-1"}
    project("down")
    assert project.containers() == {}


HEALTH = """
services:
  db:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 2; touch /shared/ready; sleep 1000 & wait"]
    volumes: [shared:/shared]
    healthcheck:
      test: ["CMD", "test", "-f", "/shared/ready"]
      interval: 300ms
      timeout: 1s
      retries: 30
  web:
    image: pyc-test/busybox:1
    command: ["sh", "-c", "test -f /shared/ready || exit 3; trap 'exit 0' TERM; sleep 1000 & wait"]
    volumes: [shared:/shared]
    depends_on:
      db: {condition: service_healthy}
volumes:
  shared: {}
"""


def test_service_healthy_waits_for_a_slow_dependency(project: Project) -> None:
    project.write(HEALTH)
    began = time.monotonic()
    result = project("up", "-d")
    took = time.monotonic() - began
    found = statuses(result.stderr)
    db, web = f"{project.name}-db-1", f"{project.name}-web-1"
    assert found.index((db, "Healthy")) < found.index((web, "Started"))
    assert took >= 2.0
    time.sleep(0.5)
    containers = project.containers()
    assert containers[web]["state"] == "running"  # it found /shared/ready: it started after db was healthy
    assert json.loads(containers[db]["health"])["Status"] == "healthy"


def test_service_healthy_without_a_healthcheck_fails_clearly(project: Project) -> None:
    project.write(
        """
        services:
          db:
            image: pyc-test/busybox:1
            command: SLEEPER
          web:
            image: pyc-test/busybox:1
            command: SLEEPER
            depends_on:
              db: {condition: service_healthy}
        """
    )
    result = project("up", "-d", ok=False)
    assert result.returncode == 1
    assert f"container {project.name}-db-1 has no healthcheck configured" in result.stderr
    assert f"{project.name}-web-1" not in project.containers()


def test_scale_up_and_down_keeps_the_lowest_numbers(project: Project) -> None:
    project.write(TWO)
    project("up", "-d")
    project("scale", "web=3")
    names = {n for n, r in project.containers().items() if r["state"] == "running"}
    assert names == {f"{project.name}-{s}" for s in ("db-1", "web-1", "web-2", "web-3")}
    project("up", "-d", "--scale", "web=2")
    assert set(project.containers()) == {f"{project.name}-{s}" for s in ("db-1", "web-1", "web-2")}
    project("scale", "web=1")
    assert set(project.containers()) == {f"{project.name}-db-1", f"{project.name}-web-1"}


VOLUMES = """
services:
  app:
    image: pyc-test/busybox:1
    command: SLEEPER
    volumes: [data:/data, /anon]
    networks: [front]
networks:
  front: {}
volumes:
  data: {}
"""


def test_down_keeps_named_volumes_and_down_v_removes_them(project: Project) -> None:
    project.write(VOLUMES)
    project("up", "-d")
    data, network = f"{project.name}_data", f"{project.name}_front"
    assert data in project.volumes()
    assert network in project.networks()

    project("down")
    assert project.containers() == {}
    assert network not in project.networks()
    assert project.volumes() == {data}  # the anonymous volume went with its container

    project("up", "-d")
    result = project("down", "-v")
    assert (data, "Removed") in statuses(result.stderr)
    assert project.volumes() == set()
    assert project.networks() == set()


def test_create_then_up_starts_and_dry_run_changes_nothing(project: Project) -> None:
    project.write(TWO)
    project("create")
    assert {r["state"] for r in project.containers().values()} == {"created"}
    dry = project("--dry-run", "up", "-d")
    assert "DRY-RUN" in dry.stderr
    assert {r["state"] for r in project.containers().values()} == {"created"}
    project("up", "-d")
    assert {r["state"] for r in project.containers().values()} == {"running"}
    project("--dry-run", "down")
    assert len(project.containers()) == 2
    project("down")
    assert project.containers() == {}


def test_down_by_project_name_without_a_compose_file_goes_by_labels(project: Project, tmp_path: Path) -> None:
    project.write(VOLUMES)
    project("up", "-d")
    (tmp_path / "other").mkdir()
    other = Project(project.root, tmp_path / "other", project.name + "x", project.parent)
    other.write(TWO)
    other("up", "-d")
    (project.directory / "compose.yaml").unlink()  # now nothing says what the project was but its labels
    kept = {n: r["id"] for n, r in project.containers().items() if n.startswith(other.name + "-")}
    assert len(kept) == 2

    empty = tmp_path / "elsewhere"
    empty.mkdir()
    elsewhere = Project(project.root, empty, project.name, project.parent)
    dry = elsewhere("--dry-run", "-p", project.name, "down", "-v")
    assert f"Container {project.name}-app-1  Removed" in dry.stderr
    assert f"{project.name}-app-1" in project.containers()

    result = elsewhere("-p", project.name, "down", "-v")
    assert (f"{project.name}-app-1", "Removed") in statuses(result.stderr)
    assert (f"{project.name}_front", "Removed") in statuses(result.stderr)
    assert (f"{project.name}_data", "Removed") in statuses(result.stderr)
    assert {n: r["id"] for n, r in project.containers().items()} == kept  # the other project untouched
    assert project.volumes() == set()
    assert project.networks() == {f"{other.name}_default"}

    missing = elsewhere("-p", project.name, "-f", "nothere.yaml", "down", ok=False)
    assert missing.returncode != 0
    other("down")
    assert project.containers() == {}


def ids(project: Project) -> dict[str, str]:
    return {n: r["id"] for n, r in project.containers().items()}


def test_wait_returns_when_healthy_and_wait_timeout_expires_with_a_clear_error(project: Project) -> None:
    slow = """
        services:
          db:
            image: pyc-test/busybox:1
            command: ["sh", "-c", "trap 'exit 0' TERM; sleep DELAY; touch /ready; sleep 1000 & wait"]
            stop_grace_period: 1s
            healthcheck:
              test: ["CMD", "test", "-f", "/ready"]
              interval: 200ms
              retries: 100
        """
    project.write(slow.replace("DELAY", "1"))
    began = time.monotonic()
    result = project("up", "-d", "--wait")
    assert time.monotonic() - began >= 1.0
    assert (f"{project.name}-db-1", "Healthy") in statuses(result.stderr)
    assert json.loads(project.containers()[f"{project.name}-db-1"]["health"])["Status"] == "healthy"
    project("down", "-t", "1")

    project.write(slow.replace("DELAY", "30"))
    began = time.monotonic()
    failed = project("up", "-d", "--wait", "--wait-timeout", "1", ok=False)
    took = time.monotonic() - began
    assert failed.returncode != 0
    assert f"container {project.name}-db-1 is not ready after --wait-timeout (still running (starting))" in (
        failed.stderr
    )
    assert took < 15
    assert "Traceback" not in failed.stderr


def test_restart_of_a_dependency_restarts_dependents_with_restart_true(project: Project) -> None:
    project.write(
        """
        services:
          db:
            image: pyc-test/busybox:1
            command: SLEEPER
          web:
            image: pyc-test/busybox:1
            command: SLEEPER
            depends_on:
              db: {condition: service_started, restart: true}
          other:
            image: pyc-test/busybox:1
            command: SLEEPER
            depends_on: [db]
        """
    )
    project("up", "-d")
    before = {n: r["started_at"] for n, r in project.containers().items()}
    time.sleep(1.1)  # started_at has a resolution the restart must pass
    project("restart", "db")
    after = {n: r["started_at"] for n, r in project.containers().items()}
    db, web, other = (f"{project.name}-{s}-1" for s in ("db", "web", "other"))
    assert after[db] != before[db]
    assert after[web] != before[web]  # restart: true
    assert after[other] == before[other]  # a plain dependency is left alone
    assert {r["state"] for r in project.containers().values()} == {"running"}


def test_service_completed_successfully_runs_the_init_first_and_a_failing_init_stops_up(
    project: Project,
) -> None:
    body = """
        services:
          init:
            image: pyc-test/busybox:1
            command: ["sh", "-c", "sleep 1; echo done > /shared/init; exit CODE"]
            volumes: [shared:/shared]
          app:
            image: pyc-test/busybox:1
            command: ["sh", "-c", "test -f /shared/init || exit 3; trap 'exit 0' TERM; sleep 1000 & wait"]
            volumes: [shared:/shared]
            depends_on:
              init: {condition: service_completed_successfully}
        volumes:
          shared: {}
        """
    project.write(body.replace("CODE", "0"))
    project("up", "-d")
    time.sleep(0.5)
    containers = project.containers()
    assert containers[f"{project.name}-init-1"]["state"] == "exited"
    assert containers[f"{project.name}-init-1"]["exit_code"] == 0
    assert containers[f"{project.name}-app-1"]["state"] == "running"
    project("down", "-v")

    project.write(body.replace("CODE", "4"))
    failed = project("up", "-d", ok=False)
    assert failed.returncode != 0
    assert "didn't complete successfully: exit 4" in failed.stderr
    app = project.containers().get(f"{project.name}-app-1")
    assert app is None or app["state"] != "running"


def test_optional_dependency_may_be_absent_and_no_deps_starts_only_the_named_service(
    project: Project,
) -> None:
    project.write(
        """
        services:
          db:
            image: pyc-test/busybox:1
            command: SLEEPER
          cache:
            image: pyc-test/busybox:1
            command: SLEEPER
            profiles: [extra]
          web:
            image: pyc-test/busybox:1
            command: SLEEPER
            depends_on:
              db: {condition: service_started}
              cache: {condition: service_started, required: false}
        """
    )
    project("up", "-d", "--no-deps", "web")
    assert set(project.containers()) == {f"{project.name}-web-1"}
    project("up", "-d")
    names = {n for n, r in project.containers().items() if r["state"] == "running"}
    assert names == {f"{project.name}-web-1", f"{project.name}-db-1"}


def test_force_recreate_no_recreate_and_always_recreate_deps(project: Project) -> None:
    project.write(TWO)
    project("up", "-d")
    db, web = f"{project.name}-db-1", f"{project.name}-web-1"
    first = ids(project)

    project("up", "-d", "--force-recreate")
    forced = ids(project)
    assert forced[db] != first[db] and forced[web] != first[web]

    project.write(TWO.replace('{LEVEL: "1"}\n    depends_on', '{LEVEL: "2"}\n    depends_on'))
    project("up", "-d", "--no-recreate")
    assert ids(project) == forced  # the change waits
    assert "LEVEL=1" in env_of(project, web)

    project("up", "-d", "web")  # web recreated, its dependency db kept
    changed = ids(project)
    assert changed[db] == forced[db] and changed[web] != forced[web]

    project("up", "-d", "--always-recreate-deps", "web")
    deps = ids(project)
    assert deps[db] != changed[db]  # the dependency recreated although unchanged
    assert {r["state"] for r in project.containers().values()} == {"running"}


def test_up_scale_adds_and_removes_replicas(project: Project) -> None:
    project.write(TWO)
    project("up", "-d", "--scale", "web=3")
    names = {n for n, r in project.containers().items() if r["state"] == "running"}
    assert names == {f"{project.name}-{s}" for s in ("db-1", "web-1", "web-2", "web-3")}
    project("up", "-d", "--scale", "web=1")
    assert set(project.containers()) == {f"{project.name}-db-1", f"{project.name}-web-1"}


BUILT = """
services:
  app:
    build: ./app
    image: pyct-built/app:1
    command: SLEEPER
    stop_grace_period: 1s
"""


def test_build_no_build_and_pull_policy_build(project: Project) -> None:
    (project.directory / "app").mkdir()
    dockerfile = project.directory / "app" / "Dockerfile"
    dockerfile.write_text("FROM pyc-test/busybox:1\nRUN echo one > /version\n")
    project.write(BUILT)
    missing = project("up", "-d", "--no-build", ok=False)
    assert missing.returncode != 0 and "no such image" in missing.stderr
    assert project.containers() == {}

    project("up", "-d")  # missing image: built
    app = f"{project.name}-app-1"
    first = ids(project)[app]

    dockerfile.write_text("FROM pyc-test/busybox:1\nRUN echo two > /version\n")
    project("up", "-d", "--no-build")  # present: neither built nor recreated
    assert ids(project)[app] == first
    project("up", "-d")  # present and no --build: not rebuilt
    assert ids(project)[app] == first

    project("up", "-d", "--build")  # rebuilt: the image changed, so the container is recreated
    second = ids(project)[app]
    assert second != first

    dockerfile.write_text("FROM pyc-test/busybox:1\nRUN echo three > /version\n")
    project.write(BUILT.replace("command:", "pull_policy: build\n    command:"))
    project("up", "-d")  # pull_policy: build always builds
    assert ids(project)[app] != second
    project("down", "--rmi", "all")
    with Engine.open(str(project.root)) as engine:
        assert not engine.image_exists("pyct-built/app:1")
