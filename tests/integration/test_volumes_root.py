"""Named volumes as root: copy-up keeps owners, setuid bits, xattrs, devices and hard links; the mount
sources of driver_opts volumes are accepted by the kernel (mounted in a throw-away mount namespace)."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess

import pytest

from engine.state import StateRoot
from engine.volumes import VolumeStore

pytestmark = pytest.mark.root

# vfs_cap_data v2 granting cap_net_bind_service (bit 10) permitted + effective
CAP_NET_BIND = bytes.fromhex("0100000200040000000000000000000000000000")


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture
def root(tmp_path):
    state = StateRoot.open(tmp_path / "pyc-test-root")
    try:
        yield state
    finally:
        state.close()


@pytest.fixture
def store(root):
    return VolumeStore(root)


def _image_dir(tmp_path):
    """What an image has at the mount point: foreign owners, setuid, xattrs, a device, hard links."""
    image = tmp_path / "image" / "var-lib-app"
    (image / "owned").mkdir(parents=True)
    os.chown(image, 999, 998)
    image.chmod(0o750)
    os.chown(image / "owned", 1234, 4321)
    tool = image / "owned" / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chown(tool, 0, 0)
    tool.chmod(0o4755)
    os.setxattr(tool, "security.capability", CAP_NET_BIND)
    os.setxattr(tool, "trusted.pyc-test", b"t")
    os.setxattr(tool, "user.pyc-test", b"u")
    os.link(tool, image / "tool-again")
    os.mknod(image / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    (image / "null").chmod(0o666)  # mknod is subject to the umask
    link = image / "link"
    link.symlink_to("owned/tool")
    os.chown(link, 77, 78, follow_symlinks=False)
    return image


def test_copy_up_keeps_owners_modes_xattrs_devices_and_links(store, tmp_path):
    image = _image_dir(tmp_path)
    volume = store.create("pyc-test-copy")
    assert store.populate_from_image(volume, image)
    data = volume.mountpoint
    top = data.stat()
    assert (top.st_uid, top.st_gid, stat.S_IMODE(top.st_mode)) == (999, 998, 0o750)
    owned = (data / "owned").stat()
    assert (owned.st_uid, owned.st_gid) == (1234, 4321)
    tool = (data / "owned" / "tool").stat()
    assert stat.S_IMODE(tool.st_mode) == 0o4755  # setuid survives: chown happened before chmod
    assert os.getxattr(data / "owned" / "tool", "security.capability") == CAP_NET_BIND
    assert os.getxattr(data / "owned" / "tool", "trusted.pyc-test") == b"t"
    assert os.getxattr(data / "owned" / "tool", "user.pyc-test") == b"u"
    assert os.path.samefile(data / "owned" / "tool", data / "tool-again") and tool.st_nlink == 2
    null = (data / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    link = (data / "link").lstat()
    assert (link.st_uid, link.st_gid) == (77, 78)


def _populate(path: str, image: str, results) -> None:
    with StateRoot.open(path) as state:
        store = VolumeStore(state)
        results.put(store.populate_from_image(store.get("pyc-test-race"), image))


def test_two_processes_copy_up_once(root, store, tmp_path):
    image = _image_dir(tmp_path)
    store.create("pyc-test-race")
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    args = (str(root.path), str(image), results)
    workers = [context.Process(target=_populate, args=args) for _ in range(2)]
    try:
        for worker in workers:
            worker.start()
        outcomes = sorted(results.get(timeout=60) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join()
    assert outcomes == [False, True]


def _mount_in_private_namespace(kind: str, source: str, options: tuple[str, ...], target) -> str:
    """Mount as the rootfs code will, in a mount namespace that dies with the command (nothing leaks)."""
    flags = ["-o", ",".join(options)] if options else []
    if kind == "bind":
        mount = ["mount", "--bind", *flags, source, str(target)]
        if "ro" in options:
            remount = ["mount", "-o", "remount,bind,ro", str(target)]
            mount = ["mount", "--bind", source, str(target), "&&", *remount]
    else:
        mount = ["mount", "-t", kind, *flags, source, str(target)]
    script = " ".join(mount) + f" && stat -c '%a %m' {target} && (touch {target}/pyc-test-w 2>/dev/null"
    script += " && echo writable || echo read-only)"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tmpfs_volume_options_are_accepted_by_the_kernel(store, tmp_path):
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m,mode=1777"}
    volume = store.create("pyc-test-tmpfs", driver_opts=opts)
    target = tmp_path / "pyc-test-target"
    target.mkdir()
    out = _mount_in_private_namespace(*store.mount_source(volume), target)
    assert out.split()[:2] == ["1777", str(target)] and "writable" in out
    assert not list(target.iterdir())  # the mount and its file vanished with the namespace


def test_read_only_bind_volume(store, tmp_path):
    host = tmp_path / "pyc-test-host"
    host.mkdir()
    volume = store.create("pyc-test-bind", driver_opts={"type": "none", "o": "bind,ro", "device": str(host)})
    target = tmp_path / "pyc-test-target"
    target.mkdir()
    out = _mount_in_private_namespace(*store.mount_source(volume), target)
    assert "read-only" in out
    assert not list(host.iterdir())
