"""The DNS responder on real sockets, asked by `dig` (bind9-dnsutils) and raw sockets.

Everything listens on a random 127.a.b.0/24 of the host's loopback (ports the kernel picks), or inside
a network namespace of its own (`unshare --net`, gone with its process). A fake upstream on another
loopback address plays the host's resolver: it answers UDP and TCP and records what it was sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from engine.errors import NetworkError
from engine.net.dns import Responder

pytestmark = pytest.mark.root

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _need_dig() -> None:
    if shutil.which("dig") is None:
        pytest.fail("dig not found: apt-get install -y bind9-dnsutils", pytrace=False)


@pytest.fixture
def net() -> str:
    """A /24 of loopback nobody else uses in this test: 127.a.b."""
    return f"127.{random.randint(100, 250)}.{random.randint(1, 250)}."


# -- wire helpers (written independently of engine.net.dns)


def wire(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def make_query(name: str, qtype: int = 1, qid: int = 1) -> bytes:
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire(name) + struct.pack("!HH", qtype, 1)


def question_end(data: bytes) -> int:
    pos = 12
    while data[pos]:
        pos += data[pos] + 1
    return pos + 5


def qname(data: bytes) -> str:
    labels, pos = [], 12
    while data[pos]:
        labels.append(data[pos + 1 : pos + 1 + data[pos]].decode())
        pos += data[pos] + 1
    return ".".join(labels).lower()


def reply_to(data: bytes, rcode: int, addresses: list[str], *, tc: bool = False, opt: int = 0) -> bytes:
    """An upstream's reply: A records, optionally TC and an OPT record advertising `opt`."""
    flags = 0x8180 | rcode | (0x0200 if tc else 0)
    records = b"".join(
        b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + socket.inet_aton(a) for a in addresses
    )
    extra = b"\0" + struct.pack("!HHIH", 41, opt, 0, 0) if opt else b""
    header = struct.pack(
        "!HHHHHH", struct.unpack("!H", data[:2])[0], flags, 1, len(addresses), 0, int(bool(opt))
    )
    return header + data[12 : question_end(data)] + records + extra


# -- the fake world


class Names:
    """Client .9 sees web (3 replicas), db, many (40 replicas); every other client sees nothing of ours."""

    def __init__(self, net: str, upstreams: list[str]) -> None:
        self.net = net
        self.servers = upstreams
        self.records = {
            "web": ([f"10.77.0.{i}" for i in (2, 3, 4)], ["fd77::2"]),
            "db": (["10.77.0.5"], []),
            "many": ([f"10.77.1.{i}" for i in range(1, 41)], []),
        }

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        return self.records.get(name) if client_ip == self.net + "9" else None

    def reverse(self, client_ip: str, address: str) -> str | None:
        return "proj-db-1" if client_ip == self.net + "9" and address == "10.77.0.5" else None

    def upstreams(self, client_ip: str) -> list[str]:
        return self.servers


@dataclass
class Upstream:
    """Answers nx.* with NXDOMAIN (+ OPT 1400), big.* with TC over UDP and 40 records over TCP (669
    bytes: more than 512, less than dig's EDNS 1232), silent.* never, anything else with 192.0.2.1."""

    address: str
    port: int = 0
    seen: list[tuple[str, bytes]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    server: asyncio.Server | None = None

    def answer(self, data: bytes, proto: str) -> bytes | None:
        self.seen.append((proto, data))
        name = qname(data)
        if name.startswith("silent."):
            return None
        if name.startswith("nx."):
            return reply_to(data, 3, [], opt=1400)
        if name.startswith("big."):
            if proto == "udp":
                return reply_to(data, 0, [], tc=True)
            return reply_to(data, 0, [f"198.51.100.{i}" for i in range(1, 41)])
        return reply_to(data, 0, ["192.0.2.1"])

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        upstream = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                upstream.transport = transport  # type: ignore[assignment]

            def datagram_received(self, data: bytes, addr: tuple) -> None:
                reply = upstream.answer(data, "udp")
                if reply and upstream.transport:
                    upstream.transport.sendto(reply, addr)

        await loop.create_datagram_endpoint(Udp, local_addr=(self.address, 0))
        assert self.transport is not None
        self.port = self.transport.get_extra_info("sockname")[1]
        self.server = await asyncio.start_server(self._tcp, self.address, self.port)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                reply = self.answer(await reader.readexactly(length), "tcp")
                if reply:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.transport:
            self.transport.close()
        if self.server:
            self.server.close()
            await self.server.wait_closed()

    def spec(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass
class World:
    net: str
    responder: Responder
    upstream: Upstream
    port: int

    async def dig(self, *args: str, client: str = "9") -> str:
        """dig's output (+tries=1) asking our responder from 127.a.b.<client>."""
        proc = await asyncio.create_subprocess_exec(
            "dig", f"@{self.net}1", "-p", str(self.port), "-b", self.net + client, "+tries=1", "+time=3",
            *args,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return out.decode()


def run_world(
    net: str, scenario: Callable[[World], Awaitable[None]], *, extra_upstreams: tuple = (), **kw
) -> None:
    """Start upstream + responder, run the scenario, close both whatever happens."""

    async def main() -> None:
        upstream = Upstream(net + "2")
        await upstream.start()
        responder = None
        try:
            names = Names(net, [*extra_upstreams, upstream.spec()])
            responder = Responder(names, port=0, **kw)
            await responder.sync([net + "1"])
            await scenario(World(net, responder, upstream, responder.listening()[net + "1"]))
        finally:
            if responder is not None:
                await responder.close()
            await upstream.stop()

    asyncio.run(main())


def answers(dig_output: str, rtype: str = "A") -> list[str]:
    return [line.split()[-1] for line in dig_output.splitlines() if f"\tIN\t{rtype}\t" in line]


# -- tests


def test_a_aaaa_ptr_and_types_without_records(net: str) -> None:
    async def scenario(w: World) -> None:
        out = await w.dig("db")
        assert "status: NOERROR" in out and answers(out) == ["10.77.0.5"]
        assert "\t600\tIN\tA\t" in out
        assert answers(await w.dig("WEB", "AAAA"), "AAAA") == ["fd77::2"]
        out = await w.dig("-x", "10.77.0.5")
        assert answers(out, "PTR") == ["proj-db-1."]
        out = await w.dig("db", "MX")
        assert "status: NOERROR" in out and "ANSWER: 0" in out
        assert w.upstream.seen == []  # all ours: nothing forwarded

    run_world(net, scenario)


def test_round_robin_over_three_replicas(net: str) -> None:
    async def scenario(w: World) -> None:
        firsts = []
        for _ in range(6):
            got = answers(await w.dig("web"))
            assert sorted(got) == ["10.77.0.2", "10.77.0.3", "10.77.0.4"]
            firsts.append(got[0])
        assert len(set(firsts)) == 3 and firsts[:3] == firsts[3:]

    run_world(net, scenario)


def test_forwarded_nxdomain_relayed_with_edns(net: str) -> None:
    async def scenario(w: World) -> None:
        out = await w.dig("nx.example")
        assert "status: NXDOMAIN" in out
        assert "udp: 1400" in out  # the upstream's OPT record came back unchanged
        proto, sent = w.upstream.seen[-1]
        assert proto == "udp" and qname(sent) == "nx.example"
        assert struct.unpack_from("!H", sent, 10)[0] == 1  # dig's OPT record was relayed too
        assert sent[question_end(sent) + 1 : question_end(sent) + 3] == b"\x00\x29"

    run_world(net, scenario)


def test_not_ours_forwarded_search_suffix_and_strangers(net: str) -> None:
    async def scenario(w: World) -> None:
        assert answers(await w.dig("web.example.com")) == ["192.0.2.1"]
        assert answers(await w.dig("web", client="10")) == ["192.0.2.1"]  # a client we do not know
        assert "status: NOERROR" in await w.dig("-x", "10.77.0.99")  # a PTR that is not ours
        assert [qname(d) for _, d in w.upstream.seen] == ["web.example.com", "web", "99.0.77.10.in-addr.arpa"]

    run_world(net, scenario)


def test_own_answer_truncated_over_udp_then_complete_over_tcp(net: str) -> None:
    async def scenario(w: World) -> None:
        cut = await w.dig("many", "+ignore", "+noedns")
        assert "flags: qr tc" in cut and 0 < len(answers(cut)) < 40
        full = await w.dig("many")  # dig retries over TCP itself
        assert len(answers(full)) == 40 and "Truncated, retrying in TCP mode" in full

    run_world(net, scenario)


def test_upstream_truncation_retried_over_tcp(net: str) -> None:
    async def scenario(w: World) -> None:
        out = await w.dig("big.example")  # dig advertises EDNS 1232: the TCP answer fits
        assert len(answers(out)) == 40 and "Truncated" not in out
        assert [p for p, _ in w.upstream.seen] == ["udp", "tcp"]
        w.upstream.seen.clear()
        out = await w.dig("big.example", "+noedns", "+ignore")  # 512 only: the TC answer is relayed
        assert "flags: qr tc" in out and answers(out) == []

    run_world(net, scenario)


def test_tcp_several_queries_per_connection_and_tcp_forward(net: str) -> None:
    async def scenario(w: World) -> None:
        reader, writer = await asyncio.open_connection(net + "1", w.port, local_addr=(net + "9", 0))
        try:
            batch = [
                make_query("db", qid=11),
                make_query("elsewhere.example", qid=12),
                make_query("web", qid=13),
            ]
            writer.write(b"".join(struct.pack("!H", len(q)) + q for q in batch))
            await writer.drain()
            ids = []
            for _ in batch:
                (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
                ids.append(struct.unpack("!H", (await reader.readexactly(length))[:2])[0])
            assert ids == [11, 12, 13]
            assert [p for p, _ in w.upstream.seen] == ["tcp"]
        finally:
            writer.close()

    run_world(net, scenario)


def test_dead_and_silent_upstreams_skipped_then_servfail(net: str) -> None:
    async def scenario(w: World) -> None:
        out = await w.dig("x.example")
        assert answers(out) == ["192.0.2.1"]
        out = await w.dig("silent.example")
        assert "status: SERVFAIL" in out

    closed = f"{net}3:9"  # nobody listens: ECONNREFUSED
    run_world(net, scenario, extra_upstreams=(closed,), timeout=0.3)


def test_inflight_cap_answers_servfail_at_once(net: str) -> None:
    async def scenario(w: World) -> None:
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((net + "9", 0))
            sock.setblocking(False)
            sock.connect((net + "1", w.port))
            for i in range(5):
                await loop.sock_sendall(sock, make_query("silent.example", qid=100 + i))
            first = [await asyncio.wait_for(loop.sock_recv(sock, 512), 1) for _ in range(3)]
            assert sorted(struct.unpack("!H", r[:2])[0] for r in first) == [102, 103, 104]
            assert all(r[3] & 0xF == 2 for r in first)
            late = [await asyncio.wait_for(loop.sock_recv(sock, 512), 3) for _ in range(2)]  # timed out
            assert all(r[3] & 0xF == 2 for r in late)

    run_world(net, scenario, max_inflight=2, timeout=0.5)


def test_bad_packets_do_not_kill_the_listener(net: str) -> None:
    async def scenario(w: World) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (
                b"",
                b"\xff",
                b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c",
                os.urandom(300),
            ):
                sock.sendto(junk, (net + "1", w.port))
        _, writer = await asyncio.open_connection(net + "1", w.port)
        writer.write(b"\x00\x05junk!")  # a junk TCP query: FORMERR or nothing, the listener stays
        writer.write(b"\xff\xff")  # then a length that never comes
        await writer.drain()
        writer.close()
        assert answers(await w.dig("db")) == ["10.77.0.5"]
        assert answers(await w.dig("db", "+tcp")) == ["10.77.0.5"]

    run_world(net, scenario)


def test_sync_opens_and_closes_and_close_releases_ports(net: str) -> None:
    async def scenario(w: World) -> None:
        second = net + "5"
        await w.responder.sync([net + "1", second])
        port2 = w.responder.listening()[second]
        reader, writer = await asyncio.open_connection(second, port2)  # an idle client
        await w.responder.sync([net + "1"])
        assert list(w.responder.listening()) == [net + "1"]
        assert await asyncio.wait_for(reader.read(), 2) == b""  # its connection was closed
        writer.close()
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((second, port2))  # free again
        assert answers(await w.dig("db")) == ["10.77.0.5"]

    run_world(net, scenario)


def test_ipv6_listener_and_bad_addresses(net: str) -> None:
    async def scenario(w: World) -> None:
        await w.responder.sync([net + "1", "::1"])
        port6 = w.responder.listening()["::1"]
        proc = await asyncio.create_subprocess_exec(
            "dig", "@::1", "-p", str(port6), "+tries=1", "+time=3", "+short", "x.example",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert (await proc.communicate())[0].decode().split() == ["192.0.2.1"]  # ::1 is no client of ours
        with pytest.raises(NetworkError):
            await w.responder.sync([net + "1", "not-an-address"])
        assert set(w.responder.listening()) == {net + "1", "::1"}  # a refused sync changes nothing

    run_world(net, scenario)


NETNS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, subprocess, sys
    sys.path.insert(0, sys.argv[1])
    from engine.net.dns import Responder

    class Names:
        def lookup(self, client, name):
            return (["10.88.0.7"], []) if name == "svc" else None
        def reverse(self, client, address):
            return None
        def upstreams(self, client):
            return []

    def ip(*args):
        subprocess.run(["ip", *args], check=True)

    async def dig(*args):
        proc = await asyncio.create_subprocess_exec(
            "dig", "@10.88.0.1", "+short", "+tries=1", "+time=2", *args, stdout=subprocess.PIPE)
        return (await proc.communicate())[0].decode().split()

    async def main():
        ip("link", "set", "lo", "up")
        ip("link", "add", "pyct-dns0", "type", "bridge")  # (no dummy module on this kernel)
        ip("link", "set", "pyct-dns0", "up")
        responder = Responder(Names())  # port 53, like the real thing
        await responder.sync(["10.88.0.1"])  # before the address exists: FREEBIND
        ip("addr", "add", "10.88.0.1/24", "dev", "pyct-dns0")
        try:
            print(json.dumps({"udp": await dig("svc"), "tcp": await dig("+tcp", "svc")}))
        finally:
            await responder.close()

    asyncio.run(main())
    """
)


def test_listener_bound_before_its_address_exists_in_own_netns() -> None:
    """The gateway address may appear after sync: with FREEBIND the listener serves once it does."""
    result = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", NETNS_SCRIPT, ROOT],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"udp": ["10.88.0.7"], "tcp": ["10.88.0.7"]}
