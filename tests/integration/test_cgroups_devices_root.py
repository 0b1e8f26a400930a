"""The v1 devices cgroup on real containers: Docker's allow-list lets a container make any device node
but open only its own few devices; privileged opens anything. Skipped on pure v2 (no devices files)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import spawn
from engine.containers.cgroups import Cgroup, detect_layout, remove_parent
from engine.containers.spec import ContainerSpec, Process, Resources
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)
if "devices" not in detect_layout().v1:
    pytest.skip(
        "no v1 devices hierarchy (pure v2: eBPF device programs are out of scope)", allow_module_level=True
    )

# sda's numbers: opening the node is refused by the cgroup before the driver is even asked
PROBE = (
    "mknod /tmp/sda b 8 0 && echo made; head -c1 /tmp/sda >/dev/null; echo null > /dev/null && echo nullok"
)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateRoot]:
    root = StateRoot.open(tmp_path / "root")
    try:
        yield root
    finally:
        root.close()


@pytest.fixture
def parent() -> Iterator[str]:
    name = f"pyc-test-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        remove_parent(name)


def run_in_cgroup(state: StateRoot, parent: str, script: str, *, privileged: bool) -> str:
    """Run `script` in a busybox container (default capabilities, CAP_MKNOD among them) in its own
    cgroup with the device list applied as for a privileged container or not."""
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    spec = ContainerSpec(
        id=cid,
        name=cid,
        image_id="sha256:test",
        layer_dirs=(str(busybox_rootfs()),),
        process=Process(args=("/bin/sh", "-c", script)),
    )
    group = Cgroup.create(cid, parent=parent)
    r, w = os.pipe()
    pid = None
    try:
        group.apply(Resources(), privileged=privileged)
        pid = spawn.start(spec, state, stdio=(0, w, w), cgroup=group)
        os.close(w)
        w = -1
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        spawn.wait(pid)
        pid = None
        return b"".join(chunks).decode()
    finally:
        if pid is not None:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(r)
        if w >= 0:
            os.close(w)
        spawn.cleanup(state, cid)
        group.remove()


def test_default_list_allows_mknod_but_not_opening_a_host_device(state, parent):
    out = run_in_cgroup(state, parent, PROBE, privileged=False)
    assert "made" in out, out  # `b *:* m`
    assert "Operation not permitted" in out, out  # no r on 8:0
    assert "nullok" in out, out  # c 1:3 rwm


def test_default_list_is_written_to_the_cgroup(state, parent):
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    group = Cgroup.create(cid, parent=parent)
    try:
        group.apply(Resources())
        rules = set((group.v1["devices"] / "devices.list").read_text().split("\n"))
    finally:
        group.remove()
    assert "a *:* rwm" not in rules
    assert {"c 1:3 rwm", "c 136:* rwm", "b *:* m", "c 10:200 rwm"} <= rules


def test_privileged_list_opens_the_node(state, parent):
    """Control: with the privileged rule (allow all) the same open is not refused by the cgroup (ENXIO
    or data, never EPERM). The spec stays unprivileged: only the cgroup side is under test."""
    out = run_in_cgroup(state, parent, PROBE, privileged=True)
    assert "made" in out and "nullok" in out, out
    assert "Operation not permitted" not in out, out
