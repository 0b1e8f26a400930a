"""Layer unpacking as root on the real kernel: ownership, special bits, devices, fifos, capabilities,
overlayfs whiteouts (proved by mounting the layers), a full tmpfs, and equality with GNU tar."""

from __future__ import annotations

import io
import json
import os
import stat
import struct
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import DiskFullError
from engine.images.unpack import open_layer, unpack_layer

pytestmark = pytest.mark.root

MTIME = 1_690_000_000


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("these tests need root (run them as root; they are marked `root`)")


def entry(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **fields
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = fields.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    info.mtime = fields.pop("mtime", MTIME)
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def tar_bytes(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def unpack(data: bytes, dest: Path):
    dest.mkdir()
    return unpack_layer(io.BytesIO(data), dest)


def test_numeric_ownership_and_special_bits(tmp_path: Path) -> None:
    data = tar_bytes(
        # The names say root/daemon: ownership must come from the numbers, never from a name lookup.
        entry("srv/", tarfile.DIRTYPE, mode=0o2775, uid=4242, gid=4343, uname="root", gname="root"),
        entry("srv/suid", data=b"\x7fELF", mode=0o4755, uid=4242, gid=4343, uname="daemon"),
        entry("srv/sgid", data=b"x", mode=0o2711, uid=0, gid=4343),
        entry("srv/link", tarfile.SYMTYPE, linkname="suid", uid=4244, gid=4245),
        entry("tmp/", tarfile.DIRTYPE, mode=0o1777),
        entry("srv/plain", data=b"p", mode=0o640, uid=0, gid=0),
    )
    result = unpack(data, tmp_path / "d")
    root = tmp_path / "d"
    st = (root / "srv").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o2775)
    st = (root / "srv/suid").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (4242, 4343, 0o4755)  # chown did not eat it
    st = (root / "srv/sgid").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 4343, 0o2711)
    st = (root / "srv/link").lstat()
    assert (st.st_uid, st.st_gid) == (4244, 4245)
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert stat.S_IMODE((root / "srv/plain").stat().st_mode) == 0o640
    assert (root / "srv").stat().st_mtime == MTIME
    assert result.warnings == ()


def test_owner_map_shifts_ids(tmp_path: Path) -> None:
    data = tar_bytes(entry("f", data=b"x", uid=0, gid=5), entry("d/", tarfile.DIRTYPE, uid=33, gid=33))
    (tmp_path / "d").mkdir()
    unpack_layer(io.BytesIO(data), tmp_path / "d", owner_map=lambda u, g: (u + 100000, g + 100000))
    assert ((tmp_path / "d/f").stat().st_uid, (tmp_path / "d/f").stat().st_gid) == (100000, 100005)
    assert (tmp_path / "d/d").stat().st_uid == 100033


def test_device_nodes_and_fifos(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("dev/", tarfile.DIRTYPE),
        entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
        entry("dev/loop7", tarfile.BLKTYPE, mode=0o660, devmajor=7, devminor=7, gid=6),
        entry("run/initctl", tarfile.FIFOTYPE, mode=0o600, uid=4242),
    )
    result = unpack(data, tmp_path / "d")
    null = (tmp_path / "d/dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (tmp_path / "d/dev/loop7").lstat()
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 7)
    assert (loop.st_gid, stat.S_IMODE(loop.st_mode)) == (6, 0o660)
    fifo = (tmp_path / "d/run/initctl").lstat()
    assert stat.S_ISFIFO(fifo.st_mode) and fifo.st_uid == 4242 and fifo.st_mtime == MTIME
    assert result.warnings == ()


def capability(*caps: int) -> bytes:
    """A VFS_CAP_REVISION_2 security.capability value with the effective bit (like setcap +ep)."""
    permitted = sum(1 << c for c in caps)
    return struct.pack("<IIIII", 0x02000001, permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)


def test_file_capabilities_survive_chown(tmp_path: Path) -> None:
    cap = capability(13)  # CAP_NET_RAW, as ping has
    value = cap.decode("utf-8", "surrogateescape")
    data = tar_bytes(
        entry(
            "bin/ping",
            data=b"\x7fELF ping",
            mode=0o755,
            uid=4242,
            gid=0,
            pax_headers={"SCHILY.xattr.security.capability": value},
        ),
    )
    unpack(data, tmp_path / "d")
    assert os.getxattr(tmp_path / "d/bin/ping", "security.capability") == cap
    out = subprocess.run(["getcap", str(tmp_path / "d/bin/ping")], capture_output=True, text=True, check=True)
    assert "cap_net_raw" in out.stdout


def test_whiteouts_become_overlayfs_form(tmp_path: Path) -> None:
    data = tar_bytes(
        entry("etc/", tarfile.DIRTYPE),
        entry("etc/.wh.motd"),
        entry("var/cache/apt/", tarfile.DIRTYPE, mode=0o750),
        entry("var/cache/apt/.wh..wh..opq"),
        entry("var/cache/apt/new", data=b"new"),
    )
    result = unpack(data, tmp_path / "d")
    motd = (tmp_path / "d/etc/motd").lstat()
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == 0
    assert not (tmp_path / "d/etc/.wh.motd").exists()
    assert os.getxattr(tmp_path / "d/var/cache/apt", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "d/var/cache/apt/.wh..wh..opq").exists()
    assert stat.S_IMODE((tmp_path / "d/var/cache/apt").stat().st_mode) == 0o750
    assert result.warnings == ()


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / f"merged-{uuid.uuid4().hex[:8]}"
    target.mkdir()
    try:
        yield target
    finally:
        if os.path.ismount(target):
            subprocess.run(["umount", "-l", str(target)], check=False)


def test_layers_mount_as_overlayfs_lower_dirs(tmp_path: Path, mountpoint: Path) -> None:
    base = tar_bytes(
        entry("etc/", tarfile.DIRTYPE),
        entry("etc/motd", data=b"welcome\n"),
        entry("etc/hostname", data=b"base\n"),
        entry("var/cache/", tarfile.DIRTYPE),
        entry("var/cache/old", data=b"stale"),
        entry("var/cache/sub/", tarfile.DIRTYPE),
        entry("var/cache/sub/deep", data=b"stale"),
    )
    top = tar_bytes(
        entry("etc/", tarfile.DIRTYPE),
        entry("etc/.wh.motd"),
        entry("var/cache/", tarfile.DIRTYPE),
        entry("var/cache/.wh..wh..opq"),
        entry("var/cache/fresh", data=b"fresh"),
    )
    unpack(base, tmp_path / "base")
    unpack(top, tmp_path / "top")
    subprocess.run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={tmp_path / 'top'}:{tmp_path / 'base'}",
            str(mountpoint),
        ],
        check=True,
    )
    assert sorted(os.listdir(mountpoint / "etc")) == ["hostname"]
    assert sorted(os.listdir(mountpoint / "var/cache")) == ["fresh"]
    assert (mountpoint / "etc/hostname").read_text() == "base\n"


def test_full_filesystem_is_disk_full_error(tmp_path: Path) -> None:
    small = tmp_path / f"small-{uuid.uuid4().hex[:8]}"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        data = tar_bytes(entry("big", data=os.urandom(3 << 20)))
        (small / "layer").mkdir()
        with pytest.raises(DiskFullError):
            unpack_layer(io.BytesIO(data), small / "layer")
    finally:
        subprocess.run(["umount", str(small)], check=True)


def listing(root: Path, implicit: set[str]) -> str:
    """Everything tar should reproduce: type, mode, owner, size, mtime, link target, link count.

    `implicit` directories are parents the archive never listed: both tools create them "now".
    """
    out = subprocess.run(
        ["find", ".", "-mindepth", "1", "-printf", r"%p %y %m %U %G %s %T@ %n %l\n"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = []
    for line in out.stdout.splitlines():
        fields = line.split(" ")
        if fields[0] in implicit:
            fields[6] = "-"
        lines.append(" ".join(fields))
    return "\n".join(sorted(lines))


def test_same_tree_as_gnu_tar_on_a_real_filesystem(tmp_path: Path) -> None:
    tarball = tmp_path / "system.tar"
    members = ["etc", "usr/share/zoneinfo", "usr/bin/passwd", "usr/bin/gunzip", "usr/bin/uncompress"]
    subprocess.run(
        [
            "tar",
            "-C",
            "/",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "-cf",
            str(tarball),
            *members,
        ],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    with open_layer(tarball) as stream:
        result = unpack_layer(stream, ours)
    subprocess.run(
        ["tar", "-xpf", str(tarball), "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", str(theirs)],
        check=True,
    )
    implicit = {"./usr", "./usr/bin", "./usr/share"}
    assert listing(ours, implicit) == listing(theirs, implicit)
    diff = subprocess.run(
        ["diff", "-r", "--no-dereference", str(ours), str(theirs)], capture_output=True, text=True
    )
    assert diff.returncode == 0, diff.stdout[:2000]
    assert result.entries > 500
    assert result.warnings == ()


def test_user_namespace_root_falls_back_with_warnings(tmp_path: Path) -> None:
    """Root in a user namespace has every capability, yet the kernel refuses devices, unmapped owners
    and trusted.* xattrs: each becomes a warning and the layer still unpacks (rootless path). The 0:0
    whiteout device is allowed there."""
    layer = tmp_path / "layer.tar"
    layer.write_bytes(
        tar_bytes(
            entry("dev/", tarfile.DIRTYPE),
            entry("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
            entry("etc/", tarfile.DIRTYPE),
            entry("etc/shadow", data=b"root:*:19000::::::\n", mode=0o640, uid=0, gid=42),
            entry("etc/.wh.motd"),
            entry("var/", tarfile.DIRTYPE),
            entry("var/.wh..wh..opq"),
        )
    )
    dest = tmp_path / "d"
    dest.mkdir()
    script = (
        "import json, sys\n"
        "from engine.images.unpack import open_layer, unpack_layer\n"
        "with open_layer(sys.argv[1]) as s:\n"
        "    r = unpack_layer(s, sys.argv[2])\n"
        "print(json.dumps(list(r.warnings)))\n"
    )
    out = subprocess.run(
        ["unshare", "--user", "--map-root-user", sys.executable, "-c", script, str(layer), str(dest)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert out.returncode == 0, out.stderr
    warnings = json.loads(out.stdout)
    assert any(w.startswith("device node not created") and "dev/null" in w for w in warnings), warnings
    assert any(w.startswith("ownership not applied") and "etc/shadow" in w for w in warnings), warnings
    assert any(w.startswith("opaque directory kept as marker file") for w in warnings), warnings
    assert (dest / "etc/shadow").read_bytes() == b"root:*:19000::::::\n"
    motd = (dest / "etc/motd").lstat()  # whiteouts need no privilege (Linux >= 5.8)
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == 0
    assert (dest / "var/.wh..wh..opq").is_file()
    assert not (dest / "dev/null").exists()
