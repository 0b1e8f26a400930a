"""Networks end to end: containers started by the supervisor, as `up` starts them.

Names through the embedded DNS (alias, container name, hostname, round robin over replicas), published
ports (TCP on loopback with a random port, TCP on every address, UDP), isolation between networks and of
an internal network, outbound NAT to an "outside" namespace the test builds, and an exact cleanup. Traffic
goes only to loopback, to the host's own addresses and to namespaces these tests create.
"""

from __future__ import annotations

import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from engine.containers import cgroups, records
from engine.containers.manager import ContainerManager
from engine.containers.spec import ContainerSpec, NetworkAttachment, PortBinding, Process
from engine.errors import EngineError, NetworkNotFound, PortInUse
from engine.net import firewall
from engine.net.types import IpamPool, NetworkSpec
from engine.state.root import StateRoot

pytestmark = pytest.mark.root

if os.geteuid() != 0:
    pytest.skip("needs root", allow_module_level=True)

IMAGE = "pyc-test/busybox:1"
HTTPD = "echo hello-from-$(hostname) > /tmp/index.html; exec httpd -f -p 80 -h /tmp"
# busybox 1.35 (Debian) wget -T segfaults on its own (also on the host): the `timeout` applet bounds waits


class Stack:
    """A state root with its supervisor; networks and containers made through the engine's managers."""

    def __init__(self, root: StateRoot, parent: str) -> None:
        self.root = root
        self.m = ContainerManager(root, cgroup_parent=parent)
        self.net = self.m.networks
        self.networks: list[str] = []

    def network(self, *, internal: bool = False) -> str:
        name = "pyct-" + uuid.uuid4().hex[:8]
        subnet = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24"
        self.networks.append(name)
        self.net.create_network(NetworkSpec(name=name, internal=internal, ipam=(IpamPool(subnet=subnet),)))
        return name

    def run(self, *args: str, networks=(), ports=(), aliases=(), hostname=None) -> ContainerSpec:  # type: ignore[no-untyped-def]
        """Create and start (through the supervisor) a container; returns its spec."""
        image = self.m.images.resolve(IMAGE)
        attachments = tuple(NetworkAttachment(n, aliases=tuple(aliases)) for n in networks)
        spec = ContainerSpec(
            id="",
            name="pyct-" + uuid.uuid4().hex[:8],
            image_id=image.id,
            layer_dirs=(),
            process=Process(args=args or ("sleep", "1000"), env=(("PATH", "/bin"),)),
            network_mode="bridge",
            networks=attachments,
            ports=tuple(ports),
            hostname=hostname,
            image=IMAGE,
            stop_grace_period=1.0,
        )
        record = self.m.create(spec)
        self.m.start(record["id"])
        return self.m.spec_of(record)

    def exec(self, spec: ContainerSpec, script: str) -> tuple[int, str]:
        with tempfile.TemporaryFile() as out:
            null = os.open("/dev/null", os.O_RDONLY)
            try:
                code = self.m.exec(spec.id, ["sh", "-c", script], stdio=(null, out.fileno(), out.fileno()))
            finally:
                os.close(null)
            out.seek(0)
            return code, out.read().decode()

    def address(self, spec: ContainerSpec, index: int = 0) -> str:
        address = self.net.store.endpoints_of(spec.id)[index].ipv4
        assert address
        return address

    def cleanup(self) -> None:
        from engine.supervise import client

        try:
            for record in records.list_all(self.root.db):
                with suppress(EngineError):
                    self.m.remove(record["id"], force=True, volumes=True)
        finally:
            with suppress(EngineError):
                client.shutdown(self.root, timeout=10)
            for name in self.networks:
                with suppress(NetworkNotFound):
                    self.net.remove_network(name)
            firewall.sync(self.net.scope, [], [])


@pytest.fixture
def stack(tmp_path: Path, rootfs_tar: bytes) -> Iterator[Stack]:
    root = StateRoot.open(tmp_path / "root")
    parent = "pyc-test-" + uuid.uuid4().hex[:10]
    s = Stack(root, parent)
    try:
        s.m.images.import_rootfs(io.BytesIO(rootfs_tar), IMAGE)
        yield s
    finally:
        try:
            s.cleanup()
        finally:
            cgroups.remove_parent(parent)
            root.close()


def wait_until(condition, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def http_get(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        return data.decode(errors="replace").split("\r\n\r\n", 1)[-1]
    except OSError:
        return None


def host_address() -> str:
    """A non-loopback address of this host (the one its default route leaves by)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the route
        return probe.getsockname()[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


# -- names -------------------------------------------------------------------------------------------


def test_containers_find_each_other_by_alias_container_name_and_hostname(stack: Stack) -> None:
    net = stack.network()
    web = stack.run("sh", "-c", HTTPD, networks=(net,), aliases=("web", "www"), hostname="webhost")
    client = stack.run(networks=(net,))
    for name in ("web", "www", web.name, "webhost", "WEB"):
        code, out = wait_until(
            lambda n=name: (r := stack.exec(client, f"wget -qO- http://{n}/")) and r[0] == 0 and r
        )
        assert out == "hello-from-webhost\n", name
    code, out = stack.exec(client, "nslookup web")
    assert code == 0 and stack.address(web) in out
    code, out = stack.exec(client, "nslookup no-such-service.invalid")
    assert code != 0
    code, out = stack.exec(client, "cat /etc/resolv.conf /etc/hosts")
    gateway = stack.net.get_network(net).subnets[0].gateway
    assert f"nameserver {gateway}" in out
    assert f"{stack.address(client)}\t{client.id[:12]} {client.name}" in out  # its own address and names


def test_round_robin_over_three_replicas(stack: Stack) -> None:
    net = stack.network()
    replicas = [stack.run(networks=(net,), aliases=("php",)) for _ in range(3)]
    client = stack.run(networks=(net,))
    expected = {stack.address(r) for r in replicas}
    firsts = set()
    for _ in range(6):
        code, out = stack.exec(client, "nslookup php")
        assert code == 0, out
        answer = out.split("php", 1)[-1]
        found = [line.split()[-1] for line in answer.splitlines() if line.startswith("Address")]
        assert set(found) == expected, out
        firsts.add(found[0])
    assert len(firsts) > 1  # the order rotates


# -- published ports ---------------------------------------------------------------------------------


def test_published_tcp_on_loopback_random_port_and_on_every_address(stack: Stack) -> None:
    net = stack.network()
    fixed = free_port()
    web = stack.run(
        "sh",
        "-c",
        HTTPD,
        networks=(net,),
        hostname="pub",
        ports=(PortBinding(80, host_ip="127.0.0.1"), PortBinding(80, host_port=fixed)),
    )
    published = {(p.host_ip, p.host_port) for p in stack.net.ports_of(web.id)}
    (random_port,) = [port for ip, port in published if ip == "127.0.0.1"]
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= random_port <= high and ("0.0.0.0", fixed) in published
    assert wait_until(lambda: http_get("127.0.0.1", random_port)) == "hello-from-pub\n"
    assert wait_until(lambda: http_get("127.0.0.1", fixed)) == "hello-from-pub\n"
    assert wait_until(lambda: http_get(host_address(), fixed)) == "hello-from-pub\n"
    assert http_get(host_address(), random_port) is None  # bound to loopback only
    with pytest.raises(PortInUse):  # what `up` asks before starting anything
        stack.net.check_ports([PortBinding(80, host_port=fixed)])
    doc = stack.m.inspect(web.id)["NetworkSettings"]["Ports"]["80/tcp"]
    assert {"HostIp": "127.0.0.1", "HostPort": str(random_port)} in doc


def test_a_host_port_in_use_is_reported_before_starting(stack: Stack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PortInUse, match=str(port)):
            stack.net.check_ports([PortBinding(80, host_ip="127.0.0.1", host_port=port)])


def test_published_udp(stack: Stack) -> None:
    net = stack.network()
    box = stack.run(networks=(net,), ports=(PortBinding(5353, protocol="udp", host_ip="127.0.0.1"),))
    (published,) = stack.net.ports_of(box.id)
    echo = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 5353));"
        "d, a = s.recvfrom(100); s.sendto(b'echo:' + d, a)"
    )
    netns = str(stack.net.netns_path(box.id))
    server = subprocess.Popen(["nsenter", f"--net={netns}", sys.executable, "-c", echo])
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            reply = None
            for _ in range(30):
                s.sendto(b"ping", ("127.0.0.1", published.host_port))
                with suppress(TimeoutError):
                    reply = s.recv(100)
                    break
        assert reply == b"echo:ping"
    finally:
        server.kill()
        server.wait()


# -- isolation and the way out -----------------------------------------------------------------------


@contextmanager
def outside_namespace() -> Iterator[tuple[str, str]]:
    """A namespace playing "the outside": a veth to the host, a route back only to the host's end."""
    tag = uuid.uuid4().hex[:6]
    ns, host_end, far_end = f"pyct-out-{tag}", f"pycto{tag}", f"pyctp{tag}"
    net = f"10.{random.randint(100, 150)}.{random.randint(0, 255)}"
    commands = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", host_end, "type", "veth", "peer", "name", far_end, "netns", ns],
        ["ip", "addr", "add", f"{net}.1/30", "dev", host_end],
        ["ip", "link", "set", host_end, "up"],
        ["ip", "-n", ns, "addr", "add", f"{net}.2/30", "dev", far_end],
        ["ip", "-n", ns, "link", "set", far_end, "up"],
        ["ip", "-n", ns, "link", "set", "lo", "up"],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield ns, f"{net}.2"
    finally:
        subprocess.run(["ip", "link", "del", host_end], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextmanager
def peer_reporting_server(ns: str, port: int) -> Iterator[None]:
    """An HTTP-ish server in `ns` that answers with the address the connection came from."""
    code = (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f"s.bind(('0.0.0.0', {port})); s.listen()\n"
        "while True:\n"
        "    c, a = s.accept(); c.recv(1000); body = a[0].encode()\n"
        "    head = b'HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(body)\n"
        "    c.sendall(head + body); c.close()"
    )
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code])
    try:
        yield
    finally:
        server.kill()
        server.wait()


def test_outbound_nat_and_internal_network_has_no_way_out(stack: Stack) -> None:
    from engine.net import links

    links.enable_forwarding()
    bridged, internal = stack.network(), stack.network(internal=True)
    out_box = stack.run(networks=(bridged,))
    in_box = stack.run(networks=(internal,))
    with outside_namespace() as (ns, far), peer_reporting_server(ns, 8000):
        code, out = wait_until(
            lambda: (r := stack.exec(out_box, f"timeout 3 wget -qO- http://{far}:8000/")) and r[0] == 0 and r
        )
        assert out.strip() == far.rsplit(".", 1)[0] + ".1"  # masqueraded: the host's end, not the container
        code, _ = stack.exec(in_box, f"timeout 3 wget -qO- http://{far}:8000/")
        assert code != 0


def test_networks_are_isolated_from_each_other(stack: Stack) -> None:
    first, second = stack.network(), stack.network()
    a = stack.run("sh", "-c", HTTPD, networks=(first,), aliases=("a",), hostname="a")
    b = stack.run(networks=(second,))
    both = stack.run(networks=(first, second))
    assert wait_until(lambda: stack.exec(both, f"timeout 3 wget -qO- http://{stack.address(a)}/")[0] == 0)
    code, _ = stack.exec(b, f"timeout 3 wget -qO- http://{stack.address(a)}/")
    assert code != 0  # not on `first`: no route through the host either
    code, _ = stack.exec(b, "nslookup a")
    assert code != 0  # and the name is not known there


def test_a_second_state_root_is_isolated_too(stack: Stack, tmp_path: Path, rootfs_tar: bytes) -> None:
    other_root = StateRoot.open(tmp_path / "other")
    other = Stack(other_root, "pyc-test-" + uuid.uuid4().hex[:10])
    try:
        other.m.images.import_rootfs(io.BytesIO(rootfs_tar), IMAGE)
        server = stack.run("sh", "-c", HTTPD, networks=(stack.network(),), hostname="p1")
        intruder = other.run(networks=(other.network(),))
        code, _ = other.exec(intruder, f"timeout 3 wget -qO- http://{stack.address(server)}/")
        assert code != 0
    finally:
        try:
            other.cleanup()
        finally:
            cgroups.remove_parent(other.m.cgroup_parent)
            other_root.close()


# -- cleanup -----------------------------------------------------------------------------------------


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def test_stop_and_remove_leave_no_link_address_rule_or_namespace(stack: Stack) -> None:
    net = stack.network()
    bridge = stack.net.get_network(net).bridge
    rules_with_network = firewall.our_rules(stack.net.scope)
    web = stack.run("sh", "-c", HTTPD, networks=(net,), ports=(PortBinding(80, host_ip="127.0.0.1"),))
    veths = {e.host_veth for e in stack.net.store.endpoints_of(web.id)}
    netns = stack.net.netns_path(web.id)
    assert veths and all(v in _ip("-br", "link") for v in veths) and netns.exists()
    assert len(firewall.our_rules(stack.net.scope)) > len(rules_with_network)

    stack.m.stop(web.id, timeout=1)
    wait_until(lambda: not netns.exists())
    assert stack.net.ports_of(web.id) == []
    # the veths and the port's rules go in the supervisor's background thread, right after the stop
    assert wait_until(lambda: not any(v in _ip("-br", "link") for v in veths), timeout=2)
    assert wait_until(lambda: firewall.our_rules(stack.net.scope) == rules_with_network, timeout=2)

    stack.m.start(web.id)  # a restart gets its network back
    assert wait_until(lambda: stack.exec(web, "wget -qO- http://127.0.0.1/")[0] == 0)
    stack.m.remove(web.id, force=True)
    stack.net.remove_network(net)
    stack.networks.remove(net)
    assert bridge not in _ip("-br", "link") and not netns.exists()
    assert firewall.our_rules(stack.net.scope) == []
    assert not list((stack.root.path / "run" / "netns").glob("*"))


def test_killed_container_releases_its_network(stack: Stack) -> None:
    net = stack.network()
    box = stack.run(networks=(net,))
    netns = stack.net.netns_path(box.id)
    pid = stack.m.get(box.id)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: stack.m.get(box.id)["state"] == "exited")
    wait_until(lambda: not netns.exists())
    assert not any(e.active for e in stack.net.store.endpoints_of(box.id))
