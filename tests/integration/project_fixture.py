"""Set-up and teardown shared by the tests that drive whole projects through the CLI on their own root.

`own_root` gives a project directory and a state root holding the test image, and cleans both up after;
`clean_root` removes whatever a failing test left (containers, the supervisor, networks, volumes, our
firewall chains); `assert_nothing_left` then proves the state root holds nothing in the kernel or the
database: no container row, no iptables rule of its scope, no mount under it. `wait_for` polls a
condition until it holds.
"""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from engine.api import Engine
from engine.containers import cgroups
from engine.errors import EngineError

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)
    return value


@contextmanager
def own_root(tmp_path: Path, rootfs_tar: bytes, image: str) -> Iterator[tuple[Path, Path, str, str]]:
    """(state root, project directory, project name, cgroup parent), the root holding `image`.

    Afterwards everything under the root is removed (`clean_root`) with the cgroup parent, and, unless the
    block raised, `assert_nothing_left` proves it.
    """
    name = "pyct" + uuid.uuid4().hex[:8]
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    directory = tmp_path / name
    directory.mkdir()
    root = tmp_path / "root"
    try:
        with Engine.open(str(root)) as engine:
            engine.import_image(io.BytesIO(rootfs_tar), image)
        yield root, directory, name, parent
    finally:
        try:
            clean_root(root)
        finally:
            cgroups.remove_parent(parent)
    assert_nothing_left(root)


def clean_root(root: Path) -> None:
    from engine.net import firewall
    from engine.supervise import client

    with Engine.open(str(root)) as engine:
        try:
            for record in engine.list_containers(all=True):
                with suppress(EngineError):
                    engine.remove_container(record["id"], force=True, volumes=True)
        finally:
            with suppress(EngineError):
                client.shutdown(engine.root, timeout=10)
            for network in engine.list_networks():
                with suppress(EngineError):
                    engine.remove_network(network.id)
            for volume in engine.list_volumes():
                with suppress(EngineError):
                    engine.remove_volume(volume.name, force=True)
            firewall.sync(engine.networks.scope, [], [])


def assert_nothing_left(root: Path) -> None:
    from engine.net.manager import scope_of
    from engine.state.root import StateRoot

    state = StateRoot.open(root)
    try:
        leftovers = [f"container {row['id']}" for row in state.db.query("SELECT id FROM containers")]
        rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
        scope = scope_of(state)
        leftovers += [line for line in rules.splitlines() if line.startswith("-A") and scope in line]
        with open("/proc/self/mountinfo") as mounts:
            leftovers += [f"mount {line.split()[4]}" for line in mounts if str(root) in line]
    finally:
        state.close()
    assert leftovers == []
