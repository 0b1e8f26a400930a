"""Filesystem volumes (driver_opts type=tmpfs) are mounted once on the host and shared, as Docker's local
driver: two real containers see one tmpfs; the last release unmounts it; a crash's leftover is swept;
`volume rm` refuses a mounted volume. Every mount, container and directory is removed, even on failure."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import records, spawn
from engine.containers.manager import volume_sources
from engine.containers.spec import ContainerSpec, Mount, Process
from engine.errors import VolumeInUse
from engine.state.root import StateRoot
from engine.volumes import VolumeStore, mounts

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "sha256:" + "e" * 64
TMPFS = {"type": "tmpfs", "device": "tmpfs", "o": "size=4m,mode=1777"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[VolumeStore]:
    root = StateRoot.open(tmp_path / "pyc-test-root")
    root.db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', 0, 'linux', 'amd64', 'now')",
        (IMAGE, IMAGE),
    )
    volumes = VolumeStore(root)
    try:
        yield volumes
    finally:
        for data in (tmp_path / "pyc-test-root" / "volumes").glob("*/_data"):
            while os.path.ismount(data):
                subprocess.run(["umount", "-l", str(data)], check=False)
        root.close()


def make_spec(name: str, script: str) -> ContainerSpec:
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    return ContainerSpec(
        id=cid,
        name=cid,
        image_id=IMAGE,
        layer_dirs=(str(busybox_rootfs()),),
        process=Process(args=("/bin/sh", "-c", script)),
        mounts=(Mount(type="volume", source=name, target="/data"),),
    )


@contextmanager
def container(store: VolumeStore, spec: ContainerSpec) -> Iterator[int]:
    """What the supervisor does: row, acquire_mounts, spawn, record the pid; then kill, reap,
    release_mounts, clean up. Yields the pid."""
    records.insert(
        store.db, id=spec.id, name=spec.name, image_id=IMAGE, spec_json=spec.to_json(), labels={}, created="x"
    )
    pid = None
    null = os.open("/dev/null", os.O_RDWR)
    try:
        store.acquire_mounts(spec.id, [m.source for m in spec.mounts if m.source])
        pid = spawn.start(spec, store.root, stdio=(null, null, null), volumes=volume_sources(store, spec))
        records.record_started(store.db, spec.id, pid, "now")
        yield pid
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            spawn.wait(pid)
            records.record_exited(store.db, spec.id, 137, False, "now")
        os.close(null)
        store.release_mounts(spec.id)
        spawn.cleanup(store.root, spec.id)
        records.delete(store.db, spec.id)


def wait_for(path: Path, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()):
            return text
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_two_containers_share_one_tmpfs_until_the_last_stops(store, monkeypatch):
    volume = store.create("pyc-test-shared", driver_opts=TMPFS)
    data = volume.mountpoint
    writer = make_spec(volume.name, "echo from-a > /data/a; sleep 100")
    reader = make_spec(
        volume.name, "while [ ! -f /data/a ]; do sleep 0.02; done; cat /data/a > /data/b; sleep 100"
    )
    with container(store, writer):
        assert (
            store.is_mounted(volume.name) and os.statvfs(data).f_blocks * os.statvfs(data).f_frsize == 4 << 20
        )
        with container(store, reader):
            assert wait_for(data / "b") == "from-a\n"  # the reader saw the writer's file: one filesystem
            assert store.host_mounts.holders(volume.name) == sorted([writer.id, reader.id])
            with pytest.raises(VolumeInUse):
                store.remove(volume.name)  # used (rows) and mounted
        # the reader is gone; the writer is running, so no sweep may unmount, even past the start grace
        monkeypatch.setattr(mounts, "START_GRACE", 0.0)
        assert store.sweep_mounts() == [volume.name]
        assert (data / "a").read_text() == "from-a\n"
    assert not store.is_mounted(volume.name)  # the last release unmounted it
    assert not (data / "a").exists()  # tmpfs content went with it, as Docker's
    assert store.host_mounts.holders(volume.name) == []
    assert store.remove(volume.name)


def test_each_start_after_all_stopped_gets_a_fresh_tmpfs(store):
    volume = store.create("pyc-test-fresh", driver_opts=TMPFS)
    first = make_spec(volume.name, "echo 1 > /data/one; sleep 100")
    with container(store, first):
        wait_for(volume.mountpoint / "one")
    second = make_spec(volume.name, "ls /data > /data/list; sleep 100")
    with container(store, second):
        assert wait_for(volume.mountpoint / "list") == "list\n"


def test_crash_leftover_is_swept_and_rm_refuses_while_mounted(store, monkeypatch):
    volume = store.create("pyc-test-crash", driver_opts=TMPFS)
    store.acquire_mounts("pyc-test-dead", [volume.name])  # a supervisor that died before spawn / release
    assert store.is_mounted(volume.name)
    with pytest.raises(VolumeInUse, match="mounted"):
        store.remove(volume.name)  # fresh holder: in its start grace
    monkeypatch.setattr(mounts, "START_GRACE", 0.0)
    assert store.sweep_mounts() == []  # no running container holds it: unmounted
    assert not store.is_mounted(volume.name) and store.host_mounts.holders(volume.name) == []
    assert store.remove(volume.name)


def test_plain_and_bind_volumes_are_not_host_mounted(store, tmp_path):
    plain = store.create("pyc-test-plain")
    device = tmp_path / "pyc-test-dev"
    device.mkdir()
    bound = store.create("pyc-test-bind", driver_opts={"type": "none", "o": "bind", "device": str(device)})
    assert store.acquire_mounts("pyc-test-c1", [plain.name, bound.name]) == []
    assert not store.is_mounted(plain.name) and not store.is_mounted(bound.name)
    assert store.host_source(plain) == str(plain.mountpoint) and store.host_source(bound) is None


def test_a_failed_mount_holds_nothing(store):
    volume = store.create("pyc-test-bad", driver_opts={"type": "pyc-no-such-fs", "device": "x"})
    with pytest.raises(Exception, match="cannot mount"):
        store.acquire_mounts("pyc-test-c2", [volume.name])
    assert store.host_mounts.holders(volume.name) == [] and not store.is_mounted(volume.name)
