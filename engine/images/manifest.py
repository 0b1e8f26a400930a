"""OCI and Docker schema2 manifests, indexes and image configs: media types, parsing, building.

Pure functions over bytes and dicts, no I/O. Reading is strict where content addressing depends on
it (digests, sizes, the manifest's own media type) and lenient elsewhere: unknown fields are ignored,
as the OCI spec requires. What we write is canonical JSON (sorted keys, no whitespace), the
serialisation the OCI spec recommends, so the same image always gets the same digests.
"""

from __future__ import annotations

import hashlib
import json
import platform as _host
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from datetime import UTC, datetime
from typing import Any

from engine.errors import ArchiveError, ImageNotFound, InvalidReference
from engine.frozen import frozen
from engine.images.types import Descriptor, Platform

# --- media types -------------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar"
DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1_MANIFEST = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED_MANIFEST = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
CONFIG_TYPES = frozenset({OCI_CONFIG, DOCKER_CONFIG})
SCHEMA1_TYPES = frozenset({DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST})
# The `Accept` header of a manifest GET, most preferred first (never schema1).
ACCEPT_MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

_LAYER_COMPRESSION: dict[str, str | None] = {
    OCI_LAYER: None,
    OCI_LAYER_NONDIST: None,
    DOCKER_LAYER: None,
    DOCKER_FOREIGN_LAYER: None,
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_FOREIGN_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
    DOCKER_LAYER_ZSTD: "zstd",
}
_FOREIGN_LAYER_TYPES = frozenset(
    {
        OCI_LAYER_NONDIST,
        OCI_LAYER_NONDIST_GZIP,
        OCI_LAYER_NONDIST_ZSTD,
        DOCKER_FOREIGN_LAYER,
        DOCKER_FOREIGN_LAYER_GZIP,
    }
)
# buildkit puts provenance/SBOM manifests in indexes with this annotation; they are not images.
_REFERENCE_TYPE_ANNOTATION = "vnd.docker.reference.type"

_DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})")


def is_layer_type(media_type: str) -> bool:
    """True for every tar layer media type we can unpack (OCI, Docker, foreign, nondistributable)."""
    return media_type in _LAYER_COMPRESSION


def layer_compression(media_type: str) -> str | None:
    """`"gzip"`, `"zstd"` or None (plain tar) for a layer media type; unknown types are an error."""
    if media_type in _LAYER_COMPRESSION:
        return _LAYER_COMPRESSION[media_type]
    raise ArchiveError(f"unsupported layer media type {media_type!r}")


def is_foreign_layer(media_type: str) -> bool:
    """Foreign/nondistributable layers are fetched from their `urls` and never pushed."""
    return media_type in _FOREIGN_LAYER_TYPES


def layer_media_type(compression: str | None, *, oci: bool) -> str:
    """The layer media type for writing a layer compressed with `compression` (None, gzip, zstd)."""
    table = {
        (None, True): OCI_LAYER,
        ("gzip", True): OCI_LAYER_GZIP,
        ("zstd", True): OCI_LAYER_ZSTD,
        (None, False): DOCKER_LAYER,
        ("gzip", False): DOCKER_LAYER_GZIP,
        ("zstd", False): DOCKER_LAYER_ZSTD,
    }
    try:
        return table[(compression, oci)]
    except KeyError:
        raise ArchiveError(f"unsupported layer compression {compression!r}") from None


# --- value types -------------------------------------------------------------------------------


@frozen
class Manifest:
    """An image manifest (OCI or Docker schema2): one config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str | None = None
    subject: Descriptor | None = None
    # Download locations of foreign/nondistributable layers, by digest (Descriptor has no `urls`).
    urls: dict[str, tuple[str, ...]] = field(default_factory=dict)


@frozen
class Index:
    """An OCI image index or Docker manifest list: one manifest per platform (and attestations)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)


@frozen
class ImageConfig:
    """The parts of an image config the engine uses; `raw` keeps the whole document."""

    platform: Platform
    created: str | None
    author: str | None
    config: dict[str, Any]
    diff_ids: tuple[str, ...]
    history: tuple[dict[str, Any], ...]
    raw: dict[str, Any]


# --- digests and JSON --------------------------------------------------------------------------


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of `data`, the name of a blob."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    """True for a well-formed sha256/sha384/sha512 digest in lower-case hex."""
    return bool(_DIGEST_RE.fullmatch(text))


def canonical_json(obj: Any) -> bytes:
    """Serialise JSON we write (manifests, configs, indexes) so equal content gives equal digests.

    Sorted keys, no insignificant whitespace, UTF-8: the canonical form the OCI spec recommends
    (docker and containerd use Go struct order instead; any stable choice keeps digests reproducible).
    """
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def compute_chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """OCI chain ids: the first is the first diff_id, then sha256 of "<parent chain id> <diff_id>"."""
    chain: list[str] = []
    for diff_id in diff_ids:
        if not is_digest(diff_id):
            raise ArchiveError(f"invalid diff_id {diff_id!r}", subject=diff_id)
        chain.append(sha256_digest(f"{chain[-1]} {diff_id}".encode()) if chain else diff_id)
    return chain


# --- parsing -----------------------------------------------------------------------------------


def parse_manifest(
    data: bytes, media_type: str | None = None, *, subject: str | None = None
) -> Manifest | Index:
    """Parse a manifest or index; `media_type` is the Content-Type it came with, if any.

    The header wins when it names a known type; otherwise the document's own `mediaType` (or its
    shape) decides. A document whose `mediaType` contradicts the header is refused, as distribution
    does, and schema1 is refused outright (deprecated, unsigned content we cannot verify).
    """
    obj = _load_object(data, "manifest", subject)
    kind = _detect_kind(obj, media_type, subject)
    if kind in INDEX_TYPES:
        return _parse_index(obj, kind, subject)
    return _parse_image_manifest(obj, kind, subject)


def parse_image_config(data: bytes, *, subject: str | None = None) -> ImageConfig:
    """Parse and check an image config: platform, rootfs diff_ids, container defaults, history."""
    obj = _load_object(data, "image config", subject)
    arch, os_name = obj.get("architecture"), obj.get("os")
    if not isinstance(arch, str) or not arch or not isinstance(os_name, str) or not os_name:
        raise ArchiveError("image config lacks architecture or os", subject=subject)
    variant = obj.get("variant")
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ArchiveError('image config rootfs must have type "layers"', subject=subject)
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and is_digest(d) for d in diff_ids):
        raise ArchiveError("image config rootfs.diff_ids must be a list of sha256 digests", subject=subject)
    container = obj.get("config") or {}
    history = obj.get("history") or []
    if not isinstance(container, dict) or not isinstance(history, list):
        raise ArchiveError("image config has a malformed config or history", subject=subject)
    return ImageConfig(
        platform=Platform(os_name, arch, variant if isinstance(variant, str) and variant else None),
        created=_optional_str(obj, "created"),
        author=_optional_str(obj, "author"),
        config=container,
        diff_ids=tuple(diff_ids),
        history=tuple(h for h in history if isinstance(h, dict)),
        raw=obj,
    )


def parse_descriptor(obj: Any, *, subject: str | None = None) -> Descriptor:
    """A content descriptor: mediaType, a valid digest and a non-negative size are required."""
    if not isinstance(obj, dict):
        raise ArchiveError("descriptor is not a JSON object", subject=subject)
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ArchiveError("descriptor has no mediaType", subject=subject)
    if not isinstance(digest, str) or not is_digest(digest):
        raise ArchiveError(f"descriptor has an invalid digest {digest!r}", subject=subject)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ArchiveError(f"descriptor {digest} has an invalid size {size!r}", subject=subject)
    platform = obj.get("platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        platform=_parse_platform_object(platform, subject) if platform is not None else None,
        annotations=_string_map(obj.get("annotations"), "annotations", subject),
    )


def _load_object(data: bytes, what: str, subject: str | None) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"{what} is not valid JSON ({exc})", subject=subject) from None
    if not isinstance(obj, dict):
        raise ArchiveError(f"{what} is not a JSON object", subject=subject)
    return obj


def _detect_kind(obj: dict[str, Any], header: str | None, subject: str | None) -> str:
    """Which of the four manifest/index media types this document is."""
    body = obj.get("mediaType")
    if header in SCHEMA1_TYPES or body in SCHEMA1_TYPES or obj.get("schemaVersion") == 1:
        raise ArchiveError(
            "Docker schema1 manifests are not supported (deprecated format; re-push the image with a "
            "current client)",
            subject=subject,
        )
    if obj.get("schemaVersion") != 2:
        raise ArchiveError(
            f"unsupported manifest schemaVersion {obj.get('schemaVersion')!r}", subject=subject
        )
    known = MANIFEST_TYPES | INDEX_TYPES
    header = header.split(";")[0].strip() if header else None
    if header in known:
        if isinstance(body, str) and body and body != header:
            raise ArchiveError(
                f"manifest says mediaType {body!r} but was served as {header!r}", subject=subject
            )
        return header
    if isinstance(body, str) and body:
        if body not in known:
            raise ArchiveError(f"unsupported manifest media type {body!r}", subject=subject)
        return body
    if "manifests" in obj:
        return OCI_INDEX
    if "config" in obj:
        return OCI_MANIFEST
    raise ArchiveError("document is neither an image manifest nor an index", subject=subject)


def _parse_image_manifest(obj: dict[str, Any], media_type: str, subject: str | None) -> Manifest:
    layers_raw = obj.get("layers")
    if "config" not in obj or not isinstance(layers_raw, list):
        raise ArchiveError("manifest needs a config descriptor and a layers list", subject=subject)
    layers = tuple(parse_descriptor(item, subject=subject) for item in layers_raw)
    urls = {
        item["digest"]: tuple(item["urls"])
        for item in layers_raw
        if isinstance(item.get("urls"), list) and all(isinstance(u, str) for u in item["urls"])
    }
    subject_desc = obj.get("subject")
    artifact_type = obj.get("artifactType")
    return Manifest(
        media_type=media_type,
        config=parse_descriptor(obj["config"], subject=subject),
        layers=layers,
        annotations=_string_map(obj.get("annotations"), "annotations", subject),
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        subject=parse_descriptor(subject_desc, subject=subject) if subject_desc is not None else None,
        urls=urls,
    )


def _parse_index(obj: dict[str, Any], media_type: str, subject: str | None) -> Index:
    manifests = obj.get("manifests")
    if not isinstance(manifests, list):
        raise ArchiveError("index needs a manifests list", subject=subject)
    return Index(
        media_type=media_type,
        manifests=tuple(parse_descriptor(item, subject=subject) for item in manifests),
        annotations=_string_map(obj.get("annotations"), "annotations", subject),
    )


def _parse_platform_object(obj: Any, subject: str | None) -> Platform:
    if not isinstance(obj, dict):
        raise ArchiveError("descriptor platform is not a JSON object", subject=subject)
    os_name, arch, variant = obj.get("os"), obj.get("architecture"), obj.get("variant")
    if not isinstance(os_name, str) or not isinstance(arch, str):
        raise ArchiveError("descriptor platform needs os and architecture", subject=subject)
    return Platform(os_name, arch, variant if isinstance(variant, str) and variant else None)


def _string_map(value: Any, what: str, subject: str | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ArchiveError(f"{what} must map strings to strings", subject=subject)
    return dict(value)


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


# --- platforms ---------------------------------------------------------------------------------

# platform.machine() and common aliases -> (GOARCH, variant), after containerd's normalisation.
_ARCH_ALIASES: dict[str, tuple[str, str | None]] = {
    "x86_64": ("amd64", None),
    "x86-64": ("amd64", None),
    "amd64": ("amd64", None),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "386": ("386", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv8l": ("arm", "v8"),
    "armv7l": ("arm", "v7"),
    "armv7": ("arm", "v7"),
    "armhf": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "armel": ("arm", "v6"),
    "armv5tel": ("arm", "v5"),
    "armv5l": ("arm", "v5"),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "loongarch64": ("loong64", None),
    "mips64": ("mips64le", None),
}
_KNOWN_OS = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos"})


def host_platform() -> Platform:
    """The platform images must be for to run here (from `platform.machine()`)."""
    machine = _host.machine().lower()
    arch, variant = _ARCH_ALIASES.get(machine, (machine, None))
    return Platform("linux", arch, variant)


def parse_platform(text: str) -> Platform:
    """Parse `os[/arch[/variant]]` or a bare `arch` (`linux/arm64/v8`, `arm`, `linux/x86_64`)."""
    parts = text.strip().lower().split("/")
    if not all(re.fullmatch(r"[a-z0-9_.-]+", p) for p in parts) or len(parts) > 3:
        raise InvalidReference(f"invalid platform {text!r} (expected os/arch[/variant])", subject=text)
    if len(parts) == 1:
        if parts[0] in _KNOWN_OS:
            host = host_platform()
            return Platform(parts[0], host.architecture, host.variant)
        parts = ["linux", parts[0]]
    os_name = "darwin" if parts[0] == "macos" else parts[0]
    arch, variant = _ARCH_ALIASES.get(parts[1], (parts[1], None))
    if len(parts) == 3:
        variant = parts[2] if parts[2].startswith("v") or not parts[2].isdigit() else "v" + parts[2]
    elif arch == "arm64":
        variant = None
    return Platform(os_name, arch, variant)


def normalize_platform(p: Platform) -> Platform:
    """containerd's comparison form: arm64/v8 is arm64, arm is arm/v7, amd64/v1 is amd64, aliases folded."""
    os_name = p.os.lower()
    arch = p.architecture.lower()
    variant = p.variant.lower() if p.variant else None
    alias_arch, alias_variant = _ARCH_ALIASES.get(arch, (arch, None))
    if alias_arch != arch:
        arch, variant = alias_arch, variant or alias_variant
    if variant and variant.isdigit():
        variant = "v" + variant
    if (arch == "arm64" and variant == "v8") or (arch == "amd64" and variant == "v1"):
        variant = None
    elif arch == "arm" and variant is None:
        variant = "v7"
    elif arch == "386":
        variant = None
    return Platform(os_name, arch, variant)


def platform_candidates(wanted: Platform) -> list[Platform]:
    """Platforms that run on `wanted`, most preferred first (containerd's `platforms.Only` order).

    amd64/vN also runs vN-1..v1 and 386; arm/vN runs arm/vN-1..v5; arm64/v8.x runs v8.x-1..v8 and
    arm/v8..v5; arm64/v9.x runs v9.x-1..v9 and then v8.(x+5)..v8.
    """
    p = normalize_platform(wanted)
    out = [p]
    level = _variant_number(p.variant)
    if p.architecture == "amd64":
        for n in range((level or 1) - 1, 0, -1):
            out.append(Platform(p.os, "amd64", f"v{n}" if n > 1 else None))
        out.append(Platform(p.os, "386", None))
    elif p.architecture == "arm":
        for n in range((level or 7) - 1, 4, -1):
            out.append(Platform(p.os, "arm", f"v{n}"))
    elif p.architecture == "arm64":
        out.extend(_arm64_fallbacks(p))
    return [normalize_platform(c) for c in out]


def _arm64_fallbacks(p: Platform) -> list[Platform]:
    major, minor = _arm64_version(p.variant)
    out: list[Platform] = []
    if major == 9:
        out += [Platform(p.os, "arm64", _arm64_variant(9, m)) for m in range(minor - 1, -1, -1)]
        major, minor = 8, minor + 5
        out.append(Platform(p.os, "arm64", _arm64_variant(8, minor)))
    if major == 8:
        out += [Platform(p.os, "arm64", _arm64_variant(8, m)) for m in range(minor - 1, -1, -1)]
        out += [Platform(p.os, "arm", f"v{n}") for n in range(8, 4, -1)]
    return out


def _arm64_version(variant: str | None) -> tuple[int, int]:
    match = re.fullmatch(r"v(\d+)(?:\.(\d+))?", variant or "v8")
    if not match:
        return 0, 0
    return int(match.group(1)), int(match.group(2) or 0)


def _arm64_variant(major: int, minor: int) -> str:
    return f"v{major}" if minor == 0 else f"v{major}.{minor}"


def _variant_number(variant: str | None) -> int | None:
    match = re.fullmatch(r"v(\d+)", variant or "")
    return int(match.group(1)) if match else None


def select_platform(index: Index, wanted: Platform, *, subject: str | None = None) -> Descriptor:
    """The index entry to pull for `wanted`: exact match first, then compatible variants in
    containerd's order, then an entry without a platform. Attestation manifests never match."""
    entries = [d for d in index.manifests if not _is_attestation(d)]
    by_platform = [(normalize_platform(d.platform), d) for d in entries if d.platform is not None]
    for candidate in platform_candidates(wanted):
        for platform, desc in by_platform:
            if platform == candidate:
                return desc
    for desc in entries:
        if desc.platform is None:
            return desc
    available = ", ".join(dict.fromkeys(str(d.platform) for d in entries if d.platform)) or "none"
    raise ImageNotFound(f"no manifest for platform {wanted} (available: {available})", subject=subject)


def _is_attestation(desc: Descriptor) -> bool:
    if desc.annotations.get(_REFERENCE_TYPE_ANNOTATION) == "attestation-manifest":
        return True
    return (
        desc.platform is not None
        and desc.platform.os == "unknown"
        and desc.platform.architecture == "unknown"
    )


# --- summaries and builders --------------------------------------------------------------------


def image_config_summary(config: ImageConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The run defaults and facts an image carries, Docker-named, every key present.

    This is what `image inspect` shows under Config/Os/Architecture and what the container side
    needs to fill in a spec (Cmd, Entrypoint, Env, WorkingDir, User, ports, volumes, healthcheck).
    """
    parsed = config if isinstance(config, ImageConfig) else parse_image_config(canonical_json(dict(config)))
    c = parsed.config
    return {
        "Architecture": parsed.platform.architecture,
        "Os": parsed.platform.os,
        "Variant": parsed.platform.variant,
        "Created": parsed.created,
        "Author": parsed.author,
        "Cmd": _str_list(c.get("Cmd")),
        "Entrypoint": _str_list(c.get("Entrypoint")),
        "Env": _str_list(c.get("Env")) or [],
        "WorkingDir": c.get("WorkingDir") or "",
        "User": c.get("User") or "",
        "ExposedPorts": sorted((c.get("ExposedPorts") or {}).keys()),
        "Volumes": sorted((c.get("Volumes") or {}).keys()),
        "Labels": dict(c.get("Labels") or {}),
        "StopSignal": c.get("StopSignal") or None,
        "Healthcheck": c.get("Healthcheck") or None,
        "Shell": _str_list(c.get("Shell")),
        "Layers": len(parsed.diff_ids),
    }


def _str_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def descriptor_for(
    media_type: str,
    data: bytes,
    *,
    platform: Platform | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Descriptor:
    """The descriptor of a blob we hold in memory (a config or manifest we just built)."""
    return Descriptor(media_type, sha256_digest(data), len(data), platform, dict(annotations or {}))


def descriptor_to_json(desc: Descriptor) -> dict[str, Any]:
    """The JSON form of a descriptor (empty annotations and a missing platform are left out)."""
    out: dict[str, Any] = {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}
    if desc.platform is not None:
        platform = {"architecture": desc.platform.architecture, "os": desc.platform.os}
        if desc.platform.variant:
            platform["variant"] = desc.platform.variant
        out["platform"] = platform
    if desc.annotations:
        out["annotations"] = dict(desc.annotations)
    return out


def new_image_config(
    *,
    diff_ids: Sequence[str],
    platform: Platform | None = None,
    created: str | None = None,
    author: str | None = None,
    config: Mapping[str, Any] | None = None,
    history: Iterable[Mapping[str, Any]] | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """An image config for `import` (or a rebuilt save); serialise it with `canonical_json`.

    Without `history` each layer gets one entry carrying `created` and `comment`, as `docker import`
    writes ("Imported from -"). `created` defaults to now (UTC, RFC 3339); pass it for reproducible ids.
    """
    for diff_id in diff_ids:
        if not is_digest(diff_id):
            raise ArchiveError(f"invalid diff_id {diff_id!r}", subject=diff_id)
    platform = platform or host_platform()
    created = created or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if history is None:
        entry = {"created": created, **({"comment": comment} if comment else {})}
        history = [dict(entry) for _ in diff_ids]
    doc: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "created": created,
        "config": dict(config or {}),
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [dict(h) for h in history],
    }
    if platform.variant:
        doc["variant"] = platform.variant
    if author:
        doc["author"] = author
    return doc


def new_manifest(
    config_desc: Descriptor,
    layer_descs: Sequence[Descriptor],
    oci: bool,
    *,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An image manifest document (OCI or Docker schema2) for `canonical_json`.

    The descriptors keep their own media types: pick them with `layer_media_type` and
    OCI_CONFIG/DOCKER_CONFIG so an OCI manifest does not point at Docker-typed blobs by accident.
    """
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST if oci else DOCKER_MANIFEST,
        "config": descriptor_to_json(config_desc),
        "layers": [descriptor_to_json(d) for d in layer_descs],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def new_index(
    manifests: Sequence[Descriptor],
    *,
    oci: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An image index (OCI `index.json` of an image layout) or Docker manifest list document."""
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX if oci else DOCKER_MANIFEST_LIST,
        "manifests": [descriptor_to_json(d) for d in manifests],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc
