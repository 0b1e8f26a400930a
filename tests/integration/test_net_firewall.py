"""engine.net.firewall against the real kernel: bridges and namespaces made here with `ip`, real traffic.

Topology per test (every name `pyct<hex>...`, removed even on failure): bridges with a /24 each, a
"container" namespace per address (veth into the bridge, default route via the gateway), and an
"outside" namespace linked to the host by a veth /30 with no route to the bridges, so only masquerade
(or a DNAT on the host's address) lets traffic through. A tiny TCP+UDP server answers with the address
it saw the client come from.
"""

from __future__ import annotations

import ipaddress
import random
import re
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine.errors import FirewallError
from engine.net import firewall
from engine.net.firewall import BridgeRules, PortRule

pytestmark = pytest.mark.root

SERVER = textwrap.dedent(
    """
    import socket, sys, threading
    port = int(sys.argv[1])
    tcp = socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((sys.argv[2], port)); tcp.listen(16)
    udp = socket.socket(tcp.family, socket.SOCK_DGRAM); udp.bind((sys.argv[2], port))
    def serve_udp():
        while True:
            data, peer = udp.recvfrom(2048)
            print("seen", peer[0], flush=True)
            udp.sendto(("udp " + peer[0] + " " + data.decode()).encode(), peer)
    threading.Thread(target=serve_udp, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, peer = tcp.accept()
        print("seen", peer[0], flush=True)
        with conn:
            data = conn.recv(2048)
            conn.sendall(("tcp " + peer[0] + " " + data.decode()).encode())
    """
)

CLIENT = textwrap.dedent(
    """
    import socket, sys
    proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=float(sys.argv[4]))
            s.sendall(b"hi"); print(s.recv(2048).decode())
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]))
            s.sendto(b"hi", (host, port)); print(s.recvfrom(2048)[0].decode())
    except OSError as exc:
        print("ERR", type(exc).__name__)
    """
)


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.200-254.x.0 that no route of the host (other tests' bridges included) overlaps."""
    used = [
        ipaddress.ip_network(w, strict=False)
        for w in re.findall(r"^(\d+\.\d+\.\d+\.\d+/\d+)", sh("ip", "route"), re.M)
    ]
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free subnet")


@dataclass
class Lab:
    """Everything one test made; `close` removes it in reverse order, tolerant of parts already gone."""

    tag: str
    scope: str
    undo: list[list[str]] = field(default_factory=list)
    procs: list[subprocess.Popen[str]] = field(default_factory=list)
    counter: int = 0

    def name(self, kind: str) -> str:
        self.counter += 1
        return f"pyct{self.tag}{kind}{self.counter}"

    def bridge(self, docker_drop: bool = True) -> tuple[str, ipaddress.IPv4Network]:
        """A bridge with its gateway address; `docker_drop` appends DROPs for it to FORWARD, standing in for
        a Docker engine's DROP policy (which we may not set host-wide): only our ACCEPTs let traffic by."""
        subnet = free_subnet()
        self.counter += 1
        br = f"pyc-test{self.tag[:5]}{self.counter}"  # "pyc-": the firewall's wildcard for our bridges
        sh("ip", "link", "add", br, "type", "bridge")
        self.undo.append(["ip", "link", "del", br])
        sh("ip", "addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", br)
        Path(f"/proc/sys/net/ipv4/conf/{br}/route_localnet").write_text("1")
        sh("ip", "link", "set", br, "up")
        for side in ("-i", "-o") if docker_drop else ():
            rule = [
                "FORWARD",
                side,
                br,
                "-m",
                "comment",
                "--comment",
                f"pyct-foreign-{self.tag}",
                "-j",
                "DROP",
            ]
            sh("iptables", "-w", "-A", *rule)
            self.undo.append(["iptables", "-w", "-D", *rule])
        return br, subnet

    def netns(self) -> str:
        ns = self.name("n")
        sh("ip", "netns", "add", ns)
        self.undo.append(["ip", "netns", "del", ns])
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        return ns

    def container(self, br: str, subnet: ipaddress.IPv4Network, index: int) -> tuple[str, str]:
        """A namespace on `br` with address .index; returns (netns, address)."""
        ns, host = self.netns(), self.name("v")
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.undo.append(["ip", "link", "del", host])  # before its namespace goes
        sh("ip", "link", "set", host, "master", br, "up")
        sh("ip", "link", "set", host, "type", "bridge_slave", "hairpin", "on")  # as links.attach must
        addr = str(subnet[index])
        sh("ip", "-n", ns, "addr", "add", f"{addr}/{subnet.prefixlen}", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", str(subnet[1]))
        return ns, addr

    def outside(self) -> tuple[str, str, str]:
        """The outside namespace: (netns, its address, the host's address on the link); no route back."""
        ns, host = self.netns(), self.name("o")
        link = ipaddress.ip_network(f"198.18.{random.randint(0, 255)}.{4 * random.randint(0, 63)}/30")
        sh("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.undo.append(["ip", "link", "del", host])
        sh("ip", "addr", "add", f"{link[1]}/30", "dev", host)
        sh("ip", "link", "set", host, "up")
        sh("ip", "-n", ns, "addr", "add", f"{link[2]}/30", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        return ns, str(link[2]), str(link[1])

    def server(self, ns: str, port: int, bind: str = "0.0.0.0") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, str(port), bind],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        return proc

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
        try:
            firewall.sync(self.scope, [], [])
        finally:
            for argv in reversed(self.undo):
                subprocess.run(argv, capture_output=True)


def ask(ns: str | None, proto: str, host: str, port: int, timeout: float = 2.0) -> str:
    """The server's answer ("tcp <peer> hi") or "ERR <exception>", from a namespace or the host."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    return sh(*prefix, sys.executable, "-c", CLIENT, proto, host, str(port), str(timeout)).strip()


def seen(server: subprocess.Popen[str]) -> list[str]:
    """Stop a server; the client addresses it saw (whether or not its answers got back)."""
    server.kill()
    out, _ = server.communicate()
    return [line.split()[1] for line in out.splitlines() if line.startswith("seen ")]


def peer(answer: str) -> str:
    assert answer.startswith(("tcp ", "udp ")), answer
    return answer.split()[1]


@pytest.fixture(scope="module", autouse=True)
def forwarding() -> None:
    """ip_forward=1: the one host-wide setting the product needs (and sets) itself."""
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")


@pytest.fixture
def lab() -> Iterator[Lab]:
    made = Lab(tag=secrets.token_hex(3), scope=secrets.token_hex(4))
    try:
        yield made
    finally:
        made.close()


def normalized_save(scope: str) -> list[str]:
    """iptables-save minus counters, comments and builtin chain headers, and minus other scopes' lines
    (other engineers' tests sync their own scopes meanwhile)."""
    out = []
    for line in sh("iptables-save").splitlines():
        if line.startswith("#") or re.match(r"^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ", line):
            continue
        mentions = set(re.findall(r"PYC-(\w+?)-|pycompose:(\w+)", line))
        if any(s and s != scope for pair in mentions for s in pair):
            continue
        out.append(re.sub(r"\[\d+:\d+\]", "", line))
    return out


def test_published_ports_tcp_udp_loopback_host_address_and_outside(lab: Lab) -> None:
    br, subnet = lab.bridge()
    ns, addr = lab.container(br, subnet, 2)
    out_ns, out_addr, host_addr = lab.outside()
    lab.server(ns, 8000)
    port = random.randint(20000, 29999)
    assert ask(None, "tcp", "127.0.0.1", port, 0.5).startswith("ERR")  # nothing there before the rules
    firewall.sync(
        lab.scope,
        [BridgeRules(br, str(subnet))],
        [PortRule(br, "tcp", "", port, addr, 8000), PortRule(br, "udp", "", port, addr, 8000)],
    )
    assert peer(ask(None, "tcp", "127.0.0.1", port)) == str(subnet[1])  # loopback masqueraded to gateway
    assert peer(ask(None, "udp", "127.0.0.1", port)) == str(subnet[1])
    assert peer(ask(None, "tcp", host_addr, port)) == host_addr  # another host address, from the host
    assert peer(ask(out_ns, "tcp", host_addr, port)) == out_addr  # from outside: client address kept
    assert peer(ask(out_ns, "udp", host_addr, port)) == out_addr
    sh("ip", "-n", out_ns, "route", "add", str(subnet), "via", host_addr)  # a LAN host routing to us
    assert ask(out_ns, "tcp", addr, 8000, 0.5).startswith("ERR")  # the container itself is not reachable


def test_host_ip_limits_the_addresses(lab: Lab) -> None:
    br, subnet = lab.bridge()
    ns, addr = lab.container(br, subnet, 2)
    _out_ns, _out_addr, host_addr = lab.outside()
    lab.server(ns, 8000)
    port = random.randint(20000, 29999)
    firewall.sync(
        lab.scope, [BridgeRules(br, str(subnet))], [PortRule(br, "tcp", "127.0.0.1", port, addr, 8000)]
    )
    assert peer(ask(None, "tcp", "127.0.0.1", port)) == str(subnet[1])
    assert ask(None, "tcp", host_addr, port, 0.5).startswith("ERR")


def test_hairpin_own_port_and_neighbour(lab: Lab) -> None:
    br, subnet = lab.bridge()
    ns, addr = lab.container(br, subnet, 2)
    other_ns, other_addr = lab.container(br, subnet, 3)
    _out_ns, _out_addr, host_addr = lab.outside()
    lab.server(ns, 8000)
    port = random.randint(20000, 29999)
    firewall.sync(lab.scope, [BridgeRules(br, str(subnet))], [PortRule(br, "tcp", "", port, addr, 8000)])
    assert peer(ask(ns, "tcp", host_addr, port)) == str(subnet[1])  # itself: masqueraded to the gateway
    assert peer(ask(other_ns, "tcp", host_addr, port)) == other_addr  # a neighbour keeps its address


def test_masquerade_reaches_outside_as_host_address(lab: Lab) -> None:
    br, subnet = lab.bridge()
    ns, _addr = lab.container(br, subnet, 2)
    out_ns, out_addr, host_addr = lab.outside()
    lab.server(out_ns, 9000)
    assert ask(ns, "tcp", out_addr, 9000, 0.5).startswith("ERR")  # no route back without masquerade
    firewall.sync(lab.scope, [BridgeRules(br, str(subnet))], [])
    assert peer(ask(ns, "tcp", out_addr, 9000)) == host_addr
    assert peer(ask(ns, "udp", out_addr, 9000)) == host_addr
    firewall.sync(lab.scope, [BridgeRules(br, str(subnet), masquerade=False)], [])
    assert ask(ns, "tcp", out_addr, 9000, 0.5).startswith("ERR")


def test_internal_network_has_no_way_out(lab: Lab) -> None:
    br, subnet = lab.bridge(docker_drop=False)  # the host's ACCEPT policy: only our rules stop traffic
    ns, _addr = lab.container(br, subnet, 2)
    peer_ns, peer_addr = lab.container(br, subnet, 3)
    out_ns, out_addr, host_addr = lab.outside()
    outside = lab.server(out_ns, 9000)
    neighbour = lab.server(peer_ns, 8000)
    firewall.sync(lab.scope, [BridgeRules(br, str(subnet))], [])
    assert peer(ask(ns, "tcp", out_addr, 9000)) == host_addr  # the same topology works when not internal
    firewall.sync(lab.scope, [BridgeRules(br, str(subnet), internal=True)], [])
    sh("ip", "-n", out_ns, "route", "add", str(subnet), "via", host_addr)  # a way back without NAT
    assert ask(ns, "tcp", out_addr, 9000, 0.5).startswith("ERR")
    assert ask(ns, "udp", out_addr, 9000, 0.5).startswith("ERR")
    assert ask(out_ns, "udp", str(subnet[3]), 8000, 0.5).startswith("ERR")  # nor in (UDP: seen on arrival)
    assert peer(ask(ns, "tcp", peer_addr, 8000)) == str(subnet[2])  # inside the network: fine
    assert seen(outside) == [host_addr]  # only the first, non-internal, connection ever left
    assert seen(neighbour) == [str(subnet[2])]  # and nothing from outside got in


def test_isolation_between_bridges_and_icc(lab: Lab) -> None:
    br1, sub1 = lab.bridge(docker_drop=False)
    br2, sub2 = lab.bridge(docker_drop=False)
    ns1, _a1 = lab.container(br1, sub1, 2)
    ns1b, a1b = lab.container(br1, sub1, 3)
    ns2, a2 = lab.container(br2, sub2, 2)
    lab.server(ns2, 8000)
    lab.server(ns1b, 8000)
    assert peer(ask(ns1, "tcp", a2, 8000)) == str(sub1[2])  # routed between bridges before our rules
    nets = [BridgeRules(br1, str(sub1)), BridgeRules(br2, str(sub2))]
    firewall.sync(lab.scope, nets, [])
    assert ask(ns1, "tcp", a2, 8000, 0.5).startswith("ERR")
    assert ask(ns1, "udp", a2, 8000, 0.5).startswith("ERR")
    assert peer(ask(ns1, "tcp", a1b, 8000)) == str(sub1[2])  # same bridge still talks
    firewall.sync(lab.scope, [BridgeRules(br1, str(sub1), icc=False), nets[1]], [])
    assert ask(ns1, "tcp", a1b, 8000, 0.5).startswith("ERR")


def test_isolation_between_scopes(lab: Lab) -> None:
    br1, sub1 = lab.bridge()
    br2, sub2 = lab.bridge()
    ns1, _a1 = lab.container(br1, sub1, 2)
    ns2, a2 = lab.container(br2, sub2, 2)
    lab.server(ns2, 8000)
    other_scope = secrets.token_hex(4)
    try:
        firewall.sync(lab.scope, [BridgeRules(br1, str(sub1))], [])
        firewall.sync(other_scope, [BridgeRules(br2, str(sub2))], [])
        assert ask(ns1, "tcp", a2, 8000, 0.5).startswith("ERR")
        before = firewall.our_rules(other_scope)
        firewall.sync(lab.scope, [], [])
        assert firewall.our_rules(other_scope) == before  # one scope's sync leaves the other's alone
        assert firewall.our_rules(lab.scope) == []
    finally:
        firewall.sync(other_scope, [], [])


def test_cleanup_exact_and_foreign_rules_survive(lab: Lab) -> None:
    br, subnet = lab.bridge()
    foreign = f"pyct-foreign-{lab.tag}"
    added = [
        ("filter", ["-N", foreign]),
        ("filter", ["-A", foreign, "-s", "192.0.2.77/32", "-j", "RETURN"]),
        ("filter", ["-A", "FORWARD", "-m", "comment", "--comment", foreign, "-j", foreign]),
        ("nat", ["-N", foreign]),
        ("nat", ["-A", foreign, "-s", "192.0.2.77/32", "-j", "RETURN"]),
    ]
    try:
        for table, rule in added:
            sh("iptables", "-w", "-t", table, *rule)
        before = normalized_save(lab.scope)
        nets = [BridgeRules(br, str(subnet))]
        ports = [PortRule(br, "tcp", "", 20000 + i, str(subnet[2]), 80) for i in range(3)]
        firewall.sync(lab.scope, nets, ports)
        firewall.sync(lab.scope, nets, ports[:1])  # refill: old rules gone, no duplicate jumps
        rules = firewall.our_rules(lab.scope)
        assert sum("--dport 2000" in r and "DNAT" in r for r in rules) == 1
        assert sum("-A FORWARD " in r for r in rules) == 1
        assert len(rules) == len(set(rules))
        during = normalized_save(lab.scope)
        assert all(line in during for line in before)  # the foreign chain, its rules and jump are there
        firewall.sync(lab.scope, [], [])
        assert normalized_save(lab.scope) == before
        assert firewall.our_rules(lab.scope) == []
        firewall.sync(lab.scope, [], [])  # idempotent, nothing to do
    finally:
        for table, rule in reversed(added):
            undo = {"-N": "-X", "-A": "-D"}[rule[0]]
            subprocess.run(["iptables", "-w", "-t", table, undo, *rule[1:]], capture_output=True)


def test_duplicate_jumps_are_repaired(lab: Lab) -> None:
    br, subnet = lab.bridge()
    nets = [BridgeRules(br, str(subnet))]
    firewall.sync(lab.scope, nets, [])
    jump = ["-m", "comment", "--comment", f"pycompose:{lab.scope}", "-j", f"PYC-{lab.scope}-FWD"]
    sh("iptables", "-w", "-I", "FORWARD", "1", *jump)  # what a concurrent sync of the same scope can leave
    firewall.sync(lab.scope, nets, [])
    assert sum(r.startswith("-A FORWARD ") for r in firewall.our_rules(lab.scope)) == 1


def test_bad_input_is_refused_before_iptables(lab: Lab) -> None:
    with pytest.raises(FirewallError):
        firewall.sync(lab.scope, [BridgeRules("br x; -F", "10.0.0.0/24")], [])
    with pytest.raises(FirewallError):
        firewall.sync(lab.scope, [], [PortRule("pyctx", "icmp", "", 80, "10.0.0.2", 80)])
    with pytest.raises(FirewallError):
        firewall.sync("bad-scope!", [], [])
    assert firewall.our_rules(lab.scope) == []
