"""NET I/O of `stats`: the counters of the container's own network namespace, read from /proc/<pid>/net/dev
of its PID 1. A container with only lo reads 0 / 0; one joined to a veth in namespaces the test makes
(nothing on the host's side) counts its ping traffic."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rootfs_fixture import busybox_rootfs

from engine.containers import spawn
from engine.containers.cgroups import CgroupStats
from engine.containers.manager import container_networks, stats_row
from engine.containers.spec import ContainerSpec, NetworkSetup, Process
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateRoot]:
    root = StateRoot.open(tmp_path / "root")
    try:
        yield root
    finally:
        root.close()


@pytest.fixture
def veth_netns() -> Iterator[str]:
    """Two namespaces joined by a veth (10.201.77.1 <-> .2); yields the container side's netns path."""
    tag = secrets.token_hex(3)
    ours, peer = f"pyct-{tag}-c", f"pyct-{tag}-p"
    ip = ["ip"]
    try:
        subprocess.run([*ip, "netns", "add", ours], check=True)
        subprocess.run([*ip, "netns", "add", peer], check=True)
        subprocess.run(
            [*ip, "-n", ours, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer],
            check=True,
        )
        for ns, address in ((ours, "10.201.77.2/30"), (peer, "10.201.77.1/30")):
            subprocess.run([*ip, "-n", ns, "addr", "add", address, "dev", "eth0"], check=True)
            subprocess.run([*ip, "-n", ns, "link", "set", "eth0", "up"], check=True)
        yield f"/run/netns/{ours}"
    finally:
        for ns in (ours, peer):
            subprocess.run([*ip, "netns", "del", ns], check=False, capture_output=True)


def spec(script: str, network_mode: str = "none") -> ContainerSpec:
    cid = "pyc-test-" + uuid.uuid4().hex[:12]
    process = Process(args=("/bin/sh", "-c", script))
    layers = (str(busybox_rootfs()),)
    return ContainerSpec(
        id=cid, name=cid, image_id="sha256:t", layer_dirs=layers, process=process, network_mode=network_mode
    )


def running(s: ContainerSpec, state: StateRoot, network: NetworkSetup | None = None) -> tuple[int, int]:
    r, w = os.pipe()
    try:
        pid = spawn.start(s, state, stdio=(0, w, w), network=network)
    finally:
        os.close(w)
    return pid, r


def stop(pid: int, r: int, s: ContainerSpec, state: StateRoot) -> str:
    """Kill, reap, clean up; returns what the container printed."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    spawn.wait(pid)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    spawn.cleanup(state, s.id)
    return b"".join(chunks).decode()


def test_only_loopback_reads_zero(state):
    s = spec("ping -c 2 -W 1 127.0.0.1; sleep 100")
    pid, r = running(s, state)
    try:
        time.sleep(0.3)
        networks = container_networks(pid, "none")
        lo_traffic = Path(f"/proc/{pid}/net/dev").read_text()
    finally:
        stop(pid, r, s, state)
    assert networks == {}
    assert " lo:" in lo_traffic  # lo is there (and carried the ping) but is not counted
    row = stats_row({"id": s.id, "name": s.name}, CgroupStats(), CgroupStats(), 1.0, networks=networks)
    assert (row["NetRx"], row["NetTx"], row["Networks"]) == (0, 0, {})


def test_veth_traffic_is_counted_per_interface(state, veth_netns):
    s = spec("ping -c 3 -i 0.2 -W 1 10.201.77.1; sleep 100", "bridge")
    pid, r = running(s, state, NetworkSetup(netns_path=veth_netns))
    try:
        deadline = time.monotonic() + 5
        networks: dict = {}
        while time.monotonic() < deadline:
            networks = container_networks(pid, "bridge")
            eth0 = networks.get("eth0", {})
            if eth0.get("rx_packets", 0) >= 4 and eth0.get("tx_packets", 0) >= 4:  # 3 pings + ARP
                break
            time.sleep(0.1)
        host_view = container_networks(os.getpid(), "bridge")
    finally:
        out = stop(pid, r, s, state)
    assert "seq=0" in out, out
    assert set(networks) == {"eth0"}
    eth = networks["eth0"]
    assert eth["tx_packets"] >= 3 and eth["rx_packets"] >= 3  # 3 echo requests out, 3 replies in
    assert eth["tx_bytes"] >= 3 * 98 and eth["rx_bytes"] >= 3 * 98  # 84-byte IP packets + ethernet header
    row = stats_row({"id": s.id, "name": s.name}, CgroupStats(), CgroupStats(), 1.0, networks=networks)
    assert row["NetRx"] == eth["rx_bytes"] and row["NetTx"] == eth["tx_bytes"]
    assert host_view != networks  # the host's namespace is not the container's
    assert container_networks(pid, "host") == {}  # host mode: nothing of its own, as docker
