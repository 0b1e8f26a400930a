"""Dockerfile builds for real: RUN in containers of the engine, COPY from the context and from stages,
the layer cache (an identical rebuild does nothing, a changed file rebuilds from its COPY), a failing RUN
(step, exit code, last lines; nothing tagged, nothing left), and once, slow, `apt-get install` on a
bootstrapped debian:bookworm-slim through the build network's NAT.

Each test has its own state root; at the end every container row, container directory, mount under the
root, network (bridge, iptables rules) and staging file is gone, even when the test fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.build.builder import Builder, BuildRequest
from engine.build.cache import intermediate_ids
from engine.errors import BuildError, BuildStepFailed
from engine.images.store import ImageStore
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

BASE = "pyc-test/busybox:1"


class Recorder:
    """A BuildProgress that keeps everything it is told."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, int, int, str]] = []
        self.outputs: list[bytes] = []
        self.cached: list[bool] = []
        self.warnings: list[str] = []

    def step(self, stage: str, number: int, total: int, text: str) -> None:
        self.steps.append((stage, number, total, text))

    def output(self, stage: str, number: int, data: bytes) -> None:
        self.outputs.append(data)

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        if number > 1:  # FROM is always "cached"
            self.cached.append(cached)

    def warning(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def text(self) -> str:
        return b"".join(self.outputs).decode(errors="replace")


@pytest.fixture
def root(tmp_path: Path, rootfs_tar: bytes) -> Iterator[StateRoot]:
    state = StateRoot.open(tmp_path / "root")
    try:
        ImageStore(state).import_rootfs(io.BytesIO(rootfs_tar), BASE)
        yield state
    finally:
        try:
            _remove_networks(state)
        finally:
            leftovers = _leftovers(state)
            state.close()
            assert leftovers == [], leftovers


def _remove_networks(state: StateRoot) -> None:
    """The build network (and its bridge and rules) goes with the test; none of it may stay behind."""
    from engine.net.manager import NetworkManager, scope_of

    networks = NetworkManager(state)
    bridges = [network.bridge for network in networks.list_networks()]
    for network in networks.list_networks():
        networks.remove_network(network.id)
    assert [b for b in bridges if os.path.exists(f"/sys/class/net/{b}")] == []
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    scope = scope_of(state)
    assert [line for line in rules.splitlines() if line.startswith("-A") and scope in line] == []


def _leftovers(state: StateRoot) -> list[str]:
    """Containers, their directories, mounts under the root, network namespaces: all must be gone."""
    found = [f"container row {r['id']}" for r in state.db.query("SELECT id FROM containers")]
    containers = state.path / "containers"
    if containers.exists():
        found += [f"container dir {p.name}" for p in containers.iterdir()]
    with open("/proc/self/mountinfo") as f:
        found += [f"mount {line.split()[4]}" for line in f if str(state.path) in line]
    netns = state.path / "netns"
    if netns.exists():
        found += [f"netns {p.name}" for p in netns.iterdir()]
    return found


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:8]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def _run(root: StateRoot, image: str, *args: str) -> str:
    """Run a command in the built image (a plain container of the engine, network none); its output."""
    from engine.build import run_step

    store = ImageStore(root)
    img = store.resolve(image)
    chunks: list[bytes] = []
    with run_step.run_container(
        root,
        img.id,
        store.layer_dirs(img),
        args,
        env=dict(e.split("=", 1) for e in img.config["config"].get("Env", [])),
        user=None,
        workdir=img.config["config"].get("WorkingDir"),
        options=run_step.RunOptions("none"),
        output=chunks.append,
    ) as result:
        assert result.exit_code == 0, b"".join(chunks)
    return b"".join(chunks).decode()


# -- tests -------------------------------------------------------------------------------------------


def test_run_args_env_and_config(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1\n"
        "ARG GREETING=hello\n"
        "ENV TARGET=world DIR=/srv\n"
        "WORKDIR $DIR\n"
        'RUN echo "$GREETING $TARGET" > greeting.txt && echo built-in-run\n'
        'CMD ["cat", "/srv/greeting.txt"]\n',
    )
    progress = Recorder()
    request = BuildRequest(str(ctx), tags=("pyc-test/args:1",), args=(("GREETING", "hi"),), network="none")
    image = Builder(root).build(request, progress)
    assert "docker.io/pyc-test/args:1" in image.repo_tags
    config = image.config["config"]
    assert "TARGET=world" in config["Env"] and config["WorkingDir"] == "/srv"
    assert config["Cmd"] == ["cat", "/srv/greeting.txt"]
    assert not any(e.startswith("GREETING=") for e in config["Env"])  # ARGs are not kept
    assert "built-in-run" in progress.text  # RUN output streamed
    assert _run(root, "pyc-test/args:1", "cat", "/srv/greeting.txt") == "hi world\n"
    assert len(image.layers) == 3  # the base, WORKDIR's new directory, RUN; the rest are config only
    assert _layer_names(image.layers[1].path) == ["srv"]
    # the runtime's mount stubs (hosts, resolv.conf, ...) are not in the RUN layer
    assert "etc/resolv.conf" not in _layer_names(image.layers[-1].path)


def _layer_names(path: str) -> list[str]:
    names = []
    for base, dirs, files in os.walk(path):
        names += [os.path.relpath(os.path.join(base, n), path) for n in dirs + files]
    return names


def test_cache_hit_and_changed_file(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1\n"
        "RUN echo one > /one\n"
        "COPY a.txt /data/\n"
        "RUN cat /data/a.txt > /copy-of-a\n"
        "COPY b.txt /data/\n"
        "LABEL stage=final\n",
        {"a.txt": "A1\n", "b.txt": "B\n"},
    )
    request = BuildRequest(str(ctx), tags=("pyc-test/cache:1",), network="none")
    first = Builder(root).build(request, Recorder())
    again = Recorder()
    second = Builder(root).build(request, again)
    assert second.id == first.id
    assert again.cached == [True] * 5 and again.outputs == []
    # a changed file: the steps before its COPY hit, that COPY and everything after run again
    (ctx / "a.txt").write_text("A2\n")
    changed = Recorder()
    third = Builder(root).build(request, changed)
    assert changed.cached == [True, False, False, False, False]
    assert third.id != first.id
    assert _run(root, "pyc-test/cache:1", "cat", "/copy-of-a") == "A2\n"
    # no_cache runs every step
    fresh = Recorder()
    Builder(root).build(BuildRequest(str(ctx), network="none", no_cache=True), fresh)
    assert fresh.cached == [False] * 5
    # intermediates are hidden from `image ls` (untagged, with children); the tagged result is not
    hidden = intermediate_ids(root.db)
    assert hidden and third.id not in hidden
    listed = {i.id for i in ImageStore(root).list_images(all=False)}
    assert third.id in listed and not (hidden & listed)
    assert hidden <= {i.id for i in ImageStore(root).list_images(all=True)}


def test_multi_stage_compile_and_copy(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1 AS build\n"
        "COPY src/ /src/\n"
        "RUN mkdir -p /out && cat /src/main.c /src/lib.c > /out/program && chmod 755 /out/program\n"
        "FROM pyc-test/busybox:1 AS unused\n"
        "RUN exit 3\n"
        "FROM pyc-test/busybox:1\n"
        "COPY --from=build /out/program /usr/local/bin/program\n"
        "COPY --from=0 /src/lib.c /lib-copy.c\n",
        {"src/main.c": "int main;\n", "src/lib.c": "int lib;\n"},
    )
    image = Builder(root).build(
        BuildRequest(str(ctx), tags=("pyc-test/multi:1",), network="none"), Recorder()
    )
    out = _run(
        root, "pyc-test/multi:1", "sh", "-c", "cat /usr/local/bin/program; ls -l /usr/local/bin/program"
    )
    assert out.startswith("int main;\nint lib;\n") and "-rwxr-xr-x" in out
    assert _run(root, "pyc-test/multi:1", "ls", "/").count("src") == 0  # only what was copied
    assert len(image.layers) == 3  # base + two COPY layers; the stage's RUN layer is not in it


def test_failing_run(root: StateRoot, tmp_path: Path) -> None:
    lines = "; ".join(f"echo line{i}" for i in range(15))
    ctx = _context(tmp_path, f"FROM pyc-test/busybox:1\nRUN {lines}; exit 7\nRUN echo never\n")
    before = {i.id for i in ImageStore(root).list_images()}
    with pytest.raises(BuildStepFailed) as info:
        Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/fail:1",), network="none"), Recorder())
    error = info.value
    assert isinstance(error, BuildError) and error.status == 7
    assert error.tail == tuple(f"line{i}" for i in range(5, 15))
    assert "exit code: 7" in str(error) and "2/3" in error.step
    store = ImageStore(root)
    assert not any("pyc-test/fail" in t for i in store.list_images() for t in i.repo_tags)
    assert {i.id for i in store.list_images()} == before  # no layer was committed
    assert list(store.tmp_dir.iterdir()) == []


def test_default_network_reaches_the_gateway(root: StateRoot, tmp_path: Path) -> None:
    """network default: the build bridge (created on first use), an address, a route, host resolvers."""
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1\nRUN ip -4 addr show eth0 && ip route && cat /etc/resolv.conf\n",
    )
    progress = Recorder()
    Builder(root).build(BuildRequest(str(ctx), no_cache=True), progress)
    assert "default via" in progress.text and "inet " in progress.text
    host_servers = [
        line.split()[1]
        for line in Path("/etc/resolv.conf").read_text().splitlines()
        if line.startswith("nameserver")
    ]
    assert any(f"nameserver {s}" in progress.text for s in host_servers if not s.startswith("127."))


BOOTSTRAP_CACHE = Path("/var/cache/pycompose/bootstrap")


@pytest.mark.slow
def test_apt_get_install_on_bootstrapped_debian(root: StateRoot, tmp_path: Path) -> None:
    """Once: a real Debian base from the cached bootstrap tar, and apt-get through the build network."""
    if not BOOTSTRAP_CACHE.is_dir() or not any(BOOTSTRAP_CACHE.iterdir()):
        pytest.fail("no cached bootstrap tar: run `pycompose image bootstrap debian:bookworm-slim` once")
    from engine.api import Engine

    engine = Engine(root)
    engine.bootstrap_image("debian:bookworm-slim")
    ctx = _context(
        tmp_path,
        "FROM debian:bookworm-slim\n"
        "RUN apt-get update && apt-get install -y --no-install-recommends file"
        " && rm -rf /var/lib/apt/lists/*\n",
    )
    progress = Recorder()
    Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/apt:1",)), progress)
    assert "Setting up file" in progress.text
    assert "ELF" in _run(root, "pyc-test/apt:1", "file", "/bin/true")


def test_no_leak_on_missing_copy_source(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "FROM pyc-test/busybox:1\nCOPY missing.txt /\n")
    with pytest.raises(BuildError):
        Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/missing:1",), network="none"))
    store = ImageStore(root)
    assert [i.repo_tags for i in store.list_images()] == [(f"docker.io/{BASE}",)]
    assert list(store.tmp_dir.iterdir()) == []


def test_independent_stages_run_in_parallel_workers(root: StateRoot, tmp_path: Path) -> None:
    """Two stages that need nothing of each other run at the same time (forked workers): each waits for
    a file only the other writes, so a sequential build would time out; their output is relayed."""
    wait = "for i in $(seq 100); do [ -e /shared/{0} ] && break; sleep 0.1; done; [ -e /shared/{0} ]"
    shared = tmp_path / "shared"
    shared.mkdir()
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1 AS left\n"
        f"RUN touch /shared/left && {wait.format('right')} && echo left-done > /left\n"
        "FROM pyc-test/busybox:1 AS right\n"
        f"RUN touch /shared/right && {wait.format('left')} && echo right-done > /right\n"
        "FROM pyc-test/busybox:1\n"
        "COPY --from=left /left /from-left\n"
        "COPY --from=right /right /from-right\n",
    )
    progress = Recorder()
    request = BuildRequest(str(ctx), tags=("pyc-test/parallel:1",), network="host")
    builder = Builder(root)
    with _shared_mount(shared):
        builder.build(request, progress)
    assert _run(root, "pyc-test/parallel:1", "cat", "/from-left", "/from-right") == "left-done\nright-done\n"
    assert {s[0] for s in progress.steps} == {"left", "right", "stage-2"}


@contextlib.contextmanager
def _shared_mount(shared: Path) -> Iterator[None]:
    """Both stages see `shared` at /shared: a bind through the build's extra mount hook (test only)."""
    from engine.build import run_step
    from engine.containers.spec import Mount

    original = run_step._spec

    def with_mount(*args, **kwargs):  # type: ignore[no-untyped-def]
        spec = original(*args, **kwargs)
        return dataclasses.replace(spec, mounts=(Mount("bind", "/shared", str(shared)),))

    run_step._spec = with_mount
    try:
        yield
    finally:
        run_step._spec = original


def test_failure_in_a_parallel_worker(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1 AS good\nRUN echo fine > /ok\n"
        "FROM pyc-test/busybox:1 AS bad\nRUN echo oops && exit 4\n"
        "FROM pyc-test/busybox:1\nCOPY --from=good /ok /ok\nCOPY --from=bad /etc/passwd /p\n",
    )
    with pytest.raises(BuildStepFailed) as info:
        Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/pfail:1",), network="none"), Recorder())
    assert info.value.status == 4 and info.value.tail == ("oops",) and "bad" in info.value.step
    assert not any("pfail" in t for i in ImageStore(root).list_images() for t in i.repo_tags)


def test_workdir_creates_its_directory_and_copy_takes_heredocs(root: StateRoot, tmp_path: Path) -> None:
    ctx = _context(
        tmp_path,
        "FROM pyc-test/busybox:1\n"
        "ENV NAME=web\n"
        "WORKDIR /opt/app/empty\n"
        "WORKDIR /etc\n"  # exists already: no layer
        "COPY <<EOF /srv/conf.ini\n"
        'name=$NAME "quoted"\n'
        "EOF\n"
        "COPY <<'RAW' <<END /srv/\n"
        "keep $NAME\n"
        "RAW\n"
        "two\n"
        "END\n",
    )
    image = Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/wd:1",), network="none"))
    assert image.config["config"]["WorkingDir"] == "/etc"
    assert _run(root, "pyc-test/wd:1", "sh", "-c", "test -d /opt/app/empty && ls -A /opt/app/empty") == ""
    assert _run(root, "pyc-test/wd:1", "cat", "/srv/conf.ini") == 'name=web "quoted"\n'
    assert _run(root, "pyc-test/wd:1", "cat", "/srv/RAW", "/srv/END") == "keep $NAME\ntwo\n"
    assert len(image.layers) == 4  # base, /opt/app/empty, the two COPYs (not the second WORKDIR)
    again = Builder(root).build(BuildRequest(str(ctx), tags=("pyc-test/wd:1",), network="none"))
    assert again.id == image.id  # the heredoc steps are cached like any other
