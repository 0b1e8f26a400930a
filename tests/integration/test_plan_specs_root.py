"""A realistic service's spec (compose/plan/specs) created and started through engine.api, as `up` will.

The project is loaded from YAML by the real loader, its network and volume made from network_specs and
volume_requests, the container from container_spec; inspect, exec and a published port then show that
the settings arrived: name, labels, user and groups, environment, working dir, hostname, mounts (named
volume, read-only bind, tmpfs), network aliases, the published port, healthcheck, restart, limits.
"""

from __future__ import annotations

import io
import os
import random
import socket
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from project_fixture import wait_for

from compose.labels import ProjectIdentity
from compose.loader.pipeline import ProjectOptions, load_project
from compose.plan.specs import ImageFacts, Placement, container_spec, network_specs, volume_requests
from engine.api import Engine
from engine.containers import cgroups
from engine.errors import EngineError

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "pyc-test/busybox:1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPOSE = """
name: {project}
services:
  web:
    image: {image}
    hostname: webhost
    user: app
    group_add: [staff]
    working_dir: /srv/www
    environment:
      PATH: /bin
      GREETING: hello
    labels:
      com.example.role: frontend
    command: ["sh", "-c", "echo \\"$$GREETING from $$(hostname)\\" >index.html && exec httpd -f -p 8080 -h ."]
    ports: ["127.0.0.1:{port}:8080"]
    volumes:
      - data:/data
      - {conf}:/conf:ro
      - type: tmpfs
        target: /srv/www
        tmpfs: {{size: 1m, mode: 0o777}}
    networks:
      back: {{aliases: [www]}}
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
    restart: unless-stopped
    mem_limit: 64m
    pids_limit: 50
    cap_drop: [NET_RAW]
    stop_grace_period: 2s
networks:
  back:
    ipam: {{config: [{{subnet: {subnet}}}]}}
volumes:
  data: {{}}
"""


class Up:
    """Networks, volumes and containers made through one Engine, all removed at the end."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.networks: list[str] = []
        self.volumes: list[str] = []

    def cleanup(self) -> None:
        from engine.net import firewall
        from engine.supervise import client

        engine = self.engine
        try:
            for record in engine.list_containers(all=True):
                with suppress(EngineError):
                    engine.remove_container(record["id"], force=True, volumes=True)
        finally:
            with suppress(EngineError):
                client.shutdown(engine.root, timeout=10)
            for name in self.networks:
                with suppress(EngineError):
                    engine.remove_network(name)
            for name in self.volumes:
                with suppress(EngineError):
                    engine.remove_volume(name, force=True)
            firewall.sync(engine.networks.scope, [], [])


@pytest.fixture
def up(tmp_path: Path, rootfs_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Up]:
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("PYCOMPOSE_CGROUP_PARENT", parent)
    engine = Engine.open(str(tmp_path / "root"))
    state = Up(engine)
    try:
        engine.import_image(io.BytesIO(rootfs_tar), IMAGE)
        yield state
    finally:
        try:
            state.cleanup()
        finally:
            cgroups.remove_parent(parent)
            engine.close()


def http_get(port: int) -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        return data.decode(errors="replace").split("\r\n\r\n", 1)[-1]
    except OSError:
        return None


def run(engine: Engine, cid: str, script: str) -> tuple[int, str]:
    with tempfile.TemporaryFile() as out:
        null = os.open("/dev/null", os.O_RDONLY)
        try:
            code = engine.exec_container(cid, ["sh", "-c", script], stdio=(null, out.fileno(), out.fileno()))
        finally:
            os.close(null)
        out.seek(0)
        return code, out.read().decode()


def test_a_service_spec_runs_with_its_settings(up: Up, tmp_path: Path) -> None:
    engine = up.engine
    project_name = "pyct" + uuid.uuid4().hex[:8]
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "app.ini").write_text("mode=test\n")
    port = free_port()
    subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    text = COMPOSE.format(project=project_name, image=IMAGE, port=port, conf=conf, subnet=subnet)
    (project_dir / "compose.yaml").write_text(textwrap.dedent(text))
    loaded = load_project(ProjectOptions(cwd=str(project_dir), environ={"HOME": "/root"}))
    project = loaded.model
    identity = ProjectIdentity(project.name, str(project_dir), (str(project_dir / "compose.yaml"),))

    for spec in network_specs(project, identity).values():
        up.networks.append(spec.name)
        engine.create_network(spec)
    for request in volume_requests(project, identity).values():
        up.volumes.append(request.name)
        engine.create_volume(
            request.name,
            driver=request.driver,
            driver_opts=dict(request.driver_opts),
            labels=dict(request.labels),
        )

    image = engine.inspect_image(IMAGE)
    config = image.config.get("config") or {}
    facts = ImageFacts(image.id, IMAGE, config.get("Entrypoint"), config.get("Cmd"))
    spec = container_spec(project, project.services["web"], Placement(1, facts, "f" * 64), identity)
    record = engine.create_container(spec)
    engine.start_container(record["id"])

    assert wait_for(lambda: http_get(port)) == "hello from webhost\n"
    doc = engine.inspect_container(record["id"])
    assert doc["Name"] == f"/{project_name}-web-1"
    assert doc["State"]["Running"] is True
    labels = doc["Config"]["Labels"]
    assert labels["com.docker.compose.project"] == project_name
    assert labels["com.docker.compose.service"] == "web"
    assert labels["com.docker.compose.container-number"] == "1"
    assert labels["com.docker.compose.config-hash"] == "f" * 64
    assert labels["com.example.role"] == "frontend"
    assert (doc["Config"]["User"], doc["Config"]["WorkingDir"], doc["Config"]["Hostname"]) == (
        "app",
        "/srv/www",
        "webhost",
    )
    assert "GREETING=hello" in doc["Config"]["Env"]
    assert doc["Config"]["Healthcheck"]["Test"] == ["CMD", "true"]
    assert doc["Config"]["StopTimeout"] == 2.0
    host = doc["HostConfig"]
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert (host["Memory"], host["PidsLimit"], host["CapDrop"]) == (64 * 1024 * 1024, 50, ["NET_RAW"])
    mounts = {m["Destination"]: m for m in doc["Mounts"]}
    assert mounts["/data"]["Name"] == f"{project_name}_data"
    assert (mounts["/conf"]["Source"], mounts["/conf"]["RW"]) == (str(conf), False)
    assert mounts["/srv/www"]["Type"] == "tmpfs"
    network = doc["NetworkSettings"]["Networks"][f"{project_name}_back"]
    assert {"web", "www"} <= set(network["Aliases"])
    assert doc["NetworkSettings"]["Ports"]["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(port)}]

    code, out = run(
        engine, record["id"], "id -un; id -Gn; cat /conf/app.ini; touch /conf/x 2>/dev/null || echo ro"
    )
    assert code == 0
    assert out.split("\n")[:4] == ["app", "app staff", "mode=test", "ro"]
    code, out = run(engine, record["id"], "grep -E ' /(data|srv/www) ' /proc/mounts")
    assert code == 0
    assert " /srv/www tmpfs " in out and "size=1024k" in out and "mode=777" in out
    assert " /data " in out
    health = wait_for(
        lambda: engine.inspect_container(record["id"])["State"].get("Health", {}).get("Status") == "healthy"
    )
    assert health
