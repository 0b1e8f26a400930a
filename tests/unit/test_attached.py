"""Attached `up`'s pure parts: flag rules and messages, the attached services, exit detection over
successive records (restarts, missed restarts, settling), the cascade verdicts, the Follower's first read."""

from __future__ import annotations

import argparse
import re

import pytest

from compose.cli.attached import (
    CANCELLED,
    Exit,
    ExitWatch,
    Verdict,
    _RunFollower,
    attach_services,
    cascade_mode,
    may_restart,
    validate,
)
from compose.cli.commands.image import parse_time
from compose.errors import UsageError
from compose.loader.pipeline import ProjectOptions, load_project

COMPOSE = """
name: pyct-attached
services:
  db:
    image: busybox
  cache:
    image: busybox
    attach: false
    restart: always
  web:
    image: busybox
    depends_on: [db, cache]
    deploy:
      restart_policy: {condition: none}
  worker:
    image: busybox
    restart: "no"
    deploy:
      restart_policy: {condition: on-failure}
"""


@pytest.fixture
def project(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    loaded = load_project(ProjectOptions(files=(str(tmp_path / "compose.yaml"),), environ={}))
    return loaded.model


def flags(**given: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "services": [],
        "attach": [],
        "no_attach": [],
        "attach_dependencies": False,
        "abort_on_container_exit": False,
        "abort_on_container_failure": False,
        "exit_code_from": None,
        "wait": False,
    }
    values.update(given)
    return argparse.Namespace(**values)


# -- flags ------------------------------------------------------------------------------------------------


def test_cascade_modes() -> None:
    assert cascade_mode(flags()) == "ignore"
    assert cascade_mode(flags(abort_on_container_exit=True)) == "stop"
    assert cascade_mode(flags(abort_on_container_failure=True)) == "fail"
    assert cascade_mode(flags(exit_code_from="web")) == "stop"  # implies abort on exit
    assert cascade_mode(flags(exit_code_from="web", abort_on_container_failure=True)) == "fail"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"abort_on_container_exit": True, "abort_on_container_failure": True},
            "--abort-on-container-failure cannot be combined with --abort-on-container-exit",
        ),
        (
            {"attach": ["web"], "attach_dependencies": True},
            "cannot combine --attach and --attach-dependencies",
        ),
        ({"exit_code_from": "nope"}, "no such service: nope"),
        ({"attach": ["web", "zed", "abc"]}, "cannot attach to services not included in up: abc, zed"),
        ({"wait": True, "abort_on_container_exit": True}, "--wait cannot be combined with"),
    ],
)
def test_flag_errors(project, given: dict, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=re.escape(message)):
        validate(flags(**given), project)


def test_valid_flags_pass(project) -> None:  # type: ignore[no-untyped-def]
    validate(flags(exit_code_from="web", attach=["web", "db"], no_attach=["db"]), project)


def test_attached_services(project) -> None:  # type: ignore[no-untyped-def]
    # all services but `attach: false` ones, in the project's order
    assert attach_services(flags(), project) == ["db", "web", "worker"]
    # the named services only; their dependencies with --attach-dependencies (still not `attach: false`)
    assert attach_services(flags(services=["web"]), project) == ["web"]
    assert attach_services(flags(services=["web"], attach_dependencies=True), project) == ["db", "web"]
    # --attach wins over `attach: false`; --no-attach takes away
    assert attach_services(flags(attach=["cache", "web"]), project) == ["cache", "web"]
    assert attach_services(flags(no_attach=["db", "worker"]), project) == ["web"]


def test_restart_policies(project) -> None:  # type: ignore[no-untyped-def]
    assert may_restart(project, "cache")  # restart: always
    assert not may_restart(project, "db")  # none
    assert not may_restart(project, "web")  # deploy condition none
    assert may_restart(project, "worker")  # deploy's on-failure wins over restart: "no"
    assert not may_restart(project, "gone")


# -- exits ------------------------------------------------------------------------------------------------


def record(state: str, started: str | None = "2026-01-01T00:00:00.000001Z", code: int | None = None, **more):  # type: ignore[no-untyped-def]
    base = {
        "id": "c1",
        "name": "p-web-1",
        "state": state,
        "started_at": started,
        "exit_code": code,
        "labels": {"com.docker.compose.service": "web"},
    }
    return {**base, **more}


def codes(exits: list[Exit]) -> list[tuple[int | None, bool]]:
    return [(e.code, e.restarting) for e in exits]


def test_a_final_exit_is_reported_once_and_waits_for_the_reader() -> None:
    watch = ExitWatch()
    assert watch.update([record("running")]) == []
    assert watch.update([record("exited", code=3)], ready=lambda cid: False) == []  # lines still coming
    exits = watch.update([record("exited", code=3)])
    assert codes(exits) == [(3, False)]
    assert (exits[0].service, exits[0].name) == ("web", "p-web-1")
    assert watch.ended("c1")
    assert watch.update([record("exited", code=3)]) == []


def test_never_started_and_running_containers_have_no_exit() -> None:
    watch = ExitWatch()
    assert watch.update([record("created", started=None)]) == []
    assert watch.update([record("running"), record("paused", id="c2")]) == []
    assert not watch.ended("c1")


def test_a_container_that_exited_before_attaching_is_reported() -> None:
    assert codes(ExitWatch().update([record("exited", code=0)])) == [(0, False)]


def test_restarts_each_run_once_and_a_missed_one_without_code() -> None:
    watch = ExitWatch()
    watch.update([record("running", started="t1")])
    # the supervisor's back-off: exit code kept; restart_count moving does not make a new run
    assert codes(watch.update([record("restarting", started="t1", code=2)])) == [(2, True)]
    assert watch.update([record("restarting", started="t1", code=2, restart_count=1)]) == []
    assert watch.update([record("running", started="t2")]) == []
    # died and came back between two looks: no code left in the engine
    assert codes(watch.update([record("running", started="t3")])) == [(None, True)]
    assert codes(watch.update([record("exited", started="t3", code=2)])) == [(2, False)]


def test_an_exit_of_a_restartable_service_settles_first() -> None:
    now = [100.0]
    watch = ExitWatch(settle=lambda service: 1.0 if service == "web" else 0.0, clock=lambda: now[0])
    watch.update([record("running", started="t1")])
    assert watch.update([record("exited", started="t1", code=2)]) == []  # the supervisor may restart it
    now[0] += 0.5
    assert watch.update([record("exited", started="t1", code=2)]) == []
    now[0] += 0.6
    assert codes(watch.update([record("exited", started="t1", code=2)])) == [(2, False)]


# -- verdicts ---------------------------------------------------------------------------------------------


def exit_of(service: str, code: int | None) -> Exit:
    return Exit("id-" + service, f"p-{service}-1", service, code, False)


def test_no_cascade_keeps_status_zero() -> None:
    verdict = Verdict()
    assert not verdict.exited(exit_of("web", 3))
    assert verdict.status() == 0 and not verdict.quiet


def test_abort_on_exit_takes_the_first_exit() -> None:
    verdict = Verdict("stop")
    assert verdict.exited(exit_of("web", 0))
    assert verdict.quiet
    assert not verdict.exited(exit_of("db", 137))  # stopped by the abort: changes nothing
    assert verdict.status() == 0


def test_abort_on_failure_waits_for_a_non_zero_code() -> None:
    verdict = Verdict("fail")
    assert not verdict.exited(exit_of("init", 0))
    assert not verdict.exited(exit_of("web", None))  # unknown code: not a known failure
    assert verdict.exited(exit_of("web", 4))
    assert verdict.status() == 4


def test_exit_code_from_takes_that_services_first_code() -> None:
    verdict = Verdict("stop", "db")
    assert verdict.exited(exit_of("web", 3))
    assert verdict.status() == 3  # until db ends
    verdict.exited(exit_of("db", 143))
    verdict.exited(exit_of("db", 1))
    assert verdict.status() == 143


def test_a_signal_makes_it_130() -> None:
    verdict = Verdict("stop", "db")
    verdict.exited(exit_of("db", 5))
    verdict.cancelled = True
    assert verdict.quiet and verdict.status() == CANCELLED == 130


# -- the follower's first read ----------------------------------------------------------------------------


def test_first_read_starts_at_the_current_run() -> None:
    follower = _RunFollower(None, "p", ["web"], 0, None, {"tail": None, "since": None, "until": None})
    started = "2026-01-01T00:00:10.000000Z"
    first = follower.first_options(record("running", started=started))
    assert first["since"] == pytest.approx(parse_time(started) - 1.0)
    # not the previous run's last lines
    after = record("running", started=started, finished_at="2026-01-01T00:00:09.800000Z")
    assert follower.first_options(after)["since"] == pytest.approx(parse_time(started) - 0.2, abs=1e-5)
    assert follower.first_options(record("created", started=None))["since"] is None
