"""`ImageStore`: content-addressed blobs, layers unpacked once and shared, images and their names.

Crash safety comes from one order everywhere: write into the state root's tmp dir, verify, fsync, rename
into place, and only then record the result in one database transaction. A crash before the rename
leaves a temp entry (`StateRoot.repair()` deletes it); a crash between the rename and the commit leaves
a file or directory no row names, which the store never trusts as "present" (a layer dir without a row
is unpacked again) and `prune()` sweeps away. So the database plus the files are always either the old
state or the new one.

Garbage collection is guarded by one lock, `gc`: everything that adds content holds it shared (a
*lease*), removal and prune hold it exclusive, so a blob written by a pull that is not registered yet
is never collected under its feet. Multi-step writers (pull, load) should wrap their whole operation in
`with store.lease():`; single calls take the lease themselves. Reference counts are never stored: a
layer or blob is in use while some image row names it (and, later, some container row).
"""

from __future__ import annotations

import copy
import ctypes
import errno
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import (
    DigestMismatch,
    DiskFullError,
    EngineError,
    ImageInUse,
    ImageNotFound,
    InvalidReference,
)
from engine.images import manifest as mf
from engine.images.reference import Reference, parse_reference
from engine.images.types import Descriptor, Image, Layer, Platform
from engine.state import StateRoot
from engine.state.root import PUBLISH_LOCK, remove_tree

_CHUNK = 1 << 20
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}")
_ID_PREFIX_RE = re.compile(r"(?:sha256:)?[a-f0-9]{1,64}")
GC_LOCK = "gc"
LAYER_LOCK_TIMEOUT = 3600.0
GC_LOCK_TIMEOUT = 600.0
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(slots=True)
class RemoveReport:
    """What a removal did, in docker's terms: names untagged, images deleted, space given back."""

    untagged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    layers_removed: list[str] = field(default_factory=list)
    blobs_removed: list[str] = field(default_factory=list)
    reclaimed: int = 0

    def merge(self, other: RemoveReport) -> None:
        self.untagged += other.untagged
        self.deleted += other.deleted
        self.layers_removed += other.layers_removed
        self.blobs_removed += other.blobs_removed
        self.reclaimed += other.reclaimed


@dataclass(slots=True)
class PruneReport(RemoveReport):
    """A prune is a batch of removals plus the sweep of leftovers no image names."""


@dataclass(slots=True)
class _Doomed:
    """Files to delete once the transaction that forgot them has committed."""

    layers: list[tuple[str, int]] = field(default_factory=list)
    blobs: list[tuple[str, int]] = field(default_factory=list)


class ImageStore:
    """The image half of the state root: blobs, layers, images, tags."""

    def __init__(self, root: StateRoot) -> None:
        self._root = root
        self._db = root.db
        # Parsed JSON blobs (manifests, configs) by digest, once read and checked: content-addressed, so
        # never stale. A parallel `up` reads the same image's blobs for every container it creates.
        self._json_blobs: dict[str, Any] = {}
        self._layer_blobs: dict[str, list[str]] = {}

    # ----------------------------------------------------------------------------------------- leases

    @contextmanager
    def lease(self) -> Iterator[None]:
        """Hold off garbage collection while content is added and not yet registered."""
        with self._root.lock(GC_LOCK, shared=True, timeout=GC_LOCK_TIMEOUT):
            yield

    @contextmanager
    def _collecting(self) -> Iterator[None]:
        with self._root.lock(GC_LOCK, shared=False, timeout=GC_LOCK_TIMEOUT):
            yield

    # ------------------------------------------------------------------------------------------ blobs

    @property
    def tmp_dir(self) -> Path:
        """This process's staging dir: same filesystem as the store, spared by repair() while we live."""
        return self._root.new_temp_path("probe").parent

    def new_temp_path(self, prefix: str) -> Path:
        """A fresh path to stage something in before handing it to the store."""
        return self._root.new_temp_path(prefix)

    def blob_path(self, digest: str) -> Path:
        """Where a blob lives (whether or not it is there yet)."""
        return self._root.blob_path(_checked(digest))

    def has_blob(self, digest: str) -> bool:
        """A blob is present when its row and its file both exist (a file alone may predate a crash)."""
        row = self._db.query_one("SELECT 1 FROM blobs WHERE digest = ?", (_checked(digest),))
        return row is not None and self.blob_path(digest).is_file()

    def open_blob(self, digest: str) -> BinaryIO:
        """A read-only stream of a stored blob."""
        if not self.has_blob(digest):
            raise ImageNotFound("blob is not in the store", subject=digest)
        return open(self.blob_path(digest), "rb")

    def read_blob(self, digest: str) -> bytes:
        """A small (JSON) blob's bytes, checked against its digest so corruption is noticed."""
        with self.open_blob(digest) as stream:
            data = stream.read()
        if mf.sha256_digest(data) != digest:
            raise DigestMismatch("stored blob is corrupt (content does not match its digest)", subject=digest)
        return data

    def blob_descriptor(self, digest: str) -> Descriptor:
        """The descriptor recorded when the blob was written."""
        row = self._db.query_one("SELECT size, media_type FROM blobs WHERE digest = ?", (_checked(digest),))
        if row is None or not self.blob_path(digest).is_file():
            raise ImageNotFound("blob is not in the store", subject=digest)
        return Descriptor(row["media_type"] or _OCTET_STREAM, digest, row["size"])

    def write_blob(
        self,
        content: bytes | Iterable[bytes] | BinaryIO,
        expected_digest: str | None = None,
        *,
        expected_size: int | None = None,
        media_type: str | None = None,
    ) -> Descriptor:
        """Store content under its sha256, verified; on any failure nothing is kept.

        With `expected_digest` of a blob already present the content is not read at all.
        """
        if expected_digest is not None:
            _checked(expected_digest)
            if self.has_blob(expected_digest):
                return self._existing_blob(expected_digest, expected_size, media_type)
        subject = expected_digest or "blob"
        with self.lease():
            tmp = self._root.new_temp_path("blob")
            try:
                digest, size = _spool(content, tmp, expected_digest, expected_size)
                with self._root.publishing(timeout=GC_LOCK_TIMEOUT):
                    _publish_file(tmp, self.blob_path(digest))
                    self._record_blob(digest, size, media_type)
            except OSError as exc:
                raise _os_error(exc, subject) from exc
            finally:
                tmp.unlink(missing_ok=True)
        return Descriptor(media_type or _OCTET_STREAM, digest, size)

    def _existing_blob(self, digest: str, expected_size: int | None, media_type: str | None) -> Descriptor:
        desc = self.blob_descriptor(digest)
        if expected_size is not None and desc.size != expected_size:
            raise DigestMismatch(f"size {expected_size} announced, {desc.size} stored", subject=digest)
        return Descriptor(media_type or desc.media_type, digest, desc.size)

    def _record_blob(self, digest: str, size: int, media_type: str | None) -> None:
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO blobs(digest, size, media_type, created) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(digest) DO UPDATE SET"
                " media_type = COALESCE(blobs.media_type, excluded.media_type)",
                (digest, size, media_type, _now()),
            )

    # ----------------------------------------------------------------------------------------- layers

    def layer(self, chain_id: str) -> Layer | None:
        """The unpacked layer with this chain id, or None (a directory without a row does not count)."""
        row = self._db.query_one("SELECT * FROM layers WHERE chain_id = ?", (_checked(chain_id),))
        if row is None or not self._layer_path(chain_id).is_dir():
            return None
        return self._layer_from_row(row)

    def ensure_layer(
        self,
        blob_digest: str | None,
        parent_chain_id: str | None,
        *,
        diff_id: str | None = None,
        stream_factory: Callable[[], BinaryIO] | None = None,
    ) -> Layer:
        """The layer for this blob on top of `parent_chain_id`, unpacking it only if no one has yet.

        `stream_factory` gives the layer tar (plain, gzip or zstd; default: the stored blob). With
        `diff_id` known (from an image config) the chain id is known up front, so a per-chain lock makes
        two processes unpacking the same layer wait for each other instead of doing the work twice.
        """
        if blob_digest is None and stream_factory is None:
            raise ValueError("ensure_layer needs a blob digest or a stream factory")
        if parent_chain_id is not None and self.layer(parent_chain_id) is None:
            raise ImageNotFound("parent layer is not in the store", subject=parent_chain_id)
        opener = stream_factory or (lambda: self.open_blob(blob_digest))  # type: ignore[arg-type]
        with self.lease():
            if diff_id is None:
                return self._unpack_then_publish(blob_digest, parent_chain_id, opener)
            chain_id = _chain_id(parent_chain_id, _checked(diff_id))
            found = self.layer(chain_id)
            if found is not None:
                return found
            with self._root.lock(f"layer-{_hex(chain_id)}", timeout=LAYER_LOCK_TIMEOUT):
                found = self.layer(chain_id)
                if found is not None:
                    return found
                staging, result = self._unpack(opener, blob_digest or chain_id, diff_id)
                return self._publish_layer(staging, chain_id, result, blob_digest, parent_chain_id)

    def _unpack_then_publish(
        self, blob_digest: str | None, parent: str | None, opener: Callable[[], BinaryIO]
    ) -> Layer:
        staging, result = self._unpack(opener, blob_digest or "layer", None)
        chain_id = _chain_id(parent, result.diff_id)
        with self._root.lock(f"layer-{_hex(chain_id)}", timeout=LAYER_LOCK_TIMEOUT):
            found = self.layer(chain_id)
            if found is not None:
                remove_tree(staging)
                return found
            return self._publish_layer(staging, chain_id, result, blob_digest, parent)

    def _unpack(self, opener: Callable[[], BinaryIO], subject: str, diff_id: str | None) -> tuple[Path, Any]:
        """Unpack into a fresh staging dir under tmp; the dir is gone again if anything fails."""
        staging = self._root.new_temp_path("layer")
        try:
            staging.mkdir(mode=0o755)
            from engine.images.unpack import open_layer, unpack_layer

            with opener() as raw:
                result = unpack_layer(open_layer(raw), staging)
            if diff_id is not None and result.diff_id != diff_id:
                raise DigestMismatch(
                    f"layer content has diff_id {result.diff_id}, the image config says {diff_id}",
                    subject=subject,
                )
            _syncfs(staging)
        except BaseException as exc:
            remove_tree(staging)
            if isinstance(exc, OSError):
                raise _os_error(exc, subject) from exc
            raise
        return staging, result

    def _publish_layer(
        self, staging: Path, chain_id: str, result: Any, blob_digest: str | None, parent: str | None
    ) -> Layer:
        """Rename the staging dir into place, then record it (caller holds the chain lock)."""
        final = self._layer_path(chain_id)
        with self._root.publishing(timeout=GC_LOCK_TIMEOUT):
            try:
                if final.exists():  # left by a crash between rename and commit: never trusted, replaced
                    self._discard_tree(final)
                os.rename(staging, final)
                _fsync_dir(final.parent)
            except BaseException:
                remove_tree(staging)
                raise
            self._record_layer(chain_id, result.diff_id, parent, blob_digest, result.size)
        layer = self.layer(chain_id)
        assert layer is not None
        return layer

    def _record_layer(
        self, chain_id: str, diff_id: str, parent: str | None, blob_digest: str | None, size: int
    ) -> None:
        with self._db.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO layers(chain_id, diff_id, parent, blob_digest, size, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (chain_id, diff_id, parent, blob_digest, size, _now()),
            )

    def layer_dirs(self, image: Image) -> list[str]:
        """The image's layer directories, top layer first: overlayfs `lowerdir` order."""
        return [layer.path for layer in reversed(image.layers)]

    def _layer_path(self, chain_id: str) -> Path:
        return self._root.layer_path(_checked(chain_id))

    def _layer_from_row(self, row: Any) -> Layer:
        return Layer(
            chain_id=row["chain_id"],
            diff_id=row["diff_id"],
            blob_digest=row["blob_digest"],
            path=str(self._layer_path(row["chain_id"])),
            size=row["size"] or 0,
        )

    def _discard_tree(self, path: Path) -> None:
        """Make a directory vanish atomically (rename into tmp), then delete it at leisure."""
        doomed = self._root.new_temp_path("trash")
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return
        remove_tree(doomed)

    # ----------------------------------------------------------------------------------------- images

    def register_image(
        self,
        manifest_bytes: bytes,
        manifest_media_type: str | None,
        *,
        tags: Sequence[str] = (),
        index_digest: str | None = None,
        repo_digest: str | None = None,
    ) -> Image:
        """Make an image of a manifest whose config and layer blobs are already stored.

        Layers are unpacked (once) and their diff_ids checked against the config's rootfs.diff_ids;
        only then are the image, its blobs and its names recorded, in one transaction.
        """
        manifest = mf.parse_manifest(manifest_bytes, manifest_media_type)
        if not isinstance(manifest, mf.Manifest):
            raise InvalidReference(
                "an image index is not an image: select a platform first", subject=index_digest
            )
        names = [parse_reference(t) for t in tags]
        digest_ref = parse_reference(repo_digest) if repo_digest else None
        with self.lease():
            media_type = manifest.media_type or manifest_media_type or mf.OCI_MANIFEST
            mdesc = self.write_blob([manifest_bytes], media_type=media_type)
            config = self._load_config(manifest.config.digest)
            chain = self._unpack_all(manifest, config)
            blobs = [mdesc.digest, manifest.config.digest, *(d.digest for d in manifest.layers)]
            if index_digest is not None and self.has_blob(index_digest):
                blobs.append(index_digest)
            image_id = manifest.config.digest
            with self._db.transaction():
                self._insert_image(image_id, mdesc, index_digest, config, chain)
                self._db.executemany(
                    "INSERT OR IGNORE INTO image_blobs(image_id, digest) VALUES (?, ?)",
                    [(image_id, d) for d in dict.fromkeys(blobs)],
                )
                for ref in names:
                    self._set_tag(ref, image_id)
                if digest_ref is not None:
                    self._set_repo_digest(digest_ref, image_id)
        return self.get_image(image_id)

    def _load_config(self, digest: str) -> dict[str, Any]:
        try:
            config = json.loads(self.read_blob(digest))
        except ValueError as exc:
            raise DigestMismatch(f"image config is not JSON: {exc}", subject=digest) from exc
        if not isinstance(config, dict) or not isinstance(config.get("rootfs", {}).get("diff_ids"), list):
            raise DigestMismatch("image config has no rootfs.diff_ids", subject=digest)
        return config

    def _unpack_all(self, manifest: Any, config: dict[str, Any]) -> list[Layer]:
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest.layers):
            raise DigestMismatch(
                f"manifest lists {len(manifest.layers)} layers, config {len(diff_ids)} diff_ids",
                subject=manifest.config.digest,
            )
        chain: list[Layer] = []
        for desc, diff_id in zip(manifest.layers, diff_ids, strict=True):
            if not self.has_blob(desc.digest):
                raise ImageNotFound("layer blob is not in the store", subject=desc.digest)
            parent = chain[-1].chain_id if chain else None
            chain.append(self.ensure_layer(desc.digest, parent, diff_id=diff_id))
        return chain

    def _insert_image(
        self, image_id: str, mdesc: Descriptor, index_digest: str | None, config: dict, chain: list[Layer]
    ) -> None:
        self._db.execute(
            "INSERT INTO images(id, manifest_digest, manifest_media_type, index_digest, created, size, os,"
            " architecture, variant, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET manifest_digest = excluded.manifest_digest,"
            " manifest_media_type = excluded.manifest_media_type,"
            " index_digest = COALESCE(excluded.index_digest, images.index_digest)",
            (
                image_id,
                mdesc.digest,
                mdesc.media_type,
                index_digest,
                config.get("created"),
                sum(layer.size for layer in chain),
                config.get("os") or "linux",
                config.get("architecture") or "amd64",
                config.get("variant"),
                _now(),
            ),
        )
        self._db.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
        self._db.executemany(
            "INSERT INTO image_layers(image_id, position, chain_id) VALUES (?, ?, ?)",
            [(image_id, i, layer.chain_id) for i, layer in enumerate(chain)],
        )

    def get_image(self, image_id: str) -> Image:
        """The image with exactly this id (config digest)."""
        row = self._db.query_one("SELECT * FROM images WHERE id = ?", (image_id,))
        if row is None:
            raise ImageNotFound("no such image", subject=image_id)
        return self._image_from_row(row)

    def _image_from_row(self, row: Any) -> Image:
        image_id = row["id"]
        layer_rows = self._db.query(
            "SELECT l.* FROM image_layers il JOIN layers l ON l.chain_id = il.chain_id"
            " WHERE il.image_id = ? ORDER BY il.position",
            (image_id,),
        )
        blobs = self._manifest_layer_blobs(row["manifest_digest"])
        layers = []
        for i, lrow in enumerate(layer_rows):
            layer = self._layer_from_row(lrow)
            if i < len(blobs):  # the blob this image's manifest names, not whichever unpacked it first
                layer = Layer(layer.chain_id, layer.diff_id, blobs[i], layer.path, layer.size)
            layers.append(layer)
        tags, digests = self._names_of(image_id)
        return Image(
            id=image_id,
            manifest_digest=row["manifest_digest"],
            manifest_media_type=row["manifest_media_type"],
            created=row["created"],
            size=row["size"] or 0,
            platform=Platform(row["os"] or "linux", row["architecture"] or "amd64", row["variant"]),
            config=self._json_blob(image_id),
            layers=tuple(layers),
            repo_tags=tuple(tags),
            repo_digests=tuple(digests),
        )

    def _manifest_layer_blobs(self, manifest_digest: str) -> list[str]:
        cached = self._layer_blobs.get(manifest_digest)
        if cached is None:
            try:
                manifest = mf.parse_manifest(self.read_blob(manifest_digest), None)
            except EngineError:
                return []
            cached = self._layer_blobs[manifest_digest] = [d.digest for d in getattr(manifest, "layers", ())]
        return list(cached)

    def _json_blob(self, digest: str) -> Any:
        """A JSON blob parsed; a fresh copy each time (callers may change what they get)."""
        if digest not in self._json_blobs:
            self._json_blobs[digest] = json.loads(self.read_blob(digest))
        return copy.deepcopy(self._json_blobs[digest])

    def _names_of(self, image_id: str) -> tuple[list[str], list[str]]:
        tags = [
            r["name"]
            for r in self._db.query("SELECT name FROM tags WHERE image_id = ? ORDER BY name", (image_id,))
        ]
        digests = [
            r["name"]
            for r in self._db.query(
                "SELECT name FROM repo_digests WHERE image_id = ? ORDER BY name", (image_id,)
            )
        ]
        return tags, digests

    def _blob_kept(self, digest: str) -> bool:
        """Some image still lists the blob among those it needs."""
        row = self._db.query_one("SELECT 1 FROM image_blobs WHERE digest = ? LIMIT 1", (digest,))
        return row is not None

    def list_images(self, *, all: bool = True) -> list[Image]:
        """Every image, newest first (as `docker image ls` orders them); without `all`, not the untagged
        intermediates of builds (images a cached build step started from: engine.build.cache)."""
        rows = self._db.query("SELECT * FROM images ORDER BY created DESC, id")
        if not all:
            from engine.build.cache import intermediate_ids

            hidden = intermediate_ids(self._db)
            rows = [row for row in rows if row["id"] not in hidden]
        return [self._image_from_row(row) for row in rows]

    def image_size(self, image: Image) -> int:
        """Unpacked size of all the image's layers (what `docker image ls` shows as SIZE)."""
        return sum(layer.size for layer in image.layers)

    # ---------------------------------------------------------------------------------------- resolve

    def resolve(self, ref_or_id: str) -> Image:
        """An image by tag, repo digest, full id or unique id prefix; ImageNotFound names what was asked."""
        image_id = self._resolve_id(ref_or_id)
        return self.get_image(image_id)

    def _resolve_id(self, text: str) -> str:
        if _DIGEST_RE.fullmatch(text) or re.fullmatch(r"[a-f0-9]{64}", text):
            full = text if text.startswith("sha256:") else f"sha256:{text}"
            if self._db.query_one("SELECT 1 FROM images WHERE id = ?", (full,)) is not None:
                return full
            raise ImageNotFound("no such image", subject=text)
        by_name = self._lookup_name(text)
        if by_name is not None:
            return by_name
        if _ID_PREFIX_RE.fullmatch(text):
            return self._by_prefix(text)
        raise ImageNotFound("no such image", subject=text)

    def _lookup_name(self, text: str) -> str | None:
        try:
            ref = parse_reference(text)
        except InvalidReference:
            if _ID_PREFIX_RE.fullmatch(text):
                return None
            raise
        table, name = _name_row(ref)
        row = self._db.query_one(f"SELECT image_id FROM {table} WHERE name = ?", (name,))
        return row["image_id"] if row is not None else None

    def _by_prefix(self, text: str) -> str:
        prefix = text if text.startswith("sha256:") else f"sha256:{text}"
        rows = self._db.query(
            "SELECT id FROM images WHERE substr(id, 1, ?) = ? LIMIT 2", (len(prefix), prefix)
        )
        if not rows:
            raise ImageNotFound("no such image", subject=text)
        if len(rows) > 1:
            raise InvalidReference("ambiguous image id prefix: more than one image matches", subject=text)
        return rows[0]["id"]

    # ------------------------------------------------------------------------------------------ names

    def tag(self, source: str, target: str) -> Image:
        """Point `target` (a repo:tag, moved if it exists) at the image `source` resolves to."""
        image_id = self._resolve_id(source)
        ref = parse_reference(target)
        if ref.is_digest:
            raise InvalidReference("a tag cannot contain a digest", subject=target)
        with self._db.transaction():
            self._set_tag(ref, image_id)
        return self.get_image(image_id)

    def untag(self, ref: str) -> str:
        """Remove one name (tag or repo digest) and return the id it pointed at; the image stays."""
        parsed = parse_reference(ref)
        table, name = _name_row(parsed)
        with self._db.transaction():
            row = self._db.query_one(f"SELECT image_id FROM {table} WHERE name = ?", (name,))
            if row is None:
                raise ImageNotFound("no such image reference", subject=ref)
            self._db.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
        return row["image_id"]

    def _set_tag(self, ref: Reference, image_id: str) -> None:
        name = ref.with_tag(ref.tag or "latest").canonical if ref.digest else ref.canonical
        self._db.execute("INSERT OR REPLACE INTO tags(name, image_id) VALUES (?, ?)", (name, image_id))

    def _set_repo_digest(self, ref: Reference, image_id: str) -> None:
        if ref.digest is None:
            raise InvalidReference("a repo digest needs @sha256:...", subject=ref.canonical)
        name = ref.with_digest(ref.digest).canonical
        self._db.execute(
            "INSERT OR REPLACE INTO repo_digests(name, image_id) VALUES (?, ?)", (name, image_id)
        )

    # ---------------------------------------------------------------------------------------- removal

    def remove(self, ref_or_id: str, *, force: bool = False) -> RemoveReport:
        """`docker rmi`: by name untag (deleting the image with its last name); by id delete.

        Deleting by id an image named in several repositories (or with several tags) needs `force`.
        Layers and blobs no longer used by any image are freed.
        """
        report = RemoveReport()
        with self._collecting():
            image_id = self._resolve_id(ref_or_id)
            doomed = _Doomed()
            with self._db.transaction():
                by_id = _is_id_prefix(image_id, ref_or_id)
                if by_id:
                    self._check_removable_by_id(image_id, ref_or_id, force)
                elif self._untag_for_removal(parse_reference(ref_or_id), image_id, report):
                    return report
                users = self.containers_using(image_id)
                if users and not force:
                    raise ImageInUse(f"image is being used by container {users[0]}", subject=ref_or_id)
                self._delete_image_rows(image_id, report, doomed)
            self._delete_files(doomed)
        return report

    def _check_removable_by_id(self, image_id: str, text: str, force: bool) -> None:
        tags, digests = self._names_of(image_id)
        if not force and not _single_repository(tags, digests):
            raise ImageInUse(
                f"unable to delete {_short(image_id)} (must be forced) - image is referenced in multiple"
                " repositories",
                subject=text,
            )

    def _untag_for_removal(self, ref: Reference, image_id: str, report: RemoveReport) -> bool:
        """Remove the name; True when other names keep the image alive (docker's untag-only case)."""
        table, name = _name_row(ref)
        self._db.execute(f"DELETE FROM {table} WHERE name = ?", (name,))
        report.untagged.append(_familiar(name))
        tags, digests = self._names_of(image_id)
        if table == "tags" and not any(_repo_of(t) == ref.name for t in tags):
            for digest_name in [d for d in digests if _repo_of(d) == ref.name]:
                self._db.execute("DELETE FROM repo_digests WHERE name = ?", (digest_name,))
                report.untagged.append(_familiar(digest_name))
            tags, digests = self._names_of(image_id)
        return bool(tags or digests)

    def _delete_image_rows(self, image_id: str, report: RemoveReport, doomed: _Doomed) -> None:
        """Delete the image and whatever only it used (caller holds the gc lock and a transaction)."""
        tags, digests = self._names_of(image_id)
        report.untagged += [_familiar(n) for n in tags + digests]
        chain = [
            r["chain_id"]
            for r in self._db.query("SELECT chain_id FROM image_layers WHERE image_id = ?", (image_id,))
        ]
        blobs = [
            r["digest"]
            for r in self._db.query("SELECT digest FROM image_blobs WHERE image_id = ?", (image_id,))
        ]
        self._db.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
        self._db.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
        self._db.execute("DELETE FROM images WHERE id = ?", (image_id,))
        self._db.execute("DELETE FROM image_layers WHERE image_id = ?", (image_id,))
        self._db.execute("DELETE FROM image_blobs WHERE image_id = ?", (image_id,))
        report.deleted.append(image_id)
        self._forget_unused(chain, blobs, report, doomed)

    def _forget_unused(
        self, chain: list[str], blobs: list[str], report: RemoveReport, doomed: _Doomed
    ) -> None:
        for chain_id in self._unused_layers(chain):
            row = self._db.query_one("SELECT size FROM layers WHERE chain_id = ?", (chain_id,))
            self._db.execute("DELETE FROM layers WHERE chain_id = ?", (chain_id,))
            size = (row["size"] or 0) if row is not None else 0
            doomed.layers.append((chain_id, size))
            report.layers_removed.append(chain_id)
            report.reclaimed += size
        for digest in dict.fromkeys(blobs):
            if self._blob_kept(digest):
                continue
            row = self._db.query_one("SELECT size FROM blobs WHERE digest = ?", (digest,))
            self._db.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            size = (row["size"] or 0) if row is not None else 0
            doomed.blobs.append((digest, size))
            report.blobs_removed.append(digest)
            report.reclaimed += size

    def _unused_layers(self, candidates: Iterable[str]) -> list[str]:
        """Candidates (and orphan descendants) no image or container uses, children before parents."""
        used = {r["chain_id"] for r in self._db.query("SELECT DISTINCT chain_id FROM image_layers")}
        used |= self.layers_used_by_containers()
        unused: list[str] = []
        todo = [c for c in dict.fromkeys(candidates) if c not in used]
        while todo:
            chain_id = todo.pop()
            if chain_id in unused:
                continue
            unused.append(chain_id)
            children = self._db.query("SELECT chain_id FROM layers WHERE parent = ?", (chain_id,))
            todo += [r["chain_id"] for r in children if r["chain_id"] not in used]
        depth = {c: self._depth(c) for c in unused}
        return sorted(unused, key=lambda c: -depth[c])

    def _depth(self, chain_id: str) -> int:
        depth, current = 0, chain_id
        while current is not None:
            row = self._db.query_one("SELECT parent FROM layers WHERE chain_id = ?", (current,))
            current = row["parent"] if row is not None else None
            depth += 1
        return depth

    def _delete_files(self, doomed: _Doomed) -> None:
        """After commit: make forgotten layers and blobs vanish (a crash here leaves only orphans)."""
        for chain_id, _size in doomed.layers:
            self._discard_tree(self._layer_path(chain_id))
        for digest, _size in doomed.blobs:
            self.blob_path(digest).unlink(missing_ok=True)

    def containers_using(self, image_id: str) -> list[str]:
        """Hook: ids of containers created from the image (none until the container table exists)."""
        return []

    def layers_used_by_containers(self) -> set[str]:
        """Hook: chain ids containers still mount (none until the container table exists)."""
        return set()

    def prune(self, *, all: bool = False) -> PruneReport:
        """Delete dangling images (no tags), or with `all` every image no container uses; sweep leftovers."""
        report = PruneReport()
        with self._collecting():
            doomed = _Doomed()
            with self._db.transaction():
                for row in self._db.query("SELECT id FROM images ORDER BY id"):
                    tags, _digests = self._names_of(row["id"])
                    if (tags and not all) or self.containers_using(row["id"]):
                        continue
                    self._delete_image_rows(row["id"], report, doomed)
                self._forget_orphan_rows(report, doomed)
            self._delete_files(doomed)
            self._sweep_orphan_files(report)
        return report

    def _forget_orphan_rows(self, report: RemoveReport, doomed: _Doomed) -> None:
        """Rows left by interrupted writers: layers no image uses, blobs no image keeps."""
        layers = [r["chain_id"] for r in self._db.query("SELECT chain_id FROM layers")]
        blobs = [r["digest"] for r in self._db.query("SELECT digest FROM blobs")]
        self._forget_unused(layers, blobs, report, doomed)

    def _sweep_orphan_files(self, report: RemoveReport) -> None:
        """Files and dirs no row names (a crash between rename and commit): the state root's sweep."""
        for path in self._root.collect_orphans(timeout=GC_LOCK_TIMEOUT):
            name = f"sha256:{os.path.basename(path)}"
            (report.layers_removed if "/layers/" in path else report.blobs_removed).append(name)

    # ----------------------------------------------------------------------------------------- import

    def import_rootfs(
        self,
        stream: BinaryIO,
        reference: str | None,
        *,
        changes: Sequence[str] = (),
        message: str | None = None,
        platform: Platform | None = None,
        source: str = "-",
    ) -> Image:
        """`docker import`: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image.

        The layer is stored uncompressed (`application/vnd.oci.image.layer.v1.tar`): its digest is then
        its diff_id, import is one streaming pass with no compression CPU, and `save` to a
        docker-archive (whose layers are plain tars) needs no recompression. Push may compress later.
        """
        target = parse_reference(reference) if reference else None
        if target is not None and target.is_digest:
            raise InvalidReference("cannot import to a digest reference", subject=reference)
        from engine.images.changes import apply_changes  # the Dockerfile parser: only `import` needs it

        container_config = apply_changes({}, changes)
        plat = platform or mf.host_platform()
        with self.lease():
            layer_desc = self._write_rootfs(stream)
            try:
                self.ensure_layer(layer_desc.digest, None, diff_id=layer_desc.digest)
            except BaseException:
                self._drop_if_unused(layer_desc.digest)
                raise
            created = _now()
            comment = message if message is not None else f"Imported from {source}"
            config = mf.new_image_config(
                diff_ids=[layer_desc.digest],
                platform=plat,
                created=created,
                config=container_config,
                comment=comment,
            )
            config_desc = self.write_blob([mf.canonical_json(config)], media_type=mf.OCI_CONFIG)
            manifest_bytes = mf.canonical_json(mf.new_manifest(config_desc, [layer_desc], oci=True))
            tags = [target.canonical] if target is not None else []
            return self.register_image(manifest_bytes, mf.OCI_MANIFEST, tags=tags)

    def _write_rootfs(self, stream: BinaryIO) -> Descriptor:
        from engine.images.unpack import open_layer

        try:
            plain = open_layer(stream)
        except OSError as exc:
            raise _os_error(exc, "import") from exc
        return self.write_blob(plain, media_type=mf.OCI_LAYER)

    def remove_blob(self, digest: str) -> bool:
        """Undo a `write_blob` whose image never got registered; a blob some image keeps stays."""
        return self._drop_if_unused(_checked(digest))

    def _drop_if_unused(self, digest: str) -> bool:
        """Forget a blob this operation wrote if no image has come to need it.

        Row and file go together under the exclusive publish lock, so no writer renames the same blob in
        between (which would leave its row without a file).
        """
        with self._root.lock(PUBLISH_LOCK, timeout=GC_LOCK_TIMEOUT), self._db.transaction():
            if self._blob_kept(digest):
                return False
            self._db.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            self.blob_path(digest).unlink(missing_ok=True)
        return True


# ------------------------------------------------------------------------------------- helpers: paths

_OCTET_STREAM = "application/octet-stream"


def _checked(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidReference("not a sha256 digest (sha256:<64 lower-case hex>)", subject=str(digest))
    return digest


def _hex(digest: str) -> str:
    return _checked(digest).removeprefix("sha256:")


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _chain_id(parent: str | None, diff_id: str) -> str:
    """OCI chain id of one more layer: its diff_id alone at the bottom, else sha256("<parent> <diff_id>")."""
    return (
        mf.compute_chain_ids([diff_id])[0]
        if parent is None
        else mf.sha256_digest(f"{parent} {diff_id}".encode())
    )


def _name_row(ref: Reference) -> tuple[str, str]:
    """Which table holds this reference and under which normalised name (a digest wins over a tag)."""
    if ref.digest is not None:
        return "repo_digests", ref.with_digest(ref.digest).canonical
    return "tags", ref.canonical


def _repo_of(name: str) -> str:
    return parse_reference(name, default_tag=None).name


def _familiar(name: str) -> str:
    return parse_reference(name, default_tag=None).familiar


def _is_id_prefix(image_id: str, text: str) -> bool:
    hex_id = image_id.removeprefix("sha256:")
    return image_id.startswith(text) or (bool(_ID_PREFIX_RE.fullmatch(text)) and hex_id.startswith(text))


def _single_repository(tags: list[str], digests: list[str]) -> bool:
    """Docker's rule: deleting by id is unforced when all names share one repository with at most one tag."""
    if not tags and not digests:
        return True
    if len(tags) > 1:
        return False
    repos = {_repo_of(n) for n in tags + digests}
    return len(repos) == 1


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -------------------------------------------------------------------------------------- helpers: files


def _chunks(content: bytes | Iterable[bytes] | BinaryIO) -> Iterator[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        yield bytes(content)
        return
    read = getattr(content, "read", None)
    if read is None:
        yield from content  # type: ignore[misc]
        return
    while chunk := read(_CHUNK):
        yield chunk


def _spool(
    content: Iterable[bytes] | BinaryIO, tmp: Path, expected_digest: str | None, expected_size: int | None
) -> tuple[str, int]:
    """Copy content to `tmp` hashing it; stop as soon as it is too long; fsync; check the digest."""
    hasher = hashlib.sha256()
    size = 0
    subject = expected_digest or "blob"
    with open(tmp, "xb") as out:
        for chunk in _chunks(content):
            size += len(chunk)
            if expected_size is not None and size > expected_size:
                raise DigestMismatch(
                    f"blob is longer than the announced {expected_size} bytes", subject=subject
                )
            hasher.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if expected_size is not None and size != expected_size:
        raise DigestMismatch(
            f"blob is {size} bytes, {expected_size} were announced (truncated?)", subject=subject
        )
    digest = f"sha256:{hasher.hexdigest()}"
    if expected_digest is not None and digest != expected_digest:
        raise DigestMismatch(f"content hashes to {digest}", subject=expected_digest)
    return digest, size


def _publish_file(tmp: Path, final: Path) -> None:
    """Atomic rename into place; an existing file of the same digest has the same bytes."""
    os.chmod(tmp, 0o644)
    os.rename(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush an unpacked tree before it is published: one syncfs(2) instead of an fsync per file."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _os_error(exc: OSError, subject: str) -> EngineError | OSError:
    if exc.errno in _DISK_FULL:
        return DiskFullError("no space left in the state root; nothing was kept", subject=subject)
    return exc
