"""Pull and push through `engine.api.Engine` against a real docker-registry on 127.0.0.1.

The registry is Debian's distribution 2.8 build (see conftest.py); images are root filesystems built here
and imported, so nothing leaves the machine. Each test gets fresh state roots under tmp_path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORD, USERNAME, RegistryServer, closed_port

from engine.api import Engine
from engine.errors import (
    AuthenticationError,
    DigestMismatch,
    EngineError,
    ImageNotFound,
    RegistryUnreachable,
)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        OCI_INDEX,
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)


def rootfs_tar(marker: str) -> bytes:
    """A small but realistic root filesystem: directories, an executable, a symlink, a hard link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("bin", "etc", "usr", "usr/bin", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mtime = tarfile.DIRTYPE, 1_700_000_000
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        files = {
            "etc/os-release": f'NAME="pycompose-test"\nID={marker}\n'.encode(),
            "bin/hello": b"#!/bin/sh\necho hello from " + marker.encode() + b"\n",
            "usr/share-data.bin": os.urandom(256 * 1024),  # big enough for a real Content-Length stream
        }
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            info.mode = 0o755 if name.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("usr/bin/hello")
        link.type, link.linkname = tarfile.SYMTYPE, "/bin/hello"
        tar.addfile(link)
        hard = tarfile.TarInfo("etc/os-release.hard")
        hard.type, hard.linkname = tarfile.LNKTYPE, "etc/os-release"
        tar.addfile(hard)
    return buffer.getvalue()


@pytest.fixture
def open_engine(tmp_path: Path) -> Iterator:
    """`open_engine("a")` opens a state root under tmp_path; every engine is closed at teardown."""
    opened: list[Engine] = []

    def factory(name: str) -> Engine:
        engine = Engine.open(str(tmp_path / f"root-{name}"))
        opened.append(engine)
        return engine

    try:
        yield factory
    finally:
        for engine in opened:
            engine.close()


def import_image(engine: Engine, ref: str, marker: str, platform: str | None = None):
    return engine.import_image(io.BytesIO(rootfs_tar(marker)), ref, ['CMD ["/bin/hello"]'], platform=platform)


def blob_files(engine: Engine) -> set[str]:
    return {p.name for p in Path(engine.root.blobs_dir).rglob("*") if p.is_file()}


def store_snapshot(engine: Engine) -> tuple:
    images = sorted((image.id, image.repo_tags) for image in engine.list_images())
    return images, blob_files(engine), sorted(os.listdir(engine.root.layers_dir))


class Recorder:
    """A progress reporter that remembers what the client said."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def status(self, line: str) -> None:
        self.lines.append(line)

    def layer_started(self, layer_id: str, action: str, total: int | None = None) -> None:
        pass

    def layer_advanced(self, layer_id: str, nbytes: int) -> None:
        pass

    def layer_done(self, layer_id: str, message: str) -> None:
        self.lines.append(f"{layer_id}: {message}")

    def close(self) -> None:
        pass


# -- push, pull, digests -------------------------------------------------------------------------------------


def test_push_then_pull_into_fresh_root_keeps_every_digest(registry: RegistryServer, open_engine) -> None:
    ref = registry.ref("team/app", "1.0")
    source = open_engine("source")
    imported = import_image(source, ref, "push-pull")
    pushed_digest = source.push_image(ref)

    served, media_type = registry.get_manifest("team/app", "1.0", MANIFEST_ACCEPT)
    assert registry.tags("team/app") == ["1.0"]
    assert "sha256:" + hashlib.sha256(served).hexdigest() == pushed_digest
    assert media_type in MANIFEST_ACCEPT

    target = open_engine("target")
    pulled = target.pull_image(ref)
    assert pulled.id == imported.id  # config digest: the image id survives the round trip
    assert pulled.manifest_digest == pushed_digest
    assert [layer.diff_id for layer in pulled.layers] == [layer.diff_id for layer in imported.layers]
    assert f"{registry.host}/team/app@{pushed_digest}" in pulled.repo_digests
    assert target.inspect_image(ref).id == imported.id
    top = Path(target.store.layer_dirs(pulled)[0])
    assert (top / "etc/os-release").read_text().endswith("ID=push-pull\n")
    assert os.readlink(top / "usr/bin/hello") == "/bin/hello"
    assert os.stat(top / "etc/os-release").st_ino == os.stat(top / "etc/os-release.hard").st_ino
    assert target.last_pulled(ref) is not None


def test_pull_by_digest_and_second_push_skips_existing_blobs(registry: RegistryServer, open_engine) -> None:
    ref = registry.ref("team/app", "2")
    source = open_engine("source")
    import_image(source, ref, "by-digest")
    digest = source.push_image(ref)

    again = Recorder()
    assert source.push_image(ref, progress=again) == digest
    layer_lines = [line for line in again.lines if ": " in line and not line.startswith("2:")]
    assert layer_lines and all(line.endswith("Layer already exists") for line in layer_lines), again.lines

    pulled = open_engine("target").pull_image(f"{registry.host}/team/app@{digest}")
    assert pulled.manifest_digest == digest


def test_push_to_second_repository_mounts_blobs(registry: RegistryServer, open_engine) -> None:
    first, second = registry.ref("team/base", "1"), registry.ref("team/copy", "1")
    source = open_engine("source")
    import_image(source, first, "mount")
    source.push_image(first)
    puller = open_engine("puller")  # a pulled image knows where its blobs live (its repo digest)
    puller.pull_image(first)
    puller.tag_image(first, second)
    recorder = Recorder()
    puller.push_image(second, progress=recorder)
    assert any(line.endswith("Mounted from team/base") for line in recorder.lines), recorder.lines
    assert registry.tags("team/copy") == ["1"]
    layer = json.loads(registry.get_manifest("team/copy", "1", MANIFEST_ACCEPT)[0])["layers"][0]["digest"]
    link = registry.storage / "docker/registry/v2/repositories/team/copy/_layers" / layer.replace(":", "/")
    assert (link / "link").read_text() == layer


# -- multi-platform index -----------------------------------------------------------------------------------


def test_multi_platform_index_selects_this_machine_or_the_asked_platform(
    registry: RegistryServer, open_engine
) -> None:
    from engine.images.manifest import host_platform

    host = host_platform()
    other = "linux/arm64" if host.architecture != "arm64" else "linux/amd64"
    source = open_engine("source")
    images = {
        str(host): import_image(source, registry.ref("multi/app", "host"), "host", platform=str(host)),
        other: import_image(source, registry.ref("multi/app", "other"), "other", platform=other),
    }
    manifests = []
    for tag, platform in (("host", host), ("other", other)):
        source.push_image(registry.ref("multi/app", tag))
        data, media_type = registry.get_manifest("multi/app", tag, MANIFEST_ACCEPT)
        os_name, arch, *variant = str(platform).split("/")
        entry = {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        manifests.append(
            {
                "mediaType": media_type,
                "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "platform": entry,
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests[::-1]}).encode()
    index_digest = registry.put_manifest("multi/app", "latest", index, OCI_INDEX)
    ref = registry.ref("multi/app", "latest")

    native = open_engine("native").pull_image(ref)
    assert native.id == images[str(host)].id
    assert native.platform.architecture == host.architecture
    assert f"{registry.host}/multi/app@{index_digest}" in native.repo_digests

    foreign = open_engine("foreign").pull_image(ref, platform=other)
    assert foreign.id == images[other].id
    assert foreign.platform.architecture == other.split("/")[1]

    missing = open_engine("missing")
    with pytest.raises(EngineError) as caught:
        missing.pull_image(ref, platform="linux/s390x")
    assert "linux/s390x" in str(caught.value) and str(host) in str(caught.value)
    assert missing.list_images() == []


# -- auth ----------------------------------------------------------------------------------------------------


def test_basic_auth_registry_with_docker_config_credentials(
    auth_registry: RegistryServer, open_engine, docker_config
) -> None:
    ref = auth_registry.ref("private/app", "1")
    docker_config(auth_registry.host, USERNAME, PASSWORD)
    source = open_engine("source")
    imported = import_image(source, ref, "basic")
    source.push_image(ref)
    assert open_engine("target").pull_image(ref).id == imported.id


def test_wrong_credentials_are_refused_with_a_clear_message(
    auth_registry: RegistryServer, open_engine, docker_config
) -> None:
    ref = auth_registry.ref("private/app", "1")
    docker_config(auth_registry.host, USERNAME, PASSWORD)
    source = open_engine("source")
    import_image(source, ref, "wrong-creds")
    source.push_image(ref)

    docker_config(auth_registry.host, USERNAME, "not-the-password")  # the image exists: only creds fail
    target = open_engine("target")
    with pytest.raises(AuthenticationError) as caught:
        target.pull_image(ref)
    message = str(caught.value)
    assert auth_registry.host in message and "\n" not in message
    assert "unauthorized" in message.lower() or "credentials" in message.lower()
    assert "not-the-password" not in message
    assert target.list_images() == []


def test_no_credentials_for_a_private_registry(
    auth_registry: RegistryServer, open_engine, docker_config
) -> None:
    docker_config("other.example:5000", USERNAME, PASSWORD)  # credentials, but for another registry
    with pytest.raises(AuthenticationError) as caught:
        open_engine("target").pull_image(auth_registry.ref("private/app", "1"))
    assert auth_registry.host in str(caught.value)


def test_bearer_token_flow_like_docker_hub(
    token_registry: RegistryServer, open_engine, docker_config
) -> None:
    ref = token_registry.ref("library/app", "1")
    tokens = token_registry.token_server
    assert tokens is not None
    docker_config(token_registry.host, USERNAME, PASSWORD)
    source = open_engine("source")
    imported = import_image(source, ref, "token")
    source.push_image(ref)
    push_requests = [r for r in tokens.requests if r["authorization"].startswith("Basic ")]
    assert push_requests, tokens.requests
    scopes = {s for r in push_requests for s in r["query"].get("scope", [])}
    assert any(s.startswith("repository:library/app:") and "push" in s for s in scopes), scopes
    assert all(r["query"].get("service") == ["pycompose-test-registry"] for r in tokens.requests)

    # anonymous pull: the token server grants pull only, as Docker Hub does for public images
    os.unlink(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    tokens.requests.clear()
    anonymous = open_engine("anonymous").pull_image(ref)
    assert anonymous.id == imported.id
    assert tokens.requests and all(r["authorization"] == "" for r in tokens.requests)


def test_bearer_token_wrong_password_and_anonymous_push(
    token_registry: RegistryServer, open_engine, docker_config
) -> None:
    ref = token_registry.ref("library/app", "1")
    source = open_engine("source")
    import_image(source, ref, "token-denied")
    with pytest.raises(AuthenticationError) as anonymous:  # no credentials: pull-only token, push refused
        source.push_image(ref)
    assert token_registry.host in str(anonymous.value)

    docker_config(token_registry.host, USERNAME, "s3cr3t-wrong-pw")
    with pytest.raises(AuthenticationError) as wrong:
        source.push_image(ref)
    assert token_registry.host in str(wrong.value) and "s3cr3t-wrong-pw" not in str(wrong.value)
    assert not _repo_exists(token_registry)  # nothing was written on the registry


def _repo_exists(server: RegistryServer) -> bool:
    return (server.storage / "docker/registry/v2/repositories/library/app/_manifests").exists()


# -- failures leave the store as it was ----------------------------------------------------------------------


def test_corrupted_blob_is_detected_and_nothing_is_kept(registry: RegistryServer, open_engine) -> None:
    ref = registry.ref("team/corrupt", "1")
    source = open_engine("source")
    imported = import_image(source, ref, "corrupt")
    source.push_image(ref)
    layer_blob = json.loads(registry.get_manifest("team/corrupt", "1", MANIFEST_ACCEPT)[0])["layers"][0][
        "digest"
    ]
    data_file = registry.blob_data_path(layer_blob)
    original = data_file.read_bytes()
    corrupted = bytearray(original)
    corrupted[len(corrupted) // 2] ^= 0xFF  # same size: only the digest can tell
    data_file.write_bytes(bytes(corrupted))

    target = open_engine("target")
    images, blobs, layers = store_snapshot(target)
    with pytest.raises(DigestMismatch) as caught:
        target.pull_image(ref)
    assert layer_blob in str(caught.value) or layer_blob.removeprefix("sha256:")[:12] in str(caught.value)
    assert "\n" not in str(caught.value)
    after_images, after_blobs, after_layers = store_snapshot(target)
    assert (after_images, after_layers) == (images, layers)
    assert not target.image_exists(ref)
    assert layer_blob.removeprefix("sha256:") not in after_blobs
    assert [p for p in Path(target.root.tmp_dir).rglob("*") if not p.is_dir()] == []
    assert after_blobs == blobs, "a failed pull kept blobs it had fetched (the issue asks: store unchanged)"
    assert imported.id  # the source store is untouched by the registry's corruption
    assert source.inspect_image(ref).id == imported.id


def test_pull_of_a_missing_tag_is_image_not_found(registry: RegistryServer, open_engine) -> None:
    source = open_engine("source")
    import_image(source, registry.ref("team/app", "exists"), "missing-tag")
    source.push_image(registry.ref("team/app", "exists"))
    target = open_engine("target")
    for ref in (registry.ref("team/app", "nope"), registry.ref("team/never-pushed", "1")):
        with pytest.raises(ImageNotFound) as caught:
            target.pull_image(ref)
        message = str(caught.value)
        assert ref.rpartition(":")[0] in message and "\n" not in message
    assert target.list_images() == []


def test_unreachable_registry_is_a_clear_error(open_engine) -> None:
    host = f"127.0.0.1:{closed_port()}"
    target = open_engine("target")
    with pytest.raises(RegistryUnreachable) as caught:
        target.pull_image(f"{host}/team/app:1")
    assert host in str(caught.value) and "\n" not in str(caught.value)
    assert target.list_images() == []


def test_push_of_an_unknown_image_fails_before_the_network(open_engine) -> None:
    with pytest.raises(ImageNotFound):
        open_engine("source").push_image(f"127.0.0.1:{closed_port()}/team/app:1")
