"""NetworkManager on a real state root: bridges, namespaces, veths, rules and real busybox containers.

Every network, namespace and container a test makes is torn down by the fixtures even when the test
fails (containers killed and reaped, `release` + `unregister` per container, networks removed, our
firewall scope emptied). Traffic goes only to loopback and between the test's own namespaces.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from engine.containers import cgroups, records, spawn
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, NetworkAttachment, NetworkSetup, PortBinding, Process
from engine.errors import NetworkInUse, NetworkNotFound
from engine.net import firewall, links
from engine.net.manager import NetworkManager, host_nameservers
from engine.net.types import IpamPool, NetworkSpec
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "pyc-test/busybox:1"


class Harness:
    """Containers (ContainerManager, so register runs as in production) and networks, undone at the end."""

    def __init__(self, root: StateRoot, parent: str) -> None:
        self.root = root
        self.containers = ContainerManager(root, cgroup_parent=parent)
        self.net: NetworkManager = self.containers.networks
        self.networks: list[str] = []
        self.pids: list[int] = []

    def network(self, **fields) -> str:  # type: ignore[no-untyped-def]
        name = "pyct-" + uuid.uuid4().hex[:8]
        if "ipam" not in fields:
            subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
            fields["ipam"] = (IpamPool(subnet=subnet),)
        self.networks.append(name)
        self.net.create_network(NetworkSpec(name=name, **fields))
        return name

    def create(self, *args: str, networks=(), env=(), **kw) -> ContainerSpec:  # type: ignore[no-untyped-def]
        """A container recorded through ContainerManager.create (endpoints registered)."""
        image = self.containers.images.resolve(IMAGE)
        attachments = tuple(n if isinstance(n, NetworkAttachment) else NetworkAttachment(n) for n in networks)
        spec = ContainerSpec(
            id="",
            name="pyc-test-" + uuid.uuid4().hex[:8],
            image_id=image.id,
            layer_dirs=(),
            process=Process(args=args or ("sleep", "1000"), env=(("PATH", "/bin"), *env)),
            network_mode="bridge",
            networks=attachments,
            image=IMAGE,
            **kw,
        )
        record = self.containers.create(spec)
        return self.containers.spec_of(record)

    def start(self, spec: ContainerSpec, setup: NetworkSetup | None, out: int) -> int:
        null = os.open("/dev/null", os.O_RDONLY)
        try:
            pid = spawn.start(spec, self.root, stdio=(null, out, out), network=setup)
        finally:
            os.close(null)
        self.pids.append(pid)
        return pid

    def cleanup(self) -> None:
        for pid in self.pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(pid, 0)
        try:
            for record in records.list_all(self.root.db):
                self.containers.remove(record["id"], force=True, volumes=True)
        finally:
            for name in self.networks:
                with suppress(NetworkNotFound):
                    self.net.remove_network(name)
            firewall.sync(self.net.scope, [], [])


@pytest.fixture
def h(tmp_path: Path, rootfs_tar: bytes) -> Iterator[Harness]:
    root = StateRoot.open(tmp_path / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    harness = Harness(root, parent)
    try:
        harness.containers.images.import_rootfs(io.BytesIO(rootfs_tar), IMAGE)
        yield harness
    finally:
        try:
            harness.cleanup()
        finally:
            cgroups.remove_parent(parent)
            root.close()


@contextmanager
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    try:
        yield r, w
    finally:
        for fd in (r, w):
            with suppress(OSError):
                os.close(fd)


def output_of(h: Harness, spec: ContainerSpec, setup: NetworkSetup | None) -> tuple[int, str]:
    with pipe() as (r, w):
        pid = h.start(spec, setup, w)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return spawn.wait(pid), b"".join(chunks).decode()


def host_links() -> set[str]:
    text = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0].split("@")[0] for line in text.splitlines() if line.strip()}


def serve(h: Harness, network: str, **kw) -> tuple[ContainerSpec, NetworkSetup]:  # type: ignore[no-untyped-def]
    """A busybox httpd answering `hello` on port 80, started and listening."""
    script = "echo hello > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
    spec = h.create("/bin/sh", "-c", script, networks=(network,), **kw)
    setup = h.net.prepare(spec)
    assert setup is not None
    devnull = os.open("/dev/null", os.O_WRONLY)
    try:
        h.start(spec, setup, devnull)
    finally:
        os.close(devnull)
    return spec, setup


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.read().decode()
    except OSError:
        return None


def test_two_containers_reach_each_other_by_address(h):
    name = h.network()
    server, _ = serve(h, name)
    server_ip = h.net.store.endpoints_of(server.id)[0].ipv4
    script = "cat /etc/hosts /etc/resolv.conf; sleep 0.3; wget -qO- http://$IP/"
    client = h.create("/bin/sh", "-c", script, networks=(name,), env=(("IP", server_ip),))
    setup = h.net.prepare(client)
    code, out = output_of(h, client, setup)
    gateway = h.net.get_network(name).subnets[0].gateway
    client_ip = h.net.store.endpoints_of(client.id)[0].ipv4
    assert f"{client_ip}\t{client.id[:12]}" in out
    assert f"nameserver {gateway}" in out
    assert code == 0 and out.rstrip().endswith("hello")
    doc = h.net.inspect_network(name)
    assert set(doc["Containers"]) == {server.id, client.id}
    assert doc["Containers"][server.id]["IPv4Address"] == f"{server_ip}/24"
    assert gateway in h.net.gateways()


def test_a_container_joining_a_network_whose_bridge_is_not_made_yet_makes_it(h):
    """create_network makes the bridge after the row, outside the network lock: a process that finds the
    row in that moment (parallel builds joining `pycompose-build`) must not fail with "no such bridge"."""
    name = h.network()
    network = h.net.get_network(name)
    links.delete_bridge(network.bridge)  # the row is there, its bridge not (yet)
    spec = h.create("/bin/sh", "-c", "ip addr show eth0", networks=(name,))
    setup = h.net.prepare(spec)
    code, out = output_of(h, spec, setup)
    assert code == 0, out
    assert network.bridge in host_links()
    assert h.net.store.endpoints_of(spec.id)[0].ipv4 in out


def test_a_removal_cut_short_leaves_a_note_the_sweep_completes_and_no_bridge_is_made_again(h):
    """The row goes before the bridge (which is deleted outside the lock): a sweep in between must not make
    the bridge again, and a removal killed in between leaves its note for the sweep."""
    name = h.network()
    bridge = h.net.get_network(name).bridge

    def killed(_bridge: str) -> None:
        raise KeyboardInterrupt  # the process dies after the row went, before the bridge did

    h.net.delete_doomed = killed  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        h.net.remove_network(name)
    del h.net.delete_doomed
    with pytest.raises(NetworkNotFound):
        h.net.get_network(name)
    assert bridge in host_links()
    h.net.sweep()
    assert bridge not in host_links()
    assert not (h.root.path / "run" / "bridges-to-delete" / bridge).exists()


def test_network_in_use_cannot_be_removed(h):
    name = h.network()
    spec = h.create(networks=(name,))
    bridge = h.net.get_network(name).bridge
    with pytest.raises(NetworkInUse):
        h.net.remove_network(name)
    assert bridge in host_links()
    assert h.net.prune_networks() == []
    h.containers.remove(spec.id)
    assert h.net.prune_networks() == [name]
    assert bridge not in host_links()
    with pytest.raises(NetworkNotFound):
        h.net.get_network(name)


def test_prepare_release_leave_nothing(h):
    name = h.network()
    other = h.network()
    spec = h.create(networks=(name, other), ports=(PortBinding(80, host_ip="127.0.0.1"),))
    ours = "pv" + spec.id[:10]  # other engineers' tests add and remove links meanwhile: count ours only
    rules_before = firewall.our_rules(h.net.scope)
    setup = h.net.prepare(spec)
    assert setup is not None and Path(setup.netns_path).exists()
    veths = {e.host_veth for e in h.net.store.endpoints_of(spec.id)}
    assert len(veths) == 2 and veths <= host_links()
    assert len(firewall.our_rules(h.net.scope)) > len(rules_before)
    h.net.release(spec.id)
    h.net.release(spec.id)  # idempotent
    assert not {n for n in host_links() if n.startswith(ours)}
    assert {h.net.get_network(n).bridge for n in (name, other)} <= host_links()
    assert not Path(setup.netns_path).exists()
    assert firewall.our_rules(h.net.scope) == rules_before
    assert h.net.ports_of(spec.id) == []
    assert not any(e.active or e.ipv4 for e in h.net.store.endpoints_of(spec.id))


def test_published_port_answers_on_loopback_with_a_random_port(h):
    links.enable_forwarding()
    name = h.network()
    spec, _ = serve(h, name, ports=(PortBinding(80, host_ip="127.0.0.1"),))
    (published,) = h.net.ports_of(spec.id)
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert published.host_ip == "127.0.0.1" and low <= published.host_port <= high
    assert published.container_port == 80 and published.protocol == "tcp"
    url = f"http://127.0.0.1:{published.host_port}/"
    wait_for(lambda: fetch(url) == "hello\n")


def test_sweep_removes_crash_leftovers(h):
    name = h.network()
    spec = h.create(networks=(name,))
    setup = h.net.prepare(spec)  # "crash": the container exited, nobody released its network
    records.record_exited(h.root.db, spec.id, 137, False, "2026-01-01T00:00:00Z")
    stray = h.net.netns_path("pyct" + "f" * 60)
    links.create_netns(str(stray))
    veth = h.net.store.endpoints_of(spec.id)[0].host_veth
    bridge = h.net.get_network(name).bridge
    links.delete_bridge(bridge)  # and the bridge of a live row went missing
    h.net.sweep()
    assert not Path(setup.netns_path).exists() and not stray.exists()
    assert veth not in host_links() and bridge in host_links()
    assert not any(e.active for e in h.net.store.endpoints_of(spec.id))


def test_container_inspect_and_remove_through_the_container_manager(h):
    name = h.network()
    alias = NetworkAttachment(name, aliases=("web",))
    spec = h.create(networks=(alias,), ports=(PortBinding(80, host_ip="127.0.0.1"),), hostname="www")
    before = h.containers.inspect(spec.id)["NetworkSettings"]
    assert before["Networks"][name]["IPAddress"] == "" and before["Ports"] == {}
    assert before["Networks"][name]["Aliases"][:2] == ["web", spec.name]
    h.net.prepare(spec)
    settings = h.containers.inspect(spec.id)["NetworkSettings"]
    network = settings["Networks"][name]
    (port,) = h.net.ports_of(spec.id)
    assert network["IPAddress"].startswith(h.net.get_network(name).subnets[0].subnet.rsplit(".", 1)[0])
    assert network["IPPrefixLen"] == 24 and network["Gateway"] == h.net.get_network(name).subnets[0].gateway
    assert network["MacAddress"].startswith("02:42:")
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port.host_port)}]}
    json.dumps(settings)
    veth = h.net.store.endpoints_of(spec.id)[0].host_veth
    h.containers.remove(spec.id)
    assert veth not in host_links() and not h.net.netns_path(spec.id).exists()
    assert h.net.store.endpoints_in(h.net.get_network(name).id) == []
    with pytest.raises(NetworkNotFound):
        h.create(networks=("pyct-missing",))
    assert records.list_all(h.root.db) == []


def test_names_for_the_resolver_honour_links_for_the_asker_only(h):
    name = h.network()
    server = h.create(networks=(NetworkAttachment(name, aliases=("db",)),), hostname="dbhost")
    client = h.create(networks=(name,), links=((server.name, "database"),), dns=("192.0.2.53",))
    h.net.prepare(server)
    h.net.prepare(client)
    server_ip = h.net.store.endpoints_of(server.id)[0].ipv4
    client_ip = h.net.store.endpoints_of(client.id)[0].ipv4
    names = h.net.names()
    for asked in ("db", "DB.", server.name, "dbhost", server.id[:12], "database"):
        assert names.lookup(client_ip, asked) == ([server_ip], []), asked
    assert names.lookup(server_ip, "database") is None  # the link alias is the client's alone
    assert names.lookup(client_ip, "example.org") is None
    assert names.reverse(client_ip, server_ip) is not None
    assert names.upstreams(client_ip) == ["192.0.2.53"]
    assert names.upstreams(server_ip) == host_nameservers()
    h.net.release(server.id)
    assert names.lookup(client_ip, "db") in (None, ([], []))


RESPONDER = """
import asyncio, sys
from engine.net.dns import Responder
from engine.net.manager import NetworkManager
from engine.state.root import StateRoot

async def main():
    with StateRoot.open(sys.argv[1]) as root:
        manager = NetworkManager(root)
        responder = Responder(manager.names())
        await responder.sync(manager.gateways())
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await responder.close()

asyncio.run(main())
"""


@contextmanager
def responder(h: Harness) -> Iterator[None]:
    """The DNS responder in its own process (the tests spawn containers: no threads here)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", RESPONDER, str(h.root.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        yield
    finally:
        proc.kill()
        proc.wait()


def test_containers_reach_each_other_by_name_through_the_responder(h):
    name = h.network()
    server, _ = serve(h, name)
    script = "sleep 0.2; wget -qO- http://$TARGET/ && nslookup $TARGET"
    client = h.create("/bin/sh", "-c", script, networks=(name,), env=(("TARGET", server.name),))
    setup = h.net.prepare(client)
    with responder(h):
        code, out = output_of(h, client, setup)
    server_ip = h.net.store.endpoints_of(server.id)[0].ipv4
    assert code == 0, out
    assert out.startswith("hello\n") and server_ip in out
