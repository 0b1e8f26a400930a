"""Host ports for publishing: is one free, pick one. CONTRACT (owner: engineer N1).

With kernel DNAT nothing listens on the published port, so "free" means: no socket of the host is bound
to it (a bind test) AND no running container of ours publishes it (the caller passes those).
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
from collections.abc import Iterable
from pathlib import Path

from engine.errors import PortInUse

EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
DEFAULT_EPHEMERAL = (32768, 60999)  # the kernel's default when the file cannot be read
Index = dict[tuple[int, str], list[str]]  # (port, protocol) -> host addresses of ours holding it
Taken = Iterable[tuple[str, int, str]] | Index


def is_free(host_ip: str, port: int, protocol: str, taken: Taken = ()) -> bool:
    """True when `host_ip:port/protocol` can be published: nothing of ours (`taken`: (ip, port, proto))
    and nothing of the host's holds it ("" / 0.0.0.0 overlaps every address)."""
    try:
        check(host_ip, port, protocol, taken)
    except PortInUse:
        return False
    return True


def check(host_ip: str, port: int, protocol: str, taken: Taken = ()) -> None:
    """Raise PortInUse, worded as Docker words it, unless `host_ip:port/protocol` is free."""
    if any(overlaps(ip, host_ip) for ip in _index(taken).get((port, protocol), ())):
        raise PortInUse(f"Bind for {_endpoint(host_ip, port)} failed: port is already allocated")
    error = bind_error(host_ip, port, protocol)
    if error is not None:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else error.strerror
        family = "4" if _family(host_ip) == socket.AF_INET else "6"
        raise PortInUse(f"listen {protocol}{family} {_endpoint(host_ip, port)}: bind: {reason}")


def choose(
    host_ip: str, protocol: str, start: int = 0, end: int = 0, taken: Iterable[tuple[str, int, str]] = ()
) -> int:
    """A free port: `start` itself, the first free one of [start, end], or (start == 0) a random one of the
    host's ephemeral range. Raises PortInUse naming `host_ip:port/protocol`."""
    index = _index(taken)
    if start and (not end or end == start):
        check(host_ip, start, protocol, index)
        return start
    if start:
        if end < start:
            raise PortInUse(f"invalid port range {start}-{end}", subject=f"{start}-{end}")
        candidates = range(start, end + 1)
        where = f"{start}-{end}"
    else:
        low, high = ephemeral_range()
        offset = random.randrange(high - low + 1)  # start anywhere, then wrap: every port tried once
        candidates = [*range(low + offset, high + 1), *range(low, low + offset)]
        where = f"{low}-{high}"
    for port in candidates:
        if is_free(host_ip, port, protocol, index):
            return port
    raise PortInUse(f"Bind for {_endpoint(host_ip, where)} failed: port is already allocated")


def ephemeral_range(path: str | None = None) -> tuple[int, int]:
    """The host's ephemeral port range (where Docker picks random host ports too)."""
    try:
        low, high = (int(v) for v in Path(path or EPHEMERAL_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return (low, high) if 0 < low <= high <= 65535 else DEFAULT_EPHEMERAL


def overlaps(a: str, b: str) -> bool:
    """Two host addresses clash: equal, or one is a wildcard covering the other's family."""
    a, b = _normal(a), _normal(b)
    if a == b or "" in (a, b):
        return True
    for wildcard, other in ((a, b), (b, a)):
        if wildcard in ("0.0.0.0", "::") and _family(other) == _family(wildcard):
            return True
    return False


def bind_error(host_ip: str, port: int, protocol: str) -> OSError | None:
    """Bind (no listen, no SO_REUSEADDR) the port on the host; the error the host gave, or None.

    "" binds 0.0.0.0, which Linux refuses while any address of the host holds the port. SCTP is checked
    when the kernel has it; otherwise only our own table decides.
    """
    kind, proto = _socket_kind(protocol)
    family = _family(host_ip)
    try:
        sock = socket.socket(family, kind, proto)
    except OSError:
        return None  # protocol not available on this kernel: nothing of the host can hold it either
    with sock:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((_normal(host_ip) or "0.0.0.0", port))
        except OSError as exc:
            return exc
    return None


def _index(taken: Taken) -> Index:
    """Our ports keyed by (port, protocol): a range scan looks each port up instead of rescanning."""
    if isinstance(taken, dict):
        return taken
    index: Index = {}
    for ip, port, protocol in taken:
        index.setdefault((port, protocol), []).append(ip)
    return index


def _socket_kind(protocol: str) -> tuple[int, int]:
    if protocol == "udp":
        return socket.SOCK_DGRAM, 0
    if protocol == "sctp":
        return socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132)
    return socket.SOCK_STREAM, 0


def _normal(host_ip: str) -> str:
    """Canonical text of an address ("" stays "": every address)."""
    if not host_ip:
        return ""
    try:
        return str(ipaddress.ip_address(host_ip.strip("[]")))
    except ValueError:
        return host_ip


def _family(host_ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host_ip else socket.AF_INET


def _endpoint(host_ip: str, port: int | str) -> str:
    address = _normal(host_ip) or "0.0.0.0"
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
