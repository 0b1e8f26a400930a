"""compose/run/lifecycle and its CLI module on a fake engine: which containers each command touches, in
what order (generations; dependents stop first), the events, restart's `restart: true` closure, rm's
question, one-off and orphan handling, and docker compose's errors. Projects come from the real loader."""

from __future__ import annotations

import io
import textwrap
import threading
import time
from typing import Any

import pytest

from compose import labels as L
from compose.cli.commands.lifecycle import DryRunEngine, confirm_removal
from compose.cli.progress import PlainEvents
from compose.errors import ComposeError, InvalidProjectError
from compose.graph import Dependency
from compose.loader.pipeline import ProjectOptions, load_project
from compose.run import lifecycle
from engine.errors import ContainerConflict

PROJECT = "pyct-life"

COMPOSE = """
services:
  db:
    image: busybox
  cache:
    image: busybox
  api:
    image: busybox
    depends_on:
      db: {condition: service_started, restart: true}
      cache: {condition: service_started}
  web:
    image: busybox
    depends_on:
      api: {condition: service_started, restart: true}
  worker:
    image: busybox
    scale: 0
"""


def load(tmp_path, text: str = COMPOSE):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load_project(ProjectOptions(files=(str(tmp_path / "compose.yaml"),), project_name=PROJECT))


class FakeEngine:
    """Containers as engine.api rows; every call is logged (op, name) with the time it began and ended."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.spans: dict[tuple[str, str], tuple[float, float]] = {}
        self.fail: set[tuple[str, str]] = set()
        self.delay = 0.0
        self._lock = threading.Lock()

    def add(self, service: str, number: int = 1, state: str = "running", *, oneoff: bool = False,
            project: str = PROJECT) -> dict[str, Any]:  # fmt: skip
        name = f"{project}-{service}-{'run-' if oneoff else ''}{number}"
        labels = L.container_labels(
            L.ProjectIdentity(project, "/tmp", ()), service, number, config_hash="x", oneoff=oneoff
        )
        row = {"id": name + "-id", "name": name, "state": state, "labels": labels, "exit_code": 0}
        self.rows[row["id"]] = row
        return row

    def container_intact(self, ref: str) -> bool:
        return True

    def list_containers(self, all: bool = False, labels: dict | None = None) -> list[dict]:
        rows = [r for r in self.rows.values() if all or r["state"] in lifecycle.ACTIVE]
        wanted = (labels or {}).items()
        return [dict(r) for r in rows if wanted <= r["labels"].items()]

    def _do(self, op: str, ref: str, state: str | None) -> dict:
        row = self.rows[ref]
        began = time.monotonic()
        if (op, row["name"]) in self.fail:
            raise ContainerConflict(f"{op} failed", subject=row["name"])
        time.sleep(self.delay)
        with self._lock:
            self.calls.append((op, row["name"]))
            self.spans[(op, row["name"])] = (began, time.monotonic())
            if state:
                row["state"] = state
        return row

    def start_container(self, ref: str) -> dict:
        return self._do("start", ref, "running")

    def stop_container(self, ref: str, timeout: float | None = None) -> dict:
        self.rows[ref]["timeout"] = timeout
        return self._do("stop", ref, "exited")

    def kill_container(self, ref: str, signal: int | str = "SIGKILL") -> None:
        self.rows[ref]["signal"] = signal
        self._do("kill", ref, "exited")

    def pause_container(self, ref: str) -> None:
        self._do("pause", ref, "paused")

    def unpause_container(self, ref: str) -> None:
        self._do("unpause", ref, "running")

    def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        self._do("remove", ref, None)
        self.rows.pop(ref)["volumes"] = volumes
        return ref

    def get_container(self, ref: str) -> dict:
        return dict(self.rows[ref])

    def inspect_container(self, ref: str) -> dict:
        row = self.rows[ref]
        health = row.get("health")
        state = {"Status": row["state"], **({"Health": {"Status": health}} if health else {})}
        return {"State": state, "Config": {"Healthcheck": {"Test": ["CMD", "true"]} if health else None}}


class Recorder:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        self.lines.append((kind, name, status))

    def warning(self, message: str) -> None:
        self.lines.append(("WARN", message, ""))

    def close(self) -> None:
        pass


def ops(engine: FakeEngine, op: str) -> list[str]:
    return [name.removeprefix(PROJECT + "-") for o, name in engine.calls if o == op]


@pytest.fixture
def stack(tmp_path):
    engine = FakeEngine()
    for service in ("db", "cache", "api", "web"):
        engine.add(service)
    engine.add("web", 2)
    return load(tmp_path), engine, Recorder()


def test_stop_goes_dependents_first_generation_by_generation(stack):
    loaded, engine, events = stack
    lifecycle.stop(loaded, engine, events, timeout=3)
    order = ops(engine, "stop")
    assert set(order[:2]) == {"web-1", "web-2"}
    assert order[2] == "api-1" and set(order[3:]) == {"db-1", "cache-1"}
    assert all(row["state"] == "exited" and row["timeout"] == 3 for row in engine.rows.values())
    at = {line: i for i, line in enumerate(events.lines)}
    api = at[("Container", f"{PROJECT}-api-1", "Stopping")]
    assert all(at[("Container", f"{PROJECT}-web-{n}", "Stopped")] < api for n in (1, 2))
    assert events.lines.count(("Container", f"{PROJECT}-api-1", "Stopped")) == 1


def test_stop_of_one_service_leaves_its_dependencies(stack):
    loaded, engine, events = stack
    lifecycle.stop(loaded, engine, events, ["api"])
    assert ops(engine, "stop") == ["api-1"]


def test_one_generation_runs_in_parallel(stack):
    loaded, engine, events = stack
    engine.delay = 0.3
    began = time.monotonic()
    lifecycle.stop(loaded, engine, events)
    elapsed = time.monotonic() - began
    assert elapsed < 3 * 0.3 + 0.25  # three generations, not five containers one by one
    first, second = engine.spans[("stop", f"{PROJECT}-web-1")], engine.spans[("stop", f"{PROJECT}-web-2")]
    assert first[0] < second[1] and second[0] < first[1]  # overlapped
    api = engine.spans[("stop", f"{PROJECT}-api-1")]
    assert api[0] >= max(first[1], second[1])  # after its dependents


def test_start_starts_dependencies_first_and_skips_running(stack):
    loaded, engine, events = stack
    for row in engine.rows.values():
        row["state"] = "exited"
    engine.rows[f"{PROJECT}-cache-1-id"]["state"] = "running"
    lifecycle.start(loaded, engine, events, ["web"])
    assert ops(engine, "start")[0] == "db-1"
    assert ops(engine, "start")[1] == "api-1" and set(ops(engine, "start")[2:]) == {"web-1", "web-2"}
    assert ("Container", f"{PROJECT}-db-1", "Started") in events.lines


def test_start_of_a_service_without_containers_is_docker_composes_error(stack):
    loaded, engine, events = stack
    engine.rows.pop(f"{PROJECT}-db-1-id")
    with pytest.raises(ComposeError, match='service "db" has no container to start'):
        lifecycle.start(loaded, engine, events, ["web"])
    assert engine.calls == []  # decided before acting
    lifecycle.start(loaded, engine, events, ["cache"])  # scale 0 services (worker) are not an error


def test_unknown_service_is_no_such_service(stack):
    loaded, engine, events = stack
    for command in (lifecycle.stop, lifecycle.pause, lifecycle.rm, lifecycle.kill, lifecycle.start):
        with pytest.raises(InvalidProjectError, match="no such service: nope"):
            command(loaded, engine, events, ["nope"])


def test_start_waits_for_a_healthy_dependency(tmp_path):
    loaded = load(tmp_path, """
        services:
          db: {image: busybox, healthcheck: {test: ["CMD", "true"]}}
          web: {image: busybox, depends_on: {db: {condition: service_healthy}}}
    """)  # fmt: skip
    engine, events = FakeEngine(), Recorder()
    db = engine.add("db", state="exited")
    engine.add("web", state="exited")
    db["health"] = "starting"
    threading.Timer(0.3, lambda: db.update(health="healthy")).start()
    lifecycle.start(loaded, engine, events)
    assert ("Container", db["name"], "Healthy") in events.lines
    assert ops(engine, "start") == ["db-1", "web-1"]
    db["health"] = "unhealthy"
    engine.rows[f"{PROJECT}-web-1-id"]["state"] = "exited"
    with pytest.raises(ComposeError, match="is unhealthy"):
        lifecycle.start(loaded, engine, events, ["web"])


def test_restart_follows_restart_true_edges_only(stack):
    loaded, engine, events = stack
    lifecycle.restart(loaded, engine, events, ["db"], timeout=1)
    assert ops(engine, "stop")[:2] == ["db-1", "api-1"]  # each stop right before its start
    restarted = ops(engine, "start")
    assert restarted[:2] == ["db-1", "api-1"] and set(restarted[2:]) == {"web-1", "web-2"}
    assert "cache-1" not in restarted  # api depends on cache, but cache is not restarted
    assert ("Container", f"{PROJECT}-api-1", "Restarting") in events.lines
    engine.calls.clear()
    lifecycle.restart(loaded, engine, events, ["cache"])  # api -> cache has restart: false
    assert ops(engine, "start") == ["cache-1"]
    engine.calls.clear()
    lifecycle.restart(loaded, engine, events, ["db"], no_deps=True)
    assert ops(engine, "start") == ["db-1"]


def test_restart_selection_and_generations_are_pure():
    edges = [Dependency("b", "a", restart=True), Dependency("c", "b", restart=True), Dependency("d", "a")]
    assert lifecycle.restart_selection("abcd", edges, ["a"]) == {"a", "b", "c"}
    assert lifecycle.restart_selection("abcd", edges, ["a"], no_deps=True) == {"a"}
    assert lifecycle.restart_selection("abcd", edges, []) == set("abcd")
    assert lifecycle.generations("abcd", edges) == [["a"], ["b", "d"], ["c"]]
    with pytest.raises(InvalidProjectError):
        lifecycle.generations("ab", [Dependency("a", "b"), Dependency("b", "a")])


def test_pause_and_unpause_touch_only_the_right_states(stack):
    loaded, engine, events = stack
    engine.rows[f"{PROJECT}-db-1-id"]["state"] = "exited"
    lifecycle.pause(loaded, engine, events)
    assert set(ops(engine, "pause")) == {"cache-1", "api-1", "web-1", "web-2"}
    assert ("Container", f"{PROJECT}-api-1", "Paused") in events.lines
    lifecycle.pause(loaded, engine, events)  # already paused: nothing more
    assert len(ops(engine, "pause")) == 4
    lifecycle.unpause(loaded, engine, events, ["web"])
    assert set(ops(engine, "unpause")) == {"web-1", "web-2"}
    assert engine.rows[f"{PROJECT}-api-1-id"]["state"] == "paused"


def test_kill_includes_one_offs_and_orphans_only_when_asked(stack):
    loaded, engine, events = stack
    engine.add("web", 1, oneoff=True)
    engine.add("gone")  # a service no longer in the file
    engine.add("db", project="other")  # another project: never touched
    killed = lifecycle.kill(loaded, engine, events, signal="SIGTERM")
    assert set(killed) == {
        f"{PROJECT}-{n}" for n in ("db-1", "cache-1", "api-1", "web-1", "web-2", "web-run-1")
    }
    order = ops(engine, "kill")
    assert order.index("api-1") > order.index("web-1") and order.index("db-1") > order.index("api-1")
    assert engine.rows[f"{PROJECT}-web-1-id"]["signal"] == "SIGTERM"
    assert lifecycle.kill(loaded, engine, events) == []
    assert lifecycle.kill(loaded, engine, events, remove_orphans=True) == [f"{PROJECT}-gone-1"]
    assert engine.rows["other-db-1-id"]["state"] == "running"


def test_rm_removes_stopped_only_after_confirmation(stack):
    loaded, engine, events = stack
    engine.add("web", 1, state="exited", oneoff=True)
    engine.rows[f"{PROJECT}-web-2-id"]["state"] = "exited"
    engine.rows[f"{PROJECT}-db-1-id"]["state"] = "created"
    asked: list[list[str]] = []
    assert lifecycle.rm(loaded, engine, events, confirm=lambda names: asked.append(names) or False) == []
    assert asked == [[f"{PROJECT}-db-1", f"{PROJECT}-web-2"]] and engine.calls == []
    removed = lifecycle.rm(loaded, engine, events, volumes=True, confirm=lambda names: True)
    assert removed == [f"{PROJECT}-db-1", f"{PROJECT}-web-2"]
    assert f"{PROJECT}-web-run-1-id" in engine.rows  # one-offs are not rm's
    assert ("Container", f"{PROJECT}-web-2", "Removed") in events.lines
    asked.clear()
    assert lifecycle.rm(loaded, engine, events, confirm=lambda names: asked.append(names) or True) == []
    assert asked == []  # nothing stopped: no question


def test_rm_stop_first_stops_then_removes(stack):
    loaded, engine, events = stack
    removed = lifecycle.rm(loaded, engine, events, ["api", "web"], stop_first=True)
    assert sorted(removed) == [f"{PROJECT}-api-1", f"{PROJECT}-web-1", f"{PROJECT}-web-2"]
    assert ops(engine, "stop")[-1] == "api-1"
    assert sorted(r["name"] for r in engine.rows.values()) == [f"{PROJECT}-cache-1", f"{PROJECT}-db-1"]


def test_a_failure_finishes_the_generation_then_raises(stack):
    loaded, engine, events = stack
    engine.fail.add(("stop", f"{PROJECT}-web-1"))
    with pytest.raises(ContainerConflict, match="stop failed"):
        lifecycle.stop(loaded, engine, events)
    assert ops(engine, "stop") == ["web-2"]  # its sibling done, the next generation not begun
    assert ("Container", f"{PROJECT}-web-1", "Error") in events.lines


def test_confirm_removal_asks_like_docker_compose():
    out = io.StringIO()
    assert confirm_removal(["shop-web-1"], out, io.StringIO("y\n"), force=False)
    assert out.getvalue() == "Going to remove shop-web-1\nAre you sure? [yN] "
    assert not confirm_removal(["a", "b"], io.StringIO(), io.StringIO(""), force=False)
    assert not confirm_removal(["a"], io.StringIO(), io.StringIO("n\n"), force=False)
    out = io.StringIO()
    assert confirm_removal(["a", "b"], out, io.StringIO(""), force=True)
    assert out.getvalue() == "Going to remove a, b\n"


def test_plain_events_and_dry_run_engine(stack):
    loaded, engine, _ = stack
    stream = io.StringIO()
    events = PlainEvents(stream, dry_run=True)
    lifecycle.stop(loaded, DryRunEngine(engine), events, ["api"])
    assert engine.calls == [] and engine.rows[f"{PROJECT}-api-1-id"]["state"] == "running"
    lines = stream.getvalue().splitlines()
    assert all("DRY-RUN MODE" in line for line in lines) and len(lines) == 2
    assert lines[0].endswith(f"Container {PROJECT}-api-1  Stopping")
    assert lines[1].endswith(f"Container {PROJECT}-api-1  Stopped")
