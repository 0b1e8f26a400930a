"""engine.build.commit without a mount: a hand-made upper dir (what overlayfs leaves) -> layer tar -> image.

The overlay-specific parts that need root (trusted.overlay.* xattrs, a real overlay mount, a container on
the result) are in tests/integration/test_build_commit_root.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.build.commit import commit, write_diff
from engine.errors import BuildError, EngineError
from engine.images import manifest as mf
from engine.images.store import ImageStore
from engine.images.unpack import unpack_layer
from engine.state import StateRoot

MTIME = 1_700_000_000


@pytest.fixture
def store(tmp_path: Path):
    root = StateRoot.open(tmp_path / "state")
    try:
        yield ImageStore(root)
    finally:
        root.close()


def _file(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _whiteout(path: Path) -> bool:
    """A 0/0 character device, as overlayfs records a deletion (unprivileged since Linux 5.8)."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    except PermissionError:
        return False
    return True


def _upper(base: Path) -> Path:
    """A tree with one of everything write_diff must carry; every mtime fixed."""
    up = base / "upper"
    _file(up / "etc" / "app.conf", b"key=value\n")
    _file(up / "bin" / "tool", b"#!/bin/sh\necho hi\n", 0o4755)
    _file(up / "data" / "one", b"x" * 1000)
    os.link(up / "data" / "one", up / "data" / "two")
    os.symlink("/etc/app.conf", up / "etc" / "link")
    os.mkfifo(up / "data" / "fifo")
    _file(up / ("d" * 60) / ("long-name-" * 12), b"long")
    _file(up / os.fsdecode(b"caf\xe9"), b"latin-1 name")
    os.setxattr(up / "etc" / "app.conf", "user.pyc-test", b"\x00\xffbinary")
    (up / "empty").mkdir()
    for dirpath, dirnames, filenames in os.walk(up):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME), follow_symlinks=False)
    os.utime(up, (MTIME, MTIME))
    return up


def _diff(upper: Path) -> tuple[bytes, int]:
    buf = io.BytesIO()
    count = write_diff(upper, buf)
    return buf.getvalue(), count


def _members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_diff_carries_every_kind_of_entry(tmp_path: Path) -> None:
    data, count = _diff(_upper(tmp_path))
    members = _members(data)
    assert count == len(members) == 13
    assert members["etc/app.conf"].isreg() and members["etc/app.conf"].mode == 0o644
    assert members["bin/tool"].mode == 0o4755  # setuid kept
    assert members["etc/link"].issym() and members["etc/link"].linkname == "/etc/app.conf"
    assert members["data/fifo"].isfifo()
    assert members["data/one"].isreg() and members["data/one"].size == 1000
    assert members["data/two"].islnk() and members["data/two"].linkname == "data/one"
    assert members["etc"].isdir() and members["empty"].isdir()
    assert all(m.mtime == MTIME for m in members.values())
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    xattrs = {k: v for k, v in members["etc/app.conf"].pax_headers.items() if k.startswith("SCHILY.")}
    assert xattrs == {"SCHILY.xattr.user.pyc-test": b"\x00\xffbinary".decode("utf-8", "surrogateescape")}
    assert os.fsdecode(b"caf\xe9") in members
    assert ("d" * 60 + "/" + "long-name-" * 12) in members  # longer than 100 bytes: a PAX path


def test_diff_tar_layout_is_mobys(tmp_path: Path) -> None:
    data, _ = _diff(_upper(tmp_path))
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    names = list(_members(data))
    raw_dir = data.find(b"etc/\x00")
    assert raw_dir != -1  # directories end in "/"
    assert not any(n.startswith("./") or n.startswith("/") for n in names)
    # depth first, siblings in byte order, parents before children
    assert names.index("data") < names.index("data/fifo") < names.index("data/one") < names.index("data/two")
    assert names.index("bin") < names.index("bin/tool") < names.index("d" * 60)


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    up = _upper(tmp_path)
    first, _ = _diff(up)
    assert _diff(up)[0] == first
    copy = tmp_path / "elsewhere" / "copy"
    copy.parent.mkdir()
    subprocess.run(["cp", "-a", str(up), str(copy)], check=True)  # keeps links, fifo, xattrs, mtimes
    assert os.stat(copy / "data" / "one").st_ino != os.stat(up / "data" / "one").st_ino
    assert hashlib.sha256(_diff(copy)[0]).digest() == hashlib.sha256(first).digest()
    os.utime(copy / "etc" / "app.conf", (MTIME + 1, MTIME + 1))
    assert _diff(copy)[0] != first  # and it does depend on content/metadata


def test_whiteout_becomes_wh_file(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "etc").mkdir(parents=True)
    if not _whiteout(up / "etc" / "gone"):
        pytest.skip("kernel refuses unprivileged whiteouts")
    _file(up / "etc" / "kept", b"k")
    members = _members(_diff(up)[0])
    assert set(members) == {"etc", "etc/.wh.gone", "etc/kept"}
    marker = members["etc/.wh.gone"]
    assert marker.isreg() and marker.size == 0


def test_whiteouts_sharing_one_inode_are_not_hard_links(tmp_path: Path) -> None:
    """Linux >= 5.8 overlay makes every whiteout a link of one 0/0 inode."""
    up = tmp_path / "upper"
    up.mkdir()
    if not _whiteout(up / "a"):
        pytest.skip("kernel refuses unprivileged whiteouts")
    os.link(up / "a", up / "b")
    members = _members(_diff(up)[0])
    assert set(members) == {".wh.a", ".wh.b"} and all(m.isreg() for m in members.values())


def test_empty_upper_has_no_entries(tmp_path: Path) -> None:
    (tmp_path / "u").mkdir()
    data, count = _diff(tmp_path / "u")
    assert count == 0 and data == bytes(1024)


def test_sockets_are_left_out(tmp_path: Path) -> None:
    import socket

    up = tmp_path / "u"
    up.mkdir()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(up / "sock"))
        assert _diff(up)[1] == 0


def test_round_trip_through_unpack(tmp_path: Path) -> None:
    up = _upper(tmp_path)
    data, _ = _diff(up)
    dest = tmp_path / "dest"
    dest.mkdir()
    result = unpack_layer(io.BytesIO(data), dest)
    assert result.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert (dest / "etc" / "app.conf").read_bytes() == b"key=value\n"
    assert os.getxattr(dest / "etc" / "app.conf", "user.pyc-test") == b"\x00\xffbinary"
    assert os.readlink(dest / "etc" / "link") == "/etc/app.conf"
    assert os.stat(dest / "data" / "one").st_ino == os.stat(dest / "data" / "two").st_ino
    assert stat.S_IMODE(os.stat(dest / "bin" / "tool").st_mode) == 0o4755
    assert (dest / os.fsdecode(b"caf\xe9")).read_bytes() == b"latin-1 name"


def test_file_shrinking_under_us_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.build import commit as commit_mod

    up = tmp_path / "u"
    _file(up / "f", b"12345")
    real = commit_mod._copy_data

    def shrink(source: str, size: int, out) -> None:  # type: ignore[no-untyped-def]
        Path(source).write_bytes(b"1")
        real(source, size, out)

    monkeypatch.setattr(commit_mod, "_copy_data", shrink)
    with pytest.raises(BuildError):
        write_diff(up, io.BytesIO())


# ---------------------------------------------------------------------------------------- commit


def _layer(tmp_path: Path, files: dict[str, bytes]) -> io.BytesIO:
    up = tmp_path / f"up-{len(list(tmp_path.iterdir()))}"
    for name, data in files.items():
        _file(up / name, data)
    buf = io.BytesIO()
    write_diff(up, buf)
    buf.seek(0)
    return buf


def test_commit_from_scratch_then_on_top(store: ImageStore, tmp_path: Path) -> None:
    base = commit(
        store,
        None,
        _layer(tmp_path, {"etc/a": b"a"}),
        config={"Env": ["PATH=/bin"]},
        history={"created_by": "COPY a /etc/a", "created": "2024-01-01T00:00:00Z"},
        tags=["pyc-test/base:1"],
    )
    assert store.resolve("pyc-test/base:1").id == base.id
    assert base.config["config"] == {"Env": ["PATH=/bin"]}
    assert base.config["history"] == [{"created": "2024-01-01T00:00:00Z", "created_by": "COPY a /etc/a"}]
    assert base.config["created"] == "2024-01-01T00:00:00Z"
    assert base.manifest_media_type == mf.OCI_MANIFEST and len(base.layers) == 1
    assert base.layers[0].diff_id == base.layers[0].blob_digest  # stored uncompressed

    child = commit(
        store,
        base,
        _layer(tmp_path, {"etc/b": b"b"}),
        config={"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        history={"created_by": "RUN make b"},
        tags=["pyc-test/child:1"],
    )
    assert [lyr.diff_id for lyr in child.layers[:1]] == [base.layers[0].diff_id]
    assert child.layers[0].chain_id == base.layers[0].chain_id  # parent's layer shared, not copied
    assert len(child.layers) == 2 and child.config["rootfs"]["diff_ids"][0] == base.layers[0].diff_id
    assert [h["created_by"] for h in child.config["history"]] == ["COPY a /etc/a", "RUN make b"]
    dirs = store.layer_dirs(child)
    assert (Path(dirs[0]) / "etc" / "b").read_bytes() == b"b" and (Path(dirs[1]) / "etc" / "a").exists()
    manifest = json.loads(store.read_blob(child.manifest_digest))
    assert [lyr["mediaType"] for lyr in manifest["layers"]] == [mf.OCI_LAYER, mf.OCI_LAYER]


def test_empty_step_adds_history_only(store: ImageStore, tmp_path: Path) -> None:
    base = commit(store, None, _layer(tmp_path, {"a": b"a"}), config={}, history={"created_by": "COPY"})
    child = commit(
        store, base, None, config={"Cmd": ["x"]}, history={"created_by": "CMD x"}, tags=["pyc-test/e"]
    )
    assert [lyr.chain_id for lyr in child.layers] == [lyr.chain_id for lyr in base.layers]
    assert child.config["history"][-1]["empty_layer"] is True
    assert "empty_layer" not in child.config["history"][0]
    assert child.config["config"] == {"Cmd": ["x"]} and child.id != base.id
    assert store.resolve("pyc-test/e").id == child.id


def test_same_input_same_diff_id_and_image(store: ImageStore, tmp_path: Path) -> None:
    hist = {"created_by": "COPY", "created": "2024-01-01T00:00:00Z"}
    up = _upper(tmp_path)
    one, two = io.BytesIO(), io.BytesIO()
    write_diff(up, one)
    write_diff(up, two)
    one.seek(0)
    two.seek(0)
    a = commit(store, None, one, config={}, history=hist)
    b = commit(store, None, two, config={}, history=hist)
    assert a.layers[0].diff_id == b.layers[0].diff_id
    assert a.id == b.id  # same parent, layer, config and history: the same image


def test_docker_parent_keeps_docker_manifest(store: ImageStore, tmp_path: Path) -> None:
    layer = _layer(tmp_path, {"a": b"a"}).getvalue()
    ldesc = store.write_blob(layer, media_type=mf.DOCKER_LAYER)
    cfg = mf.new_image_config(diff_ids=[ldesc.digest], created="2024-01-01T00:00:00Z")
    cdesc = store.write_blob(mf.canonical_json(cfg), media_type=mf.DOCKER_CONFIG)
    manifest = mf.canonical_json(mf.new_manifest(cdesc, [ldesc], oci=False))
    parent = store.register_image(manifest, mf.DOCKER_MANIFEST)
    child = commit(store, parent, _layer(tmp_path, {"b": b"b"}), config={}, history={"created_by": "RUN"})
    assert child.manifest_media_type == mf.DOCKER_MANIFEST
    doc = json.loads(store.read_blob(child.manifest_digest))
    assert doc["config"]["mediaType"] == mf.DOCKER_CONFIG
    assert [lyr["mediaType"] for lyr in doc["layers"]] == [mf.DOCKER_LAYER, mf.DOCKER_LAYER]


class _Broken(io.RawIOBase):
    """A layer stream that fails half way, like a disk error while spooling."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.sent:
            raise OSError(5, "Input/output error")
        self.sent = True
        return bytes(512)


def test_failure_half_way_leaves_no_image_and_no_tag(store: ImageStore, tmp_path: Path) -> None:
    base = commit(store, None, _layer(tmp_path, {"a": b"a"}), config={}, history={}, tags=["pyc-test/b:1"])
    before = {i.id for i in store.list_images()}
    with pytest.raises(OSError):
        commit(store, base, _Broken(), config={}, history={}, tags=["pyc-test/b:2"])  # type: ignore[arg-type]
    bad = io.BytesIO(b"not a tar at all" * 64)
    with pytest.raises(EngineError):
        commit(store, base, bad, config={}, history={}, tags=["pyc-test/b:3"])
    assert {i.id for i in store.list_images()} == before
    for tag in ("pyc-test/b:2", "pyc-test/b:3"):
        with pytest.raises(EngineError):
            store.resolve(tag)
    assert store.resolve("pyc-test/b:1").id == base.id
    store.prune()  # what the failures left is unreferenced and goes with a prune
    assert {i.id for i in store.list_images()} == before


def test_scratch_with_only_config_steps(store: ImageStore) -> None:
    """`FROM scratch` + `CMD`: an image with no layers at all, one history entry per step."""
    first = commit(store, None, None, config={"Cmd": ["x"]}, history={"created_by": "CMD x"})
    second = commit(store, first, None, config={"Cmd": ["y"]}, history={"created_by": "CMD y"})
    assert first.layers == () and second.config["rootfs"]["diff_ids"] == []
    assert [h["created_by"] for h in second.config["history"]] == ["CMD x", "CMD y"]
    assert all(h["empty_layer"] for h in second.config["history"])
