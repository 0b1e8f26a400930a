"""Pure parts of the executor and the up/down/scale commands: records -> Observed, waits' verdicts,
scale arguments, orphan warning, the flags the parser accepts."""

from __future__ import annotations

import json

import pytest

from compose.cli.commands.up import parse_scale
from compose.cli.parser import build_parser
from compose.errors import ComposeError, UsageError
from compose.labels import CONFIG_HASH, CONTAINER_NUMBER, ONEOFF, PROJECT, SERVICE
from compose.run.executor import (
    _exited,
    _healthy,
    _running_or_done,
    health_of,
    orphan_warning,
)
from compose.run.observe import as_observed, container_number, project_containers, project_names


def record(name: str, service: str, number: str, *, project: str = "shop", oneoff: str = "False", **extra):  # type: ignore[no-untyped-def]
    labels = {PROJECT: project, SERVICE: service, CONTAINER_NUMBER: number, ONEOFF: oneoff, CONFIG_HASH: "h"}
    return {
        "id": name + "-id",
        "name": name,
        "image_id": "sha256:i",
        "state": "running",
        "labels": labels,
        **extra,
    }


class Listing:
    """list_containers over fixed records, with the engine's label-match rule (key present, value equal)."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        self.asked: list[dict] = []

    def list_containers(self, all: bool = False, labels: dict | None = None) -> list[dict]:
        self.asked.append({"all": all, "labels": labels})
        found = [r for r in self.records if all or r["state"] == "running"]
        return [r for r in found if _matches(r["labels"], labels or {})]


def _matches(have: dict, want: dict) -> bool:
    return all(k in have and (v is None or have[k] == v) for k, v in want.items())


def test_as_observed_reads_the_labels() -> None:
    seen = as_observed(record("shop-web-2", "web", "2", state="exited"))
    assert (seen.service, seen.number, seen.config_hash, seen.image_id, seen.state, seen.oneoff) == (
        "web",
        2,
        "h",
        "sha256:i",
        "exited",
        False,
    )
    assert as_observed(record("x", "web", "1", oneoff="True")).oneoff is True


@pytest.mark.parametrize("value, number", [("3", 3), ("", 0), ("x", 0)])
def test_a_garbled_number_is_zero_so_the_planner_removes_it(value: str, number: int) -> None:
    assert container_number(record("c", "web", value)) == number


def test_project_containers_by_label_sorted_by_service_then_number() -> None:
    engine = Listing(
        [
            record("shop-web-10", "web", "10"),
            record("shop-web-2", "web", "2"),
            record("shop-db-1", "db", "1", state="exited"),
            record("shop-web-run-ab", "web", "1", oneoff="True"),
            record("other-web-1", "web", "1", project="other"),
            {**record("shop-web-3", "web", "3"), "labels": {}},  # same-looking name, no labels: not ours
        ]
    )
    assert [r["name"] for r in project_containers(engine, "shop")] == [
        "shop-db-1",
        "shop-web-2",
        "shop-web-10",
    ]
    assert [r["name"] for r in project_containers(engine, "shop", services=["web"], all=False)] == [
        "shop-web-2",
        "shop-web-10",
    ]
    assert [r["name"] for r in project_containers(engine, "shop", oneoff=True)] == ["shop-web-run-ab"]
    assert len(project_containers(engine, "shop", oneoff=None)) == 4


def test_project_names_groups_every_labelled_container() -> None:
    engine = Listing([record("a-web-1", "web", "1", project="a"), record("b-db-1", "db", "1", project="b")])
    found = project_names(engine)
    assert {name: [r["name"] for r in rows] for name, rows in found.items()} == {
        "a": ["a-web-1"],
        "b": ["b-db-1"],
    }


def health(status: str | None, state: str = "running", exit_code: int | None = None) -> dict:
    return {
        "state": state,
        "exit_code": exit_code,
        "health": json.dumps({"Status": status}) if status else None,
    }


def test_healthy_waits_then_succeeds_or_fails_clearly() -> None:
    assert health_of(health(None)) is None
    assert _healthy("db", health("starting")) is None
    assert _healthy("db", health("healthy")) is True
    with pytest.raises(ComposeError, match="container db is unhealthy"):
        _healthy("db", health("unhealthy"))
    with pytest.raises(ComposeError, match=r"container db exited \(1\)"):
        _healthy("db", health("starting", state="exited", exit_code=1))


def test_completed_successfully_needs_exit_zero() -> None:
    assert _exited("init", health(None)) is None
    assert _exited("init", health(None, state="exited", exit_code=0)) == 0
    with pytest.raises(ComposeError, match='service "init" didn\'t complete successfully: exit 2'):
        _exited("init", health(None, state="exited", exit_code=2))


def test_wait_accepts_running_or_a_clean_exit() -> None:
    assert _running_or_done("web", health(None)) is True
    assert _running_or_done("web", health(None, state="created")) is None
    assert _running_or_done("web", health(None, state="exited", exit_code=0)) is True
    with pytest.raises(ComposeError):
        _running_or_done("web", health(None, state="exited", exit_code=1))


def test_parse_scale() -> None:
    assert parse_scale(["web=3", "db=0"]) == (("web", 3), ("db", 0))
    for bad in ("web", "web=", "=2", "web=-1", "web=x"):
        with pytest.raises(UsageError):
            parse_scale([bad])


def test_orphan_warning_names_each_service_once() -> None:
    orphans = [as_observed(record("shop-old-1", "old", "1")), as_observed(record("shop-old-2", "old", "2"))]
    text = orphan_warning("shop", orphans)
    assert text.startswith("Found orphan containers ([old]) for this project.")
    assert "--remove-orphans" in text


def test_the_commands_take_docker_compose_flags() -> None:
    parser = build_parser()
    up = parser.parse_args(
        [
            "up", "-d", "--build", "--pull", "always", "--force-recreate", "--no-deps", "--scale", "web=2",
            "--wait", "--wait-timeout", "5", "-t", "3", "--remove-orphans", "--always-recreate-deps",
            "-V", "--quiet-pull", "--no-start", "--attach", "web", "--no-attach", "db", "--no-log-prefix",
            "--no-color", "--timestamps", "--abort-on-container-exit", "--exit-code-from", "web", "web",
        ]
    )  # fmt: skip
    assert (up.detach, up.build, up.pull, up.scale, up.wait_timeout, up.timeout, up.services) == (
        True,
        True,
        "always",
        ["web=2"],
        5.0,
        3.0,
        ["web"],
    )
    down = parser.parse_args(["down", "-v", "--rmi", "local", "--remove-orphans", "-t", "1"])
    assert (down.volumes, down.rmi, down.remove_orphans, down.timeout) == (True, "local", True, 1.0)
    scale = parser.parse_args(["scale", "--no-deps", "web=3", "db=1"])
    assert (scale.scale, scale.no_deps) == (["web=3", "db=1"], True)
    create = parser.parse_args(["create", "--no-recreate", "--no-build", "web"])
    assert (create.no_recreate, create.no_build, create.services) == (True, True, ["web"])
    with pytest.raises(UsageError):
        parser.parse_args(["down", "--rmi", "some"])


# -- down by name, unused networks, half-made containers (a fake engine that records what it is asked) --


class Recorded:
    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        self.lines.append((kind, name, status))

    def warning(self, message: str) -> None:
        self.lines.append(("warning", message, ""))

    def close(self) -> None:
        pass

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str]] = []


class FakeEngine(Listing):
    """Containers, networks and volumes with labels; removals recorded, in-use networks refused."""

    def __init__(self, records: list[dict], networks: list, volumes: list, *, in_use: set[str] = frozenset()):  # type: ignore[no-untyped-def]
        super().__init__(records)
        self.networks, self.volumes, self.in_use = networks, volumes, set(in_use)
        self.calls: list[tuple[str, str]] = []

    def stop_container(self, ref: str, timeout: float | None = None) -> dict:
        self.calls.append(("stop", ref))
        return {}

    def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        self.calls.append(("rm", ref))
        self.records = [r for r in self.records if r["id"] != ref]
        return ref

    def list_networks(self) -> list:
        return list(self.networks)

    def remove_network(self, ref: str) -> str:
        from engine.errors import NetworkInUse

        if ref in self.in_use:
            raise NetworkInUse(f"network {ref} is in use", subject=ref)
        self.calls.append(("rm-net", ref))
        self.networks = [n for n in self.networks if n.id != ref]
        return ref

    def list_volumes(self) -> list:
        return list(self.volumes)

    def remove_volume(self, name: str, force: bool = False) -> bool:
        self.calls.append(("rm-vol", name))
        return True


def _network(name: str, project: str | None):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    labels = {PROJECT: project} if project else {}
    return SimpleNamespace(id=name + "-id", name=name, spec=SimpleNamespace(labels=labels))


def _volume(name: str, project: str | None):  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    return SimpleNamespace(name=name, labels={PROJECT: project} if project else {})


def test_down_by_name_removes_only_that_projects_containers_networks_and_volumes() -> None:
    from compose.run.executor import DownRequest, LabelsOnlyRunner

    engine = FakeEngine(
        [
            record("shop-web-1", "web", "1"),
            record("shop-db-1", "db", "1", state="exited"),
            record("bank-web-1", "web", "1", project="bank"),
        ],
        [_network("shop_default", "shop"), _network("bank_default", "bank"), _network("ext", None)],
        [_volume("shop_data", "shop"), _volume("bank_data", "bank"), _volume("loose", None)],
    )
    events = Recorded()
    LabelsOnlyRunner("shop", engine, events).down(DownRequest(volumes=True))
    assert sorted(c for c in engine.calls if c[0] == "rm") == [
        ("rm", "shop-db-1-id"),
        ("rm", "shop-web-1-id"),
    ]
    assert ("stop", "shop-web-1-id") in engine.calls and ("stop", "shop-db-1-id") not in engine.calls
    assert [c for c in engine.calls if c[0] != "rm" and c[0] != "stop"] == [
        ("rm-net", "shop_default-id"),
        ("rm-vol", "shop_data"),
    ]
    assert ("Volume", "shop_data", "Removed") in events.lines


def test_down_by_name_without_v_keeps_volumes_and_has_no_project_model() -> None:
    from compose.errors import InvalidProjectError
    from compose.run.executor import DownRequest, LabelsOnlyRunner

    engine = FakeEngine([record("shop-web-1", "web", "1")], [], [_volume("shop_data", "shop")])
    runner = LabelsOnlyRunner("shop", engine, Recorded())
    runner.down(DownRequest())
    assert ("rm-vol", "shop_data") not in engine.calls
    with pytest.raises(InvalidProjectError):
        runner.project  # noqa: B018 (the property raises)


def test_an_unused_network_of_the_project_is_renewed_one_in_use_or_not_ours_is_kept() -> None:
    from compose.run.executor import LabelsOnlyRunner

    engine = FakeEngine([], [], [], in_use={"busy-id"})
    runner = LabelsOnlyRunner("shop", engine, Recorded())
    assert runner._renew_unused(_network("idle", "shop")) is True
    assert runner._renew_unused(_network("busy", "shop")) is False
    assert runner._renew_unused(_network("theirs", "bank")) is False
    assert engine.calls == [("rm-net", "idle-id")]


def test_a_container_that_is_not_intact_is_made_again_instead_of_started() -> None:
    from compose.plan.converge import Action
    from compose.run.executor import LabelsOnlyRunner, _Run

    class Runner(LabelsOnlyRunner):
        def _recreate(self, action, run) -> None:  # type: ignore[no-untyped-def]
            self.did.append(("recreate", action.container.id))

        def _start(self, name: str, cid: str) -> None:
            self.did.append(("start", cid))

    engine = FakeEngine([], [], [])
    engine.container_intact = lambda ref: ref == "whole-id"  # type: ignore[attr-defined]
    runner = Runner("shop", engine, Recorded())
    runner.did = []  # type: ignore[attr-defined]
    for name in ("whole", "half"):
        seen = as_observed(record(name, "web", "1", state="exited"))
        runner._start_existing(Action("start", "web", 1, seen), _Run())
    assert runner.did == [("start", "whole-id"), ("recreate", "half-id")]  # type: ignore[attr-defined]
