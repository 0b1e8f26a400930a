"""`pycompose ps`, `ls`, `logs`, `events` and `wait` against real containers of a small project.

The project's containers are made as `up` will make them (loader -> network specs -> container_spec ->
engine.api), then the CLI runs in a subprocess on the same state root and its output is checked line by
line. Everything (containers, supervisor, networks, firewall rules, cgroups) is removed even on failure.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from project_fixture import assert_nothing_left, clean_root, wait_for

from compose.labels import ProjectIdentity
from compose.loader.pipeline import ProjectOptions, load_project
from compose.plan.specs import ImageFacts, Placement, container_spec, network_specs
from engine.api import Engine
from engine.containers import cgroups

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
IMAGE = "pyc-test/busybox:1"
COMPOSE = """
name: {project}
services:
  web:
    image: {image}
    command: ["sh", "-c", "echo hello from web; echo warn from web >&2; exec httpd -f -p 8080"]
    ports: ["127.0.0.1:{port}:8080"]
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
  job:
    image: {image}
    command: ["sh", "-c", "echo job line 1; echo job line 2; exit 3"]
  idle:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo idle up; while true; do sleep 0.1; done"]
  late:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; echo late $$(cat /proc/uptime); while :; do sleep 0.1; done"]
"""
DURATION = r"(Less than a second|1 second|\d+ seconds)"
AGO = DURATION + " ago"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Project:
    engine: Engine
    name: str
    directory: Path
    root: Path
    port: int
    ids: dict[str, str] = field(default_factory=dict)  # service -> container id

    def cli(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=60, **kwargs)

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "compose.cli.main", "--root", str(self.root), *args]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.directory,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": ""}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli(*args, cwd=self.directory, env=self.env())

    def state(self, service: str) -> dict:
        return self.engine.get_container(self.ids[service])


@pytest.fixture
def project(tmp_path: Path, rootfs_tar: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    monkeypatch.setenv("PYCOMPOSE_CGROUP_PARENT", parent)
    root = tmp_path / "root"
    engine = Engine.open(str(root))
    name = "pyct" + uuid.uuid4().hex[:8]
    directory = tmp_path / name
    directory.mkdir()
    state = Project(engine, name, directory, root, free_port())
    try:
        engine.import_image(io.BytesIO(rootfs_tar), IMAGE)
        text = COMPOSE.format(project=name, image=IMAGE, port=state.port)
        (directory / "compose.yaml").write_text(textwrap.dedent(text))
        create(state)
        yield state
    finally:
        try:
            cleanup(state)
        finally:
            cgroups.remove_parent(parent)
            engine.close()


def create(state: Project) -> None:
    """Network and one container per service, as `up --no-start` would; `late` is left unstarted."""
    loaded = load_project(ProjectOptions(cwd=str(state.directory), environ={"HOME": "/root"}))
    project = loaded.model
    config = str(state.directory / "compose.yaml")
    identity = ProjectIdentity(project.name, str(state.directory), (config,))
    for spec in network_specs(project, identity).values():
        state.engine.create_network(spec)
    image = state.engine.inspect_image(IMAGE)
    image_config = image.config.get("config") or {}
    facts = ImageFacts(image.id, IMAGE, image_config.get("Entrypoint"), image_config.get("Cmd"))
    for service in ("job", "web", "idle", "late"):
        spec = container_spec(project, project.services[service], Placement(1, facts, "f" * 64), identity)
        state.ids[service] = state.engine.create_container(spec)["id"]


def start(state: Project, *services: str) -> None:
    for service in services:
        state.engine.start_container(state.ids[service])


def cleanup(state: Project) -> None:
    """Remove everything under the state root, then prove no bridge, rule, mount or row stays behind."""
    bridges = [n.bridge for n in state.engine.list_networks()]
    try:
        clean_root(state.root)
    finally:
        assert_nothing_left(state.root)
        assert [b for b in bridges if os.path.exists(f"/sys/class/net/{b}")] == []


def running_project(state: Project) -> None:
    """job has exited (3), web is healthy, idle runs, late was never started."""
    start(state, "job", "web", "idle")
    wait_for(lambda: state.state("job")["state"] == "exited")
    wait_for(lambda: "healthy" in (state.state("web")["health"] or ""))
    wait_for(lambda: b"idle up" in Path(state.state("idle")["log_path"]).read_bytes())


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_ps_and_ls(project: Project) -> None:
    running_project(project)
    p = project.name
    result = project.run("ps")
    assert result.returncode == 0, result.stderr
    header, *rows = lines(result.stdout)
    assert re.fullmatch(r"NAME +IMAGE +COMMAND +SERVICE +CREATED +STATUS +PORTS", header)
    assert [r.split()[0] for r in rows] == [f"{p}-idle-1", f"{p}-web-1"]  # running only, by name
    assert re.fullmatch(
        rf"{p}-web-1 +{re.escape(IMAGE)} +\"sh -c echo hello fr…\" +web +{AGO} +Up {DURATION} \(healthy\)"
        rf" +127\.0\.0\.1:{project.port}->8080/tcp",
        rows[1],
    ), rows[1]
    assert header.index("PORTS") == rows[1].index("127.0.0.1")  # columns aligned

    every = project.run("ps", "-a")
    names = [r.split()[0] for r in lines(every.stdout)[1:]]
    assert names == [f"{p}-idle-1", f"{p}-job-1", f"{p}-late-1", f"{p}-web-1"]
    job = next(r for r in lines(every.stdout) if r.startswith(f"{p}-job-1"))
    assert re.search(rf" job +{AGO} +Exited \(3\) {AGO}$", job), job
    late = next(r for r in lines(every.stdout) if r.startswith(f"{p}-late-1"))
    assert re.search(r" late +.* ago +Created$", late), late

    assert lines(project.run("ps", "-q").stdout) == [project.ids["idle"], project.ids["web"]]
    assert lines(project.run("ps", "-a", "--services").stdout) == ["idle", "job", "late", "web"]
    assert lines(project.run("ps", "--status", "exited", "--format", "{{.Name}} {{.ExitCode}}").stdout) == [
        f"{p}-job-1 3"
    ]
    assert lines(project.run("ps", "--filter", "status=created", "--format", "{{.Service}}").stdout) == [
        "late"
    ]
    assert lines(project.run("ps", "-a", "--format", "{{.Name}}", "web", "job").stdout) == [
        f"{p}-job-1",
        f"{p}-web-1",
    ]
    table = lines(project.run("ps", "--format", "table {{.Service}}\t{{.State}}").stdout)
    assert table == ["SERVICE   STATE", "idle      running", "web       running"]
    docs = [json.loads(line) for line in lines(project.run("ps", "--format", "json").stdout)]
    web = docs[1]
    assert (web["Name"], web["Service"], web["Project"], web["State"], web["Health"]) == (
        f"{p}-web-1",
        "web",
        p,
        "running",
        "healthy",
    )
    assert web["Publishers"] == [
        {"URL": "127.0.0.1", "TargetPort": 8080, "PublishedPort": project.port, "Protocol": "tcp"}
    ]
    assert web["ID"] == project.ids["web"][:12]
    elsewhere = project.cli("-p", p, "ps", "-a", "--format", "{{.Name}}", cwd=project.root, env=project.env())
    assert len(lines(elsewhere.stdout)) == 4, elsewhere.stderr  # no Compose file: the name is enough
    unknown = project.run("ps", "nosuch")
    assert unknown.returncode != 0 and "nosuch" in unknown.stderr

    config = str(project.directory / "compose.yaml")
    ls = project.run("ls")
    assert lines(ls.stdout)[0].split() == ["NAME", "STATUS", "CONFIG", "FILES"]
    assert lines(ls.stdout)[1].split() == [p, "running(2)", config]
    all_projects = json.loads(project.run("ls", "-a", "--format", "json").stdout)
    assert all_projects == [{"Name": p, "Status": "created(1), exited(1), running(2)", "ConfigFiles": config}]
    assert lines(project.run("ls", "-q", "--filter", f"name={p[:6]}").stdout) == [p]
    assert project.run("ls", "-q", "--filter", "name=^nothing-here$").stdout == ""


def test_logs(project: Project) -> None:
    running_project(project)
    out = project.run("logs", "--no-color")
    assert out.returncode == 0, out.stderr
    assert lines(out.stdout) == [
        "idle-1  | idle up",
        "job-1   | job line 1",
        "job-1   | job line 2",
        "web-1   | hello from web",
    ]
    assert lines(out.stderr) == ["web-1   | warn from web"]
    assert lines(project.run("logs", "--no-log-prefix", "job").stdout) == ["job line 1", "job line 2"]
    assert lines(project.run("logs", "--tail", "1", "job").stdout) == ["job-1  | job line 2"]
    assert lines(project.run("logs", "--index", "1", "job").stdout) == [
        "job-1  | job line 1",
        "job-1  | job line 2",
    ]
    assert project.run("logs", "--index", "2", "job").stdout == ""
    stamped = lines(project.run("logs", "-t", "job").stdout)
    assert all(
        re.fullmatch(r"job-1  \| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z job line \d", s) for s in stamped
    )
    assert project.run("logs", "--since", "2100-01-01T00:00:00Z", "job").stdout == ""
    assert project.run("logs", "--until", "1h", "job").stdout == ""
    assert len(lines(project.run("logs", "--since", "10m", "job").stdout)) == 2
    assert project.run("logs", "--tail", "x").returncode == 2
    colored = lines(project.run("--ansi", "always", "logs", "job", "idle").stdout)
    assert colored[:2] == ["\033[36midle-1  | \033[0midle up", "\033[33mjob-1   | \033[0mjob line 1"]
    assert lines(project.run("--ansi", "always", "logs", "--no-color", "idle").stdout) == [
        "idle-1  | idle up"
    ]


def test_logs_follow_sees_new_lines_and_late_containers(project: Project) -> None:
    running_project(project)
    follower = project.popen("logs", "-f", "--no-color", "idle", "late")
    try:
        time.sleep(1.5)  # following idle (running); late not started yet
        start(project, "late")
        wait_for(lambda: project.state("late")["state"] == "running")
        time.sleep(1.0)
        project.engine.stop_container(project.ids["idle"], timeout=5)
        project.engine.stop_container(project.ids["late"], timeout=5)
        out, err = follower.communicate(timeout=20)  # ends by itself: nothing of the selection runs
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    got = lines(out)
    assert got[0] == "idle-1  | idle up"
    assert len(got) == 2 and re.fullmatch(r"late-1  \| late [\d.]+ [\d.]+", got[1]), got


def test_events_json(project: Project) -> None:
    running_project(project)
    watcher = project.popen("events", "--json", "idle")
    try:
        time.sleep(1.5)
        project.engine.stop_container(project.ids["idle"], timeout=5)
        time.sleep(0.8)
        start(project, "idle")
        time.sleep(0.8)
    finally:
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=20)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in lines(out)]
    assert [e["action"] for e in events] == ["die", "start"]
    assert {e["id"] for e in events} == {project.ids["idle"]}
    assert events[0]["attributes"] == {"exitCode": "0", "image": project.state("idle")["image_id"],
                                       "name": f"{project.name}-idle-1"}  # fmt: skip
    assert all(e["service"] == "idle" and e["type"] == "container" for e in events)


def test_events_text(project: Project) -> None:
    watcher = project.popen("events")
    try:
        time.sleep(1.5)
        start(project, "job")
        wait_for(lambda: project.state("job")["state"] == "exited")
        time.sleep(0.8)
    finally:
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=20)
    got = lines(out)
    cid, image = project.ids["job"], project.state("job")["image_id"]
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}"
    name = f"{project.name}-job-1"
    assert len(got) == 2, (got, err)
    assert re.fullmatch(rf"{stamp} container start {cid} \(image={image}, name={name}\)", got[0]), got
    assert re.fullmatch(rf"{stamp} container die {cid} \(exitCode=3, image={image}, name={name}\)", got[1]), (
        got
    )


def test_wait(project: Project) -> None:
    running_project(project)
    done = project.run("wait", "job")
    assert done.returncode == 3
    assert done.stdout == f'container "{project.ids["job"]}" exited with status code 3\n'
    waiter = project.popen("wait", "idle")
    try:
        time.sleep(1.0)
        assert waiter.poll() is None  # still running: still waiting
        project.engine.stop_container(project.ids["idle"], timeout=5)
        out, err = waiter.communicate(timeout=20)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()
    assert waiter.returncode == 0, err
    assert out == f'container "{project.ids["idle"]}" exited with status code 0\n'
    assert project.run("-p", "pyct-none", "wait", "web").returncode != 0
