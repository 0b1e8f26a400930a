"""`pycompose build` for real: a small project whose services build busybox-based images through the CLI
(in a subprocess, on a state root of its own), with the real builder underneath.

- `base` builds an image that `app` starts FROM (app depends_on base, so the order matters), `tool` is
  independent and builds beside `base` in its own process;
- the images carry compose's labels, the build args, and the files the steps wrote;
- an unchanged rebuild is all CACHED; `--build-arg` and `--no-cache` rebuild; a failing RUN exits 17 with
  its exit code, tags nothing and builds none of its dependents.

At the end the build network (bridge, iptables rules), every container, mount and namespace of the state
root is gone, even when a test fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
BASE = "pyc-test/busybox:1"
PROJECT = "pyct-b4"

COMPOSE = """
services:
  base:
    image: pyct-b4/base:1
    build:
      context: ./base
  app:
    build:
      context: ./app
      dockerfile: app.Dockerfile
      args:
        GREETING: hello
      labels:
        com.example.kind: app
    depends_on: [base]
  tool:
    build:
      context: .
      dockerfile_inline: |
        FROM pyc-test/busybox:1
        RUN echo tool > /tool.txt && echo "tool step ran"
"""

BASE_DOCKERFILE = """
FROM pyc-test/busybox:1
RUN echo base > /base.txt && echo "base step ran"
"""

APP_DOCKERFILE = """
FROM pyct-b4/base:1
ARG GREETING=hi
LABEL greeting=$GREETING
COPY index.html /www/
RUN echo "$GREETING from app" > /www/greeting && echo "app step ran: $GREETING"
"""


class Cli:
    """pycompose in a subprocess on one state root, in the project directory."""

    def __init__(self, root: Path, cwd: Path) -> None:
        self.root, self.cwd = root, cwd

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYCOMPOSE_ROOT": str(self.root)}
        return subprocess.run(
            [sys.executable, "-m", "compose.cli.main", *args],
            cwd=self.cwd,
            env={**env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    def inspect(self, ref: str) -> dict:
        result = self("image", "inspect", ref)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]


@pytest.fixture
def project(tmp_path: Path, rootfs_tar: bytes) -> Iterator[tuple[Cli, Path]]:
    directory = tmp_path / "pyct-b4"
    (directory / "base").mkdir(parents=True)
    (directory / "app").mkdir()
    (directory / "compose.yaml").write_text(textwrap.dedent(COMPOSE))
    (directory / "base" / "Dockerfile").write_text(BASE_DOCKERFILE)
    (directory / "app" / "app.Dockerfile").write_text(APP_DOCKERFILE)
    (directory / "app" / "index.html").write_text("<h1>app</h1>\n")
    (tmp_path / "busybox.tar").write_bytes(rootfs_tar)
    cli = Cli(tmp_path / "root", directory)
    try:
        imported = cli("image", "import", str(tmp_path / "busybox.tar"), BASE)
        assert imported.returncode == 0, imported.stderr
        yield cli, directory
    finally:
        _clean(tmp_path / "root")


def _clean(root: Path) -> None:
    """Remove the build network; then nothing of the state root may be left in the kernel."""
    from engine.net.manager import NetworkManager, scope_of
    from engine.state.root import StateRoot

    if not root.exists():
        return
    state = StateRoot.open(root)
    try:
        networks = NetworkManager(state)
        bridges = [network.bridge for network in networks.list_networks()]
        for network in networks.list_networks():
            networks.remove_network(network.id)
        leftovers = [f"bridge {b}" for b in bridges if os.path.exists(f"/sys/class/net/{b}")]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        leftovers += [
            line for line in rules.splitlines() if line.startswith("-A") and scope_of(state) in line
        ]
        leftovers += [f"container {row['id']}" for row in state.db.query("SELECT id FROM containers")]
        with open("/proc/self/mountinfo") as mounts:
            leftovers += [f"mount {line.split()[4]}" for line in mounts if str(root) in line]
    finally:
        state.close()
    assert leftovers == []


def read_file(root: Path, ref: str, path: str) -> str:
    """A file as the image's merged layers show it (top layer first)."""
    from engine.images.store import ImageStore
    from engine.state.root import StateRoot

    state = StateRoot.open(root)
    try:
        store = ImageStore(state)
        for layer in store.layer_dirs(store.resolve(ref)):
            candidate = Path(layer) / path.lstrip("/")
            if candidate.exists():
                return candidate.read_text()
    finally:
        state.close()
    raise FileNotFoundError(path)


def vertex_lines(err: str, step: str) -> list[str]:
    """The plain-progress lines of the vertex whose header contains `step`."""
    match = re.search(rf"^#(\d+) \[[^\]]*\] {re.escape(step)}$", err, re.M)
    assert match, f"no vertex {step!r} in:\n{err}"
    return [line for line in err.splitlines() if line.startswith(f"#{match.group(1)} ")]


def test_build_project_order_labels_contents_and_cache(project: tuple[Cli, Path]) -> None:
    cli, _ = project
    result = cli("--progress", "plain", "build")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    err = result.stderr
    # app's FROM is base's image: base was built (and named) before app's first step
    assert err.index("naming to docker.io/pyct-b4/base:1 done") < err.index("[app 1/5] FROM pyct-b4/base:1")
    assert any(
        line.endswith(" app step ran: hello")
        for line in vertex_lines(
            err, 'RUN echo "$GREETING from app" > /www/greeting && echo "app step ran: $GREETING"'
        )
    )
    assert "naming to docker.io/library/pyct-b4-tool:latest done" in err

    app = cli.inspect("pyct-b4-app")
    assert app["Config"]["Labels"] == {
        "com.docker.compose.project": PROJECT,
        "com.docker.compose.service": "app",
        "com.docker.compose.version": app["Config"]["Labels"]["com.docker.compose.version"],
        "com.example.kind": "app",
        "greeting": "hello",
    }
    assert read_file(cli.root, "pyct-b4-app", "/www/greeting") == "hello from app\n"
    assert read_file(cli.root, "pyct-b4-app", "/base.txt") == "base\n"  # from base's image
    assert read_file(cli.root, "pyct-b4-app", "/www/index.html") == "<h1>app</h1>\n"
    assert read_file(cli.root, "pyct-b4-tool", "/tool.txt") == "tool\n"
    first = {ref: cli.inspect(ref)["Id"] for ref in ("pyct-b4/base:1", "pyct-b4-app", "pyct-b4-tool")}

    again = cli("--progress", "plain", "build")
    assert again.returncode == 0, again.stderr
    assert not re.search(r"^#\d+ [\d.]+ .*step ran", again.stderr, re.M)  # no RUN ran: all cached
    steps = re.findall(r"^#\d+ \[(?:base|app|tool)[^\]]*\] .*$", again.stderr, re.M)
    assert len(steps) == 2 + 5 + 2  # base, app, tool
    assert again.stderr.count(" CACHED\n") == len(steps)
    assert {ref: cli.inspect(ref)["Id"] for ref in first} == first


def test_build_arg_no_cache_quiet_and_selection(project: tuple[Cli, Path]) -> None:
    cli, _ = project
    assert cli("build", "-q").returncode == 0
    tool = cli.inspect("pyct-b4-tool")["Id"]

    quiet = cli("build", "-q", "--build-arg", "GREETING=bonjour", "app")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""
    assert cli.inspect("pyct-b4-app")["Config"]["Labels"]["greeting"] == "bonjour"
    assert read_file(cli.root, "pyct-b4-app", "/www/greeting") == "bonjour from app\n"

    fresh = cli("--progress", "plain", "build", "--no-cache", "tool")
    assert fresh.returncode == 0, fresh.stderr
    assert (
        re.search(r"^#\d+ [\d.]+ tool step ran$", fresh.stderr, re.M)
        and "[app " not in fresh.stderr
        and "[base " not in fresh.stderr
    )
    assert cli.inspect("pyct-b4-tool")["Id"] != tool  # the RUN ran again: a new layer, a new image

    with_deps = cli("--progress", "plain", "build", "--with-dependencies", "app")
    assert with_deps.returncode == 0, with_deps.stderr
    assert "[base 1/2]" in with_deps.stderr and "[tool " not in with_deps.stderr


def test_failed_build_exits_17_and_tags_nothing(project: tuple[Cli, Path]) -> None:
    cli, directory = project
    (directory / "base" / "Dockerfile").write_text(BASE_DOCKERFILE + "RUN echo about to fail && exit 3\n")
    result = cli("--progress", "plain", "build")
    assert result.returncode == 17, result.stderr
    assert "exit code: 3" in result.stderr.splitlines()[-1] or "exit code: 3" in result.stderr
    assert re.search(r"^#\d+ ERROR: .*exit code: 3", result.stderr, re.M)
    assert "services.base.build: failed to solve:" in result.stderr
    assert "[app " not in result.stderr  # app depends on base: never started
    for ref in ("pyct-b4/base:1", "pyct-b4-app"):
        assert cli("image", "inspect", ref).returncode != 0
    assert cli("image", "inspect", "pyct-b4-tool").returncode == 0  # built beside base, independent
