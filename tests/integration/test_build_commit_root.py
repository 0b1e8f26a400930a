"""A build step for real: an overlay on the busybox layer, changes through the merged view, the upper dir
diffed into a layer, committed, then seen by a container, and carried through save/load.

Every mount is undone and every container, cgroup and state root removed even when a test fails.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.build.commit import commit, write_diff
from engine.containers import cgroups, manager, records, spawn
from engine.containers.cgroups import Cgroup
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, Process
from engine.errors import BuildError
from engine.images.archive import load_archive, save_archive
from engine.images.store import ImageStore
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

BASE = "pyc-test/busybox:1"
BUILT = "pyc-test/built:1"


@pytest.fixture
def mgr(tmp_path: Path, rootfs_tar: bytes) -> Iterator[ContainerManager]:
    root = StateRoot.open(tmp_path / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    m = ContainerManager(root, cgroup_parent=parent)
    try:
        m.images.import_rootfs(io.BytesIO(rootfs_tar), BASE)
        yield m
    finally:
        try:
            for record in records.list_all(root.db):
                m.remove(record["id"], force=True, volumes=True)
        finally:
            cgroups.remove_parent(parent)
            root.close()


@contextlib.contextmanager
def overlay(lower: list[str], base: Path) -> Iterator[Path]:
    """A build step's overlay (as the builder mounts one, kernel default options); unmounted on exit."""
    upper, work, merged = base / "upper", base / "work", base / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True)
    data = f"lowerdir={':'.join(lower)},upperdir={upper},workdir={work}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", data, str(merged)], check=True)
    try:
        yield merged
    finally:
        if subprocess.run(["umount", str(merged)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(merged)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def _step(merged: Path) -> None:
    """What a RUN might do: add, modify, delete, replace a directory, hard-link, set an xattr."""
    (merged / "newdir").mkdir()
    (merged / "newdir" / "hello").write_text("hi\n")
    os.setxattr(merged / "newdir" / "hello", "user.pyc-test", b"v")
    os.link(merged / "newdir" / "hello", merged / "newdir" / "also")
    with open(merged / "etc" / "passwd", "a") as f:
        f.write("built:x:2000:2000::/:/bin/sh\n")
    os.chmod(merged / "etc" / "passwd", 0o600)
    os.unlink(merged / "etc" / "group")
    shutil.rmtree(merged / "home")
    (merged / "home").mkdir()
    (merged / "home" / "fresh").write_text("only me\n")
    with pytest.raises(OSError) as caught:  # redirect_dir is off: a lower dir cannot be renamed
        os.rename(merged / "usr", merged / "usr2")
    assert caught.value.errno == errno.EXDEV


def _diff_file(upper: Path, path: Path) -> int:
    with open(path, "wb") as out:
        return write_diff(upper, out)


def _run(m: ContainerManager, image: str, script: str) -> tuple[int, str]:
    """Run `sh -c script` in a container of `image` (started as the supervisor would); exit code, output."""
    img = m.images.resolve(image)
    spec = ContainerSpec(
        id="",
        name="pyc-test-" + uuid.uuid4().hex[:8],
        image_id=img.id,
        layer_dirs=(),
        process=Process(args=("sh", "-c", script), env=(("PATH", "/bin:/usr/bin"),)),
        image=image,
    )
    record = m.create(spec)
    group = Cgroup.create(manager.cgroup_name(record["id"]), parent=m.cgroup_parent)
    read, write = os.pipe()
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        full = m.spec_of(record)
        pid = spawn.start(
            full, m.root, stdio=(null, write, write), volumes=m.volume_sources(full), cgroup=group
        )
    finally:
        os.close(write)
        os.close(null)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode()
    code = spawn.wait(pid)
    m.remove(record["id"], force=True)
    return code, output


def test_overlay_assumptions_hold() -> None:
    """What write_diff relies on: redirect_dir and metacopy off by default on this kernel."""
    params = Path("/sys/module/overlay/parameters")
    if not params.is_dir():
        subprocess.run(["modprobe", "overlay"], check=False)
    assert (params / "redirect_dir").read_text().strip() == "N"
    assert (params / "metacopy").read_text().strip() == "N"


def test_step_diff_commit_container_save_load(mgr: ContainerManager, tmp_path: Path) -> None:
    store = mgr.images
    base = store.resolve(BASE)
    with overlay(store.layer_dirs(base), tmp_path / "step") as merged:
        _step(merged)
    upper = tmp_path / "step" / "upper"
    group = os.lstat(upper / "etc" / "group")
    assert stat.S_ISCHR(group.st_mode) and group.st_rdev == 0  # overlay's whiteout
    assert os.getxattr(upper / "home", "trusted.overlay.opaque") == b"y"

    layer_path = tmp_path / "layer.tar"
    count = _diff_file(upper, layer_path)
    with tarfile.open(layer_path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert len(names) == count
    assert "etc/.wh.group" in names and "etc/group" not in names
    assert names.index("home") + 1 == names.index("home/.wh..wh..opq") < names.index("home/fresh")
    by_name = {m.name: m for m in members}
    assert by_name["newdir/hello"].islnk() or by_name["newdir/also"].islnk()
    assert by_name["etc/passwd"].mode == 0o600
    assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for m in members for k in m.pax_headers)
    assert by_name["newdir/hello"].pax_headers.get("SCHILY.xattr.user.pyc-test") == "v"
    again = tmp_path / "again.tar"
    _diff_file(upper, again)
    digest = hashlib.sha256(layer_path.read_bytes()).hexdigest()
    assert hashlib.sha256(again.read_bytes()).hexdigest() == digest  # same input, same diff_id

    with open(layer_path, "rb") as layer:
        image = commit(
            store,
            base,
            layer,
            config={"Env": ["PATH=/bin"], "Cmd": ["sh"]},
            history={"created_by": "RUN step"},
            tags=[BUILT],
        )
    assert image.layers[-1].diff_id == f"sha256:{digest}"
    assert store.resolve(BUILT).id == image.id and len(store.layer_dirs(image)) == 2

    script = (
        "cat /newdir/hello; test -e /etc/group || echo no-group; ls /home; tail -n 1 /etc/passwd;"
        " stat -c %h /newdir/also; ls /usr >/dev/null && echo usr-ok"
    )
    code, out = _run(mgr, BUILT, script)
    assert code == 0, out
    assert out.split() == ["hi", "no-group", "fresh", "built:x:2000:2000::/:/bin/sh", "2", "usr-ok"]

    # save -> load into another state root: the same image id, the same view
    archive = io.BytesIO()
    save_archive(store, [BUILT], archive)
    other = StateRoot.open(tmp_path / "other")
    try:
        archive.seek(0)
        load_archive(ImageStore(other), archive)
        loaded = ImageStore(other).resolve(BUILT)
        assert loaded.id == image.id
        top = Path(ImageStore(other).layer_dirs(loaded)[0])
        assert stat.S_ISCHR(os.lstat(top / "etc" / "group").st_mode)
        assert os.getxattr(top / "home", "trusted.overlay.opaque") == b"y"
    finally:
        other.close()


def test_empty_step_in_a_container(mgr: ContainerManager) -> None:
    store = mgr.images
    base = store.resolve(BASE)
    image = commit(store, base, None, config={"Cmd": ["sh"]}, history={"created_by": "CMD sh"}, tags=[BUILT])
    assert image.config["history"][-1]["empty_layer"] is True
    assert [lyr.chain_id for lyr in image.layers] == [lyr.chain_id for lyr in base.layers]
    assert _run(mgr, BUILT, "echo ok") == (0, "ok\n")


def test_overlay_bookkeeping_is_dropped_and_unsupported_features_refused(tmp_path: Path) -> None:
    up = tmp_path / "upper"
    (up / "d").mkdir(parents=True)
    (up / "d" / "f").write_text("x")
    os.setxattr(up / "d", "trusted.overlay.origin", b"\x00\xfb")
    os.setxattr(up / "d", "trusted.overlay.impure", b"y")
    os.setxattr(up / "d" / "f", "security.capability", b"\x01\x00\x00\x02" + bytes(16))
    os.mknod(up / "d" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a real device, not a whiteout
    os.chmod(up / "d" / "null", 0o666)  # past the umask
    buf = io.BytesIO()
    write_diff(up, buf)
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        heads = {m.name: m.pax_headers for m in tar.getmembers()}
    assert not any(k.startswith("SCHILY.xattr.") for k in heads["d"])
    assert "SCHILY.xattr.security.capability" in heads["d/f"]
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        null = tar.getmember("d/null")
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)

    os.setxattr(up / "d" / "f", "trusted.overlay.metacopy", b"")
    with pytest.raises(BuildError, match="metacopy"):
        write_diff(up, io.BytesIO())
    os.removexattr(up / "d" / "f", "trusted.overlay.metacopy")
    os.setxattr(up / "d", "trusted.overlay.redirect", b"/elsewhere")
    with pytest.raises(BuildError, match="redirect"):
        write_diff(up, io.BytesIO())
