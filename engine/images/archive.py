"""Image archives in and out: docker-archive (`docker save`) and OCI image-layout tarballs.

Loading reads the tarball once, spooling every regular member to a private directory under the store's
tmp dir while hashing it (and, for gzip/zstd members, hashing the decompressed bytes too, which are the
diff_ids docker-archive layers are checked against). Only when every image in the archive checks out are
blobs handed to the store and images registered, so a corrupt, truncated or incomplete archive leaves the
store as it was.

Saving writes what Docker >= 25 (graphdriver store) writes: an OCI image layout (`oci-layout`,
`index.json`, `blobs/sha256/*`) plus the docker-archive `manifest.json` and `repositories` pointing into
`blobs/`. Layers are written as the store holds them (compressed or not): `docker load` and podman
decompress layer files themselves, and keeping the bytes keeps every manifest digest. `format="oci"`
leaves out the two docker files.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import posixpath
import shutil
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import ArchiveError, DiskFullError, EngineError, InvalidReference
from engine.images import manifest as mf
from engine.images.reference import parse_reference
from engine.images.types import Descriptor, Platform

CHUNK = 1 << 20
OCI_LAYOUT = "oci-layout"
OCI_INDEX = "index.json"
DOCKER_MANIFEST = "manifest.json"
DOCKER_REPOSITORIES = "repositories"
OCI_LAYOUT_CONTENT = b'{"imageLayoutVersion":"1.0.0"}'

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MAX_INDEX_DEPTH = 4


# ----------------------------------------------------------------------------------------------- load


def load_archive(store: Any, stream: BinaryIO, *, platform: Platform | None = None) -> list[str]:
    """Load every image of a docker-archive or OCI-layout tarball; return its references (or image ids).

    `platform` picks the manifest out of multi-platform indexes (default: this machine).
    """
    want = platform or mf.host_platform()
    workdir = _staging_dir(store)
    try:
        spool = _spool(stream, workdir)
        planned = _plan(spool, want)
        if not planned:
            raise ArchiveError("the archive holds no image", subject="archive")
        return _commit(store, planned)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _staging_dir(store: Any) -> Path:
    """A private directory in the state root's staging area: same filesystem as the blobs, and removed by
    the next command's repair if this process dies half way."""
    path = store.new_temp_path("load")
    path.mkdir(mode=0o700)
    return path


@dataclass(slots=True)
class _Member:
    """One regular file of the archive, spooled to disk, with the digests of its content."""

    name: str
    path: Path
    digest: str
    size: int
    compression: str | None
    diff_id: str | None
    diff_error: str | None = None


@dataclass(slots=True)
class _Spool:
    """The archive's regular files by normalised name, plus its hard and symbolic links."""

    members: dict[str, _Member] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def find(self, name: str) -> _Member | None:
        name = _clean_name(name)
        for _ in range(16):
            if name in self.members:
                return self.members[name]
            if name not in self.links:
                return None
            name = self.links[name]
        return None

    def get(self, name: str) -> _Member:
        member = self.find(name)
        if member is None:
            raise ArchiveError("missing from the archive", subject=name)
        return member

    def blob(self, digest: str, size: int | None = None) -> _Member:
        """The blob an OCI descriptor points at, checked against the descriptor's size."""
        algorithm, _, encoded = str(digest).partition(":")
        if algorithm != "sha256" or not encoded:
            raise ArchiveError(f"unsupported digest {digest!r}", subject=digest)
        name = f"blobs/sha256/{encoded}"
        member = self.find(name)
        if member is None:
            raise ArchiveError(f"blob {digest} is missing from the archive", subject=name)
        if member.digest != digest:
            raise ArchiveError(f"content hashes to {member.digest}, not to its name", subject=name)
        if size is not None and member.size != size:
            raise ArchiveError(f"size {member.size} does not match descriptor size {size}", subject=name)
        return member

    def json(self, name: str) -> Any:
        member = self.get(name)
        return _read_json(member)


def _read_json(member: _Member) -> Any:
    try:
        return json.loads(member.path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArchiveError(f"not valid JSON ({exc})", subject=member.name) from None


def _clean_name(name: str) -> str:
    """Archive member names as keys: no `./`, no trailing slash, no duplicate separators."""
    name = posixpath.normpath(name.lstrip("/")) if name else name
    return name.removeprefix("./")


def _spool(stream: BinaryIO, workdir: Path) -> _Spool:
    """Read the tarball once; regular members go to numbered files in `workdir`."""
    spool = _Spool()
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"not a tar archive ({exc})", subject="archive") from None
    with tar:
        last_block = _watch_reads(tar)
        current = "archive"
        try:
            for number, info in enumerate(tar):
                current = _clean_name(info.name)
                _take(spool, tar, info, current, workdir / str(number))
        except ArchiveError:
            raise
        except OSError as exc:
            _raise_os_error(exc, current)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise ArchiveError(f"archive is truncated or corrupt ({exc})", subject=current) from None
        if not _is_end_block(last_block()):
            raise ArchiveError(
                "archive is truncated or corrupt: no valid header or end-of-archive marker after this member",
                subject=current,
            )
    return spool


def _watch_reads(tar: tarfile.TarFile) -> Any:
    """Remember the last block tarfile read: its iteration stops silently on a bad or missing header.

    tarfile ends the member list without an error when a header after the first is garbage or the
    data just stops; a complete archive ends with a zero block, which this lets us check.
    """
    source = tar.fileobj
    original = source.read
    seen: dict[str, bytes] = {"last": b""}

    def read(size: int = -1) -> bytes:
        data = original(size)
        seen["last"] = data
        return data

    source.read = read  # type: ignore[method-assign]
    return lambda: seen["last"]


def _is_end_block(block: bytes) -> bool:
    return len(block) == tarfile.BLOCKSIZE and block.count(0) == tarfile.BLOCKSIZE


def _take(spool: _Spool, tar: tarfile.TarFile, info: tarfile.TarInfo, name: str, target: Path) -> None:
    if info.issym():
        base = posixpath.dirname(name)
        spool.links[name] = _clean_name(posixpath.join(base, info.linkname))
    elif info.islnk():
        spool.links[name] = _clean_name(info.linkname)
    elif info.isreg():
        source = tar.extractfile(info)
        assert source is not None
        spool.members[name] = _copy_member(source, name, target, info.size)


def _copy_member(source: BinaryIO, name: str, target: Path, expected: int) -> _Member:
    """Copy one member to disk, hashing its bytes and (when compressed) its decompressed bytes."""
    digest = hashlib.sha256()
    differ: _DiffHasher | None = None
    size = 0
    with open(target, "wb") as out:
        while chunk := source.read(CHUNK):
            if size == 0:
                differ = _DiffHasher.for_header(chunk)
            digest.update(chunk)
            if differ is not None:
                differ.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size != expected:
        raise ArchiveError(f"member is truncated ({size} of {expected} bytes)", subject=name)
    content = f"sha256:{digest.hexdigest()}"
    if differ is None:
        return _Member(name, target, content, size, None, content)
    diff_id, error = differ.finish()
    return _Member(name, target, content, size, differ.kind, diff_id, error)


class _DiffHasher:
    """sha256 of the decompressed stream of a gzip or zstd member (multi-member/multi-frame aware)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.hash = hashlib.sha256()
        self.error: str | None = None
        self.decoder = self._new_decoder()

    @classmethod
    def for_header(cls, chunk: bytes) -> _DiffHasher | None:
        if chunk.startswith(_GZIP_MAGIC):
            return cls("gzip")
        if chunk.startswith(_ZSTD_MAGIC):
            return cls("zstd")
        return None

    def _new_decoder(self) -> Any:
        if self.kind == "gzip":
            return zlib.decompressobj(wbits=31)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()

    def update(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self._feed(data)
        except Exception as exc:  # zlib.error, zstandard.ZstdError: the member is not what it looks like
            self.error = f"{self.kind} stream is corrupt ({exc})"

    def _feed(self, data: bytes) -> None:
        while data:
            if self.kind == "gzip":
                self.hash.update(self.decoder.decompress(data, CHUNK))
                data = self.decoder.unconsumed_tail
                if data:
                    continue
            else:
                self.hash.update(self.decoder.decompress(data))
                data = b""
            if self.decoder.eof:
                data = self.decoder.unused_data
                if data.strip(b"\0"):
                    self.decoder = self._new_decoder()
                else:
                    data = b""

    def finish(self) -> tuple[str | None, str | None]:
        if self.error is None and not self.decoder.eof:
            self.error = f"{self.kind} stream is truncated"
        if self.error is not None:
            return None, self.error
        return f"sha256:{self.hash.hexdigest()}", None


def _raise_os_error(exc: OSError, member: str) -> None:
    if exc.errno == errno.ENOSPC:
        raise DiskFullError("no space left while reading the archive", subject=member) from None
    if exc.errno is None:  # tarfile reports short data as a bare OSError / ReadError
        raise ArchiveError(f"archive is truncated or corrupt ({exc})", subject=member) from None
    raise exc


# ------------------------------------------------------------------------------------- planning


@dataclass(slots=True)
class _Planned:
    """One image ready to be registered: its manifest, every blob it needs, its tags."""

    manifest: bytes
    media_type: str
    digest: str
    config_digest: str
    blobs: dict[str, _Member]
    tags: list[str]
    layers: list[tuple[str, str]] = field(default_factory=list)  # (blob digest, diff_id), bottom first


def _plan(spool: _Spool, want: Platform) -> list[_Planned]:
    """Decide which images the archive holds and check every one of them before anything is stored."""
    has_oci, has_docker = OCI_INDEX in spool, DOCKER_MANIFEST in spool
    if not has_oci and not has_docker:
        if DOCKER_REPOSITORIES in spool:
            raise ArchiveError(
                "docker-archive without manifest.json (docker < 1.10) is not supported",
                subject=DOCKER_REPOSITORIES,
            )
        raise ArchiveError(
            "no manifest.json or index.json: neither a docker-archive nor an OCI image layout",
            subject="archive",
        )
    planned = _plan_oci(spool, want) if has_oci else []
    if has_docker:
        planned = _merge(planned, _plan_docker(spool))
    return planned


def _merge(oci: list[_Planned], docker: list[_Planned]) -> list[_Planned]:
    """Docker >= 25 writes both views of the same images: keep the OCI one, add the docker tags."""
    by_config = {item.config_digest: item for item in oci}
    merged = list(oci)
    for item in docker:
        twin = by_config.get(item.config_digest)
        if twin is None:
            merged.append(item)
            continue
        twin.tags.extend(tag for tag in item.tags if tag not in twin.tags)
    return merged


# OCI image layout


def _plan_oci(spool: _Spool, want: Platform) -> list[_Planned]:
    if OCI_LAYOUT in spool:
        version = spool.json(OCI_LAYOUT)
        if not isinstance(version, dict) or not str(version.get("imageLayoutVersion", "")).startswith("1."):
            raise ArchiveError("unsupported OCI image layout version", subject=OCI_LAYOUT)
    index = _parse(spool.get(OCI_INDEX), mf.OCI_INDEX)
    if not isinstance(index, mf.Index):
        raise ArchiveError("index.json is not an image index", subject=OCI_INDEX)
    planned: list[_Planned] = []
    for name, group in _group_by_name(index.manifests).items():
        for descriptor in _select_top(group, want, name):
            for item in _resolve_descriptor(spool, descriptor, want, depth=0):
                if name is not None and name not in item.tags:
                    item.tags.append(name)
                planned.append(item)
    return _dedupe(planned)


def _parse(member: _Member, media_type: str | None) -> mf.Manifest | mf.Index:
    return mf.parse_manifest(member.path.read_bytes(), media_type, subject=member.name)


def _group_by_name(descriptors: Sequence[Descriptor]) -> dict[str | None, list[Descriptor]]:
    groups: dict[str | None, list[Descriptor]] = {}
    for descriptor in descriptors:
        groups.setdefault(_name_of(descriptor), []).append(descriptor)
    return groups


def _name_of(descriptor: Descriptor) -> str | None:
    """The reference an index entry names, normalised; None for an entry that only carries a tag.

    containerd and docker put the full name in `io.containerd.image.name` (and only the tag in
    `org.opencontainers.image.ref.name`); podman and skopeo put the full name in `ref.name`. A bare
    `ref.name` (`latest`, `v1`) has no repository, so that image loads untagged.
    """
    text = descriptor.annotations.get(ANNOTATION_IMAGE_NAME)
    if not text:
        text = descriptor.annotations.get(ANNOTATION_REF_NAME)
        if not text or ("/" not in text and ":" not in text):
            return None
    try:
        reference = parse_reference(text)
    except InvalidReference as exc:
        raise ArchiveError(f"index entry names an invalid reference ({exc.message})", subject=text) from None
    return None if reference.digest is not None else reference.canonical


def _select_top(group: list[Descriptor], want: Platform, name: str | None) -> list[Descriptor]:
    """Entries of index.json that share a name and differ only by platform: keep this machine's."""
    if len(group) < 2 or any(d.platform is None or d.media_type in mf.INDEX_TYPES for d in group):
        return group
    return [_choose(mf.Index(mf.OCI_INDEX, tuple(group)), want, name or OCI_INDEX)]


def _choose(index: mf.Index, want: Platform, subject: str) -> Descriptor:
    try:
        return mf.select_platform(index, want, subject=subject)
    except EngineError as exc:
        raise ArchiveError(exc.message, subject=subject) from None


def _resolve_descriptor(
    spool: _Spool, descriptor: Descriptor, want: Platform, *, depth: int
) -> list[_Planned]:
    """A manifest becomes one image; an index is narrowed to this machine's platform, recursively."""
    member = spool.blob(descriptor.digest, descriptor.size)
    document = _parse(member, descriptor.media_type if descriptor.media_type in _KNOWN else None)
    if isinstance(document, mf.Index):
        if depth >= _MAX_INDEX_DEPTH:
            raise ArchiveError("image indexes nested too deeply", subject=member.name)
        chosen = _choose(document, want, member.name)
        return _resolve_descriptor(spool, chosen, want, depth=depth + 1)
    return [_plan_manifest(spool, member, document)]


_KNOWN = mf.MANIFEST_TYPES | mf.INDEX_TYPES


def _plan_manifest(spool: _Spool, member: _Member, manifest: mf.Manifest) -> _Planned:
    """Check a manifest's config and layers (sizes, digests, diff_ids) against the spooled blobs."""
    config = spool.blob(manifest.config.digest, manifest.config.size)
    diff_ids = _diff_ids(config)
    if len(manifest.layers) != len(diff_ids):
        raise ArchiveError(
            f"manifest lists {len(manifest.layers)} layers but the config has {len(diff_ids)} diff_ids",
            subject=member.name,
        )
    blobs = {member.digest: member, config.digest: config}
    for descriptor, diff_id in zip(manifest.layers, diff_ids, strict=True):
        if mf.is_foreign_layer(descriptor.media_type):
            raise ArchiveError(
                "foreign (non-distributable) layers are not supported", subject=descriptor.digest
            )
        layer = spool.blob(descriptor.digest, descriptor.size)
        _check_diff_id(layer, diff_id)
        blobs[layer.digest] = layer
    raw = member.path.read_bytes()
    return _Planned(raw, manifest.media_type, member.digest, config.digest, blobs, [])


def _diff_ids(config: _Member) -> list[str]:
    return list(mf.parse_image_config(config.path.read_bytes(), subject=config.name).diff_ids)


def _check_diff_id(layer: _Member, diff_id: str) -> None:
    if layer.diff_error is not None:
        raise ArchiveError(layer.diff_error, subject=layer.name)
    if layer.diff_id != diff_id:
        raise ArchiveError(
            f"layer content {layer.diff_id} does not match diff_id {diff_id} in the image config",
            subject=layer.name,
        )


def _dedupe(planned: list[_Planned]) -> list[_Planned]:
    """The same manifest listed under several names is one image with several tags."""
    by_digest: dict[str, _Planned] = {}
    for item in planned:
        twin = by_digest.setdefault(item.digest, item)
        if twin is not item:
            twin.tags.extend(tag for tag in item.tags if tag not in twin.tags)
    return list(by_digest.values())


# docker-archive


def _plan_docker(spool: _Spool) -> list[_Planned]:
    entries = spool.json(DOCKER_MANIFEST)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ArchiveError("manifest.json is not a list of images", subject=DOCKER_MANIFEST)
    planned = [_plan_docker_entry(spool, entry) for entry in entries]
    if DOCKER_REPOSITORIES in spool:
        _tags_from_repositories(spool, entries, planned)
    return planned


def _plan_docker_entry(spool: _Spool, entry: dict[str, Any]) -> _Planned:
    """docker-archive layers are tar files (sometimes compressed) checked against the config diff_ids;
    the OCI manifest docker >= 25 would write for them is built here."""
    if not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers") or [], list):
        raise ArchiveError("manifest.json entry without Config or Layers", subject=DOCKER_MANIFEST)
    config = spool.get(entry["Config"])
    diff_ids = _diff_ids(config)
    paths = entry.get("Layers") or []
    if len(paths) != len(diff_ids):
        raise ArchiveError(
            f"manifest.json lists {len(paths)} layers but the config has {len(diff_ids)} diff_ids",
            subject=config.name,
        )
    layers = [spool.get(path) for path in paths]
    for layer, diff_id in zip(layers, diff_ids, strict=True):
        _check_diff_id(layer, diff_id)
    manifest = _build_manifest(config, layers)
    digest = mf.sha256_digest(manifest)
    blobs = {config.digest: config} | {layer.digest: layer for layer in layers}
    tags = [_normalise_tag(tag) for tag in entry.get("RepoTags") or []]
    pairs = [(layer.digest, diff_id) for layer, diff_id in zip(layers, diff_ids, strict=True)]
    return _Planned(manifest, mf.OCI_MANIFEST, digest, config.digest, blobs, tags, pairs)


def _build_manifest(config: _Member, layers: list[_Member]) -> bytes:
    """The OCI manifest for docker-archive content, written the way the store writes its own."""
    config_desc = Descriptor(mf.OCI_CONFIG, config.digest, config.size)
    layer_descs = [
        Descriptor(mf.layer_media_type(layer.compression, oci=True), layer.digest, layer.size)
        for layer in layers
    ]
    return mf.canonical_json(mf.new_manifest(config_desc, layer_descs, oci=True))


def _normalise_tag(text: Any) -> str:
    try:
        reference = parse_reference(str(text))
    except InvalidReference as exc:
        raise ArchiveError(f"invalid RepoTags entry ({exc.message})", subject=str(text)) from None
    if reference.digest is not None or reference.tag is None:
        raise ArchiveError("RepoTags entries must be name:tag", subject=str(text))
    return reference.canonical


def _tags_from_repositories(spool: _Spool, entries: list[dict[str, Any]], planned: list[_Planned]) -> None:
    """Archives whose manifest.json has no RepoTags may still name images in the legacy `repositories`
    file (`{name: {tag: id}}`), where the id is the top layer's directory (old) or diff_id (docker 25)."""
    repositories = spool.json(DOCKER_REPOSITORIES)
    if not isinstance(repositories, dict):
        raise ArchiveError("not a {name: {tag: id}} map", subject=DOCKER_REPOSITORIES)
    by_top: dict[str, _Planned] = {}
    for entry, item in zip(entries, planned, strict=True):
        paths = entry.get("Layers") or []
        if paths and not entry.get("RepoTags"):
            top = _clean_name(paths[-1])
            by_top[posixpath.basename(posixpath.dirname(top))] = item
            by_top[posixpath.basename(top)] = item
    for name, tags in repositories.items():
        for tag, top in (tags or {}).items() if isinstance(tags, dict) else ():
            item = by_top.get(str(top))
            if item is not None:
                text = _normalise_tag(f"{name}:{tag}")
                if text not in item.tags:
                    item.tags.append(text)


# ------------------------------------------------------------------------------------- commit


def _commit(store: Any, planned: list[_Planned]) -> list[str]:
    """Blobs into the store, every layer unpacked, then the images registered.

    Unpacking all layers before registering any image means a hostile or broken layer fails the load
    with no image registered; the blobs this load added are dropped again (layers it unpacked are left
    for `image prune`, as no image names them).
    """
    added: list[str] = []
    try:
        with store.lease():
            for item in planned:
                for digest, member in item.blobs.items():
                    if digest not in added and not store.has_blob(digest):
                        with open(member.path, "rb") as source:
                            store.write_blob(source, expected_digest=digest, expected_size=member.size)
                        added.append(digest)
            for item in planned:
                _unpack(store, item)
            loaded: list[str] = []
            for item in planned:
                image = store.register_image(item.manifest, item.media_type, tags=item.tags)
                loaded.extend(item.tags or [image.id])
            return loaded
    except BaseException:
        for digest in reversed(added):
            store.remove_blob(digest)
        raise


def _unpack(store: Any, item: _Planned) -> None:
    parent: str | None = None
    for blob_digest, diff_id in item.layers:
        parent = store.ensure_layer(blob_digest, parent, diff_id=diff_id).chain_id


# ------------------------------------------------------------------------------------------ save


@dataclass(slots=True)
class _Saved:
    """One image to write: its manifest as stored, what it points at, the tags to record."""

    manifest: bytes
    descriptor: Descriptor
    parsed: mf.Manifest
    diff_ids: list[str]
    tags: list[str]


def save_archive(store: Any, references: Sequence[str], out: BinaryIO, *, format: str = "docker") -> None:
    """Write the images as a docker-archive (`docker load`, `podman load`) or an OCI image layout."""
    if format not in ("docker", "oci"):
        raise ArchiveError(f"unknown archive format {format!r} (docker or oci)", subject=format)
    if not references:
        raise ArchiveError("no image to save", subject="save")
    images = _collect(store, references)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            _write_blobs(store, tar, images)
            _add_bytes(tar, OCI_INDEX, _oci_index(images, format))
            if format == "docker":
                _add_bytes(tar, DOCKER_MANIFEST, _json_bytes(_docker_manifest(images)))
            _add_bytes(tar, OCI_LAYOUT, OCI_LAYOUT_CONTENT)
            if format == "docker" and any(image.tags for image in images):
                _add_bytes(tar, DOCKER_REPOSITORIES, _json_bytes(_repositories(images)))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError("no space left while writing the archive", subject="save") from None
        raise


def _collect(store: Any, references: Sequence[str]) -> list[_Saved]:
    """Resolve every reference; one entry per image, with the tags named on the command line."""
    images: dict[str, _Saved] = {}
    for text in references:
        image = store.resolve(text)
        saved = images.get(image.manifest_digest)
        if saved is None:
            saved = images[image.manifest_digest] = _describe(store, image)
        tag = _tag_named_by(text, image)
        if tag is not None and tag not in saved.tags:
            saved.tags.append(tag)
    return list(images.values())


def _tag_named_by(text: str, image: Any) -> str | None:
    """`nginx` or `nginx:1` names a tag of the image; an id or a digest reference names none (as docker)."""
    try:
        reference = parse_reference(text)
    except InvalidReference:
        return None
    if reference.digest is not None:
        return None
    return reference.canonical if reference.canonical in _canonical_tags(image) else None


def _canonical_tags(image: Any) -> set[str]:
    tags = set()
    for tag in image.repo_tags:
        try:
            tags.add(parse_reference(tag).canonical)
        except InvalidReference:
            continue
    return tags


def _describe(store: Any, image: Any) -> _Saved:
    manifest = store.read_blob(image.manifest_digest)
    parsed = mf.parse_manifest(manifest, image.manifest_media_type, subject=image.manifest_digest)
    if not isinstance(parsed, mf.Manifest):
        raise ArchiveError("stored manifest is not an image manifest", subject=image.manifest_digest)
    config = mf.parse_image_config(store.read_blob(parsed.config.digest), subject=parsed.config.digest)
    descriptor = Descriptor(parsed.media_type, image.manifest_digest, len(manifest), config.platform)
    return _Saved(manifest, descriptor, parsed, list(config.diff_ids), [])


def _write_blobs(store: Any, tar: tarfile.TarFile, images: list[_Saved]) -> None:
    """Every blob once, manifests included, under blobs/sha256/ (directories first, as docker writes)."""
    _add_dir(tar, "blobs")
    _add_dir(tar, "blobs/sha256")
    written: set[str] = set()
    for image in images:
        for descriptor in [image.parsed.config, *image.parsed.layers]:
            if descriptor.digest in written:
                continue
            if not store.has_blob(descriptor.digest):
                raise ArchiveError(
                    f"blob {descriptor.digest} is not in the store, so the image cannot be saved",
                    subject=image.descriptor.digest,
                )
            with store.open_blob(descriptor.digest) as source:
                _add_stream(tar, _blob_path(descriptor.digest), source, descriptor.size)
            written.add(descriptor.digest)
        if image.descriptor.digest not in written:
            _add_bytes(tar, _blob_path(image.descriptor.digest), image.manifest)
            written.add(image.descriptor.digest)


def _oci_index(images: list[_Saved], format: str) -> bytes:
    """index.json: one entry per tag (docker's and containerd's shape), an unnamed entry when untagged.

    Both name annotations are written: docker (format "docker") puts only the tag in `ref.name`, as
    docker save does; the OCI format puts the full reference there, as podman and skopeo expect.
    """
    entries = []
    for image in images:
        for tag in image.tags:
            reference = parse_reference(tag)
            ref_name = reference.tag if format == "docker" else reference.canonical
            annotations = {ANNOTATION_IMAGE_NAME: reference.canonical, ANNOTATION_REF_NAME: str(ref_name)}
            entries.append(replace(image.descriptor, annotations=annotations))
        if not image.tags:
            entries.append(image.descriptor)
    return mf.canonical_json(mf.new_index(entries, oci=True))


def _docker_manifest(images: list[_Saved]) -> list[dict[str, Any]]:
    return [
        {
            "Config": _blob_path(image.parsed.config.digest),
            "RepoTags": [parse_reference(tag).familiar for tag in image.tags] or None,
            "Layers": [_blob_path(layer.digest) for layer in image.parsed.layers],
        }
        for image in images
    ]


def _repositories(images: list[_Saved]) -> dict[str, dict[str, str]]:
    """The legacy name -> tag -> top layer map; docker >= 25 puts the top diff_id's hex there."""
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        if not image.diff_ids:
            continue
        top = image.diff_ids[-1].partition(":")[2]
        for tag in image.tags:
            reference = parse_reference(tag)
            repositories.setdefault(reference.familiar_name, {})[str(reference.tag)] = top
    return repositories


def _blob_path(digest: str) -> str:
    algorithm, _, encoded = digest.partition(":")
    return f"blobs/{algorithm}/{encoded}"


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def _header(name: str, kind: bytes, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    """Fixed owner and epoch mtimes: saving the same images twice gives the same bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode, info.mtime = kind, size, mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_header(name, tarfile.DIRTYPE, mode=0o755))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_header(name, tarfile.REGTYPE, len(data)), io.BytesIO(data))


def _add_stream(tar: tarfile.TarFile, name: str, source: BinaryIO, size: int) -> None:
    try:
        tar.addfile(_header(name, tarfile.REGTYPE, size), source)
    except OSError as exc:
        if exc.errno is None:  # tarfile: the blob was shorter than its descriptor says
            raise ArchiveError(f"stored blob is shorter than {size} bytes", subject=name) from None
        raise
