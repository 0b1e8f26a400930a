"""Bad input against real copies of the LNMP sample (issue 8): each mistake fails fast, says what and where,
and leaves nothing running or half-created.

Every test breaks its own copy of samples/ in a temp dir and runs the real CLI with a unique `pyct...` project
name in a PRIVATE state root (so "nothing was created" is checked against everything that root holds, even
while other engineers' stacks share the session root and the host). The sample's images are built once in the
session root (a no-op when cached) and loaded into each private root, so `up -d` never builds what is not
broken. Service, network, volume and port-variable names come from the loaded compose file, not from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from e2e_stacks import BASE_IMAGE, REPO, ROOT, Stack, cgroup_dirs, release_root, sample_copy

pytestmark = [pytest.mark.root, pytest.mark.e2e]

SAMPLE = "lnmp"
FAIL_FAST = 5.0  # seconds: "a few seconds at most", far below the database's health wait
PORT_VARIABLE = re.compile(r"\$\{(\w*PORT)\b")


def port_variable(directory: Path) -> str:
    """The variable the sample publishes its web port through (`${LNMP_HTTP_PORT:-80}` -> LNMP_HTTP_PORT)."""
    found = PORT_VARIABLE.search((directory / "compose.yaml").read_text())
    assert found, f"no ${{..PORT}} variable in {directory / 'compose.yaml'}"
    return found.group(1)


def canonical(stack: Stack) -> dict:
    """The copy's project as `config --format json` renders it (names, build contexts, ports)."""
    return json.loads(stack.cli("config", "--format", "json").stdout)


def published_service(project: dict) -> str:
    """The service that publishes the port (the web front)."""
    names = [name for name, svc in project["services"].items() if svc.get("ports")]
    assert len(names) == 1, f"expected one service with ports, got {names}"
    return names[0]


@pytest.fixture(scope="module")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's images, built in the session root (cached after the first run), saved to a tar once.

    Not through the `e2e_root` fixture: its teardown releases the whole shared root, which would stop the
    stacks of another e2e session running meanwhile. Only what this build made there (the builder's
    network, when a RUN step had to run) is removed here.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root")
    stack = Stack(SAMPLE, port_variable(REPO / "samples" / SAMPLE))
    stack.cli("image", "bootstrap", BASE_IMAGE, "-q")
    had_builder_network = _builder_network() is not None
    try:
        stack.cli("build")
    finally:
        if not had_builder_network:
            _remove_builder_network()
    images = stack.cli("config", "--images").stdout.split()
    tar = tmp_path_factory.mktemp("pyct-images") / f"{SAMPLE}.tar"
    stack.cli("image", "save", "-o", str(tar), *images)
    return tar


def _builder_network() -> str | None:
    from engine.api import Engine
    from engine.build.run_step import BUILD_NETWORK

    with Engine.open(str(ROOT)) as engine:
        return next((n.id for n in engine.list_networks() if n.name == BUILD_NETWORK), None)


def _remove_builder_network() -> None:
    """The builder's network our build made, unless another session's build uses it now."""
    from engine.api import Engine
    from engine.errors import EngineError

    network = _builder_network()
    if network is None:
        return
    with Engine.open(str(ROOT)) as engine, contextlib.suppress(EngineError):
        engine.remove_network(network)


@dataclass
class Snapshot:
    """What the host and the private root hold before the broken command, to compare with after it."""

    links: set[str]
    images: list[tuple[str, tuple[str, ...]]]
    root_tmp: set[str]


@pytest.fixture
def broken(tmp_path: Path) -> Iterator[Stack]:
    """A fresh copy of the sample, a private root and cgroup parent, a unique project; all removed after."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    directory = sample_copy(SAMPLE, tmp_path)
    tag = uuid.uuid4().hex[:8]
    stack = Stack(
        SAMPLE,
        port_variable(directory),
        root=tmp_path / "root",
        samples=directory.parent,
        project=f"pyct{tag}",
        env={"PYCOMPOSE_CGROUP_PARENT": f"pyct-bad-{tag}"},
    )
    try:
        yield stack
    finally:
        stack.down()
        release_root(stack.root)
        for path in _cgroup_dirs(stack):
            path.rmdir()


@pytest.fixture
def loaded(broken: Stack, sample_images: Path) -> Stack:
    """The broken copy's private root with the sample's images in it (nothing to build but what we break)."""
    broken.cli("image", "load", "-q", "-i", str(sample_images))
    return broken


# -- what is left: the engine's records and the kernel's objects ---------------------------------------------


def snapshot(stack: Stack) -> Snapshot:
    return Snapshot(_links(), _images(stack), _root_tmp(stack))


def _links() -> set[str]:
    from engine.net.manager import BRIDGE_PREFIX, VETH_PREFIX

    return {n for n in os.listdir("/sys/class/net") if n.startswith((BRIDGE_PREFIX, VETH_PREFIX))}


def _images(stack: Stack) -> list[tuple[str, tuple[str, ...]]]:
    from engine.api import Engine

    if not (stack.root / "pycompose.db").exists():
        return []
    with Engine.open(str(stack.root)) as engine:
        return sorted((image.id, tuple(sorted(image.repo_tags))) for image in engine.list_images())


def _root_tmp(stack: Stack) -> set[str]:
    tmp = stack.root / "tmp"
    return set(os.listdir(tmp)) if tmp.exists() else set()


def _cgroup_dirs(stack: Stack) -> list[Path]:
    """The private cgroup parent in every hierarchy where it exists."""
    return cgroup_dirs(parent=stack.env["PYCOMPOSE_CGROUP_PARENT"])


def engine_records(stack: Stack) -> dict[str, list[str]]:
    """Containers, networks and volumes the private root holds, by kind (only this test uses the root)."""
    from engine.api import Engine

    if not (stack.root / "pycompose.db").exists():
        return {"containers": [], "networks": [], "volumes": []}
    with Engine.open(str(stack.root)) as engine:
        return {
            "containers": [c.get("name", c["id"]) for c in engine.list_containers(all=True)],
            "networks": [n.name for n in engine.list_networks()],
            "volumes": [v.name for v in engine.list_volumes()],
        }


def running_leftovers(stack: Stack) -> list[str]:
    """Processes inside the root's container filesystems, mounts under the root, cgroups of containers."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root").startswith(str(stack.root)):
                left.append(f"process {pid}")
        except OSError:
            continue
    with open("/proc/self/mountinfo") as mounts:
        left += [f"mount {line.split()[4]}" for line in mounts if str(stack.root) in line]
    netns = stack.root / "run" / "netns"
    left += [f"netns {name}" for name in (os.listdir(netns) if netns.exists() else [])]
    left += [f"cgroup {child}" for path in _cgroup_dirs(stack) for child in path.iterdir() if child.is_dir()]
    return left


def network_leftovers(stack: Stack, before: Snapshot) -> list[str]:
    """New bridges and veths that are not another state root's; iptables rules of our root's scope.

    Other engineers' stacks make links meanwhile: a bridge of theirs is named in their root's rules, a veth of
    theirs is enslaved to such a bridge. A link is ours only if it stays unexplained across two looks (a
    link being made is briefly unnamed and masterless).
    """
    scope = _scope(stack)
    first = _unexplained_links(before, scope)
    time.sleep(0.5)
    rules = [line for line in _rule_lines() if scope in line]
    return [f"link {name}" for name in sorted(first & _unexplained_links(before, scope))] + [
        f"rule {line}" for line in rules
    ]


def _scope(stack: Stack) -> str:
    from engine.net.manager import scope_of
    from engine.state.root import StateRoot

    if not (stack.root / "pycompose.db").exists():
        return "no-scope-without-a-root"
    state = StateRoot.open(stack.root)
    try:
        return scope_of(state)
    finally:
        state.close()


def _rule_lines() -> list[str]:
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return [line for line in rules.splitlines() if line.startswith("-A")]


def _unexplained_links(before: Snapshot, scope: str) -> set[str]:
    others = "\n".join(line for line in _rule_lines() if scope not in line)

    def theirs(name: str) -> bool:
        return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", others) is not None

    unexplained = set()
    for name in _links() - before.links:
        master = Path("/sys/class/net", name, "master")
        owner = master.resolve().name if master.exists() else name
        if not theirs(owner):
            unexplained.add(name)
    return unexplained


# -- (a) a typo in a service key ----------------------------------------------------------------------------


@pytest.mark.parametrize("typo", ["imagee: pyct/typo:latest", 'port: "8080:80"'])
def test_a_typo_in_a_service_key_names_file_line_and_key_creates_nothing(broken: Stack, typo: str) -> None:
    service = published_service(canonical(broken))
    compose = broken.directory / "compose.yaml"
    lines = compose.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if re.fullmatch(rf"  {re.escape(service)}:\s*", line))
    lines.insert(at + 1, f"    {typo}\n")
    compose.write_text("".join(lines))
    key = typo.split(":")[0]

    started = time.monotonic()
    result = broken.cli("up", "-d", check=False)
    elapsed = time.monotonic() - started

    assert result.returncode != 0, result.stdout
    message = result.stderr
    assert f"{compose}:{at + 2}:" in message, message  # the file and the (1-based) line of the typo
    assert f"services.{service}.{key}" in message, message
    assert elapsed < FAIL_FAST, f"took {elapsed:.1f} s"
    assert engine_records(broken) == {"containers": [], "networks": [], "volumes": []}
    assert running_leftovers(broken) == []


# -- (b) a missing build context -----------------------------------------------------------------------------


def break_build_context(stack: Stack, *, last: bool = False) -> tuple[str, str]:
    """Point one built service at a context that does not exist, under an image name nobody has built:
    the first by name, or (`last`) the one that depends on the most others, built after them."""
    built = {name: svc for name, svc in canonical(stack)["services"].items() if svc.get("build")}
    if last:
        service = max(sorted(built), key=lambda name: len(built[name].get("depends_on") or {}))
    else:
        service = sorted(built)[0]
    compose = stack.directory / "compose.yaml"
    doc = yaml.safe_load(compose.read_text())
    missing = f"pyct-missing-context-{uuid.uuid4().hex[:6]}"
    doc["services"][service]["build"] = {"context": f"./{missing}"}
    doc["services"][service]["image"] = f"{stack.project}/{service}:broken"
    compose.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not (stack.directory / missing).exists()
    return service, missing


def test_b_a_missing_build_context_names_service_and_path_and_creates_nothing(loaded: Stack) -> None:
    service, missing = break_build_context(loaded)
    before = snapshot(loaded)

    started = time.monotonic()
    result = loaded.cli("up", "-d", check=False)
    elapsed = time.monotonic() - started

    assert result.returncode != 0, result.stdout
    assert f"services.{service}" in result.stderr, result.stderr
    assert missing in result.stderr, result.stderr
    assert elapsed < FAIL_FAST, f"took {elapsed:.1f} s"
    assert engine_records(loaded) == {"containers": [], "networks": [], "volumes": []}
    assert _images(loaded) == before.images, "an image (or an untagged half) was added"
    assert _root_tmp(loaded) == before.root_tmp, "the builder left work files in the root's tmp"
    assert running_leftovers(loaded) == []
    assert network_leftovers(loaded, before) == []


def test_b_a_missing_build_context_is_reported_before_any_other_build(broken: Stack) -> None:
    """In a root with no images at all the other services' builds come first (here they fail at once:
    no base image, no registry); the missing context must still be what `up -d` reports, before them."""
    service, missing = break_build_context(broken, last=True)
    started = time.monotonic()
    result = broken.cli("up", "-d", check=False)
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stdout
    assert f"services.{service}" in result.stderr and missing in result.stderr, result.stderr
    assert elapsed < FAIL_FAST, f"took {elapsed:.1f} s"
    assert engine_records(broken) == {"containers": [], "networks": [], "volumes": []}


# -- (c) a port already taken --------------------------------------------------------------------------------


@pytest.fixture
def port_taken(loaded: Stack) -> Iterator[tuple[Stack, float, subprocess.CompletedProcess[str], Snapshot]]:
    """`up -d` while another socket listens on the published port: (stack, seconds, result, before)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taker:
        taker.bind(("0.0.0.0", 0))
        taker.listen()
        loaded.port = taker.getsockname()[1]
        before = snapshot(loaded)
        started = time.monotonic()
        result = loaded.cli("up", "-d", check=False)
        elapsed = time.monotonic() - started
        yield loaded, elapsed, result, before


def test_c_a_taken_port_fails_fast_naming_the_port_and_nothing_runs(port_taken) -> None:  # type: ignore[no-untyped-def]
    stack, elapsed, result, _ = port_taken
    assert result.returncode != 0, result.stdout
    assert f":{stack.port}" in result.stderr and "already in use" in result.stderr, result.stderr
    assert elapsed < FAIL_FAST, f"took {elapsed:.1f} s"
    # no container row in any state; named volumes made before the clash may stay (docker compose keeps them)
    assert engine_records(stack)["containers"] == []
    assert running_leftovers(stack) == []


def test_c_a_taken_port_leaves_no_network_bridge_or_rule(port_taken) -> None:  # type: ignore[no-untyped-def]
    stack, _, result, before = port_taken
    assert result.returncode != 0
    assert engine_records(stack)["networks"] == []
    assert network_leftovers(stack, before) == []
