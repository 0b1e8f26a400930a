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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from engine.images.store import ImageStore
from engine.images.types import Image


def write_diff(upper: Path, out: BinaryIO) -> int:
    """Write the OCI layer tar of `upper` to `out`; returns the number of entries (0 = nothing changed)."""
    raise NotImplementedError


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
    raise NotImplementedError
