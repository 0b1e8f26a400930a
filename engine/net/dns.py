"""The embedded DNS responder (run by the supervisor daemon in its asyncio loop). CONTRACT (owner: N4).

One UDP and one TCP listener on each network's gateway address, port 53 (in the host's namespace;
containers' resolv.conf name that gateway). A query for a name of ours gets the addresses of active
endpoints in the networks the asking container (found by its source address) shares; several replicas
are answered in rotating order. Anything else is forwarded to upstream servers, raw, and the answer
relayed unchanged; when the name is ours but the type has no record, NOERROR with no answers (like
Docker's 127.0.0.11).

As built:
- Own answers: TTL 600 (Docker's embedded resolver, libnetwork `respTTL`), RA set, the question echoed
  byte for byte (the asker's letter case), names compressed to the question. They ignore EDNS (no OPT
  in the reply, so the asker applies the plain 512-byte UDP limit); what does not fit is cut at a
  record boundary with TC set, and the asker retries over TCP, where everything fits.
- A name is ours only as asked: `web.example.com` is forwarded even when `web` is ours (a search
  domain is the asker's business). PTR for an address that `reverse` does not know is forwarded.
- Forwarding: raw bytes (OPT and all) to at most 3 upstreams in turn (Docker's `maxExtDNS`), each with
  a timeout; a UDP answer with TC is asked again over TCP and used when it fits what the asker accepts
  (512 or its EDNS size), else the TC answer is relayed and the asker retries over TCP itself. A TCP
  query is forwarded over TCP. No answer from any upstream: SERVFAIL. At most `max_inflight` forwards
  at once (each is one task); beyond that the asker gets SERVFAIL at once, so tasks cannot pile up.
- Listeners bind with IP_FREEBIND: `sync` may run before the bridge has its gateway address, and the
  socket starts receiving as soon as the address appears (no retry loop, no race with links).
- A malformed query gets FORMERR when its header is readable, else it is dropped; any other failure of
  one packet is logged (at most every 2 s) and dropped; the listener lives on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from engine.errors import NetworkError
from engine.frozen import frozen

log = logging.getLogger(__name__)

TTL = 600  # seconds; what Docker's embedded resolver gives its own records
UDP_LIMIT = 512  # RFC 1035 4.2.1: a DNS message over UDP without EDNS
MAX_UPSTREAMS = 3  # Docker tries at most 3 external servers too
FORWARD_TIMEOUT = 2.0  # per upstream: glibc waits 5 s per server, so two failed upstreams still leave time
MAX_INFLIGHT = 256  # concurrent forwards (UDP and TCP together)
MAX_TCP_CONNECTIONS = 64  # per listener
TCP_IDLE = 10.0  # seconds a TCP connection may sit without a complete query
LOG_EVERY = 2.0  # seconds between two warnings about bad packets

T_A, T_PTR, T_AAAA, T_OPT = 1, 12, 28, 41
C_IN, C_ANY = 1, 255
NOERROR, FORMERR, SERVFAIL, NOTIMP = 0, 1, 2, 4
F_QR, F_TC, F_RD, F_RA = 0x8000, 0x0200, 0x0100, 0x0080
OPCODE_MASK = 0x7800
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # linux/in.h
IPV6_FREEBIND = 78  # linux/in6.h (Linux 4.15+)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")
_LENGTH = struct.Struct("!H")
_NAME_POINTER = b"\xc0\x0c"  # the question's name, right after the 12-byte header


class Names(Protocol):
    """The data the responder asks for (implemented over the state database by the network manager)."""

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        """(IPv4 addresses, IPv6 addresses) of `name` as seen by the container at `client_ip`; None when
        the name is not one of ours (forward it). Names are case-insensitive, without the trailing dot."""
        ...

    def reverse(self, client_ip: str, address: str) -> str | None:
        """The container name for a PTR query of an address in a shared network, else None."""
        ...

    def upstreams(self, client_ip: str) -> list[str]:
        """The servers to forward to: the container's `dns:` entries, else the host's resolvers."""
        ...


# -- wire format (RFC 1035 section 4)


def _malformed(why: str) -> NetworkError:
    """A DNS message that does not parse (caught in this module: the packet is answered or dropped)."""
    return NetworkError(f"malformed DNS message: {why}", subject="dns")


@frozen
class Query:
    """The parts of a query the responder needs; `question` is echoed verbatim in our answers."""

    id: int
    flags: int
    name: str | None  # lower case, no trailing dot, "" for the root; None if a label holds a dot
    qtype: int
    qclass: int
    question: bytes
    udp_size: int  # what the asker accepts over UDP: 512, or its EDNS payload size


def read_name(data: bytes, offset: int) -> tuple[list[bytes], int]:
    """The labels of the name at `offset` and the offset just after it (after the first pointer, if any).

    Every compression pointer must point before the start of the piece that holds it and past the
    header: targets strictly decrease, so no packet can make this loop; 255 bytes at most (RFC 1035 3.1).
    """
    labels: list[bytes] = []
    end: int | None = None
    piece_start = pos = offset
    size = 1
    while True:
        if pos >= len(data):
            raise _malformed("name runs past the end")
        length = data[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise _malformed("truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if not 12 <= target < piece_start:
                raise _malformed("compression pointer that does not point backwards")
            if end is None:
                end = pos + 2
            piece_start = pos = target
            continue
        if length & 0xC0:
            raise _malformed("unknown label type")
        if length == 0:
            return labels, (pos + 1 if end is None else end)
        size += length + 1
        if size > 255 or pos + 1 + length > len(data):
            raise _malformed("name too long or cut short")
        labels.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length


def _name_of(labels: list[bytes]) -> str | None:
    """Dotted lower-case text; None when a label holds a dot (it cannot be one of our names)."""
    if any(b"." in label for label in labels):
        return None
    return b".".join(labels).lower().decode("latin-1")


def encode_name(name: str) -> bytes:
    """Wire form of a dotted ASCII name (trailing dot optional)."""
    labels = [label for label in name.rstrip(".").split(".") if label] if name.strip(".") else []
    try:
        raw = b"".join(bytes([len(b)]) + b for b in (label.encode("ascii") for label in labels)) + b"\0"
    except UnicodeEncodeError:
        raise NetworkError(f"not an ASCII DNS name: {name!r}", subject="dns") from None
    if len(raw) > 255 or any(not 0 < len(label) < 64 for label in labels):
        raise NetworkError(f"not a valid DNS name: {name!r}", subject="dns")
    return raw


def _skip_record(data: bytes, offset: int) -> tuple[int, int, int]:
    """(type, class, offset after) of the resource record at `offset`."""
    _, pos = read_name(data, offset)
    if pos + _RR_FIXED.size > len(data):
        raise _malformed("record cut short")
    rtype, rclass, _, rdlength = _RR_FIXED.unpack_from(data, pos)
    return rtype, rclass, pos + _RR_FIXED.size + rdlength


def _edns_size(data: bytes, offset: int, records: int) -> int:
    """The UDP payload size of the query's OPT record (RFC 6891), else 512; garbage after the question
    only costs the asker its EDNS size."""
    try:
        for _ in range(records):
            rtype, rclass, offset = _skip_record(data, offset)
            if rtype == T_OPT:
                return max(UDP_LIMIT, rclass)
    except NetworkError:
        pass
    return UDP_LIMIT


def parse_query(data: bytes) -> Query:
    """Header and the one question; raises NetworkError (a response, several questions, bad names)."""
    if len(data) < _HEADER.size:
        raise _malformed("shorter than a header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & F_QR:
        raise _malformed("a response, not a query")
    if qdcount != 1:
        raise _malformed(f"{qdcount} questions")
    labels, pos = read_name(data, _HEADER.size)
    if pos + 4 > len(data):
        raise _malformed("question cut short")
    qtype, qclass = struct.unpack_from("!HH", data, pos)
    size = _edns_size(data, pos + 4, ancount + nscount + arcount)
    return Query(qid, flags, _name_of(labels), qtype, qclass, data[_HEADER.size : pos + 4], size)


def build_response(
    query: Query, rcode: int, answers: Sequence[tuple[int, bytes]] = (), *, limit: int = 65535
) -> bytes:
    """Our reply: the question echoed, `answers` as (type, rdata) owned by the question's name, cut at a
    record boundary with TC set when the message would exceed `limit`."""
    flags = F_QR | F_RA | (query.flags & (OPCODE_MASK | F_RD)) | rcode
    size = _HEADER.size + len(query.question)
    kept: list[bytes] = []
    for rtype, rdata in answers:
        record = _NAME_POINTER + _RR_FIXED.pack(rtype, C_IN, TTL, len(rdata)) + rdata
        if size + len(record) > limit:
            flags |= F_TC
            break
        kept.append(record)
        size += len(record)
    return _HEADER.pack(query.id, flags, 1, len(kept), 0, 0) + query.question + b"".join(kept)


def error_reply(data: bytes, rcode: int) -> bytes | None:
    """A header-only reply (FORMERR, NOTIMP) to a message whose header reads as a query, else None."""
    if len(data) < _HEADER.size:
        return None
    qid, flags = struct.unpack_from("!HH", data)
    if flags & F_QR:
        return None
    return _HEADER.pack(qid, F_QR | F_RA | (flags & (OPCODE_MASK | F_RD)) | rcode, 0, 0, 0, 0)


def ptr_address(name: str) -> str | None:
    """The address a reverse name stands for (`4.3.2.1.in-addr.arpa` -> 1.2.3.4), else None."""
    try:
        if name.endswith(".in-addr.arpa"):
            parts = name.removesuffix(".in-addr.arpa").split(".")
            if len(parts) == 4 and all(p.isdigit() for p in parts):
                return str(ipaddress.IPv4Address(".".join(reversed(parts))))
        elif name.endswith(".ip6.arpa"):
            nibbles = name.removesuffix(".ip6.arpa").split(".")
            if len(nibbles) == 32 and all(len(n) == 1 for n in nibbles):
                return str(ipaddress.IPv6Address(bytes.fromhex("".join(reversed(nibbles)))))
    except ValueError:
        pass
    return None


def split_server(server: str) -> tuple[str, int]:
    """`1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353` -> (host, port)."""
    if server.startswith("["):
        host, _, port = server[1:].partition("]")
        return host, int(port.lstrip(":") or 53)
    if server.count(":") == 1:
        host, port = server.split(":")
        return host, int(port)
    return server.split("%")[0], 53


def answer_is_for(reply: bytes, query: bytes) -> bool:
    """A reply to this query: a response carrying the query's id."""
    return len(reply) >= _HEADER.size and reply[:2] == query[:2] and bool(reply[2] & 0x80)


def truncated(reply: bytes) -> bool:
    return len(reply) >= 4 and bool(reply[2] & 0x02)


# -- forwarding


async def udp_exchange(host: str, port: int, data: bytes, timeout: float) -> bytes:
    """One query over a connected UDP socket (random source port; only that server's datagrams)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect((host, port))
        async with asyncio.timeout(timeout):
            await loop.sock_sendall(sock, data)
            while True:
                reply = await loop.sock_recv(sock, 65535)
                if answer_is_for(reply, data):
                    return reply


async def tcp_exchange(host: str, port: int, data: bytes, timeout: float) -> bytes:
    """One query over a fresh TCP connection (RFC 1035 4.2.2: two-byte length prefix)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(_LENGTH.pack(len(data)) + data)
            await writer.drain()
            (length,) = _LENGTH.unpack(await reader.readexactly(2))
            reply = await reader.readexactly(length)
        finally:
            writer.close()
    if not answer_is_for(reply, data):
        raise _malformed("upstream answered another query")
    return reply


# -- the responder


class _Throttle:
    """Warnings at most every LOG_EVERY seconds, with the count of those left out."""

    def __init__(self) -> None:
        self.last = 0.0
        self.dropped = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < LOG_EVERY:
            self.dropped += 1
            return
        suffix = f" ({self.dropped} more since the last warning)" if self.dropped else ""
        log.warning(message + suffix, *args)
        self.last, self.dropped = now, 0


class _UdpListener(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.transport is not None:
            self.responder._datagram(self.transport, data, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors from a client that went away: nothing to do, the listener stays."""
        log.debug("dns listener: %s", exc)


@dataclass(slots=True)
class _Listener:
    udp: asyncio.DatagramTransport
    tcp: asyncio.Server
    port: int
    connections: set[asyncio.Task]


def _bind(address: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A non-blocking socket on address:port with FREEBIND (the address may not exist yet)."""
    v6 = ipaddress.ip_address(address).version == 6
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind)
    try:
        if v6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
        else:
            sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Responder:
    """Listeners per gateway address; `sync` opens and closes them to match the networks."""

    def __init__(
        self,
        names: Names,
        *,
        port: int = 53,
        timeout: float = FORWARD_TIMEOUT,
        max_inflight: int = MAX_INFLIGHT,
    ) -> None:
        self.names = names
        self.port = port
        self.timeout = timeout
        self.max_inflight = max_inflight
        self._listeners: dict[str, _Listener] = {}
        self._forwards: set[asyncio.Task] = set()
        self._inflight = 0
        self._turns: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._throttle = _Throttle()

    # -- listeners

    def listening(self) -> dict[str, int]:
        """address -> port (the same for UDP and TCP) of every open listener."""
        return {address: listener.port for address, listener in self._listeners.items()}

    async def sync(self, addresses: Iterable[str]) -> None:
        """Listen on exactly these addresses (UDP and TCP); new ones opened, gone ones closed.

        Raises NetworkError naming the addresses that could not be bound, after opening all others."""
        try:
            wanted = {str(ipaddress.ip_address(a)) for a in addresses}
        except ValueError as exc:
            raise NetworkError(f"cannot listen for DNS: {exc}", subject="dns") from None
        async with self._lock:
            for address in set(self._listeners) - wanted:
                await self._close_listener(address)
            failed = []
            for address in sorted(wanted - set(self._listeners)):
                try:
                    self._listeners[address] = await self._open(address)
                except OSError as exc:
                    failed.append(f"{address}: {exc.strerror or exc}")
        if failed:
            raise NetworkError("cannot listen for DNS on " + "; ".join(failed), subject="dns")

    async def _open(self, address: str) -> _Listener:
        loop = asyncio.get_running_loop()
        udp_sock = _bind(address, self.port, socket.SOCK_DGRAM)
        port = udp_sock.getsockname()[1]
        try:
            tcp_sock = _bind(address, port, socket.SOCK_STREAM)
        except BaseException:
            udp_sock.close()
            raise
        connections: set[asyncio.Task] = set()
        try:
            server = await asyncio.start_server(partial(self._stream, connections), sock=tcp_sock, backlog=64)
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _UdpListener(self), sock=udp_sock)
        return _Listener(transport, server, port, connections)

    async def _close_listener(self, address: str) -> None:
        listener = self._listeners.pop(address)
        listener.udp.close()
        listener.tcp.close()
        for task in list(listener.connections):
            task.cancel()
        await asyncio.gather(*listener.connections, return_exceptions=True)
        await listener.tcp.wait_closed()

    async def close(self) -> None:
        """Close every listener and connection and cancel forwards in flight."""
        async with self._lock:
            for address in list(self._listeners):
                await self._close_listener(address)
            for task in list(self._forwards):
                task.cancel()
            await asyncio.gather(*self._forwards, return_exceptions=True)

    # -- answering

    def respond(self, data: bytes, client_ip: str, *, tcp: bool) -> bytes | Query | None:
        """Our reply, or the parsed query when it must be forwarded, or None to drop the packet."""
        try:
            query = parse_query(data)
        except NetworkError as exc:
            self._throttle.warn("dns: %s from %s", exc, client_ip)
            return error_reply(data, FORMERR)
        if query.flags & OPCODE_MASK:
            return build_response(query, NOTIMP)
        try:
            local = self._local(query, client_ip, UDP_LIMIT if not tcp else 65535)
        except Exception as exc:  # the state database, a bad name in it: the asker gets SERVFAIL
            self._throttle.warn("dns: answering %s for %s: %s", query.name, client_ip, exc)
            return build_response(query, SERVFAIL)
        return query if local is None else local

    def _local(self, query: Query, client_ip: str, limit: int) -> bytes | None:
        """The answer when the name is ours, else None (forward)."""
        if query.name is None or query.qclass not in (C_IN, C_ANY):
            return None
        if query.qtype == T_PTR:
            address = ptr_address(query.name)
            if address is not None:
                host = self.names.reverse(client_ip, address)
                if host is None:
                    return None
                return build_response(query, NOERROR, [(T_PTR, encode_name(host))], limit=limit)
        found = self.names.lookup(client_ip, query.name)
        if found is None:
            return None
        v4, v6 = found
        if query.qtype == T_A:
            answers = [(T_A, ipaddress.IPv4Address(a).packed) for a in self._rotate(query.name, v4)]
        elif query.qtype == T_AAAA:
            answers = [(T_AAAA, ipaddress.IPv6Address(a).packed) for a in self._rotate(query.name, v6)]
        else:
            answers = []
        return build_response(query, NOERROR, answers, limit=limit)

    def _rotate(self, name: str, addresses: list[str]) -> list[str]:
        """Round robin: each query for `name` starts one address further."""
        if len(addresses) < 2:
            return addresses
        if len(self._turns) > 4096:
            self._turns.clear()
        turn = self._turns.get(name, 0)
        self._turns[name] = turn + 1
        start = turn % len(addresses)
        return addresses[start:] + addresses[:start]

    # -- UDP and TCP plumbing

    def _datagram(self, transport: asyncio.DatagramTransport, data: bytes, addr: tuple) -> None:
        try:
            reply = self.respond(data, addr[0], tcp=False)
            if isinstance(reply, Query):
                reply = self._start_forward(transport, data, reply, addr)
            if reply is not None:
                transport.sendto(reply, addr)
        except Exception as exc:
            self._throttle.warn("dns: dropped a query from %s: %s", addr[0], exc)

    def _start_forward(
        self, transport: asyncio.DatagramTransport, data: bytes, query: Query, addr: tuple
    ) -> bytes | None:
        """A task relaying the upstream's answer; SERVFAIL at once when too many are in flight."""
        if self._inflight >= self.max_inflight:
            self._throttle.warn("dns: more than %d forwards in flight", self.max_inflight)
            return build_response(query, SERVFAIL)
        self._inflight += 1
        task = asyncio.get_running_loop().create_task(self._relay(transport, data, query, addr))
        self._forwards.add(task)
        task.add_done_callback(self._forwards.discard)
        return None

    async def _relay(
        self, transport: asyncio.DatagramTransport, data: bytes, query: Query, addr: tuple
    ) -> None:
        try:
            reply = await self._forward(data, query, addr[0], tcp=False)
            if not transport.is_closing():
                transport.sendto(reply, addr)
        except Exception as exc:
            self._throttle.warn("dns: forwarding for %s: %s", addr[0], exc)
        finally:
            self._inflight -= 1

    async def _forward(self, data: bytes, query: Query, client_ip: str, *, tcp: bool) -> bytes:
        """The first upstream's answer, relayed unchanged; SERVFAIL when none answers."""
        ours = set(self.listening().items())
        try:
            servers = self.names.upstreams(client_ip)[:MAX_UPSTREAMS]
        except Exception as exc:  # the state database: the asker gets SERVFAIL, not silence
            self._throttle.warn("dns: upstreams for %s: %s", client_ip, exc)
            servers = []
        for server in servers:
            try:
                host, port = split_server(server)
                if (str(ipaddress.ip_address(host)), port) in ours:
                    continue  # a container naming its own gateway as `dns:` would loop
                if tcp:
                    return await tcp_exchange(host, port, data, self.timeout)
                reply = await udp_exchange(host, port, data, self.timeout)
                if truncated(reply):
                    reply = await self._over_tcp(host, port, data, query.udp_size) or reply
                return reply
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError, NetworkError) as exc:
                log.debug("dns: upstream %s for %s: %r", server, client_ip, exc)
        return build_response(query, SERVFAIL)

    async def _over_tcp(self, host: str, port: int, data: bytes, limit: int) -> bytes | None:
        """The full answer over TCP when it fits what the asker takes over UDP, else None."""
        try:
            reply = await tcp_exchange(host, port, data, self.timeout)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, NetworkError):
            return None
        return reply if len(reply) <= limit else None

    async def _stream(
        self, connections: set[asyncio.Task], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """One TCP connection: length-prefixed queries answered in order until EOF or TCP_IDLE."""
        task = asyncio.current_task()
        if task is None or len(connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        connections.add(task)
        client_ip = writer.get_extra_info("peername")[0]
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):
                    (length,) = _LENGTH.unpack(await reader.readexactly(2))
                    data = await reader.readexactly(length)
                reply = await self._stream_reply(data, client_ip)
                if reply is not None:
                    writer.write(_LENGTH.pack(len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        except Exception as exc:
            self._throttle.warn("dns: TCP client %s: %s", client_ip, exc)
        finally:
            connections.discard(task)
            writer.close()

    async def _stream_reply(self, data: bytes, client_ip: str) -> bytes | None:
        reply = self.respond(data, client_ip, tcp=True)
        if not isinstance(reply, Query):
            return reply
        if self._inflight >= self.max_inflight:
            return build_response(reply, SERVFAIL)
        self._inflight += 1
        try:
            return await self._forward(data, reply, client_ip, tcp=True)
        finally:
            self._inflight -= 1


__all__ = ["Names", "Query", "Responder", "build_response", "parse_query", "read_name"]
