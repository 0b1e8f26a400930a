"""Published-port throughput: 1 MB responses through our DNAT vs straight to the container (root).

Sets up a bridge and a namespace with `ip` (names `pyct-bench...`), publishes a port with
engine.net.firewall, serves 1 MB per connection from the namespace, and fetches from the host:
  direct      host -> container address:8000
  127.0.0.1   host -> 127.0.0.1:<published> (DNAT + loopback masquerade)
  host addr   host -> the bridge gateway address:<published> (DNAT, no masquerade)
Rounds interleave the paths; the table gives the median GB/s per path and its ratio to direct.
Everything it made is removed on exit. Usage: sudo .venv/bin/python bench/port_throughput.py [ROUNDS] [N]
"""

from __future__ import annotations

import secrets
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.net import firewall

SIZE = 1 << 20
SERVER = textwrap.dedent(
    f"""
    import socket
    payload = b"x" * {SIZE}
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 8000)); srv.listen(128)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(payload)
    """
)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def fetch(host: str, port: int, count: int) -> float:
    """GB/s over `count` connections, each reading one 1 MB response."""
    buf = bytearray(256 * 1024)
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection((host, port)) as conn:
            got = 0
            while n := conn.recv_into(buf):
                got += n
            assert got == SIZE, got
    return count * SIZE / (time.perf_counter() - start) / 1e9


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    tag, scope = secrets.token_hex(3), secrets.token_hex(4)
    br, ns, veth = f"pyc-bench{tag}", f"pyct-bench{tag}", f"pyctbv{tag}"
    undo: list[list[str]] = []
    server = None
    try:
        sh("ip", "link", "add", br, "type", "bridge")
        undo.append(["ip", "link", "del", br])
        sh("ip", "addr", "add", "10.253.77.1/24", "dev", br)
        Path(f"/proc/sys/net/ipv4/conf/{br}/route_localnet").write_text("1")
        sh("ip", "link", "set", br, "up")
        sh("ip", "netns", "add", ns)
        undo.append(["ip", "netns", "del", ns])
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        undo.append(["ip", "link", "del", veth])
        sh("ip", "link", "set", veth, "master", br, "up")
        for argv in (["addr", "add", "10.253.77.2/24", "dev", "eth0"], ["link", "set", "eth0", "up"]):
            sh("ip", "-n", ns, *argv)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.253.77.1")
        port = 28000 + secrets.randbelow(1000)
        nets = [firewall.BridgeRules(br, "10.253.77.0/24")]
        t0 = time.perf_counter()
        firewall.sync(scope, nets, [firewall.PortRule(br, "tcp", "", port, "10.253.77.2", 8000)])
        sync_ms = (time.perf_counter() - t0) * 1000
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        paths = {
            "direct": ("10.253.77.2", 8000),
            "127.0.0.1": ("127.0.0.1", port),
            "host addr": ("10.253.77.1", port),
        }
        figures: dict[str, list[float]] = {name: [] for name in paths}
        for host, p in paths.values():
            fetch(host, p, 20)  # warm-up
        for _ in range(rounds):
            for name, (host, p) in paths.items():
                figures[name].append(fetch(host, p, count))
        direct = statistics.median(figures["direct"])
        print(f"{rounds} rounds x {count} connections x 1 MB; firewall.sync with one port: {sync_ms:.1f} ms")
        print(f"{'path':<12}{'median GB/s':>12}{'vs direct':>11}")
        for name, values in figures.items():
            med = statistics.median(values)
            print(f"{name:<12}{med:>12.2f}{med / direct:>10.0%}")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        firewall.sync(scope, [], [])
        for argv in reversed(undo):
            subprocess.run(argv, capture_output=True)


if __name__ == "__main__":
    main()
