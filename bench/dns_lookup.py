"""DNS round trip for a service name: a client asks the embedded responder for `php` (3 replicas) over UDP.

The responder (engine/net/dns.py) runs in its own process with its asyncio loop, as in the supervisor,
and answers from a real state database (engine.net.store.NetworkStore over SQLite in WAL mode, in a
temp dir): one network with web + 3 php replicas, active endpoints. The network's subnet is a random
127.x.y.0/24 so the "container" (the client socket, bound to web's address) and the gateway the
responder listens on are both loopback addresses of the host: no namespaces, nothing to clean but the
temp dir. Prints median, p99 and min in milliseconds of send -> answer, and the in-process cost of one
`respond()` (parse + SQLite lookup + build) for the split.
Usage: python bench/dns_lookup.py [--queries 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.containers import records
from engine.net import ipam
from engine.net.dns import Responder
from engine.net.store import NetworkStore
from engine.net.types import Endpoint, IpamPool, NetworkSpec
from engine.state.db import Database

IMAGE = "sha256:" + "be" * 32


class StoreNames:
    """The Names the supervisor gives the responder, minus links and upstreams (not on this path)."""

    def __init__(self, store: NetworkStore) -> None:
        self.store = store

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        return self.store.lookup(client_ip, name)

    def reverse(self, client_ip: str, address: str) -> str | None:
        return self.store.reverse(client_ip, address)

    def upstreams(self, client_ip: str) -> list[str]:
        return []


def build_state(path: str, subnet: str) -> tuple[str, str, list[str]]:
    """A project network with web and 3 php replicas; (gateway, web's address, php addresses)."""
    db = Database(path)
    db.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, 'sha256:00', 'x', 0, 'linux', 'amd64', 't')",
        (IMAGE,),
    )
    store = NetworkStore(db)
    pools = (IpamPool(subnet=subnet),)
    spec = NetworkSpec(name="bench_default", ipam=pools)
    subnets = ipam.plan_subnets(pools, store.subnets_in_use(), routes=(), enable_ipv6=False, seed="bench")
    net = store.create(spec, subnets, bridge="pyct-bench", mtu=1500)
    addresses = {}
    for name, alias in [("bench-web-1", "web"), *[(f"bench-php-{n}", "php") for n in (1, 2, 3)]]:
        cid = f"{abs(hash(name)) % 10**12:012x}".ljust(64, "0")
        records.insert(db, id=cid, name=name, image_id=IMAGE, spec_json="{}", labels={}, created="t")
        store.add_endpoints(cid, [Endpoint(cid, net.id, (alias, name))], [(None, None)])
        addresses[name] = store.activate(cid, net, host_veth="none").ipv4
    db.close()
    php = [addresses[f"bench-php-{n}"] for n in (1, 2, 3)]
    return net.subnets[0].gateway, addresses["bench-web-1"], php


def serve(path: str, gateway: str, ready: multiprocessing.synchronize.Event, stop: object) -> None:
    """The responder's process: listen on the gateway, port 53, until the parent closes the pipe."""

    async def main() -> None:
        db = Database(path)
        responder = Responder(StoreNames(NetworkStore(db)))
        await responder.sync([gateway])
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.recv)  # type: ignore[attr-defined]
        await responder.close()
        db.close()

    asyncio.run(main())


def query(name: str, qid: int) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def round_trips(gateway: str, client: str, php: list[str], count: int) -> list[float]:
    """Seconds per query; every answer is checked (3 records, the replicas' addresses)."""
    packed = sorted(socket.inet_aton(a) for a in php)
    times = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((client, 0))
        sock.connect((gateway, 53))
        sock.settimeout(2)
        for i in range(count):
            data = query("php", i & 0xFFFF)
            start = time.perf_counter()
            sock.send(data)
            reply = sock.recv(512)
            times.append(time.perf_counter() - start)
            if reply[:2] != data[:2] or struct.unpack_from("!H", reply, 6)[0] != 3:
                raise SystemExit(f"bad answer: {reply!r}")
            if sorted(reply[len(reply) - 16 * k + 12 :][:4] for k in (1, 2, 3)) != packed:
                raise SystemExit(f"wrong addresses: {reply!r}")
    return times


def in_process(path: str, client: str, count: int) -> list[float]:
    db = Database(path)
    responder = Responder(StoreNames(NetworkStore(db)))
    times = []
    for i in range(count):
        data = query("php", i & 0xFFFF)
        start = time.perf_counter()
        responder.respond(data, client, tcp=False)
        times.append(time.perf_counter() - start)
    db.close()
    return times


def _row(label: str, values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    return f"{label:<34} {statistics.median(ordered) * 1e3:8.3f} {p99 * 1e3:8.3f} {ordered[0] * 1e3:8.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3000)
    args = parser.parse_args()
    subnet = f"127.{random.randint(100, 250)}.{random.randint(1, 250)}.0/24"
    with tempfile.TemporaryDirectory(prefix="pyct-dnsbench-") as tmp:
        path = f"{tmp}/pycompose.db"
        gateway, client, php = build_state(path, subnet)
        ctx = multiprocessing.get_context("fork")
        ready = ctx.Event()
        stop_recv, stop_send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=serve, args=(path, gateway, ready, stop_recv), daemon=True)
        proc.start()
        try:
            if not ready.wait(10):
                raise SystemExit("responder did not start")
            round_trips(gateway, client, php, 200)  # warm-up: page cache, sqlite statement cache
            udp = round_trips(gateway, client, php, args.queries)
        finally:
            stop_send.send(True)
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        local = in_process(path, client, args.queries)
    print(
        f"{'ms (' + str(args.queries) + ' queries, ' + subnet + ')':<34} {'median':>8} {'p99':>8} {'min':>8}"
    )
    print(_row("UDP round trip, service name", udp))
    print(_row("respond() in process", local))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
