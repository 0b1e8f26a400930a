"""A build step's filesystem changes become a layer, and a layer plus a config become an image.

CONTRACT (owner: engineer B1).

- `write_diff(upper, out)`: an overlayfs upper directory -> an OCI layer tar (uncompressed, like
  `import_rootfs` stores layers): regular files, dirs, symlinks, hard links within the diff, devices and
  FIFOs, modes, uid/gid, mtimes, xattrs (security.capability and user.*, not trusted.overlay.*); a file
  deleted in the step (overlay whiteout: a 0/0 character device) becomes `.wh.<name>`; a directory
  replaced in the step (xattr trusted.overlay.opaque = "y") gets `.wh..wh..opq` first. Entries sorted,
  so the same tree gives the same bytes (and the same diff_id: the cache relies on it).
- `commit(store, parent, layer, *, config, history, tags)`: stores the layer blob (if any), unpacks it
  on top of the parent's chain (`ImageStore.ensure_layer`), writes the image config (the parent's
  rootfs + this diff_id, the new `config` section, the parent's history + this entry with
  `empty_layer: true` when there is no layer) and manifest, registers the image, tags it. One
  transaction at the end: a failure leaves no image, no tag (blobs unreferenced are pruned as usual).

The tar is written the way moby's archive package writes a diff: PAX format, names relative without
`./`, directories with a trailing `/`, mtimes in whole seconds, no atime/ctime, no user/group names
(so the bytes do not depend on the host's passwd), two zero blocks at the end and no record padding.

Overlay features this reader relies on being off (they are, as module defaults, on this kernel and our
mounts do not turn them on): `redirect_dir` (a renamed directory would be an upper dir pointing at its
lower origin by the `trusted.overlay.redirect` xattr) and `metacopy` (a chown/chmod'ed file would be an
upper inode without data, `trusted.overlay.metacopy`). With them off a rename of a lower directory fails
with EXDEV (tools copy instead) and every copy-up copies the data, so the upper dir alone is the full
diff. Should either xattr show up anyway, the diff is refused (BuildError) rather than written wrong.
Whiteouts on Linux >= 5.8 may all be hard links of one shared 0/0 inode: they are never tar hard links.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import BuildError
from engine.frozen import frozen
from engine.images import manifest as mf
from engine.images.store import ImageStore
from engine.images.types import Descriptor, Image

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OPAQUE_XATTR = "trusted.overlay.opaque"
_UNSUPPORTED_XATTRS = {
    "trusted.overlay.redirect": "overlay redirect_dir",
    "trusted.overlay.metacopy": "overlay metacopy",
}
_BLOCK = 512
_CHUNK = 1 << 20
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


# ------------------------------------------------------------------------------------------ the diff


@frozen
class _Entry:
    """One tar member to write: its name in the layer and where its data (if any) comes from."""

    info: tarfile.TarInfo
    source: str | None = None  # a regular file whose bytes follow the header


def write_diff(upper: Path, out: BinaryIO) -> int:
    """Write the OCI layer tar of `upper` to `out`; returns the number of entries (0 = nothing changed)."""
    count = 0
    for entry in _walk(os.fsencode(upper)):
        out.write(entry.info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS))
        if entry.source is not None:
            _copy_data(entry.source, entry.info.size, out)
        count += 1
    out.write(bytes(2 * _BLOCK))
    return count


def _walk(root: bytes) -> Iterator[_Entry]:
    """Depth first, a dir's entry before its contents, siblings in byte order of their tar names.

    An explicit stack of sorted child lists instead of recursion: path depth is bounded by PATH_MAX,
    not by Python's recursion limit.
    """
    links: dict[tuple[int, int], str] = {}
    stack: list[Iterator[tuple[bytes, os.stat_result]]] = [_children(root, b"")]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        rel, st = item
        yield from _entries_for(root, rel, st, links)
        if stat.S_ISDIR(st.st_mode):
            stack.append(_children(root, rel))


def _children(root: bytes, rel: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """A directory's entries (relative path, lstat), sorted by the name each will have in the tar."""
    found = []
    for name in os.listdir(os.path.join(root, rel) if rel else root):
        child = os.path.join(rel, name) if rel else name
        st = os.lstat(os.path.join(root, child))
        found.append((_tar_base(name, st), child, st))
    found.sort(key=lambda item: item[0])
    return iter([(child, st) for _base, child, st in found])


def _tar_base(name: bytes, st: os.stat_result) -> bytes:
    """The name the entry will carry in the tar, used for sorting (a whiteout sorts as `.wh.<name>`)."""
    return WHITEOUT_PREFIX.encode() + name if _is_whiteout(st) else name


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _entries_for(
    root: bytes, rel: bytes, st: os.stat_result, links: dict[tuple[int, int], str]
) -> Iterator[_Entry]:
    """The member(s) for one upper entry: a whiteout, or the entry (and its opaque marker)."""
    name = os.fsdecode(rel)
    full = os.path.join(root, rel)
    if _is_whiteout(st):
        parent, base = os.path.split(name)
        yield _Entry(_marker(os.path.join(parent, WHITEOUT_PREFIX + base), st))
        return
    xattrs = _xattrs(full, name)
    if stat.S_ISSOCK(st.st_mode):
        return  # a tar cannot carry a socket; docker drops them too
    info = _header(name, full, st, xattrs)
    key = (st.st_dev, st.st_ino)
    if info.isreg() and st.st_nlink > 1:
        first = links.setdefault(key, name)
        if first != name:
            info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
            yield _Entry(info)
            return
    yield _Entry(info, os.fsdecode(full) if info.isreg() else None)
    if stat.S_ISDIR(st.st_mode) and _is_opaque(full):
        yield _Entry(_marker(os.path.join(name, OPAQUE_MARKER), st))


def _header(name: str, full: bytes, st: os.stat_result, xattrs: dict[str, bytes]) -> tarfile.TarInfo:
    """A PAX header from lstat; xattrs as `SCHILY.xattr.<name>` records (bytes kept via surrogates)."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = int(st.st_mtime)
    mode = st.st_mode
    if stat.S_ISREG(mode):
        info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.fsdecode(os.readlink(full))
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    info.pax_headers = {f"SCHILY.xattr.{k}": v.decode(_ENCODING, _ERRORS) for k, v in xattrs.items()}
    return info


def _marker(name: str, st: os.stat_result) -> tarfile.TarInfo:
    """An empty regular file marking a whiteout or an opaque dir (owner and mtime of what it marks)."""
    info = tarfile.TarInfo(name)
    info.mode, info.uid, info.gid, info.mtime = 0o644, 0, 0, int(st.st_mtime)
    info.uname = info.gname = ""
    return info


def _xattrs(full: bytes, name: str) -> dict[str, bytes]:
    """The entry's xattrs minus overlay's own; refuse the overlay features a plain diff cannot express."""
    try:
        keys = os.listxattr(full, follow_symlinks=False)
    except OSError:  # a filesystem without xattr support has none to copy
        return {}
    found: dict[str, bytes] = {}
    for key in sorted(keys):
        if key in _UNSUPPORTED_XATTRS:
            raise BuildError(
                f"{_UNSUPPORTED_XATTRS[key]} is on: the upper dir is not a self-contained diff", subject=name
            )
        if key.startswith(OVERLAY_XATTR_PREFIX):
            continue
        try:
            found[key] = os.getxattr(full, key, follow_symlinks=False)
        except OSError:
            continue  # gone in between, or not readable by us: nothing to carry
    return found


def _is_opaque(full: bytes) -> bool:
    try:
        return os.getxattr(full, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_data(source: str, size: int, out: BinaryIO) -> None:
    """The file's bytes, exactly `size` of them (a file changed under us is an error), then padding."""
    left = size
    with open(source, "rb") as f:
        while left:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise BuildError("file shrank while the layer was written", subject=source)
            out.write(chunk)
            left -= len(chunk)
    pad = -size % _BLOCK
    if pad:
        out.write(bytes(pad))


# ------------------------------------------------------------------------------------------ the image


def commit(
    store: ImageStore,
    parent: Image | None,
    layer: BinaryIO | None,
    *,
    config: Mapping[str, Any],
    history: Mapping[str, Any],
    tags: Sequence[str] = (),
) -> Image:
    """A new image: `parent`'s layers (+ `layer` when given), the container `config` section, history."""
    with store.lease():  # nothing written here is collected before the image row names it
        oci, layer_descs = _parent_manifest(store, parent)
        diff_ids = [lyr.diff_id for lyr in parent.layers] if parent is not None else []
        entry = dict(history)
        entry.setdefault("created", _now())
        if layer is None:
            entry["empty_layer"] = True
        else:
            entry.pop("empty_layer", None)
            media_type = mf.OCI_LAYER if oci else mf.DOCKER_LAYER
            desc = store.write_blob(layer, media_type=media_type)  # plain tar: digest == diff_id
            layer_descs.append(Descriptor(media_type, desc.digest, desc.size))
            diff_ids.append(desc.digest)
        image_config = mf.new_image_config(
            diff_ids=diff_ids,
            platform=parent.platform if parent is not None else mf.host_platform(),
            created=entry["created"],
            config=config,
            history=[*_parent_history(parent), entry],
        )
        config_type = mf.OCI_CONFIG if oci else mf.DOCKER_CONFIG
        config_desc = store.write_blob([mf.canonical_json(image_config)], media_type=config_type)
        manifest = mf.canonical_json(mf.new_manifest(config_desc, layer_descs, oci))
        # Unpacks the new layer on the parent's chain, then image row + tags in one transaction.
        return store.register_image(manifest, mf.OCI_MANIFEST if oci else mf.DOCKER_MANIFEST, tags=tags)


def _parent_manifest(store: ImageStore, parent: Image | None) -> tuple[bool, list[Descriptor]]:
    """The parent's manifest flavour (OCI or Docker schema2, kept) and its layer descriptors."""
    if parent is None:
        return True, []
    manifest = mf.parse_manifest(store.read_blob(parent.manifest_digest), parent.manifest_media_type)
    if not isinstance(manifest, mf.Manifest):
        raise BuildError("the base image's manifest is an index, not an image", subject=parent.id)
    return manifest.media_type != mf.DOCKER_MANIFEST, list(manifest.layers)


def _parent_history(parent: Image | None) -> list[dict[str, Any]]:
    if parent is None:
        return []
    return [dict(h) for h in parent.config.get("history") or [] if isinstance(h, dict)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
