"""Manifests, indexes, image configs, platform selection and the builders import/save use."""

from __future__ import annotations

import hashlib
import json

import pytest

from engine.errors import ArchiveError, ImageNotFound, InvalidReference
from engine.images import manifest as m
from engine.images.manifest import (
    Index,
    Manifest,
    canonical_json,
    compute_chain_ids,
    descriptor_for,
    host_platform,
    image_config_summary,
    new_image_config,
    new_index,
    new_manifest,
    parse_image_config,
    parse_manifest,
    parse_platform,
    select_platform,
    sha256_digest,
)
from engine.images.types import Descriptor, Platform


def _d(n: int) -> str:
    """A distinct, well-formed digest per number."""
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def _json(obj) -> bytes:
    return json.dumps(obj, indent=3).encode()


DOCKER_SCHEMA2 = {
    "schemaVersion": 2,
    "mediaType": m.DOCKER_MANIFEST,
    "config": {"mediaType": m.DOCKER_CONFIG, "size": 1457, "digest": _d(1)},
    "layers": [
        {"mediaType": m.DOCKER_LAYER_GZIP, "size": 2152262, "digest": _d(2)},
        {"mediaType": m.DOCKER_LAYER_GZIP, "size": 32, "digest": _d(3)},
    ],
}

OCI_MANIFEST_NO_MEDIATYPE = {
    "schemaVersion": 2,
    "config": {"mediaType": m.OCI_CONFIG, "size": 7023, "digest": _d(4)},
    "layers": [{"mediaType": m.OCI_LAYER_ZSTD, "size": 32654, "digest": _d(5)}],
    "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
}


def _entry(n: int, os: str, arch: str, variant: str | None = None, **annotations: str) -> dict:
    platform = {"os": os, "architecture": arch}
    if variant:
        platform["variant"] = variant
    entry = {"mediaType": m.OCI_MANIFEST, "size": 1000 + n, "digest": _d(100 + n), "platform": platform}
    if annotations:
        entry["annotations"] = annotations
    return entry


# Shaped like a Docker Hub official image index built by buildkit: images plus attestation manifests.
HUB_INDEX = {
    "schemaVersion": 2,
    "mediaType": m.OCI_INDEX,
    "manifests": [
        _entry(1, "linux", "amd64"),
        _entry(2, "linux", "arm", "v5"),
        _entry(3, "linux", "arm", "v7"),
        _entry(4, "linux", "arm64", "v8"),
        _entry(5, "linux", "386"),
        _entry(6, "linux", "ppc64le"),
        _entry(7, "linux", "s390x"),
        _entry(
            8,
            "unknown",
            "unknown",
            **{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": _d(101)},
        ),
    ],
}


# --- parsing manifests and indexes -------------------------------------------------------------


def test_docker_schema2_manifest_with_its_header():
    parsed = parse_manifest(_json(DOCKER_SCHEMA2), m.DOCKER_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == m.DOCKER_MANIFEST
    assert parsed.config == Descriptor(m.DOCKER_CONFIG, _d(1), 1457)
    assert [layer.digest for layer in parsed.layers] == [_d(2), _d(3)]
    assert parsed.layers[0].size == 2152262


def test_media_type_from_the_document_when_the_header_is_missing_or_generic():
    for header in (None, "application/json", "application/octet-stream", ""):
        assert parse_manifest(_json(DOCKER_SCHEMA2), header).media_type == m.DOCKER_MANIFEST
        assert parse_manifest(_json(HUB_INDEX), header).media_type == m.OCI_INDEX


def test_media_type_from_the_shape_when_neither_says():
    parsed = parse_manifest(_json(OCI_MANIFEST_NO_MEDIATYPE), None)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == m.OCI_MANIFEST
    assert parsed.annotations == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    index = {k: v for k, v in HUB_INDEX.items() if k != "mediaType"}
    assert parse_manifest(_json(index), None).media_type == m.OCI_INDEX


def test_header_with_parameters_is_understood():
    parsed = parse_manifest(_json(DOCKER_SCHEMA2), m.DOCKER_MANIFEST + "; charset=utf-8")
    assert parsed.media_type == m.DOCKER_MANIFEST


def test_header_contradicting_the_document_is_refused():
    with pytest.raises(ArchiveError, match="served as"):
        parse_manifest(_json(DOCKER_SCHEMA2), m.OCI_MANIFEST)


def test_index_entries_keep_platform_and_annotations():
    index = parse_manifest(_json(HUB_INDEX), m.OCI_INDEX)
    assert isinstance(index, Index)
    assert len(index.manifests) == 8
    assert index.manifests[3].platform == Platform("linux", "arm64", "v8")
    assert index.manifests[7].annotations["vnd.docker.reference.type"] == "attestation-manifest"


def test_docker_manifest_list():
    doc = dict(HUB_INDEX, mediaType=m.DOCKER_MANIFEST_LIST)
    doc["manifests"] = [dict(e, mediaType=m.DOCKER_MANIFEST) for e in HUB_INDEX["manifests"][:2]]
    parsed = parse_manifest(_json(doc), m.DOCKER_MANIFEST_LIST)
    assert isinstance(parsed, Index)
    assert parsed.media_type == m.DOCKER_MANIFEST_LIST
    assert parsed.manifests[1].platform == Platform("linux", "arm", "v5")


SCHEMA1 = {
    "schemaVersion": 1,
    "name": "library/hello-world",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": _d(9)}],
    "history": [{"v1Compatibility": "{}"}],
    "signatures": [],
}


@pytest.mark.parametrize(
    "header", [None, m.DOCKER_SCHEMA1_MANIFEST, m.DOCKER_SCHEMA1_SIGNED_MANIFEST, "application/json"]
)
def test_schema1_is_refused_clearly(header):
    with pytest.raises(ArchiveError, match="schema1") as info:
        parse_manifest(_json(SCHEMA1), header, subject="docker.io/library/hello-world:latest")
    assert info.value.subject == "docker.io/library/hello-world:latest"


def _broken(**changes) -> bytes:
    doc = json.loads(json.dumps(DOCKER_SCHEMA2))
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return _json(doc)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_broken(schemaVersion=3), "schemaVersion 3"),
        (_broken(schemaVersion=None), "schemaVersion None"),
        (_broken(mediaType="application/vnd.example+json"), "unsupported manifest media type"),
        (_broken(config=None), "config descriptor"),
        (_broken(layers=None), "layers list"),
        (_broken(layers={"a": 1}), "layers list"),
        (_broken(config={"mediaType": m.DOCKER_CONFIG, "size": 1, "digest": "sha256:abc"}), "invalid digest"),
        (
            _broken(config={"mediaType": m.DOCKER_CONFIG, "size": 1, "digest": _d(1).upper()}),
            "invalid digest",
        ),
        (_broken(config={"mediaType": m.DOCKER_CONFIG, "size": -1, "digest": _d(1)}), "invalid size"),
        (_broken(config={"mediaType": m.DOCKER_CONFIG, "size": True, "digest": _d(1)}), "invalid size"),
        (_broken(config={"mediaType": m.DOCKER_CONFIG, "size": "10", "digest": _d(1)}), "invalid size"),
        (_broken(config={"size": 1, "digest": _d(1)}), "no mediaType"),
        (_broken(layers=["sha256:x"]), "not a JSON object"),
        (_broken(annotations={"a": 1}), "annotations"),
    ],
)
def test_malformed_manifests_are_refused(data, reason):
    with pytest.raises(ArchiveError) as info:
        parse_manifest(data, None, subject="localhost:5000/app:1")
    assert reason in info.value.message
    assert info.value.subject == "localhost:5000/app:1"


def test_bad_platform_in_an_index_entry_is_refused():
    doc = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": [_entry(1, "linux", "amd64")]}
    doc["manifests"][0]["platform"] = {"os": "linux"}
    with pytest.raises(ArchiveError, match="os and architecture"):
        parse_manifest(_json(doc), None)


def test_unknown_fields_are_ignored():
    doc = dict(DOCKER_SCHEMA2, futureField={"x": 1})
    doc["layers"] = [dict(DOCKER_SCHEMA2["layers"][0], data="aGVsbG8=", somethingNew=[1])]
    assert isinstance(parse_manifest(_json(doc), None), Manifest)


def test_foreign_layer_urls_are_kept():
    foreign = {
        "mediaType": m.DOCKER_FOREIGN_LAYER_GZIP,
        "size": 1069513,
        "digest": _d(7),
        "urls": ["https://mcr.microsoft.com/v2/windows/blobs/" + _d(7)],
    }
    doc = dict(DOCKER_SCHEMA2, layers=[foreign, *DOCKER_SCHEMA2["layers"]])
    parsed = parse_manifest(_json(doc), m.DOCKER_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert parsed.urls == {_d(7): (foreign["urls"][0],)}
    assert m.is_foreign_layer(parsed.layers[0].media_type)
    assert not m.is_foreign_layer(parsed.layers[1].media_type)


def test_oci_subject_and_artifact_type():
    doc = dict(OCI_MANIFEST_NO_MEDIATYPE, mediaType=m.OCI_MANIFEST, artifactType="application/spdx+json")
    doc["subject"] = {"mediaType": m.OCI_MANIFEST, "size": 10, "digest": _d(8)}
    parsed = parse_manifest(_json(doc), None)
    assert isinstance(parsed, Manifest)
    assert parsed.artifact_type == "application/spdx+json"
    assert parsed.subject == Descriptor(m.OCI_MANIFEST, _d(8), 10)


# --- layer media types -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "compression"),
    [
        (m.OCI_LAYER, None),
        (m.OCI_LAYER_GZIP, "gzip"),
        (m.OCI_LAYER_ZSTD, "zstd"),
        (m.OCI_LAYER_NONDIST_GZIP, "gzip"),
        (m.DOCKER_LAYER, None),
        (m.DOCKER_LAYER_GZIP, "gzip"),
        (m.DOCKER_LAYER_ZSTD, "zstd"),
        (m.DOCKER_FOREIGN_LAYER_GZIP, "gzip"),
    ],
)
def test_layer_compression(media_type, compression):
    assert m.is_layer_type(media_type)
    assert m.layer_compression(media_type) == compression


def test_unknown_layer_media_type_is_an_error():
    assert not m.is_layer_type(m.OCI_CONFIG)
    with pytest.raises(ArchiveError, match="unsupported layer media type"):
        m.layer_compression("application/vnd.oci.image.layer.v1.tar+lz4")


def test_layer_media_type_for_writing():
    assert m.layer_media_type("gzip", oci=True) == m.OCI_LAYER_GZIP
    assert m.layer_media_type(None, oci=False) == m.DOCKER_LAYER
    assert m.layer_media_type("zstd", oci=False) == m.DOCKER_LAYER_ZSTD
    with pytest.raises(ArchiveError):
        m.layer_media_type("bzip2", oci=True)


def test_accept_header_never_offers_schema1():
    assert not set(m.ACCEPT_MANIFEST_TYPES) & m.SCHEMA1_TYPES
    assert set(m.ACCEPT_MANIFEST_TYPES) == m.MANIFEST_TYPES | m.INDEX_TYPES


# --- platforms ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64", "v8")),
        ("arm64", Platform("linux", "arm64", "v8")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("ppc64le", Platform("linux", "ppc64le")),
        ("s390x", Platform("linux", "s390x")),
        ("riscv64", Platform("linux", "riscv64")),
    ],
)
def test_host_platform(monkeypatch, machine, expected):
    monkeypatch.setattr(m._host, "machine", lambda: machine)
    assert host_platform() == expected


def test_host_platform_of_this_machine_is_pullable():
    here = host_platform()
    assert here.os == "linux"
    assert here.architecture in {"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm64", Platform("linux", "arm64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/arm/v6", Platform("linux", "arm", "v6")),
        ("linux/arm/7", Platform("linux", "arm", "v7")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("arm64", Platform("linux", "arm64")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_parse_platform(text, expected):
    assert parse_platform(text) == expected


def test_parse_platform_os_only_takes_the_host_architecture():
    assert parse_platform("linux") == host_platform()


@pytest.mark.parametrize("text", ["", "linux/", "linux/amd64/v2/extra", "linux amd64", "linux/am$d64"])
def test_parse_platform_rejects_garbage(text):
    with pytest.raises(InvalidReference, match="invalid platform"):
        parse_platform(text)


def _index(*entries: dict) -> Index:
    doc = {"schemaVersion": 2, "mediaType": m.OCI_INDEX, "manifests": list(entries)}
    parsed = parse_manifest(_json(doc), m.OCI_INDEX)
    assert isinstance(parsed, Index)
    return parsed


HUB = parse_manifest(_json(HUB_INDEX), m.OCI_INDEX)


@pytest.mark.parametrize(
    ("wanted", "expected_entry"),
    [
        (Platform("linux", "amd64"), 1),
        (Platform("linux", "arm64", "v8"), 4),  # host form with v8 matches the index's arm64/v8
        (Platform("linux", "arm64"), 4),  # and without it
        (Platform("linux", "arm", "v7"), 3),
        (Platform("linux", "arm"), 3),  # arm without variant means v7
        (Platform("linux", "arm", "v6"), 2),  # no v6 entry: v5 runs on v6
        (Platform("linux", "386"), 5),
        (Platform("linux", "s390x"), 7),
        (Platform("linux", "x86_64"), 1),  # aliases fold
    ],
)
def test_select_platform_on_a_hub_style_index(wanted, expected_entry):
    assert isinstance(HUB, Index)
    assert select_platform(HUB, wanted).digest == _d(100 + expected_entry)


def test_arm64_falls_back_to_arm_v8_then_v7():
    index = _index(
        _entry(1, "linux", "amd64"), _entry(2, "linux", "arm", "v6"), _entry(3, "linux", "arm", "v7")
    )
    assert select_platform(index, Platform("linux", "arm64", "v8")).digest == _d(103)


def test_most_specific_compatible_variant_wins_regardless_of_order():
    index = _index(
        _entry(1, "linux", "arm", "v5"), _entry(2, "linux", "arm", "v6"), _entry(3, "linux", "arm", "v7")
    )
    assert select_platform(index, Platform("linux", "arm", "v7")).digest == _d(103)
    assert select_platform(index, Platform("linux", "arm", "v6")).digest == _d(102)


def test_amd64_microarchitecture_levels():
    index = _index(
        _entry(1, "linux", "amd64"), _entry(2, "linux", "amd64", "v2"), _entry(3, "linux", "amd64", "v4")
    )
    assert select_platform(index, Platform("linux", "amd64", "v3")).digest == _d(102)
    assert select_platform(index, Platform("linux", "amd64")).digest == _d(101)
    assert select_platform(index, Platform("linux", "amd64", "v1")).digest == _d(101)


def test_amd64_runs_386_when_nothing_better_exists():
    index = _index(_entry(1, "linux", "386"), _entry(2, "linux", "arm64"))
    assert select_platform(index, Platform("linux", "amd64")).digest == _d(101)


def test_arm64_v9_prefers_its_own_levels_then_v8():
    index = _index(
        _entry(1, "linux", "arm64", "v8.2"), _entry(2, "linux", "arm64", "v9"), _entry(3, "linux", "arm64")
    )
    assert select_platform(index, Platform("linux", "arm64", "v9.1")).digest == _d(102)
    assert select_platform(index, Platform("linux", "arm64", "v8.4")).digest == _d(101)
    assert select_platform(index, Platform("linux", "arm64", "v8")).digest == _d(103)


def test_a_newer_variant_never_runs_on_an_older_cpu():
    index = _index(_entry(1, "linux", "arm", "v7"), _entry(2, "linux", "amd64", "v3"))
    with pytest.raises(ImageNotFound) as info:
        select_platform(index, Platform("linux", "arm", "v6"), subject="docker.io/library/app:1")
    assert info.value.subject == "docker.io/library/app:1"
    assert "linux/arm/v6" in info.value.message
    assert "available: linux/arm/v7, linux/amd64/v3" in info.value.message
    with pytest.raises(ImageNotFound):
        select_platform(index, Platform("linux", "amd64"))


def test_os_must_match():
    index = _index(_entry(1, "windows", "amd64"))
    with pytest.raises(ImageNotFound, match="windows/amd64"):
        select_platform(index, Platform("linux", "amd64"))


def test_attestation_manifests_are_never_selected_nor_listed():
    index = _index(
        _entry(1, "linux", "riscv64"),
        _entry(2, "unknown", "unknown", **{"vnd.docker.reference.type": "attestation-manifest"}),
    )
    with pytest.raises(ImageNotFound) as info:
        select_platform(index, Platform("linux", "amd64"))
    assert "unknown" not in info.value.message
    assert "available: linux/riscv64" in info.value.message


def test_entry_without_platform_is_the_last_resort():
    plain = {"mediaType": m.OCI_MANIFEST, "size": 10, "digest": _d(200)}
    index = _index(plain, _entry(1, "linux", "amd64"))
    assert select_platform(index, Platform("linux", "amd64")).digest == _d(101)
    assert select_platform(index, Platform("linux", "arm64")).digest == _d(200)


def test_empty_index_says_none_available():
    with pytest.raises(ImageNotFound, match=r"available: none"):
        select_platform(_index(), Platform("linux", "amd64"))


# --- image configs -----------------------------------------------------------------------------

BUSYBOX_CONFIG = {
    "architecture": "arm64",
    "variant": "v8",
    "os": "linux",
    "created": "2023-07-18T23:19:33.655005962Z",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
        "Volumes": {"/data": {}},
        "Labels": {"org.opencontainers.image.version": "1.36.1"},
        "WorkingDir": "/srv",
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000},
    },
    "rootfs": {"type": "layers", "diff_ids": [_d(11), _d(12)]},
    "history": [
        {"created": "2023-07-18T23:19:33.538571854Z", "created_by": "ADD file:abc in / "},
        {"created": "2023-07-18T23:19:33.655005962Z", "created_by": 'CMD ["sh"]', "empty_layer": True},
        {"created": "2023-07-18T23:19:34Z", "created_by": "RUN true"},
    ],
}


def test_parse_image_config():
    config = parse_image_config(_json(BUSYBOX_CONFIG))
    assert config.platform == Platform("linux", "arm64", "v8")
    assert config.created == "2023-07-18T23:19:33.655005962Z"
    assert config.author is None
    assert config.diff_ids == (_d(11), _d(12))
    assert config.config["Cmd"] == ["sh"]
    assert len(config.history) == 3
    assert config.raw["rootfs"]["type"] == "layers"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"architecture": None}, "architecture or os"),
        ({"os": ""}, "architecture or os"),
        ({"rootfs": None}, 'type "layers"'),
        ({"rootfs": {"type": "overlay", "diff_ids": []}}, 'type "layers"'),
        ({"rootfs": {"type": "layers", "diff_ids": ["sha256:nothex"]}}, "diff_ids"),
        ({"rootfs": {"type": "layers"}}, "diff_ids"),
        ({"config": ["sh"]}, "malformed"),
        ({"history": {"a": 1}}, "malformed"),
    ],
)
def test_malformed_image_configs_are_refused(change, reason):
    doc = dict(BUSYBOX_CONFIG)
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    with pytest.raises(ArchiveError) as info:
        parse_image_config(_json(doc), subject=_d(1))
    assert reason in info.value.message
    assert info.value.subject == _d(1)


def test_image_config_summary():
    summary = image_config_summary(BUSYBOX_CONFIG)
    assert summary == image_config_summary(parse_image_config(_json(BUSYBOX_CONFIG)))
    assert summary["Architecture"] == "arm64"
    assert summary["Variant"] == "v8"
    assert summary["Cmd"] == ["sh"]
    assert summary["Entrypoint"] is None
    assert summary["ExposedPorts"] == ["53/udp", "8080/tcp"]
    assert summary["Volumes"] == ["/data"]
    assert summary["WorkingDir"] == "/srv"
    assert summary["User"] == ""
    assert summary["StopSignal"] == "SIGQUIT"
    assert summary["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30000000000}
    assert summary["Labels"] == {"org.opencontainers.image.version": "1.36.1"}
    assert summary["Layers"] == 2


def test_image_config_summary_of_a_bare_config_has_every_key():
    bare = {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    summary = image_config_summary(bare)
    assert summary["Env"] == [] and summary["Labels"] == {} and summary["Cmd"] is None
    assert summary["Created"] is None and summary["Layers"] == 0


# --- digests, chain ids, canonical JSON --------------------------------------------------------


def test_sha256_digest():
    assert sha256_digest(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert m.is_digest(sha256_digest(b"x"))


# diff_ids are sha256 of b"layer-one", b"layer-two", b"layer-three"; the chain ids were computed by hand with
#   printf '%s %s' "$parent" "$diff" | sha256sum
LAYER_ONE = "sha256:0139c1c77468f75e6763a4612262743bd47a36b26cb2863d662756b3377bb029"
LAYER_TWO = "sha256:4381142a944dccfafc4428f3b1d4469713054b918f3c97f2e7f1cac2c25e0cc4"
LAYER_THREE = "sha256:6c743db43f0448c007a51265ac822887f39ea7e6600820511cc46f9f63690fd5"
CHAIN_TWO = "sha256:aff998a96a2f925843dfb74108505e06ba8a26c9ff277ee74ede14a9bd9090b0"
CHAIN_THREE = "sha256:0c591124fb48bc3416c43b04465bf075a13e4949d16e3c58b274b18a00494da7"


def test_chain_ids_match_the_hand_computed_example():
    assert sha256_digest(b"layer-one") == LAYER_ONE
    assert compute_chain_ids([LAYER_ONE, LAYER_TWO, LAYER_THREE]) == [LAYER_ONE, CHAIN_TWO, CHAIN_THREE]


def test_chain_ids_depend_on_order_and_share_prefixes():
    assert compute_chain_ids([]) == []
    assert compute_chain_ids([LAYER_TWO]) == [LAYER_TWO]
    assert compute_chain_ids([LAYER_TWO, LAYER_ONE])[1] != CHAIN_TWO
    assert compute_chain_ids([LAYER_ONE, LAYER_TWO]) == [LAYER_ONE, CHAIN_TWO]


def test_chain_ids_refuse_bad_diff_ids():
    with pytest.raises(ArchiveError, match="invalid diff_id"):
        compute_chain_ids([LAYER_ONE, "sha256:short"])


def test_canonical_json_is_sorted_compact_and_utf8():
    assert canonical_json({"b": 1, "a": [{"d": None, "c": True}], "é": "ü"}) == (
        '{"a":[{"c":true,"d":null}],"b":1,"é":"ü"}'.encode()
    )
    assert canonical_json({"x": 1, "y": 2}) == canonical_json({"y": 2, "x": 1})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# --- builders ----------------------------------------------------------------------------------


def _imported(oci: bool, created: str = "2024-05-01T12:00:00Z"):
    config = new_image_config(
        diff_ids=[LAYER_ONE],
        platform=Platform("linux", "amd64"),
        created=created,
        config={"Cmd": ["/bin/sh"], "Env": ["A=1"]},
        comment="Imported from rootfs.tar",
    )
    config_bytes = canonical_json(config)
    config_desc = descriptor_for(m.OCI_CONFIG if oci else m.DOCKER_CONFIG, config_bytes)
    layer = Descriptor(m.layer_media_type("gzip", oci=oci), _d(50), 4096)
    manifest_bytes = canonical_json(new_manifest(config_desc, [layer], oci))
    return config, config_bytes, config_desc, layer, manifest_bytes


def test_new_image_config_looks_like_docker_import():
    config, config_bytes, *_ = _imported(oci=True)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [LAYER_ONE]}
    assert config["history"] == [{"created": "2024-05-01T12:00:00Z", "comment": "Imported from rootfs.tar"}]
    assert "variant" not in config and "author" not in config
    parsed = parse_image_config(config_bytes)
    assert parsed.diff_ids == (LAYER_ONE,)
    assert parsed.platform == Platform("linux", "amd64")
    assert image_config_summary(parsed)["Cmd"] == ["/bin/sh"]


def test_new_image_config_defaults():
    config = new_image_config(diff_ids=[LAYER_ONE, LAYER_TWO], author="me")
    assert config["os"] == "linux" and config["architecture"] == host_platform().architecture
    assert config["created"].endswith("Z")
    assert len(config["history"]) == 2 and config["author"] == "me"
    assert parse_image_config(canonical_json(config)).created == config["created"]
    arm = new_image_config(
        diff_ids=[], platform=Platform("linux", "arm", "v7"), created="2024-01-01T00:00:00Z"
    )
    assert arm["variant"] == "v7" and arm["history"] == []
    with pytest.raises(ArchiveError):
        new_image_config(diff_ids=["nope"])


@pytest.mark.parametrize("oci", [True, False])
def test_built_manifest_parses_back_to_the_same_descriptors(oci):
    _, config_bytes, config_desc, layer, manifest_bytes = _imported(oci)
    assert config_desc.digest == sha256_digest(config_bytes) and config_desc.size == len(config_bytes)
    parsed = parse_manifest(manifest_bytes, None)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == (m.OCI_MANIFEST if oci else m.DOCKER_MANIFEST)
    assert parsed.config == config_desc
    assert parsed.layers == (layer,)
    assert json.loads(manifest_bytes)["schemaVersion"] == 2


def test_built_digests_are_reproducible_and_follow_content():
    first, second = _imported(oci=True), _imported(oci=True)
    assert sha256_digest(first[4]) == sha256_digest(second[4])
    assert first[2] == second[2]
    later = _imported(oci=True, created="2024-05-02T12:00:00Z")
    assert later[2].digest != first[2].digest


def test_manifest_annotations_and_index_round_trip():
    _, _, config_desc, layer, manifest_bytes = _imported(oci=True)
    doc = new_manifest(config_desc, [layer], True, annotations={"org.opencontainers.image.ref.name": "1"})
    assert parse_manifest(canonical_json(doc), m.OCI_MANIFEST).annotations == {
        "org.opencontainers.image.ref.name": "1"
    }
    amd = descriptor_for(m.OCI_MANIFEST, manifest_bytes, platform=Platform("linux", "amd64"))
    arm = Descriptor(m.OCI_MANIFEST, _d(60), 500, Platform("linux", "arm", "v7"), {"k": "v"})
    index_bytes = canonical_json(new_index([amd, arm], annotations={"a": "b"}))
    index = parse_manifest(index_bytes, None)
    assert isinstance(index, Index)
    assert index.manifests == (amd, arm)
    assert index.annotations == {"a": "b"}
    assert select_platform(index, Platform("linux", "arm", "v7")) == arm
    docker_list = parse_manifest(canonical_json(new_index([amd], oci=False)), m.DOCKER_MANIFEST_LIST)
    assert docker_list.media_type == m.DOCKER_MANIFEST_LIST
