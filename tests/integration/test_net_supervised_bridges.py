"""Network bridges made by the supervisor for a CLI (client.SupervisedBridges), and by the CLI itself when
no supervisor runs. Every bridge, rule and supervisor a test makes is removed even when it fails."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.net import firewall
from engine.net.manager import NetworkManager, scope_of
from engine.state.root import StateRoot
from engine.supervise import client

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]

# One network created and removed through engine.api in a fresh process, as a CLI does; reports whether
# that process imported pyroute2 and whether the bridge existed between the two steps.
SCRIPT = """
import json, socket, sys
from engine.api import Engine
from engine.net.types import NetworkSpec
with Engine.open(sys.argv[1]) as engine:
    network = engine.create_network(NetworkSpec(name=sys.argv[2]))
    try:
        socket.if_nametoindex(network.bridge)
        made = True
    except OSError:
        made = False
    engine.remove_network(network.id)
print(json.dumps({"bridge": network.bridge, "made": made, "pyroute2": "pyroute2" in sys.modules}))
"""


@pytest.fixture
def root(tmp_path: Path) -> Iterator[StateRoot]:
    state = StateRoot.open(tmp_path / "root")
    try:
        yield state
    finally:
        manager = NetworkManager(state)
        for network in manager.list_networks():
            with suppress(EngineError):
                manager.remove_network(network.id)
        with suppress(EngineError):
            client.shutdown(state, timeout=10)
        firewall.sync(scope_of(state), [], [])


def run_cli_process(root: StateRoot) -> dict:
    name = f"pyct-{secrets.token_hex(3)}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root.path), name],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def gone(bridge: str) -> bool:
    try:
        socket.if_nametoindex(bridge)
    except OSError:
        return True
    return False


def test_with_a_supervisor_the_cli_never_imports_pyroute2(root: StateRoot) -> None:
    client.ensure_supervisor(root, cgroup_parent=f"pyc-test-{os.getpid()}")
    outcome = run_cli_process(root)
    assert outcome["made"], "the supervisor made no bridge"
    assert not outcome["pyroute2"], "the CLI process imported pyroute2 although a supervisor runs"
    # the supervisor deletes a removed network's bridge in the background, then the bridge's note
    notes = root.path / "run" / "bridges-to-delete"
    assert wait_for(lambda: gone(outcome["bridge"]) and not (notes / outcome["bridge"]).exists())


def test_a_retired_bridge_is_gone_before_the_supervisor_makes_another(root: StateRoot) -> None:
    """Retired bridges go in the background; a bridge asked for right after (maybe on the same subnet)
    is made only once they are gone, so two bridges never hold one gateway address."""
    client.ensure_supervisor(root, cgroup_parent=f"pyc-test-{os.getpid()}")
    old, new = f"pyct-{secrets.token_hex(3)}", f"pyct-{secrets.token_hex(3)}"
    gateway = ["172.31.250.1/24"]
    ports = [f"{old}p{i}" for i in range(24)]  # ports make the deletion slow (~1.5 ms each): a window
    client.request(root, "bridge", action="ensure", name=old, addresses=gateway, mtu=1500)
    try:
        for port in ports:
            pair = ["ip", "link", "add", port, "type", "veth", "peer", "name", port + "x"]
            subprocess.run(pair, check=True)
            subprocess.run(["ip", "link", "set", port, "master", old], check=True)
        assert not gone(old)
        client.request(root, "bridge", action="retire", name=old)  # answered before the deletion
        client.request(root, "bridge", action="ensure", name=new, addresses=gateway, mtu=1500)
        assert gone(old) and not gone(new)
    finally:
        for name in (old, new):
            client.request(root, "bridge", action="delete", name=name)
        for port in ports:
            subprocess.run(["ip", "link", "del", port], capture_output=True)


def wait_for(condition, timeout: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_without_a_supervisor_the_cli_makes_the_bridge_itself(root: StateRoot) -> None:
    outcome = run_cli_process(root)
    assert outcome["made"]
    assert outcome["pyroute2"], "no supervisor runs: the CLI must have done the netlink work itself"
    assert gone(outcome["bridge"])
    assert not client.ping(root), "making a network must not start a supervisor"
