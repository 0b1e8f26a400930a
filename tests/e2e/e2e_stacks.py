"""End-to-end helpers: the real CLI (`.venv/bin/pycompose --root <root>`) run in a sample directory.

One state root for the whole e2e session (`/var/cache/pycompose-test/e2e-root`, or PYCOMPOSE_E2E_ROOT) so that
the base image and the samples' images persist across runs and a rerun skips the builds. What a run creates
(containers, networks, volumes, the supervisor) is removed by teardown even when a test fails, and teardown
then asserts that nothing of the root is left in the kernel: no container row, no mount or netns file, no
bridge or host veth, no iptables rule of the root's scope, no cgroup of a container it ran.

Ports come from HTTP_PORT / WORDPRESS_PORT, set here to ports free right now, so a stack a user runs on the
samples' default ports is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYCOMPOSE = REPO / ".venv" / "bin" / "pycompose"
ROOT = Path(os.environ.get("PYCOMPOSE_E2E_ROOT", "/var/cache/pycompose-test/e2e-root"))
BASE_IMAGE = "debian:bookworm-slim"
CLI_TIMEOUT = 900  # seconds: a first `up --build` builds three Debian images on a shared 2-core VM
CGROUP_PARENT = "pycompose"  # the default parent: the stacks run as a user's would
STACKS: list[Stack] = []  # every stack of the session, for the timings summary


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Stack:
    """One sample project driven through the real CLI, with the port its web front is published on."""

    sample: str
    port_variable: str
    port: int = field(default_factory=free_port)
    timings: list[tuple[str, float]] = field(default_factory=list)
    root: Path = ROOT  # a test with its own state root (bad input) passes it
    samples: Path = REPO / "samples"  # a broken copy lives in a temp dir (sample_copy)
    project: str | None = None  # `-p NAME`: a copy gets a unique `pyct...` name
    env: dict[str, str] = field(default_factory=dict)  # more variables for the CLI

    def __post_init__(self) -> None:
        STACKS.append(self)

    @property
    def directory(self) -> Path:
        return self.samples / self.sample

    def cli(
        self, *args: str, check: bool = True, timeout: float = CLI_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """`pycompose --root ROOT [-p NAME] ARGS` in the sample directory; a failure shows its output."""
        env = {**os.environ, **self.env, self.port_variable: str(self.port)}
        project = ("-p", self.project) if self.project else ()
        started = time.monotonic()
        result = subprocess.run(
            [str(PYCOMPOSE), "--root", str(self.root), *project, *args],
            cwd=self.directory,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.timings.append((_short(args), time.monotonic() - started))
        if check and result.returncode != 0:
            pytest.fail(
                f"pycompose {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}",
                pytrace=False,
            )
        return result

    def ps(self) -> list[dict]:
        """`ps -a --format json`: one JSON object a line."""
        out = self.cli("ps", "-a", "--format", "json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def inspect(self, name: str) -> dict:
        """`container inspect NAME`: Docker's shape (State.Pid is the host pid of the container's PID 1)."""
        data = json.loads(self.cli("container", "inspect", name).stdout)
        return data[0] if isinstance(data, list) else data

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, path: str = "/", data: bytes | None = None) -> tuple[int, str]:
        """One HTTP exchange, redirects followed; an HTTP error status is an answer, not an exception."""
        req = urllib.request.Request(self.url(path), data=data)
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")

    def wait_for(self, path: str, needle: str, timeout: float = 60.0) -> str:
        """GET until a 200 whose body holds `needle`: a just-started server may refuse for a moment."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                status, body = self.request(path)
                if status == 200 and needle in body:
                    return body
                last = f"HTTP {status}: {body[:500]}"
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                pytest.fail(f"{self.url(path)} never showed {needle!r} in {timeout:.0f} s; last: {last}")
            time.sleep(0.5)

    def down(self) -> None:
        """`down -v --remove-orphans`, never raising: teardown must go on to the leak check."""
        self.cli("down", "-v", "--remove-orphans", "-t", "5", check=False)


def sample_copy(sample: str, dest: Path) -> Path:
    """A copy of samples/ (the sample and the `shared/` build contexts it points at) to break safely."""
    shutil.copytree(REPO / "samples", dest / "samples", symlinks=True)
    return dest / "samples" / sample


def _short(args: tuple[str, ...]) -> str:
    """A command line for the timings summary: long arguments (PHP code) cut short."""
    return " ".join(arg if len(arg) <= 24 else arg[:21] + "..." for arg in args)


@contextlib.contextmanager
def brought_up(stack: Stack) -> Iterator[Stack]:
    """`up -d --build --wait` the stack; always `down -v` it, and check its containers left no trace."""
    try:
        stack.cli("up", "-d", "--build", "--wait")
        yield stack
    finally:
        ids = _container_ids(stack.directory.name)
        stack.down()
        assert _container_ids(stack.directory.name) == [], "containers left after down -v"
        leftovers = [str(path) for cid in ids for path in cgroup_dirs(cid)]
        assert leftovers == [], f"cgroups left: {leftovers}"


def cgroup_dirs(name: str = "", parent: str = CGROUP_PARENT) -> list[Path]:
    """The parent's directory (or its child `name`) in every hierarchy: cgroup v2, and each v1 one."""
    base = Path("/sys/fs/cgroup")
    candidates = [base / parent, *base.glob(f"*/{parent}")]
    return [path / name if name else path for path in candidates if (path / name).is_dir()]


def _container_ids(project: str) -> list[str]:
    """The ids of the project's containers in the root's database (empty when the root was never used)."""
    from engine.state.root import StateRoot

    if not (ROOT / "pycompose.db").exists():
        return []
    state = StateRoot.open(ROOT)
    try:
        rows = state.db.query("SELECT id, labels FROM containers")
        return [
            row["id"]
            for row in rows
            if json.loads(row["labels"] or "{}").get("com.docker.compose.project") == project
        ]
    finally:
        state.close()


def _cli_lines(root: Path, *args: str) -> list[str]:
    out = subprocess.run([str(PYCOMPOSE), "--root", str(root), *args], capture_output=True, text=True)
    return out.stdout.split()


def release_root(root: Path) -> None:
    """Stop the root's supervisor, remove every network left (the builder's too), then check the kernel."""
    from engine.errors import EngineError
    from engine.net.manager import VETH_PREFIX, NetworkManager, scope_of
    from engine.state.root import StateRoot
    from engine.supervise import client

    if not (root / "pycompose.db").exists():
        return
    state = StateRoot.open(root)
    try:
        containers = [row["id"] for row in state.db.query("SELECT id FROM containers")]
        if containers:  # `down -v` failed somewhere: still leave nothing running for the next session
            subprocess.run([str(PYCOMPOSE), "--root", str(root), "container", "rm", "-f", "-v", *containers])
        volumes = _cli_lines(root, "volume", "ls", "-q")
        if volumes:
            subprocess.run([str(PYCOMPOSE), "--root", str(root), "volume", "rm", "-f", *volumes])
        client.shutdown(state)
        leftovers = [f"container {cid}" for cid in containers] + [f"volume {name}" for name in volumes]
        networks = NetworkManager(state)
        bridges = [network.bridge for network in networks.list_networks()]
        for network in networks.list_networks():
            try:
                networks.remove_network(network.id)
            except EngineError as exc:
                leftovers.append(f"network {network.name}: {exc}")
        leftovers += [f"bridge {b}" for b in bridges if Path("/sys/class/net", b).exists()]
        leftovers += [
            f"veth {name}"
            for name in os.listdir("/sys/class/net")
            if name.startswith(VETH_PREFIX) and any(name.startswith(VETH_PREFIX + c[:10]) for c in containers)
        ]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        scope = scope_of(state)
        leftovers += [line for line in rules.splitlines() if line.startswith("-A") and scope in line]
        inside = f"{str(root).rstrip('/')}/"  # not a sibling root's mounts (e2e-root vs e2e-root-lnmp)
        with open("/proc/self/mountinfo") as mounts:
            leftovers += [f"mount {line.split()[4]}" for line in mounts if inside in line]
        netns = root / "run" / "netns"
        leftovers += [f"netns {name}" for name in (os.listdir(netns) if netns.exists() else [])]
    finally:
        state.close()
    assert leftovers == [], f"the e2e root left these behind: {leftovers}"
