"""Teardown shared by the tests that drive whole projects through the CLI on their own state root.

`clean_root` removes whatever a failing test left (containers, the supervisor, networks, volumes, our
firewall chains); `assert_nothing_left` then proves the state root holds nothing in the kernel or the
database: no container row, no iptables rule of its scope, no mount under it. `wait_for` polls a
condition until it holds.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TypeVar

from engine.api import Engine
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
