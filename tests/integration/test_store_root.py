"""ImageStore as root: imported layers keep devices, owners and setuid bits, and stack under overlayfs."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.images import manifest as mf
from engine.images.store import ImageStore
from engine.images.types import Platform
from engine.state import StateRoot

pytestmark = pytest.mark.root


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar(build) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, kind=tarfile.REGTYPE, data=b"", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = kind, len(data), 1_600_000_000, attrs.pop("mode", 0o644)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _rootfs(tar: tarfile.TarFile) -> None:
    for d in ("bin", "dev", "etc", "usr", "usr/bin"):
        _add(tar, d, tarfile.DIRTYPE, mode=0o755)
    _add(tar, "etc/os-release", data=b"ID=pycompose-test\n")
    _add(tar, "etc/owned", data=b"mine\n", uid=1234, gid=5678)
    _add(tar, "usr/bin/su", data=b"#!setuid\n", mode=0o4755)
    _add(tar, "usr/bin/su-link", tarfile.LNKTYPE, linkname="usr/bin/su")
    _add(tar, "bin/sh", tarfile.SYMTYPE, linkname="/usr/bin/su")
    _add(tar, "dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
    _add(tar, "dev/pipe", tarfile.FIFOTYPE, mode=0o600)


def _upper(tar: tarfile.TarFile) -> None:
    _add(tar, "etc", tarfile.DIRTYPE, mode=0o755)
    _add(tar, "etc/.wh.os-release")  # deletes the base layer's file in the merged view
    _add(tar, "app", tarfile.DIRTYPE, mode=0o755)
    _add(tar, "app/run", data=b"#!/bin/sh\necho hi\n", mode=0o755)


@pytest.fixture
def store(tmp_path: Path):
    root = StateRoot.open(tmp_path / "state")
    try:
        yield ImageStore(root)
    finally:
        root.close()


@pytest.fixture
def mountpoint(tmp_path: Path):
    target = tmp_path / "merged"
    target.mkdir()
    try:
        yield target
    finally:
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], check=False)


def test_import_preserves_devices_owners_and_modes(store: ImageStore) -> None:
    image = store.import_rootfs(io.BytesIO(_tar(_rootfs)), "rootfs:test", changes=["CMD /bin/sh"])
    layer = Path(image.layers[0].path)
    null = os.lstat(layer / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISFIFO(os.lstat(layer / "dev/pipe").st_mode)
    owned = os.lstat(layer / "etc/owned")
    assert (owned.st_uid, owned.st_gid) == (1234, 5678)
    su = os.lstat(layer / "usr/bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_nlink == 2
    assert os.lstat(layer / "usr/bin/su-link").st_ino == su.st_ino
    assert os.readlink(layer / "bin/sh") == "/usr/bin/su"
    assert store.resolve("rootfs:test").id == image.id


def test_layers_stack_under_overlayfs(store: ImageStore, mountpoint: Path) -> None:
    base_tar, upper_tar = _tar(_rootfs), _tar(_upper)
    descs = [store.write_blob([t], media_type=mf.OCI_LAYER) for t in (base_tar, upper_tar)]
    config = mf.new_image_config(
        diff_ids=[_digest(base_tar), _digest(upper_tar)],
        platform=Platform("linux", "amd64"),
        created="2024-05-06T07:08:09Z",
    )
    config_desc = store.write_blob([mf.canonical_json(config)], media_type=mf.OCI_CONFIG)
    manifest = mf.canonical_json(mf.new_manifest(config_desc, descs, oci=True))
    image = store.register_image(manifest, mf.OCI_MANIFEST, tags=["stacked:1"])
    lower = ":".join(store.layer_dirs(image))
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(mountpoint)], check=True
    )
    try:
        assert (mountpoint / "app/run").read_bytes() == b"#!/bin/sh\necho hi\n"
        assert not (mountpoint / "etc/os-release").exists()  # whited out by the upper layer
        assert (mountpoint / "etc/owned").read_bytes() == b"mine\n"
        assert stat.S_ISCHR(os.lstat(mountpoint / "dev/null").st_mode)
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
    report = store.remove("stacked:1")
    assert report.deleted == [image.id] and len(report.layers_removed) == 2
    assert os.listdir(store.blob_path(config_desc.digest).parent) == []
    assert not any(Path(p).exists() for p in store.layer_dirs(image))
