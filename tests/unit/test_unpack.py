"""Layer unpacking without privileges: formats, diff_ids, compression and hostile tarballs.

Every tarball is built here with `tarfile`. Tests that depend on privileges pass `privileged=False`, so they
behave the same whether the suite runs as root or not; the root-only behaviour is in
tests/integration/test_unpack_root.py.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard

from engine.errors import ArchiveError, UnsafeLayerError
from engine.images.unpack import (
    UnpackResult,
    detect_compression,
    normalise_name,
    open_layer,
    unpack_layer,
)

MTIME = 1_700_000_000


def entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int | None = None,
    link: str = "",
    uid: int | None = None,
    gid: int | None = None,
    mtime: int = MTIME,
    pax: dict[str, str] | None = None,
    dev: tuple[int, int] = (0, 0),
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.uid = os.getuid() if uid is None else uid
    info.gid = os.getgid() if gid is None else gid
    info.mtime = mtime
    info.linkname = link
    info.devmajor, info.devminor = dev
    if pax:
        info.pax_headers = dict(pax)
    if kind in (tarfile.REGTYPE, tarfile.AREGTYPE):
        info.size = len(data)
    return info, data


def tar_bytes(*entries: tuple[tarfile.TarInfo, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path, **kwargs) -> UnpackResult:
    dest.mkdir(exist_ok=True)
    return unpack_layer(io.BytesIO(data), dest, **kwargs)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """A staging dir and a sibling 'outside' dir holding a file an escape would overwrite."""
    dest = tmp_path / "layer"
    outside = tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("untouched\n")
    return dest, outside


def assert_outside_untouched(outside: Path) -> None:
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_text() == "untouched\n"


# ------------------------------------------------------------------------------------------------
# Ordinary content


def test_files_dirs_links_modes_and_mtimes(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("./", tarfile.DIRTYPE, mode=0o755, mtime=MTIME - 50),
        entry("./usr/", tarfile.DIRTYPE, mode=0o755, mtime=MTIME - 100),
        entry("./usr/bin/", tarfile.DIRTYPE, mode=0o700, mtime=MTIME - 200),
        entry("./usr/bin/tool", data=b"#!/bin/sh\necho hi\n", mode=0o4755, mtime=MTIME - 300),
        entry("./usr/bin/readonly", data=b"x", mode=0o444),
        entry("./usr/bin/alias", tarfile.SYMTYPE, link="/usr/bin/tool", mtime=MTIME - 400),
        entry("./usr/bin/hard", tarfile.LNKTYPE, link="./usr/bin/tool"),
        entry("./tmp/", tarfile.DIRTYPE, mode=0o1777),
        entry("./empty", data=b"", mode=0o600),
    )
    result = unpack(data, tmp_path / "d", privileged=False)
    root = tmp_path / "d"
    tool = root / "usr/bin/tool"
    assert tool.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o4755
    assert tool.stat().st_mtime == MTIME - 300
    assert stat.S_IMODE((root / "usr/bin/readonly").stat().st_mode) == 0o444
    alias = root / "usr/bin/alias"
    assert os.readlink(alias) == "/usr/bin/tool"  # absolute targets are kept verbatim
    assert alias.lstat().st_mtime == MTIME - 400
    assert (root / "usr/bin/hard").stat().st_ino == tool.stat().st_ino
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "usr/bin").stat().st_mode) == 0o700
    # Directory mtimes are set after their children were created.
    assert (root / "usr/bin").stat().st_mtime == MTIME - 200
    assert (root / "usr").stat().st_mtime == MTIME - 100
    assert root.stat().st_mtime == MTIME - 50
    assert (root / "empty").read_bytes() == b""
    assert result.entries == 9
    assert result.size == len(b"#!/bin/sh\necho hi\n") + 1
    assert result.warnings == ()


def test_diff_id_is_sha256_of_uncompressed_bytes(tmp_path: Path) -> None:
    data = tar_bytes(entry("a", data=os.urandom(5000)), entry("b/", tarfile.DIRTYPE))
    result = unpack(data, tmp_path / "d")
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert result.tar_size == len(data)  # trailing zero records are part of the digest


def test_diff_id_covers_bytes_after_the_end_marker(tmp_path: Path) -> None:
    data = tar_bytes(entry("a", data=b"x")) + bytes(4096)
    result = unpack(data, tmp_path / "d")
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_large_file_spanning_many_read_chunks(tmp_path: Path) -> None:
    blob = os.urandom(3 * (1 << 20) + 123)
    data = tar_bytes(entry("small", data=b"s" * 700), entry("big", data=blob), entry("after", data=b"a"))
    unpack(data, tmp_path / "d")
    assert (tmp_path / "d/big").read_bytes() == blob
    assert (tmp_path / "d/after").read_bytes() == b"a"
    assert (tmp_path / "d/small").read_bytes() == b"s" * 700


class Dribble(io.RawIOBase):
    """A stream that returns at most 7 bytes per read: headers straddle every chunk boundary."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_short_reads_from_the_source(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("d/", tarfile.DIRTYPE),
        entry("d/" + "n" * 150, data=b"long name"),
        entry("d/f", data=b"0123456789" * 100),
    )
    dest = tmp_path / "d0"
    dest.mkdir()
    result = unpack_layer(Dribble(data), dest)
    assert (dest / "d" / ("n" * 150)).read_bytes() == b"long name"
    assert (dest / "d/f").read_bytes() == b"0123456789" * 100
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_very_long_names_and_link_targets(tmp_path: Path, fmt: int) -> None:
    deep = "/".join(f"component-{i:03d}-" + "x" * 40 for i in range(8))  # about 400 bytes
    data = tar_bytes(
        entry(f"{deep}/file", data=b"deep"),
        entry("short-link", tarfile.SYMTYPE, link="/" + deep + "/file"),
        entry(f"{deep}/hard", tarfile.LNKTYPE, link=f"{deep}/file"),
        fmt=fmt,
    )
    unpack(data, tmp_path / "d")
    assert (tmp_path / "d" / deep / "file").read_bytes() == b"deep"
    assert os.readlink(tmp_path / "d/short-link") == "/" + deep + "/file"
    assert (tmp_path / "d" / deep / "hard").stat().st_nlink == 2


def test_ustar_prefix_field(tmp_path: Path) -> None:
    name = "p" * 90 + "/" + "q" * 90  # fits ustar's prefix + name split
    data = tar_bytes(entry(name, data=b"ustar"), fmt=tarfile.USTAR_FORMAT)
    assert b"ustar\x0000" in data[:512]
    unpack(data, tmp_path / "d")
    assert (tmp_path / "d" / name).read_bytes() == b"ustar"


def test_non_utf8_names_are_kept_as_bytes(tmp_path: Path) -> None:
    raw = b"caf\xe9-latin1"
    name = raw.decode("utf-8", "surrogateescape")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8") as tar:
        info, payload = entry(name, data=b"bytes")
        tar.addfile(info, io.BytesIO(payload))
    unpack(buf.getvalue(), tmp_path / "d")
    assert os.listdir(os.fsencode(tmp_path / "d")) == [raw]
    assert Path(os.fsdecode(os.fsencode(tmp_path / "d") + b"/" + raw)).read_bytes() == b"bytes"


def test_pax_overrides_mtime_size_and_ids(tmp_path: Path) -> None:
    info, payload = entry("f", data=b"pax", mtime=MTIME)
    info.pax_headers = {"mtime": "1700000123.5"}
    unpack(tar_bytes((info, payload)), tmp_path / "d")
    assert (tmp_path / "d/f").stat().st_mtime_ns == 1_700_000_123_500_000_000


def test_user_xattrs_from_pax(tmp_path: Path) -> None:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        pytest.fail(f"{tmp_path} does not support user xattrs; the test needs a filesystem that does")
    value = b"\x00\xffbinary".decode("utf-8", "surrogateescape")
    data = tar_bytes(
        entry("f", data=b"x", pax={"SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.user.raw": value}),
        entry("d/", tarfile.DIRTYPE, pax={"SCHILY.xattr.user.dir": "yes"}),
    )
    unpack(data, tmp_path / "d")
    assert os.getxattr(tmp_path / "d/f", "user.comment") == b"hello"
    assert os.getxattr(tmp_path / "d/f", "user.raw") == b"\x00\xffbinary"
    assert os.getxattr(tmp_path / "d/d", "user.dir") == b"yes"


def test_gnu_base256_numbers(tmp_path: Path) -> None:
    big = 8**7 + 5  # does not fit 7 octal digits: GNU writes base-256
    data = tar_bytes(entry("f", data=b"x", uid=big, gid=big), fmt=tarfile.GNU_FORMAT)
    assert data[108] & 0x80
    seen: list[tuple[int, int]] = []

    def owner_map(uid: int, gid: int) -> tuple[int, int]:
        seen.append((uid, gid))
        return os.getuid(), os.getgid()

    result = unpack(data, tmp_path / "d", owner_map=owner_map)
    assert seen == [(big, big)]
    assert result.warnings == ()


def test_owner_map_to_own_ids_needs_no_privilege(tmp_path: Path) -> None:
    data = tar_bytes(entry("f", data=b"x", uid=0, gid=0), entry("d/", tarfile.DIRTYPE, uid=0, gid=0))
    result = unpack(data, tmp_path / "d", owner_map=lambda u, g: (os.getuid(), os.getgid()), privileged=False)
    assert result.warnings == ()
    assert (tmp_path / "d/f").stat().st_uid == os.getuid()


def test_foreign_owner_without_privilege_is_a_warning(tmp_path: Path) -> None:
    data = tar_bytes(entry("f", data=b"x", uid=os.getuid() + 1000, gid=os.getgid() + 1000))
    result = unpack(data, tmp_path / "d", privileged=False)
    assert (tmp_path / "d/f").read_bytes() == b"x"
    assert result.warnings == ("ownership not applied (not root): f",)


def test_fifo_works_without_privilege_devices_are_skipped(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("dev/", tarfile.DIRTYPE),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, dev=(1, 3)),
        entry("dev/sda", tarfile.BLKTYPE, mode=0o660, dev=(8, 0)),
        entry("run/initctl", tarfile.FIFOTYPE, mode=0o600),
    )
    result = unpack(data, tmp_path / "d", privileged=False)
    assert stat.S_ISFIFO((tmp_path / "d/run/initctl").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "d/run/initctl").lstat().st_mode) == 0o600
    assert not (tmp_path / "d/dev/null").exists()
    assert result.warnings == ("device node not created (not root): dev/null (and 1 more)",)


# ------------------------------------------------------------------------------------------------
# Duplicates: a later entry replaces an earlier one, never writing through it


def test_later_file_replaces_symlink_without_following_it(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("a", tarfile.SYMTYPE, link=str(outside / "secret")),
        entry("a", data=b"replaced\n"),
    )
    unpack(data, dest)
    assert not (dest / "a").is_symlink()
    assert (dest / "a").read_bytes() == b"replaced\n"
    assert_outside_untouched(outside)


def test_later_dir_replaces_symlink(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("a", tarfile.SYMTYPE, link=str(outside)),
        entry("a/", tarfile.DIRTYPE),
        entry("a/secret", data=b"inside\n"),
    )
    unpack(data, dest)
    assert (dest / "a").is_dir() and not (dest / "a").is_symlink()
    assert (dest / "a/secret").read_bytes() == b"inside\n"
    assert_outside_untouched(outside)


def test_later_symlink_replaces_directory_then_write_through_is_refused(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("a/", tarfile.DIRTYPE),
        entry("a/old", data=b"old"),
        entry("a", tarfile.SYMTYPE, link=str(outside)),
        entry("a/secret", data=b"pwned\n"),
    )
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == "a/secret"
    assert_outside_untouched(outside)


def test_duplicate_file_last_wins_and_breaks_hard_link(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("f", data=b"first"),
        entry("h", tarfile.LNKTYPE, link="f"),
        entry("f", data=b"second"),
    )
    unpack(data, tmp_path / "d")
    assert (tmp_path / "d/f").read_bytes() == b"second"
    assert (tmp_path / "d/h").read_bytes() == b"first"


# ------------------------------------------------------------------------------------------------
# Hostile tarballs


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "../outside/secret", "a/../../outside/secret", "./../x", "a/b/../../../x", "a/.."],
)
def test_escaping_names_are_refused(layout: tuple[Path, Path], name: str) -> None:
    dest, outside = layout
    data = tar_bytes(entry("a/", tarfile.DIRTYPE), entry(name, data=b"pwned\n"))
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == name
    assert name in str(err.value)
    assert_outside_untouched(outside)


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside/secret", "x/../../outside/secret"])
def test_hard_links_pointing_out_are_refused(layout: tuple[Path, Path], target: str) -> None:
    dest, outside = layout
    data = tar_bytes(entry("x/", tarfile.DIRTYPE), entry("x/passwd", tarfile.LNKTYPE, link=target))
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == "x/passwd"
    assert not (dest / "x/passwd").exists()
    assert_outside_untouched(outside)


def test_hard_link_through_a_symlink_is_refused(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("s", tarfile.SYMTYPE, link=str(outside)),
        entry("h", tarfile.LNKTYPE, link="s/secret"),
    )
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == "h"
    assert (outside / "secret").stat().st_nlink == 1


def test_hard_link_to_missing_target_is_an_archive_error(tmp_path: Path) -> None:
    data = tar_bytes(entry("h", tarfile.LNKTYPE, link="nowhere"))
    with pytest.raises(ArchiveError):
        unpack(data, tmp_path / "d")


@pytest.mark.parametrize(
    "link",
    ["/etc", "{outside}", "../..", ".."],
)
def test_symlink_then_write_through_it_is_refused(layout: tuple[Path, Path], link: str) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("a", tarfile.SYMTYPE, link=link.format(outside=outside)),
        entry("a/secret", data=b"pwned\n"),
    )
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == "a/secret"
    assert "symlink a" in str(err.value)
    assert_outside_untouched(outside)


def test_symlink_to_parent_chains_are_refused(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("d/", tarfile.DIRTYPE),
        entry("d/up", tarfile.SYMTYPE, link=".."),
        entry("d/up2", tarfile.SYMTYPE, link="up/.."),
        entry("d/up3", tarfile.SYMTYPE, link="up2/../outside"),
        entry("d/up3/secret", data=b"pwned\n"),
    )
    with pytest.raises(UnsafeLayerError) as err:
        unpack(data, dest)
    assert err.value.subject == "d/up3/secret"
    assert_outside_untouched(outside)
    # The symlinks themselves were fine to create: targets are the container's business.
    assert os.readlink(dest / "d/up2") == "up/.."


def test_write_through_symlink_to_inside_is_refused_too(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("real/", tarfile.DIRTYPE),
        entry("alias", tarfile.SYMTYPE, link="real"),
        entry("alias/f", data=b"x"),
    )
    with pytest.raises(UnsafeLayerError):
        unpack(data, tmp_path / "d")


def test_dangling_symlink_then_file_of_the_same_name(layout: tuple[Path, Path]) -> None:
    dest, outside = layout
    data = tar_bytes(
        entry("x", tarfile.SYMTYPE, link=str(outside / "new-file")),
        entry("x", data=b"inside"),
    )
    unpack(data, dest)
    assert (dest / "x").read_bytes() == b"inside"
    assert_outside_untouched(outside)


def test_file_where_a_parent_should_be_is_an_archive_error(tmp_path: Path) -> None:
    data = tar_bytes(entry("a", data=b"file"), entry("a/b", data=b"child"))
    with pytest.raises(ArchiveError) as err:
        unpack(data, tmp_path / "d")
    assert not isinstance(err.value, UnsafeLayerError)


def test_normalise_name() -> None:
    assert normalise_name(b"./usr/bin/") == b"usr/bin"
    assert normalise_name(b"usr//./bin") == b"usr/bin"
    assert normalise_name(b"./") == b""
    assert normalise_name(b"a/.hidden") == b"a/.hidden"
    assert normalise_name(b"a/..b") == b"a/..b"
    for bad in (b"/abs", b"..", b"a/../b", b"./../x"):
        with pytest.raises(UnsafeLayerError):
            normalise_name(bad)


# ------------------------------------------------------------------------------------------------
# Whiteouts without privileges (the overlayfs form is in the root integration test)


def test_opaque_marker_falls_back_to_a_file_without_privilege(tmp_path: Path) -> None:
    data = tar_bytes(entry("var/cache/", tarfile.DIRTYPE), entry("var/cache/.wh..wh..opq"))
    result = unpack(data, tmp_path / "d", privileged=False)
    assert (tmp_path / "d/var/cache/.wh..wh..opq").is_file()
    assert result.warnings == ("opaque directory kept as marker file (not root): var/cache/.wh..wh..opq",)


def test_whiteout_without_privilege(tmp_path: Path) -> None:
    """Linux >= 5.8 lets anyone create the 0:0 whiteout device; older kernels get the marker file."""
    data = tar_bytes(entry("etc/", tarfile.DIRTYPE), entry("etc/.wh.motd"))
    result = unpack(data, tmp_path / "d", privileged=False)
    kernel = tuple(int(x) for x in os.uname().release.split(".")[:2])
    if kernel >= (5, 8):
        st = (tmp_path / "d/etc/motd").lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
        assert not (tmp_path / "d/etc/.wh.motd").exists()
        assert result.warnings == ()
    else:
        assert (tmp_path / "d/etc/.wh.motd").read_bytes() == b""
        assert result.warnings[0].startswith("whiteout kept as marker file")


def test_whiteout_of_an_entry_of_the_same_layer_keeps_the_entry(tmp_path: Path) -> None:
    data = tar_bytes(entry("etc/", tarfile.DIRTYPE), entry("etc/motd", data=b"kept"), entry("etc/.wh.motd"))
    unpack(data, tmp_path / "d", privileged=False)
    assert (tmp_path / "d/etc/motd").read_bytes() == b"kept"


@pytest.mark.parametrize("name", ["d/.wh.", "d/.wh..", "d/.wh..."])
def test_whiteouts_naming_no_entry_are_refused(tmp_path: Path, name: str) -> None:
    data = tar_bytes(entry("d/", tarfile.DIRTYPE), entry("d/f", data=b"x"), entry(name))
    with pytest.raises(UnsafeLayerError):
        unpack(data, tmp_path / "d", privileged=False)


# ------------------------------------------------------------------------------------------------
# Compression and corrupt input


SAMPLE = tar_bytes(
    entry("etc/", tarfile.DIRTYPE),
    entry("etc/os-release", data=b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n' * 50),
    entry("bin", tarfile.SYMTYPE, link="usr/bin"),
    entry("blob", data=os.urandom(300_000)),
)


def zstd_frames(data: bytes) -> bytes:
    """Two zstd frames back to back, as some writers produce: a reader must cross frames."""
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor(level=3)
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


COMPRESSORS = {
    "gzip": lambda d: gzip.compress(d, mtime=0),
    "zstd": zstd_frames,
    "bzip2": bz2.compress,
    "xz": lzma.compress,
}


@pytest.mark.parametrize("kind", ["none", *COMPRESSORS])
@pytest.mark.parametrize("as_path", [True, False])
def test_compressed_round_trip(tmp_path: Path, kind: str, as_path: bool) -> None:
    blob = SAMPLE if kind == "none" else COMPRESSORS[kind](SAMPLE)
    assert detect_compression(blob[:8]) == kind
    path = tmp_path / "layer.blob"
    path.write_bytes(blob)
    dest = tmp_path / "d"
    dest.mkdir()
    source = path if as_path else Dribble(blob)  # a non-seekable stream without peek()
    with open_layer(source) as stream:
        result = unpack_layer(stream, dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()
    assert (dest / "etc/os-release").read_bytes().startswith(b'PRETTY_NAME="Debian')
    assert os.readlink(dest / "bin") == "usr/bin"


def test_open_layer_owns_the_stream(tmp_path: Path) -> None:
    raw = io.BytesIO(gzip.compress(SAMPLE))
    with open_layer(raw) as stream:
        assert stream.read(512)[:4] == b"etc/"
    assert raw.closed


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bzip2"])
def test_truncated_compressed_stream_is_an_archive_error(tmp_path: Path, kind: str) -> None:
    blob = COMPRESSORS[kind](SAMPLE)
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ArchiveError), open_layer(io.BytesIO(blob[: len(blob) // 2])) as stream:
        unpack_layer(stream, dest)


def test_corrupt_gzip_is_an_archive_error(tmp_path: Path) -> None:
    blob = bytearray(gzip.compress(SAMPLE))
    blob[len(blob) // 2] ^= 0xFF
    dest = tmp_path / "d"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="gzip"), open_layer(io.BytesIO(bytes(blob))) as stream:
        unpack_layer(stream, dest)


@pytest.mark.parametrize("cut", [100, 512 + 100, 700, 2048])
def test_truncated_tar_is_an_archive_error(tmp_path: Path, cut: int) -> None:
    data = tar_bytes(entry("f", data=b"y" * 3000), entry("g", data=b"z"))
    with pytest.raises(ArchiveError, match="truncated"):
        unpack(data[:cut], tmp_path / "d")


def test_bad_header_checksum_is_an_archive_error(tmp_path: Path) -> None:
    data = bytearray(tar_bytes(entry("file", data=b"x")))
    data[10] ^= 0x01  # inside the name field of the first (PAX or member) header
    with pytest.raises(ArchiveError, match="checksum"):
        unpack(bytes(data), tmp_path / "d")


def test_not_a_tar_is_an_archive_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError):
        unpack(b"this is not a tarball\n" * 100, tmp_path / "d")


def test_sparse_members_are_refused(tmp_path: Path) -> None:
    info, _ = entry("sparse")
    info.type = tarfile.GNUTYPE_SPARSE
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(info)
    with pytest.raises(ArchiveError, match="unsupported"):
        unpack(buf.getvalue(), tmp_path / "d")


def test_errors_leave_no_reader_thread_behind(tmp_path: Path) -> None:
    before = threading.active_count()
    big = tar_bytes(entry("a", tarfile.SYMTYPE, link="/etc"), entry("a/passwd", data=os.urandom(40 << 20)))
    with pytest.raises(UnsafeLayerError):
        unpack(big, tmp_path / "d")
    assert threading.active_count() == before


def test_zstd_stream_starting_with_a_skippable_frame(tmp_path: Path) -> None:
    skippable = b"\x5a\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"meta"
    blob = skippable + zstandard.ZstdCompressor().compress(SAMPLE)
    assert detect_compression(blob[:8]) == "zstd"
    dest = tmp_path / "d"
    dest.mkdir()
    with open_layer(io.BytesIO(blob)) as stream:
        result = unpack_layer(stream, dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def test_plain_bytes_are_not_mistaken_for_compression() -> None:
    assert detect_compression(b"usr/bin/") == "none"
    assert detect_compression(b"\x60\x2a\x4d\x18") == "none"


def test_open_layer_on_a_pipe(tmp_path: Path) -> None:
    """`image import -` reads stdin: a pipe cannot seek and may peek fewer bytes than the magic."""
    blob = gzip.compress(SAMPLE)
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            pipe.write(blob[:3])  # the magic arrives in two pieces
            pipe.write(blob[3:])

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        dest = tmp_path / "d"
        dest.mkdir()
        with open_layer(os.fdopen(read_fd, "rb")) as stream:
            result = unpack_layer(stream, dest)
    finally:
        writer.join()
    assert result.diff_id == "sha256:" + hashlib.sha256(SAMPLE).hexdigest()


def test_gnu_volume_label_is_not_a_file(tmp_path: Path) -> None:
    label, _ = entry("Backup 2026/11")
    label.type = b"V"
    data = tar_bytes((label, b""), entry("f", data=b"x"), fmt=tarfile.GNU_FORMAT)
    result = unpack(data, tmp_path / "d")
    assert os.listdir(tmp_path / "d") == ["f"]
    assert result.entries == 1
