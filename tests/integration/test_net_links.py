"""engine.net.links against the real kernel: bridges, namespace files, veth pairs, failure cleanup.

Every name is unique and prefixed `pyct`; the subnet is a random 10.x/24 that no host route covers; the
fixture removes veths, namespace files, the bridge and the directory even when a test fails. Traffic
stays between namespaces the test made.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from engine.containers import syscalls as sc
from engine.errors import NetworkError
from engine.net import links

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    for tool in ("ip", "nsenter", "ping"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing (apt-get install -y iproute2 util-linux iputils-ping)")


def _host_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"], capture_output=True, text=True)
    nets = []
    for route in json.loads(out.stdout or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default" and ":" not in dst:
            nets.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.2xx.y.0/24 that overlaps no host route (other tests run beside us)."""
    used = _host_networks()
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("no free 10.x/24 subnet")


@dataclass
class Net:
    tag: str
    dir: str
    bridge: str
    subnet: ipaddress.IPv4Network

    def ns(self, name: str) -> str:
        return os.path.join(self.dir, "run", "netns", name)

    def veth(self, n: int) -> str:
        return f"pyctv{self.tag}{n}"

    def addr(self, host: int) -> str:
        return str(self.subnet[host])

    def cidr(self, host: int) -> str:
        return f"{self.subnet[host]}/{self.subnet.prefixlen}"


@pytest.fixture
def net() -> Iterator[Net]:
    tag = secrets.token_hex(3)
    state = Net(tag, tempfile.mkdtemp(prefix="pyc-test-net-"), f"pyct-br{tag}", _free_subnet())
    try:
        yield state
    finally:
        try:
            for name in links.link_names(f"pyctv{tag}"):
                links.detach(name)
            netns_dir = os.path.join(state.dir, "run", "netns")
            for name in os.listdir(netns_dir) if os.path.isdir(netns_dir) else ():
                links.delete_netns(os.path.join(netns_dir, name))
            links.delete_bridge(state.bridge)
        finally:
            if _mounted_under(state.dir) == 0:  # never rmtree through a live namespace bind
                shutil.rmtree(state.dir, ignore_errors=True)


def _ip(*args: str, netns: str | None = None) -> list[dict]:
    cmd = (["nsenter", f"--net={netns}"] if netns else []) + ["ip", "-j", *args]
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout or "[]")


def _mounted(path: str) -> int:
    """How many mounts sit on `path` (field 5 of mountinfo is the mount point)."""
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return sum(1 for line in f if line.split()[4] == path)


def _mounted_under(directory: str) -> int:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return sum(1 for line in f if line.split()[4].startswith(directory + "/"))


def _thread_netns() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def _ns_with_peer(net: Net, name: str, n: int, host: int, **kw) -> str:
    path = net.ns(name)
    links.create_netns(path)
    links.attach(path, net.bridge, net.veth(n), "eth0", [net.cidr(host)], gateway=net.addr(1), **kw)
    return path


def test_bridge_created_idempotent_and_deleted(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr(1)], mtu=1400)
    (first,) = _ip("addr", "show", "dev", net.bridge)
    links.ensure_bridge(net.bridge, [net.cidr(1)], mtu=1400)
    (link,) = _ip("-d", "addr", "show", "dev", net.bridge)
    assert link["linkinfo"]["info_kind"] == "bridge"
    assert link["mtu"] == 1400 and "UP" in link["flags"]
    assert [a["local"] for a in link["addr_info"] if a["family"] == "inet"] == [net.addr(1)]
    assert link["address"] == first["address"]  # its own MAC, kept
    with open(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet") as f:
        assert f.read().strip() == "1"
    links.delete_bridge(net.bridge)
    assert links.link_names(net.bridge) == []
    links.delete_bridge(net.bridge)  # missing is fine


def test_netns_file_created_idempotent_and_removed(net: Net) -> None:
    path = net.ns("a")
    links.create_netns(path)
    links.create_netns(path)
    assert _mounted(path) == 1
    assert os.stat(path).st_ino != os.stat(f"/proc/{os.getpid()}/ns/net").st_ino
    (lo,) = _ip("link", "show", "lo", netns=path)
    assert "UP" in lo["flags"]
    links.delete_netns(path)
    assert _mounted(path) == 0 and not os.path.exists(path)
    links.delete_netns(path)  # missing is fine


def test_create_netns_failure_restores_thread_and_leaves_nothing(net: Net) -> None:
    path = net.ns("dir")
    os.makedirs(path)  # a directory cannot take a namespace file bind: fails after unshare
    try:
        before = _thread_netns()
        with pytest.raises(NetworkError):
            links.create_netns(path)
        assert _thread_netns() == before
        assert _mounted(path) == 0 and os.path.isdir(path)  # what was there is left as it was
    finally:
        os.rmdir(path)


def test_attach_sets_address_mac_mtu_and_routes(net: Net) -> None:
    v6 = ipaddress.ip_network(f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64")
    links.ensure_bridge(net.bridge, [net.cidr(1), f"{v6[1]}/64"], mtu=1450)
    path = net.ns("a")
    links.create_netns(path)
    before = _thread_netns()
    links.attach(
        path, net.bridge, net.veth(0), "eth0", [net.cidr(2), f"{v6[2]}/64"],
        mac="02:42:ac:11:00:02", mtu=1450, gateway=net.addr(1), gateway6=str(v6[1]),
    )  # fmt: skip
    assert _thread_netns() == before
    (eth0,) = _ip("addr", "show", "eth0", netns=path)
    assert eth0["address"] == "02:42:ac:11:00:02" and eth0["mtu"] == 1450 and "UP" in eth0["flags"]
    assert {(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a.get("scope") == "global"} == {
        (net.addr(2), 24),
        (str(v6[2]), 64),
    }
    (default,) = _ip("route", "show", "default", netns=path)
    assert default["gateway"] == net.addr(1) and default["dev"] == "eth0"
    (default6,) = _ip("-6", "route", "show", "default", netns=path)
    assert default6["gateway"] == str(v6[1])
    (host,) = _ip("-d", "link", "show", net.veth(0))
    assert host["master"] == net.bridge and host["mtu"] == 1450 and "UP" in host["flags"]
    assert host["linkinfo"]["info_kind"] == "veth"
    assert host["linkinfo"]["info_slave_data"]["hairpin"] is True


def test_a_connect_made_before_the_address_existed_is_answered_at_attach(net: Net) -> None:
    """A client that polls a port before the container has its address (a service waiting for it) leaves
    an INCOMPLETE neighbour entry; its SYN must go out when the container attaches, not at the next ARP
    retry a second later. Nothing listens in the namespace: the answer is a reset, at once. Another
    container is on the bridge already (its carrier is up: a bridge with no port drops the SYN instead
    of queueing it for the address, and only TCP's own 1 s retry helps then)."""
    import socket
    import time

    links.ensure_bridge(net.bridge, [net.cidr(1)])
    _ns_with_peer(net, "b", 1, 3)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setblocking(False)
    try:
        assert client.connect_ex((net.addr(2), 8080)) == errno.EINPROGRESS
        time.sleep(0.2)  # the ARP request went unanswered: nobody has the address yet
        path = net.ns("a")
        links.create_netns(path)
        links.attach(path, net.bridge, net.veth(0), "eth0", [net.cidr(2)], mac="02:42:0a:00:00:02")
        attached = time.monotonic()
        ready = select.select([], [client], [], 3.0)[1]
        waited = time.monotonic() - attached
        assert ready, "no answer within 3 s"
        assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
        assert waited < 0.5, f"the SYN waited {waited:.2f} s for an ARP retry"
    finally:
        client.close()


def test_two_namespaces_on_one_bridge_reach_each_other(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr(1)])
    a = _ns_with_peer(net, "a", 0, 2)
    b = _ns_with_peer(net, "b", 1, 3)
    for src, dst in ((a, net.addr(3)), (b, net.addr(2)), (a, net.addr(1))):
        ping = subprocess.run(["nsenter", f"--net={src}", "ping", "-c1", "-W1", dst], capture_output=True)
        assert ping.returncode == 0, ping.stdout


def test_attach_failure_halfway_leaves_no_veth(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr(1)])
    path = net.ns("a")
    links.create_netns(path)
    before = _thread_netns()
    with pytest.raises(NetworkError, match="unreachable"):  # gateway off-link: fails inside the netns
        links.attach(path, net.bridge, net.veth(0), "eth0", [net.cidr(2)], gateway="192.0.2.1")
    assert _thread_netns() == before
    assert links.link_names(net.veth(0)) == []
    assert [i["ifname"] for i in _ip("link", "show", netns=path)] == ["lo"]
    with pytest.raises(NetworkError, match="bad address"):  # refused before the kernel is asked
        links.attach(path, net.bridge, net.veth(0), "eth0", ["10.1.2.300/24"])
    with pytest.raises(NetworkError, match="no such bridge"):
        links.attach(path, net.bridge + "x", net.veth(0), "eth0", [net.cidr(2)])
    assert links.link_names(net.veth(0)) == []
    assert _thread_netns() == before


def test_attach_redone_replaces_a_stale_pair(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr(1)])
    path = _ns_with_peer(net, "a", 0, 2)
    links.attach(path, net.bridge, net.veth(0), "eth0", [net.cidr(3)], gateway=net.addr(1))
    assert links.link_names(net.veth(0)) == [net.veth(0)]
    (eth0,) = _ip("addr", "show", "eth0", netns=path)
    assert [a["local"] for a in eth0["addr_info"] if a["family"] == "inet"] == [net.addr(3)]


def test_detach_deletes_host_veth_at_once(net: Net) -> None:
    links.ensure_bridge(net.bridge, [net.cidr(1)])
    path = _ns_with_peer(net, "a", 0, 2)
    links.delete_netns(path)  # the namespace is going away; its veth may linger for seconds
    links.detach(net.veth(0))
    assert links.link_names(net.veth(0)) == []
    assert subprocess.run(["ip", "link", "show", net.veth(0)], capture_output=True).returncode != 0
    links.detach(net.veth(0))  # missing is fine


def test_enable_forwarding_in_a_test_namespace(net: Net) -> None:
    """/proc/sys/net follows the opener's netns, so this runs inside a namespace of ours, not the host."""
    path = net.ns("fwd")
    links.create_netns(path)
    saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    nsfd = os.open(path, os.O_RDONLY)
    try:
        sc.setns(nsfd, sc.CLONE_NEWNET)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("0")
        links.enable_forwarding()
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            assert f.read().strip() == "1"
    finally:
        sc.setns(saved, sc.CLONE_NEWNET)
        os.close(saved)
        os.close(nsfd)


def test_calls_from_a_running_asyncio_loop(net: Net) -> None:
    """The supervisor is asyncio: pyroute2's sync API cannot run on a thread with a running loop."""
    path = net.ns("a")

    async def main() -> None:
        before = _thread_netns()
        links.ensure_bridge(net.bridge, [net.cidr(1)])
        links.create_netns(path)
        links.attach(path, net.bridge, net.veth(0), "eth0", [net.cidr(2)], gateway=net.addr(1))
        assert links.link_names(net.veth(0)) == [net.veth(0)]
        with pytest.raises(NetworkError, match="unreachable"):  # errors cross back from the helper thread
            links.attach(path, net.bridge, net.veth(1), "eth1", [net.cidr(3)], gateway="192.0.2.1")
        links.detach(net.veth(0))
        assert links.link_names(f"pyctv{net.tag}") == []
        assert _thread_netns() == before

    asyncio.run(main())
    assert [i["ifname"] for i in _ip("link", "show", netns=path)] == ["lo"]  # eth0 went with its pair


def test_importing_links_does_not_import_pyroute2() -> None:
    """pyroute2 costs about 0.15 s: the CLI imports engine modules and must not pay it."""
    code = "import sys, engine.net.links; print('pyroute2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_netlink_code_loads_pyroute2s_message_classes_only() -> None:
    """engine/net/rtnl imports pyroute2's submodules without its package __init__ (every netlink family,
    asyncio, ssl, unittest: ~0.15 s); a process that imported pyroute2 whole keeps it whole."""
    heavy = "('pyroute2.iproute', 'pyroute2.ipdb', 'pyroute2.conntrack', 'asyncio', 'ssl', 'unittest')"
    code = (
        "import sys; from engine.net import links; links.preload()\n"
        f"print(sorted(m for m in {heavy} if m in sys.modules)); print(links._netlink_error().__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "pyroute2.netlink.exceptions"]
    whole = "import pyroute2; from engine.net import rtnl; rtnl.warm(); print(hasattr(pyroute2, 'IPRoute'))"
    out = subprocess.run([sys.executable, "-c", whole], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
