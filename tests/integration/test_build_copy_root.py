"""COPY/ADD --chown as root: names from the image's passwd/group reach every entry the copy makes."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.build.context import BuildContext
from engine.build.copy import cache_key, copy_into

pytestmark = pytest.mark.root


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    root = tmp_path / "ctx"
    (root / "app/sub").mkdir(parents=True)
    (root / "app/run.sh").write_text("#!/bin/sh\n")
    (root / "app/sub/data").write_text("d")
    os.symlink("run.sh", root / "app/link")
    os.mkfifo(root / "app/pipe")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("packed/file")
        info.size = 1
        info.uid, info.gid = 7, 8
        tar.addfile(info, io.BytesIO(b"x"))
    (root / "bundle.tgz").write_bytes(gzip.compress(buf.getvalue()))
    return BuildContext.open(root)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nweb:x:4321:app\n")
    (root / "srv").mkdir()
    os.chown(root / "srv", 99, 99)
    return root


def owners(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_uid, p.lstat().st_gid) for p in sorted(root.rglob("*"))}


def test_chown_by_name_reaches_every_entry(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["app"], "/opt/deep/app", context=ctx, chown="app:web")
    got = owners(image / "opt")
    assert set(got) == {"deep", "deep/app", "deep/app/run.sh", "deep/app/link", "deep/app/pipe"} | {
        "deep/app/sub",
        "deep/app/sub/data",
    }
    assert set(got.values()) == {(1234, 4321)}  # created parents, dirs, files, symlink, fifo


def test_user_only_uses_uid_as_gid_and_existing_dir_keeps_owner(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["app"], "/srv", context=ctx, chown="app")
    assert (image / "srv").stat().st_uid == 99
    assert (image / "srv/run.sh").stat().st_gid == 1234


def test_default_owner_is_root(ctx: BuildContext, image: Path) -> None:
    os.chown(Path(ctx.root) / "app/run.sh", 555, 555)
    copy_into(str(image), ["app/run.sh"], "/x", context=ctx)
    assert (image / "x").stat().st_uid == 0


def test_add_archive_with_and_without_chown(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["bundle.tgz"], "/keep", context=ctx, add=True)
    assert (image / "keep/packed/file").stat().st_uid == 7  # the archive's own owners
    copy_into(str(image), ["bundle.tgz"], "/own", context=ctx, add=True, chown="1:2")
    assert owners(image / "own") == {"packed": (1, 2), "packed/file": (1, 2)}


def test_id_map_shifts_host_owners(ctx: BuildContext, image: Path) -> None:
    def shift(uid: int, gid: int) -> tuple[int, int]:
        return uid + 100000, gid + 100000

    copy_into(str(image), ["app/run.sh"], "/mapped", context=ctx, chown="app", id_map=shift)
    assert (image / "mapped").stat().st_uid == 101234


def test_cache_key_follows_owner(ctx: BuildContext, image: Path) -> None:
    assert cache_key(ctx, ["app"], owner=(1234, 4321)) != cache_key(ctx, ["app"], owner=(0, 0))
