"""Services turned off by profiles are not orphans: `up/down --remove-orphans` keep their containers.

docker compose (isOrphaned: not in the project's services nor in its disabled services) keeps a
`--profile debug` container when the next `up` runs without that profile; the loader must tell the
executor which services were turned off, or the planner removes them as orphans.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compose.labels import CONFIG_HASH, CONTAINER_NUMBER, ONEOFF, PROJECT, SERVICE
from compose.loader.pipeline import LoadedProject, ProjectOptions, load_project
from compose.plan.converge import UpOptions, plan_up
from compose.run.executor import DownRequest, ProjectRunner
from compose.run.observe import as_observed

COMPOSE = """\
name: pyctprof
services:
  web:
    image: busybox
  debug:
    image: busybox
    profiles: [debug]
  tools:
    image: busybox
    profiles: [ops, debug]
"""


@pytest.fixture
def project_file(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    return path


def load(path: Path, *profiles: str) -> LoadedProject:
    return load_project(
        ProjectOptions(files=[str(path)], profiles=profiles, environ={}, cwd=str(path.parent))
    )


def record(service: str, number: int = 1) -> dict[str, Any]:
    labels = {
        PROJECT: "pyctprof",
        SERVICE: service,
        CONTAINER_NUMBER: str(number),
        ONEOFF: "False",
        CONFIG_HASH: "h",
    }
    name = f"pyctprof-{service}-{number}"
    return {"id": name + "-id", "name": name, "image_id": "sha256:i", "state": "running", "labels": labels}


class FakeEngine:
    """The engine calls `down` makes, over fixed records; remembers what it stopped and removed."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.removed: list[str] = []

    def list_containers(self, all: bool = False, labels: dict | None = None) -> list[dict[str, Any]]:
        want = labels or {}
        return [r for r in self.records if _matches(r["labels"], want)]

    def stop_container(self, cid: str, timeout: float | None = None) -> None:
        pass

    def remove_container(self, cid: str, force: bool = False, volumes: bool = False) -> None:
        self.removed.append(cid.removesuffix("-id"))
        self.records = [r for r in self.records if r["id"] != cid]

    def list_networks(self) -> list[Any]:
        return []


def _matches(have: dict, want: dict) -> bool:
    """The engine's label rule: key present, and equal unless the wanted value is None."""
    return all(k in have and (v is None or have[k] == v) for k, v in want.items())


class Events:
    """Swallows progress events; keeps warnings (the orphan warning is one)."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def test_loader_names_the_services_profiles_turned_off(project_file: Path) -> None:
    assert load(project_file).disabled_services == ("debug", "tools")
    assert load(project_file, "ops").disabled_services == ("debug",)
    assert load(project_file, "debug").disabled_services == ()
    assert load(project_file, "*").disabled_services == ()
    assert sorted(load(project_file, "ops").data["services"]) == ["tools", "web"]


def test_runner_takes_the_disabled_services_from_the_loader(project_file: Path) -> None:
    loaded = load(project_file)
    assert ProjectRunner(loaded, FakeEngine([]), Events()).disabled == ("debug", "tools")
    # an explicit list still wins (up.py may pass one)
    assert ProjectRunner(loaded, FakeEngine([]), Events(), disabled=["debug"]).disabled == ("debug",)


def test_up_remove_orphans_keeps_a_disabled_profile_container(project_file: Path) -> None:
    loaded = load(project_file)
    runner = ProjectRunner(loaded, FakeEngine([]), Events())
    observed = [as_observed(record(s)) for s in ("web", "debug", "gone")]
    plan = plan_up(loaded.model, observed, {}, {}, UpOptions(remove_orphans=True, disabled=runner.disabled))
    removed = {a.service for g in plan.generations for a in g if a.kind == "remove"}
    assert removed == {"gone"}
    assert [c.service for c in plan.orphans] == ["gone"]
    # the same project without the loader's list: the debug container would go (what this fixes)
    blind = plan_up(loaded.model, observed, {}, {}, UpOptions(remove_orphans=True))
    assert {a.service for g in blind.generations for a in g if a.kind == "remove"} == {"gone", "debug"}


def test_down_remove_orphans_keeps_a_disabled_profile_container(project_file: Path) -> None:
    engine = FakeEngine([record("web"), record("debug"), record("gone")])
    events = Events()
    ProjectRunner(load(project_file), engine, events).down(DownRequest(remove_orphans=True))
    assert sorted(engine.removed) == ["pyctprof-gone-1", "pyctprof-web-1"]
    assert [r["name"] for r in engine.records] == ["pyctprof-debug-1"]


def test_down_warns_about_real_orphans_only(project_file: Path) -> None:
    engine = FakeEngine([record("web"), record("debug"), record("gone")])
    events = Events()
    ProjectRunner(load(project_file), engine, events).down(DownRequest())
    assert engine.removed == ["pyctprof-web-1"]
    assert len(events.warnings) == 1 and "[gone]" in events.warnings[0]
