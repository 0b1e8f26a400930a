"""docker-archive and OCI image-layout tarballs: load (every format docker, podman and containerd write,
broken ones refused with the store unchanged) and save (round trips with identical digests).

The store here is a small in-memory fake with ImageStore's interface (blobs verified on write, layers
checked against their diff_ids, images keyed by config digest), so these tests need neither root nor
the unpacker.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard

from engine.errors import ArchiveError, ImageNotFound, UnsafeLayerError
from engine.images import manifest as mf
from engine.images.archive import load_archive, save_archive
from engine.images.reference import parse_reference
from engine.images.store import ImageStore
from engine.images.types import Platform
from engine.state.root import StateRoot

AMD64 = Platform("linux", "amd64")


# ------------------------------------------------------------------------------------ the store


class StoreUnderTest(ImageStore):
    """The real ImageStore on a temporary state root, plus read-only views the assertions compare."""

    @property
    def blobs(self) -> set[str]:
        return {row["digest"] for row in self._db.query("SELECT digest FROM blobs")}

    @property
    def images(self) -> dict[str, dict[str, Any]]:
        return {
            image.id: {"manifest": image.manifest_digest, "media_type": image.manifest_media_type}
            for image in self.list_images()
        }

    @property
    def tags(self) -> dict[str, str]:
        return {row["name"]: row["image_id"] for row in self._db.query("SELECT name, image_id FROM tags")}

    def snapshot(self) -> tuple:
        return (sorted(self.blobs), self.images, self.tags)


def open_store(path: Path) -> StoreUnderTest:
    return StoreUnderTest(StateRoot.open(path))


def _decompress(data: bytes) -> bytes:
    if data.startswith(b"\x1f\x8b"):
        return gzip.decompress(data)
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


@pytest.fixture
def store(tmp_path: Path) -> StoreUnderTest:
    return open_store(tmp_path / "store-a")


@pytest.fixture
def other_store(tmp_path: Path) -> StoreUnderTest:
    return open_store(tmp_path / "store-b")


# ------------------------------------------------------------------------------ building images


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hexof(digest: str) -> str:
    return digest.removeprefix("sha256:")


def layer_tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar, as docker save writes (its sha256 is the diff_id)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_config(diff_ids: list[str], arch: str = "amd64", cmd: str = "/bin/sh") -> bytes:
    return json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "created": "2024-05-01T10:00:00Z",
            "config": {"Cmd": [cmd], "Env": ["PATH=/usr/bin:/bin"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": "2024-05-01T10:00:00Z", "created_by": f"layer {i}"} for i in range(len(diff_ids))
            ],
        }
    ).encode()


def archive(members: list[tuple[str, bytes | None] | tuple[str, str, str]]) -> bytes:
    """A tarball of (name, bytes) files, (name, None) directories and (name, "sym"|"hard", target) links."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            name = member[0]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if len(member) == 3:
                info.type = tarfile.SYMTYPE if member[1] == "sym" else tarfile.LNKTYPE
                info.linkname = member[2]
                tar.addfile(info)
            elif member[1] is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buf.getvalue()


BASE = layer_tar({"etc/os-release": b"ID=debian\n", "bin/sh": b"\x7fELF shell"})
APP = layer_tar({"srv/app.py": b"print('hello')\n"})
TOP = layer_tar({"srv/config.ini": b"[app]\nport=8080\n"})


def classic_docker_save(tags: list[str] | None = ("busybox:1.36",)) -> tuple[bytes, str]:
    """`docker save` as docker 1.10-24 wrote it: <v1 id>/layer.tar, <id>.json config, a repeated layer
    stored once and linked (docker writes a symlink), manifest.json and repositories."""
    diff_ids = [sha(BASE), sha(APP), sha(BASE)]
    config = image_config(diff_ids)
    v1 = [hashlib.sha256(f"v1-{i}".encode()).hexdigest() for i in range(3)]
    members: list[Any] = []
    for i, layer in enumerate((BASE, APP)):
        members += [(f"{v1[i]}/", None), (f"{v1[i]}/VERSION", b"1.0"), (f"{v1[i]}/json", b"{}")]
        members.append((f"{v1[i]}/layer.tar", layer))
    members += [(f"{v1[2]}/", None), (f"{v1[2]}/layer.tar", "sym", f"../{v1[0]}/layer.tar")]
    members.append((f"{hexof(sha(config))}.json", config))
    manifest = [
        {
            "Config": f"{hexof(sha(config))}.json",
            "RepoTags": list(tags) if tags else None,
            "Layers": [f"{v}/layer.tar" for v in v1],
        }
    ]
    members.append(("manifest.json", json.dumps(manifest).encode()))
    if tags:
        name, tag = tags[0].split(":")
        members.append(("repositories", json.dumps({name: {tag: v1[2]}}).encode()))
    return archive(members), sha(config)


def oci_manifest(config: bytes, layers: list[bytes], media: str = mf.OCI_LAYER_GZIP) -> bytes:
    return mf.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_MANIFEST,
            "config": {"mediaType": mf.OCI_CONFIG, "digest": sha(config), "size": len(config)},
            "layers": [{"mediaType": media, "digest": sha(b), "size": len(b)} for b in layers],
        }
    )


def two_platform_layout(*, drop: str | None = None, ref_name: str = "registry.example:5000/team/app:2.1"):
    """An OCI layout (what `skopeo copy --all` / buildx write): index.json -> image index -> amd64 and
    arm64 manifests with gzip layers, plus an attestation manifest for unknown/unknown."""
    blobs: dict[str, bytes] = {}
    images = {}
    for arch in ("amd64", "arm64"):
        plain = layer_tar({f"usr/lib/{arch}/libc.so": arch.encode() * 100})
        packed = gzip.compress(plain, mtime=0)
        config = image_config([sha(plain)], arch=arch)
        manifest = oci_manifest(config, [packed])
        blobs.update({sha(packed): packed, sha(config): config, sha(manifest): manifest})
        images[arch] = (manifest, config, packed)
    index = mf.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": mf.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mf.OCI_MANIFEST,
                    "digest": sha(images[a][0]),
                    "size": len(images[a][0]),
                    "platform": {
                        "os": "linux",
                        "architecture": a,
                        **({"variant": "v8"} if a == "arm64" else {}),
                    },
                }
                for a in ("arm64", "amd64")
            ]
            + [
                {
                    "mediaType": mf.OCI_MANIFEST,
                    "digest": "sha256:" + "e" * 64,
                    "size": 600,
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
                }
            ],
        }
    )
    blobs[sha(index)] = index
    top = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": mf.OCI_INDEX,
                "digest": sha(index),
                "size": len(index),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }
        ],
    }
    members: list[Any] = [
        ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
        ("index.json", json.dumps(top).encode()),
    ]
    members += [("blobs/", None), ("blobs/sha256/", None)]
    members += [(f"blobs/sha256/{hexof(d)}", b) for d, b in blobs.items() if d != drop]
    return archive(members), images


def docker25_save(app: bytes = APP) -> tuple[bytes, str, str]:
    """`docker save` of docker >= 25 (graphdriver): OCI layout + manifest.json + repositories; ref.name is
    only the tag, the full name is in io.containerd.image.name."""
    config = image_config([sha(BASE), sha(app)], cmd="nginx")
    manifest = oci_manifest(config, [BASE, app], media=mf.OCI_LAYER)
    index = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mf.OCI_MANIFEST,
                "digest": sha(manifest),
                "size": len(manifest),
                "annotations": {
                    "io.containerd.image.name": "docker.io/library/nginx:1.27",
                    "org.opencontainers.image.ref.name": "1.27",
                },
            }
        ],
    }
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{hexof(sha(config))}",
            "RepoTags": ["nginx:1.27", "web:prod"],
            "Layers": [f"blobs/sha256/{hexof(sha(BASE))}", f"blobs/sha256/{hexof(sha(app))}"],
        }
    ]
    members: list[Any] = [("blobs/", None), ("blobs/sha256/", None)]
    members += [(f"blobs/sha256/{hexof(sha(b))}", b) for b in (BASE, app, config, manifest)]
    members += [
        ("index.json", json.dumps(index).encode()),
        ("manifest.json", json.dumps(docker_manifest).encode()),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("repositories", json.dumps({"nginx": {"1.27": hexof(sha(app))}}).encode()),
    ]
    return archive(members), sha(config), sha(manifest)


def load(store: StoreUnderTest, data: bytes, **kwargs: Any) -> list[str]:
    return load_archive(store, io.BytesIO(data), **kwargs)


def assert_unchanged(store: StoreUnderTest, before: tuple) -> None:
    assert store.snapshot() == before
    leftovers = [path for path in store.tmp_dir.rglob("*") if not path.is_dir()]
    assert leftovers == [], "staging files left behind"


# ------------------------------------------------------------------------------------------ load


def test_classic_docker_save_builds_a_manifest_for_plain_tar_layers(store: StoreUnderTest) -> None:
    data, config_digest = classic_docker_save()
    assert load(store, data, platform=AMD64) == ["docker.io/library/busybox:1.36"]
    image = store.resolve("busybox:1.36")
    assert image.id == config_digest
    manifest = json.loads(store.read_blob(image.manifest_digest))
    assert manifest["mediaType"] == mf.OCI_MANIFEST
    assert [layer["digest"] for layer in manifest["layers"]] == [sha(BASE), sha(APP), sha(BASE)]
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mf.OCI_LAYER}
    assert [path for path in store.tmp_dir.rglob("*") if not path.is_dir()] == []


def test_untagged_docker_archive_returns_the_image_id(store: StoreUnderTest) -> None:
    data, config_digest = classic_docker_save(tags=None)
    assert load(store, data, platform=AMD64) == [config_digest]
    assert store.tags == {}


def test_docker_archive_with_gzip_layers_checks_diff_ids_of_the_decompressed_tar(
    store: StoreUnderTest,
) -> None:
    packed = gzip.compress(APP, mtime=0)
    config = image_config([sha(APP)])
    manifest = [{"Config": "c.json", "RepoTags": ["localhost:5000/app:v1"], "Layers": ["l/layer.tar.gz"]}]
    data = archive(
        [("c.json", config), ("l/layer.tar.gz", packed), ("manifest.json", json.dumps(manifest).encode())]
    )
    assert load(store, data, platform=AMD64) == ["localhost:5000/app:v1"]
    stored = json.loads(store.read_blob(store.resolve("localhost:5000/app:v1").manifest_digest))
    assert stored["layers"] == [{"mediaType": mf.OCI_LAYER_GZIP, "digest": sha(packed), "size": len(packed)}]


def test_docker25_archive_keeps_the_manifest_digest_and_every_tag(store: StoreUnderTest) -> None:
    data, config_digest, manifest_digest = docker25_save()
    loaded = load(store, data, platform=AMD64)
    assert sorted(loaded) == ["docker.io/library/nginx:1.27", "docker.io/library/web:prod"]
    assert len(store.images) == 1
    assert store.images[config_digest]["manifest"] == manifest_digest


def test_oci_layout_with_two_platforms_loads_only_this_machines(store: StoreUnderTest) -> None:
    data, images = two_platform_layout()
    loaded = load(store, data, platform=AMD64)
    assert loaded == ["registry.example:5000/team/app:2.1"]
    manifest, config, _packed = images["amd64"]
    assert list(store.images) == [sha(config)]
    assert store.images[sha(config)]["manifest"] == sha(manifest)
    assert sha(images["arm64"][2]) not in store.blobs  # the other platform's layer is not kept


def test_oci_layout_selects_arm64_when_asked(store: StoreUnderTest) -> None:
    data, images = two_platform_layout()
    load(store, data, platform=Platform("linux", "arm64", "v8"))
    assert list(store.images) == [sha(images["arm64"][1])]


def test_oci_layout_without_this_platform_is_refused(store: StoreUnderTest) -> None:
    data, _ = two_platform_layout()
    before = store.snapshot()
    with pytest.raises(ArchiveError, match="no manifest for platform linux/s390x"):
        load(store, data, platform=Platform("linux", "s390x"))
    assert_unchanged(store, before)


def test_bare_tag_ref_name_loads_untagged(store: StoreUnderTest) -> None:
    data, images = two_platform_layout(ref_name="latest")
    assert load(store, data, platform=AMD64) == [sha(images["amd64"][1])]


def test_gzip_compressed_archive_is_read_too(store: StoreUnderTest) -> None:
    data, _ = classic_docker_save()
    assert load(store, gzip.compress(data), platform=AMD64) == ["docker.io/library/busybox:1.36"]


# ----------------------------------------------------------------------------- broken archives


def test_corrupt_layer_blob_is_named_and_nothing_is_stored(store: StoreUnderTest) -> None:
    data, images = two_platform_layout()
    packed = images["amd64"][2]
    damaged = data.replace(packed[40:80], bytes(b ^ 0xFF for b in packed[40:80]))
    assert damaged != data
    before = store.snapshot()
    with pytest.raises(ArchiveError) as caught:
        load(store, damaged, platform=AMD64)
    assert caught.value.subject == f"blobs/sha256/{hexof(sha(packed))}"
    assert_unchanged(store, before)


def test_truncated_inside_a_member(store: StoreUnderTest) -> None:
    data, _, _ = docker25_save()
    cut = data[: data.index(APP) + 100]
    before = store.snapshot()
    with pytest.raises(ArchiveError, match="truncated") as caught:
        load(store, cut, platform=AMD64)
    assert caught.value.subject == f"blobs/sha256/{hexof(sha(APP))}"
    assert_unchanged(store, before)


def test_truncated_between_members_misses_the_end_marker(store: StoreUnderTest) -> None:
    data, _, _ = docker25_save()
    buf = io.BytesIO(data)
    with tarfile.open(fileobj=buf) as tar:
        last = tar.getmembers()[-1]
    cut = data[: last.offset_data + ((last.size + 511) // 512) * 512]  # whole archive minus its end blocks
    with pytest.raises(ArchiveError, match="end-of-archive") as caught:
        load(store, cut, platform=AMD64)
    assert caught.value.subject == "repositories"


def test_missing_blob_is_named(store: StoreUnderTest) -> None:
    _, images = two_platform_layout()
    config = images["amd64"][1]
    data, _ = two_platform_layout(drop=sha(config))
    before = store.snapshot()
    with pytest.raises(ArchiveError, match="missing") as caught:
        load(store, data, platform=AMD64)
    assert caught.value.subject == f"blobs/sha256/{hexof(sha(config))}"
    assert_unchanged(store, before)


def test_layer_that_does_not_match_its_diff_id(store: StoreUnderTest) -> None:
    config = image_config([sha(BASE)])  # says BASE, archive carries APP
    manifest = [{"Config": "c.json", "RepoTags": ["x:1"], "Layers": ["a/layer.tar"]}]
    data = archive(
        [("a/layer.tar", APP), ("c.json", config), ("manifest.json", json.dumps(manifest).encode())]
    )
    before = store.snapshot()
    with pytest.raises(ArchiveError, match="does not match diff_id") as caught:
        load(store, data, platform=AMD64)
    assert caught.value.subject == "a/layer.tar"
    assert_unchanged(store, before)


def test_blob_whose_content_is_not_its_name(store: StoreUnderTest) -> None:
    config = image_config([sha(APP)])
    manifest = oci_manifest(config, [APP], media=mf.OCI_LAYER)
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": mf.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}],
    }
    impostor = APP.replace(b"hello", b"HELLO")
    data = archive(
        [("index.json", json.dumps(index).encode()), (f"blobs/sha256/{hexof(sha(APP))}", impostor)]
        + [(f"blobs/sha256/{hexof(sha(b))}", b) for b in (config, manifest)]
    )
    before = store.snapshot()
    with pytest.raises(ArchiveError, match="content hashes to") as caught:
        load(store, data, platform=AMD64)
    assert caught.value.subject == f"blobs/sha256/{hexof(sha(APP))}"
    assert_unchanged(store, before)


def test_a_hostile_layer_registers_no_image_and_drops_the_added_blobs(store: StoreUnderTest) -> None:
    data, _, _ = docker25_save(app=layer_tar({"srv/../../escape": b"out of the layer"}))
    before = store.snapshot()
    with pytest.raises(UnsafeLayerError):
        load(store, data, platform=AMD64)
    assert_unchanged(store, before)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "not a tar archive"),
        (b"this is not a tarball at all" * 40, "not a tar archive"),
        (archive([("hello.txt", b"hi")]), "neither a docker-archive nor an OCI image layout"),
        (archive([("repositories", b"{}")]), "docker < 1.10"),
        (archive([("manifest.json", b"{not json")]), "not valid JSON"),
    ],
)
def test_not_an_image_archive(store: StoreUnderTest, data: bytes, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        load(store, data, platform=AMD64)


def test_sizes_in_descriptors_are_checked(store: StoreUnderTest) -> None:
    config = image_config([sha(APP)])
    manifest = json.loads(oci_manifest(config, [APP], media=mf.OCI_LAYER))
    manifest["layers"][0]["size"] += 1
    raw = json.dumps(manifest).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": mf.OCI_MANIFEST, "digest": sha(raw), "size": len(raw)}],
    }
    data = archive(
        [("index.json", json.dumps(index).encode())]
        + [(f"blobs/sha256/{hexof(sha(b))}", b) for b in (APP, config, raw)]
    )
    with pytest.raises(ArchiveError, match="does not match descriptor size"):
        load(store, data, platform=AMD64)


# ------------------------------------------------------------------------------------------ save


def save(store: StoreUnderTest, refs: list[str], fmt: str) -> bytes:
    out = io.BytesIO()
    save_archive(store, refs, out, format=fmt)
    return out.getvalue()


def names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_keeps_ids_and_manifest_digests(
    store: StoreUnderTest, other_store: StoreUnderTest, fmt: str
) -> None:
    load(store, docker25_save()[0], platform=AMD64)
    load(store, two_platform_layout()[0], platform=AMD64)
    load(store, classic_docker_save()[0], platform=AMD64)
    refs = ["nginx:1.27", "web:prod", "registry.example:5000/team/app:2.1", "busybox:1.36"]
    data = save(store, refs, fmt)
    loaded = load(other_store, data, platform=AMD64)
    assert sorted(loaded) == sorted(parse_reference(r).canonical for r in refs)
    assert other_store.images == store.images
    assert other_store.tags == store.tags
    assert save(other_store, refs, fmt) == data  # byte for byte: deterministic output


def test_docker_format_is_what_docker_25_writes(store: StoreUnderTest) -> None:
    _, config_digest, manifest_digest = docker25_save()
    load(store, docker25_save()[0], platform=AMD64)
    data = save(store, ["nginx:1.27"], "docker")
    listing = names(data)
    assert listing[:2] == ["blobs", "blobs/sha256"]
    assert listing[-4:] == ["index.json", "manifest.json", "oci-layout", "repositories"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        docker_manifest = json.load(tar.extractfile("manifest.json"))
        index = json.load(tar.extractfile("index.json"))
        repositories = json.load(tar.extractfile("repositories"))
    assert docker_manifest == [
        {
            "Config": f"blobs/sha256/{hexof(config_digest)}",
            "RepoTags": ["nginx:1.27"],
            "Layers": [f"blobs/sha256/{hexof(sha(BASE))}", f"blobs/sha256/{hexof(sha(APP))}"],
        }
    ]
    [entry] = index["manifests"]
    assert entry["digest"] == manifest_digest
    assert entry["annotations"] == {
        "io.containerd.image.name": "docker.io/library/nginx:1.27",
        "org.opencontainers.image.ref.name": "1.27",
    }
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert repositories == {"nginx": {"1.27": hexof(sha(APP))}}


def test_oci_format_has_no_docker_files_and_full_ref_names(store: StoreUnderTest) -> None:
    load(store, docker25_save()[0], platform=AMD64)
    data = save(store, ["web:prod"], "oci")
    assert "manifest.json" not in names(data) and "repositories" not in names(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert (
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        == "docker.io/library/web:prod"
    )


def test_saving_by_id_records_no_tag(store: StoreUnderTest, other_store: StoreUnderTest) -> None:
    _, config_digest, _ = docker25_save()
    load(store, docker25_save()[0], platform=AMD64)
    data = save(store, [config_digest], "docker")
    assert load(other_store, data, platform=AMD64) == [config_digest]


def test_save_refuses_unknown_format_and_unknown_image(store: StoreUnderTest) -> None:
    with pytest.raises(ArchiveError, match="unknown archive format"):
        save(store, ["x"], "tar")
    with pytest.raises(ImageNotFound):
        save(store, ["nope:1"], "docker")


def test_zstd_layers_round_trip(store: StoreUnderTest, other_store: StoreUnderTest) -> None:
    packed = zstandard.ZstdCompressor().compress(TOP)
    config = image_config([sha(TOP)])
    manifest = [{"Config": "c.json", "RepoTags": ["z:1"], "Layers": ["t.tar.zst"]}]
    load(
        store,
        archive(
            [("c.json", config), ("t.tar.zst", packed), ("manifest.json", json.dumps(manifest).encode())]
        ),
    )
    load(other_store, save(store, ["z:1"], "oci"), platform=AMD64)
    assert other_store.images == store.images
