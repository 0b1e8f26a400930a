"""The one-off's spec as docker compose run makes it (compose/run/oneoff), and cp's SERVICE:PATH split."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compose.cli.commands.run import split_target
from compose.errors import UsageError
from compose.loader.pipeline import ProjectOptions, load_project
from compose.plan.specs import ImageFacts
from compose.run.oneoff import (
    RunRequest,
    dependencies_of,
    oneoff_spec,
    parse_env,
    parse_publish,
    parse_volume,
)
from engine.api import PortBinding

COMPOSE = """
name: demo
services:
  db:
    image: busybox
  cache:
    image: busybox
    depends_on: [db]
  web:
    image: busybox
    entrypoint: ["/entry.sh"]
    command: ["serve", "--port", "80"]
    environment: {A: "1", B: "2"}
    user: app
    working_dir: /srv
    restart: always
    ports: ["8080:80"]
    labels: {role: web}
    volumes: [data:/data]
    depends_on: [cache]
volumes:
  data: {}
"""
FACTS = ImageFacts("sha256:" + "a" * 64, "busybox", None, ("sh",))


@pytest.fixture
def loaded(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(COMPOSE))
    return load_project(ProjectOptions(cwd=str(tmp_path), environ={"HOME": "/root"}))


def test_the_service_as_is_except_ports_restart_and_name(loaded) -> None:  # type: ignore[no-untyped-def]
    spec = oneoff_spec(loaded, RunRequest("web", slug="0123456789abcdef"), FACTS)
    assert spec.process.args == ("/entry.sh", "serve", "--port", "80")
    assert spec.name == "demo-web-run-0123456789ab"
    assert spec.ports == ()  # no --service-ports
    assert (spec.restart, spec.restart_policy) == ("no", None)
    labels = dict(spec.labels)
    assert labels["com.docker.compose.oneoff"] == "True"
    assert labels["com.docker.compose.slug"] == "0123456789abcdef"
    assert labels["role"] == "web"
    assert spec.process.stdin_open and not spec.process.tty


def test_command_entrypoint_env_user_workdir_labels(loaded) -> None:  # type: ignore[no-untyped-def]
    request = RunRequest(
        "web",
        command=("echo", "hi"),
        env=("B=3", "C=4"),
        user="root",
        workdir="/tmp",
        labels=("extra=yes",),
        tty=True,
        name="custom",
    )
    spec = oneoff_spec(loaded, request, FACTS)
    assert spec.process.args == ("/entry.sh", "echo", "hi")  # the command replaces the service's
    assert dict(spec.process.env) == {"A": "1", "B": "3", "C": "4"}
    assert (spec.process.user, spec.process.working_dir, spec.process.tty) == ("root", "/tmp", True)
    assert dict(spec.labels)["extra"] == "yes"
    assert spec.name == "custom"
    spec = oneoff_spec(loaded, RunRequest("web", entrypoint="sh -c"), FACTS)
    assert spec.process.args == ("sh", "-c")  # a new entrypoint drops the service's command
    spec = oneoff_spec(loaded, RunRequest("web", entrypoint="printf", command=("%s", "x")), FACTS)
    assert spec.process.args == ("printf", "%s", "x")


def test_service_ports_publish_and_volumes(loaded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = oneoff_spec(loaded, RunRequest("web", service_ports=True), FACTS)
    assert [(p.container_port, p.host_port) for p in spec.ports] == [(80, 8080)]
    request = RunRequest("web", publish=("127.0.0.1:9000:90/udp",), volumes=("./here:/data:ro", "data:/more"))
    spec = oneoff_spec(loaded, request, FACTS)
    assert spec.ports == (PortBinding(90, "udp", "127.0.0.1", 9000),)
    mounts = {m.target: m for m in spec.mounts}
    assert (mounts["/data"].type, mounts["/data"].source, mounts["/data"].read_only) == (
        "bind",
        str(tmp_path / "here"),
        True,
    )  # -v replaces the service's mount at the same target
    assert (mounts["/more"].type, mounts["/more"].source) == ("volume", "demo_data")


def test_publish_forms() -> None:
    assert parse_publish("80") == [PortBinding(80)]
    assert parse_publish("8000:80") == [PortBinding(80, "tcp", "", 8000)]
    assert parse_publish("8000-8001:80-81") == [
        PortBinding(80, "tcp", "", 8000),
        PortBinding(81, "tcp", "", 8001),
    ]
    assert parse_publish("[::1]:53:53/udp") == [PortBinding(53, "udp", "::1", 53)]
    with pytest.raises(UsageError):
        parse_publish("x:y")


def test_env_and_volume_forms(monkeypatch: pytest.MonkeyPatch, loaded) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FROM_SHELL", "s")
    monkeypatch.delenv("NOT_SET", raising=False)
    assert parse_env(["A=1", "FROM_SHELL", "NOT_SET", "E="]) == {
        "A": "1",
        "FROM_SHELL": "s",
        "NOT_SET": None,
        "E": "",
    }
    with pytest.raises(UsageError):
        parse_env(["=x"])
    anonymous = parse_volume(loaded.model, "/cache", "/p")
    assert (anonymous.type, anonymous.target, anonymous.source) == ("volume", "/cache", None)
    named = parse_volume(loaded.model, "other:/x", "/p")
    assert (named.type, named.source) == ("volume", "other")


def test_dependencies_in_start_order(loaded) -> None:  # type: ignore[no-untyped-def]
    assert dependencies_of(loaded, "web") == ["db", "cache"]
    assert dependencies_of(loaded, "db") == []


def test_cp_targets() -> None:
    services = {"web", "db"}
    assert split_target("web:/etc/hosts", services) == ("web", "/etc/hosts")
    assert split_target("web:", services) == ("web", "/")
    assert split_target("./web:x", services) == (None, "./web:x")
    assert split_target("notaservice:/x", services) == (None, "notaservice:/x")
    assert split_target("-", services) == (None, "-")
