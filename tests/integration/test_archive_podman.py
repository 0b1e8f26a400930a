"""Our archives against a real podman (Debian's 4.3 with runc): podman loads what we save, we load what
podman saves, and image ids survive both ways. Loading and saving run no container; podman's storage lives
in tmp_path (vfs driver), never in /var/lib/containers."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from engine.images.archive import load_archive, save_archive
from tests.unit.test_archive import AMD64, StoreUnderTest, docker25_save, open_store

pytestmark = pytest.mark.root


@pytest.fixture
def podman(tmp_path: Path):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (apt-get install -y podman runc)")
    runroot = Path(tempfile.mkdtemp(prefix="pcr-"))  # podman refuses a runroot longer than 50 characters
    base = [
        "podman",
        "--root",
        str(tmp_path / "podman-root"),
        "--runroot",
        str(runroot),
        "--storage-driver",
        "vfs",
    ]

    def run(*args: str) -> str:
        result = subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    yield run
    subprocess.run(["rm", "-rf", str(tmp_path / "podman-root"), str(runroot)], check=False)


@pytest.fixture
def store(tmp_path: Path) -> StoreUnderTest:
    store = open_store(tmp_path / "ours")
    _, config_digest, _ = docker25_save()
    load_archive(store, io.BytesIO(docker25_save()[0]), platform=AMD64)
    assert config_digest in store.images
    return store


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_podman_loads_our_archive(store: StoreUnderTest, podman, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"ours-{fmt}.tar"
    with open(out, "wb") as stream:
        save_archive(store, ["nginx:1.27"], stream, format=fmt)
    assert "docker.io/library/nginx:1.27" in podman("load", "-i", str(out))
    image_id = podman("image", "inspect", "--format", "{{.Id}}", "docker.io/library/nginx:1.27").strip()
    assert f"sha256:{image_id}" == store.resolve("nginx:1.27").id


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_we_load_what_podman_saves(store: StoreUnderTest, podman, tmp_path: Path, fmt: str) -> None:
    ours = tmp_path / "ours.tar"
    with open(ours, "wb") as stream:
        save_archive(store, ["nginx:1.27"], stream)
    podman("load", "-i", str(ours))
    theirs = tmp_path / f"podman-{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(theirs), "docker.io/library/nginx:1.27")
    fresh = open_store(tmp_path / "fresh")
    with open(theirs, "rb") as stream:
        assert load_archive(fresh, stream, platform=AMD64) == ["docker.io/library/nginx:1.27"]
    assert list(fresh.images) == list(store.images)
    assert fresh.tags == {"docker.io/library/nginx:1.27": store.resolve("nginx:1.27").id}
