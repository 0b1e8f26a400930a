"""`image bootstrap` for real: mmdebstrap builds debian:bookworm-slim from the host's Debian mirror once per
session (the tar is cached in the default cache dir, so reruns skip the build), the store imports it, and
a container started from it reads Debian's own files.

Every state root lives in a temp dir; containers are started without a cgroup and reaped by the helper;
error cases use a mirror on 127.0.0.1 so they send nothing off the machine.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rootfs_fixture import run_to_end

from engine.containers import cgroups, records
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, Process
from engine.errors import BuildError, ImageNotFound
from engine.images import bootstrap as bs
from engine.images.store import ImageStore
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REF = "debian:bookworm-slim"
TAG = "pyc-test/bootstrap:bookworm-slim"


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ContainerManager, bs.BootstrapResult]]:
    """One bootstrap per session into a private state root (the tar comes from the shared cache)."""
    if not os.access(bs.MMDEBSTRAP, os.X_OK):
        pytest.fail("mmdebstrap not found: apt-get install -y mmdebstrap", pytrace=False)
    root = StateRoot.open(tmp_path_factory.mktemp("bootstrap") / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    m = ContainerManager(root, cgroup_parent=parent)
    try:
        plan = bs.plan(REF, tag=TAG)
        yield m, bs.bootstrap(m.images, plan)
    finally:
        try:
            for record in records.list_all(root.db):
                m.remove(record["id"], force=True)
        finally:
            cgroups.remove_parent(parent)
            root.close()


def _run(m: ContainerManager, image_id: str, script: str) -> tuple[int, str]:
    """Create a container running `sh -c script`, run it to the end without a cgroup, remove it."""
    spec = ContainerSpec(
        id="",
        name="pyc-test-" + uuid.uuid4().hex[:8],
        image_id=image_id,
        layer_dirs=(),
        process=Process(args=("/bin/sh", "-c", script)),
    )
    record = m.create(spec)
    try:
        return run_to_end(m, record)
    finally:
        m.remove(record["id"], force=True)


def test_image_has_one_layer_and_debians_config(built) -> None:  # type: ignore[no-untyped-def]
    m, result = built
    image = m.images.resolve(TAG)
    assert image.id == result.image.id
    assert len(image.layers) == 1
    config = image.config["config"]
    assert config["Cmd"] == ["bash"]
    assert config["Env"] == [f"PATH={bs.PATH_ENV}"]
    assert config["Labels"][bs.KEY_LABEL] == result.key
    assert image.config["os"] == "linux" and image.config["architecture"] == image.platform.architecture
    assert image.config["history"][0]["comment"].startswith("pycompose image bootstrap debian:bookworm-slim")
    assert result.tar_path == bs.DEFAULT_CACHE / f"{result.key}.tar" and result.tar_path.is_file()


def test_container_reads_debian_version_and_the_image_is_slim(built) -> None:  # type: ignore[no-untyped-def]
    m, result = built
    script = (
        "cat /etc/debian_version; "
        "echo docs=$(find /usr/share/doc -type f ! -name copyright | wc -l); "
        "echo man=$(find /usr/share/man -type f | wc -l); "
        "echo locale=$(find /usr/share/locale -type f | wc -l); "
        "echo lists=$(find /var/lib/apt/lists -type f ! -name lock | wc -l); "
        "echo caches=$(ls /var/cache/apt/*.bin 2>/dev/null | wc -l); "
        "grep -c '^path-exclude=/usr/share/doc/' /etc/dpkg/dpkg.cfg.d/99mmdebstrap; "
        "/usr/sbin/policy-rc.d; echo policy=$?; "
        "dpkg-query -W -f='${Package} ${db:Status-Status}\\n' | grep -cE '^(usrmerge|perl) installed$'; true"
    )
    code, out = _run(m, result.image.id, script)
    lines = out.split()
    assert code == 0, out
    assert lines[0].startswith("12."), out  # bookworm
    assert lines[1:7] == ["docs=0", "man=0", "locale=0", "lists=0", "caches=0", "1"], out
    assert lines[7:] == ["policy=101", "0"], out  # no service starts; no usrmerge/perl pulled in


def test_second_bootstrap_is_instant_and_returns_the_same_image(built) -> None:  # type: ignore[no-untyped-def]
    m, result = built
    started = time.monotonic()
    again = bs.bootstrap(m.images, bs.plan(REF, tag=TAG))
    elapsed = time.monotonic() - started
    assert again.image.id == result.image.id and again.reused_image
    assert elapsed < 1.0, elapsed


def test_cached_tar_imports_into_a_new_root_without_building(
    built,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    _, result = built
    monkeypatch.setattr(bs, "MMDEBSTRAP", "/nonexistent/mmdebstrap")  # a build would fail loudly
    root = StateRoot.open(tmp_path / "root")
    try:
        store = ImageStore(root)
        fresh = bs.bootstrap(store, bs.plan(REF, tag=TAG))
        assert fresh.reused_tar and not fresh.reused_image
        assert fresh.image.layers[0].diff_id == result.image.layers[0].diff_id  # the very same layer
    finally:
        root.close()


def test_a_different_include_is_a_different_cache_entry(built) -> None:  # type: ignore[no-untyped-def]
    _, result = built
    other = bs.plan(REF, tag=TAG, include=["ca-certificates"])
    assert other.key != result.key
    assert bs.cached_tar(other) != result.tar_path


@pytest.mark.slow
def test_rebuild_gives_the_same_package_set(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Reproducible enough: a cold rebuild against the same mirror installs exactly the same packages."""
    _, result = built
    rebuilt = bs.build_tar(bs.plan(REF, tag=TAG), tmp_path / "cache")
    assert bs.packages_in_tar(rebuilt) == bs.packages_in_tar(result.tar_path)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [rebuilt.name]  # no temp dir left


# -- failures leave nothing behind ------------------------------------------------------------------------


class _Mirror(BaseHTTPRequestHandler):
    """A mirror that knows no suite at all: every Release is 404."""

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def empty_mirror() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/debian"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/debian"


@pytest.mark.parametrize("case", ["unknown suite", "mirror unreachable"])
def test_errors_leave_no_image_tar_or_temp_dir(case: str, empty_mirror: str, tmp_path: Path) -> None:
    mirror = empty_mirror if case == "unknown suite" else _closed_port_url()
    cache = tmp_path / "cache"
    root = StateRoot.open(tmp_path / "root")
    try:
        store = ImageStore(root)
        plan = bs.plan("debian:nosuchsuite-slim", mirror=mirror, tag="pyc-test/broken:1")
        with pytest.raises(BuildError, match=case):
            bs.bootstrap(store, plan, cache_dir=cache)
        with pytest.raises(ImageNotFound):
            store.resolve("pyc-test/broken:1")
        assert store.list_images() == []
        assert [p.suffix for p in cache.iterdir()] == [".lock"]  # no tar, no temp dir
    finally:
        root.close()


def test_missing_mmdebstrap_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bs, "MMDEBSTRAP", "/nonexistent/mmdebstrap")
    with pytest.raises(BuildError, match="mmdebstrap is not installed"):
        bs.build_tar(bs.plan(REF, include=["pyc-test-never-built"]), tmp_path / "cache", epoch=0)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cli_second_run_prints_the_same_id(built) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    m, result = built
    argv = [sys.executable, "-m", "compose.cli.main", "--root", str(m.root.path), "image", "bootstrap"]
    done = subprocess.run([*argv, REF, "--tag", TAG], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{result.image.id}\n"
    bad = subprocess.run([*argv, "ubuntu:22.04"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "only debian:<suite>[-slim] can be bootstrapped" in bad.stderr
