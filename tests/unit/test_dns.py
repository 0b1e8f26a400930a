"""engine.net.dns without sockets: parsing, our answers, compression, malformed packets, rotation.

Queries are built here by hand (not with the module's own builder) so a shared mistake cannot hide.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import NetworkError
from engine.net import dns
from engine.net.dns import Query, Responder, parse_query, read_name


def wire(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\0"


def query(
    name: str,
    qtype: int = 1,
    *,
    qid: int = 0x1234,
    flags: int = 0x0100,
    qclass: int = 1,
    extra: bytes = b"",
    arcount: int = 0,
) -> bytes:
    return (
        struct.pack("!HHHHHH", qid, flags, 1, 0, 0, arcount)
        + wire(name)
        + struct.pack("!HH", qtype, qclass)
        + extra
    )


def opt(size: int) -> bytes:
    """An EDNS OPT pseudo-record (root name, type 41, class = UDP payload size)."""
    return b"\0" + struct.pack("!HHIH", 41, size, 0, 0)


def decode(reply: bytes) -> dict:
    """Header fields and (type, ttl, rdata) of the answers; answer names must point at the question."""
    qid, flags, qd, an = struct.unpack_from("!HHHH", reply)
    pos = 12
    for _ in range(qd):
        while reply[pos]:
            pos += reply[pos] + 1
        pos += 5
    answers = []
    for _ in range(an):
        assert reply[pos : pos + 2] == b"\xc0\x0c"
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", reply, pos + 2)
        assert rclass == 1
        answers.append((rtype, ttl, reply[pos + 12 : pos + 12 + length]))
        pos += 12 + length
    assert pos == len(reply)
    return {"id": qid, "rcode": flags & 0xF, "tc": bool(flags & 0x200), "qr": bool(flags & 0x8000),
            "rd": bool(flags & 0x100), "ra": bool(flags & 0x80), "qd": qd, "answers": answers}  # fmt: skip


class FakeNames:
    """Two clients: 10.0.0.9 sees `web` (3 replicas) and `db`; anyone else sees nothing of ours."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.records = {
            "web": (["10.0.0.2", "10.0.0.3", "10.0.0.4"], ["fd00::2"]),
            "db": (["10.0.0.5"], []),
            "many": ([f"10.0.1.{i}" for i in range(1, 41)], []),
        }

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        self.asked.append((client_ip, name))
        if name == "boom":
            raise RuntimeError("database is locked")
        return self.records.get(name) if client_ip == "10.0.0.9" else None

    def reverse(self, client_ip: str, address: str) -> str | None:
        return (
            {"10.0.0.5": "proj-db-1", "fd00::2": "proj-web-1"}.get(address)
            if client_ip == "10.0.0.9"
            else None
        )

    def upstreams(self, client_ip: str) -> list[str]:
        return []


@pytest.fixture
def responder() -> Responder:
    return Responder(FakeNames())


def ask(responder: Responder, data: bytes, *, tcp: bool = False, client: str = "10.0.0.9") -> dict:
    reply = responder.respond(data, client, tcp=tcp)
    assert isinstance(reply, bytes), reply
    return decode(reply)


# -- parsing


def test_parse_query_fields_lowercase_and_question_kept_verbatim() -> None:
    data = query("Web.Proj", 28, qid=7)
    q = parse_query(data)
    assert (q.id, q.name, q.qtype, q.qclass, q.udp_size) == (7, "web.proj", 28, 1, 512)
    assert q.question == data[12:]


def test_parse_root_name() -> None:
    assert parse_query(query("", 2)).name == ""


def test_edns_size_read_from_opt_record() -> None:
    assert parse_query(query("web", extra=opt(1232), arcount=1)).udp_size == 1232
    assert parse_query(query("web", extra=opt(100), arcount=1)).udp_size == 512
    # an OPT record that is cut short costs only the EDNS size
    assert parse_query(query("web", extra=opt(1232)[:5], arcount=1)).udp_size == 512


def test_read_name_follows_backward_pointer() -> None:
    # "example.com" at 12, then "www" + pointer to 12
    data = b"\0" * 12 + wire("example.com") + b"\x03www\xc0\x0c"
    labels, end = read_name(data, 12 + len(wire("example.com")))
    assert labels == [b"www", b"example", b"com"]
    assert end == len(data)


@pytest.mark.parametrize(
    "tail",
    [
        b"\xc0\x0c",  # points at itself
        b"\x01a\xc0\x0c",  # points back to its own start: a loop
        b"\xc0\x20",  # points forward
        b"\xc0\x02",  # into the header
        b"\xc0",  # pointer cut in half
        b"\x80abc",  # reserved label type
        b"\x05ab",  # label longer than the packet
        b"\x03abc",  # no terminating zero
    ],
)
def test_read_name_rejects_loops_and_garbage(tail: bytes) -> None:
    with pytest.raises(NetworkError):
        read_name(b"\0" * 12 + tail, 12)


def test_two_pointers_pointing_at_each_other_terminate() -> None:
    # piece at 14 points to 12, piece at 12 points to 14: the second jump is not backwards
    data = b"\0" * 12 + b"\xc0\x0e\xc0\x0c"
    with pytest.raises(NetworkError):
        read_name(data, 14)


def test_name_longer_than_255_bytes_rejected() -> None:
    with pytest.raises(NetworkError):
        read_name(b"\0" * 12 + b"\x3f" + b"a" * 63 + wire(".".join(["b" * 63] * 3) + ".c"), 12)


def test_label_with_a_dot_is_never_ours() -> None:
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x05we.bb\0" + struct.pack("!HH", 1, 1)
    assert parse_query(data).name is None


@pytest.mark.parametrize("cut", range(0, len(query("web.proj"))))
def test_every_truncation_of_a_query_is_malformed_not_a_crash(cut: int) -> None:
    with pytest.raises(NetworkError):
        parse_query(query("web.proj")[:cut])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_only_raise_network_error(data: bytes) -> None:
    try:
        parse_query(data)
    except NetworkError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=12, max_size=60))
def test_respond_never_raises_on_garbage(data: bytes) -> None:
    reply = Responder(FakeNames()).respond(b"\0\1\0\0" + data, "10.0.0.9", tcp=False)
    assert reply is None or isinstance(reply, bytes | Query)


# -- our answers


def test_a_answer_ttl_600_rd_ra_and_id(responder: Responder) -> None:
    reply = ask(responder, query("db", qid=0xBEEF))
    assert reply["id"] == 0xBEEF and reply["qr"] and reply["rd"] and reply["ra"] and reply["rcode"] == 0
    assert reply["answers"] == [(1, 600, bytes([10, 0, 0, 5]))]


def test_round_robin_rotates_per_query(responder: Responder) -> None:
    firsts = [ask(responder, query("web"))["answers"][0][2][3] for _ in range(4)]
    assert firsts == [2, 3, 4, 2]
    every = ask(responder, query("web"))["answers"]
    assert sorted(a[2][3] for a in every) == [2, 3, 4]


def test_case_insensitive_and_question_case_echoed(responder: Responder) -> None:
    data = query("WeB")
    reply = responder.respond(data, "10.0.0.9", tcp=False)
    assert isinstance(reply, bytes)
    assert reply[12 : 12 + 5] == b"\x03WeB\0"
    assert len(decode(reply)["answers"]) == 3


def test_aaaa_and_other_types(responder: Responder) -> None:
    assert ask(responder, query("web", 28))["answers"] == [
        (28, 600, bytes.fromhex("fd00" + "00" * 13 + "02"))
    ]
    for qtype in (28, 255, 15, 16, 33):  # AAAA without v6, ANY, MX, TXT, SRV: NOERROR, nothing
        reply = ask(responder, query("db", qtype))
        assert (reply["rcode"], reply["answers"]) == (0, [])


def test_ptr_known_and_v6(responder: Responder) -> None:
    reply = ask(responder, query("5.0.0.10.in-addr.arpa", 12))
    assert reply["answers"] == [(12, 600, wire("proj-db-1"))]
    v6 = ".".join(reversed("fd00" + "0" * 27 + "2")) + ".ip6.arpa"
    assert ask(responder, query(v6, 12))["answers"] == [(12, 600, wire("proj-web-1"))]


@pytest.mark.parametrize(
    ("name", "qtype", "client"),
    [
        ("nothere", 1, "10.0.0.9"),  # not ours
        ("web.example.com", 1, "10.0.0.9"),  # a search-domain suffix: not ours unless exact
        ("web", 1, "10.9.9.9"),  # a client we do not know
        ("9.9.9.10.in-addr.arpa", 12, "10.0.0.9"),  # PTR of an address that is not ours
        ("1.2.3.in-addr.arpa", 12, "10.0.0.9"),  # a partial reverse name
    ],
)
def test_not_ours_is_forwarded(responder: Responder, name: str, qtype: int, client: str) -> None:
    result = responder.respond(query(name, qtype), client, tcp=False)
    assert isinstance(result, Query) and result.name == name


def test_other_class_is_forwarded(responder: Responder) -> None:
    assert isinstance(responder.respond(query("web", 16, qclass=3), "10.0.0.9", tcp=False), Query)


def test_names_failure_gives_servfail(responder: Responder) -> None:
    assert ask(responder, query("boom"))["rcode"] == 2


def test_truncation_over_udp_all_over_tcp(responder: Responder) -> None:
    udp = ask(responder, query("many"))
    assert udp["tc"] and 0 < len(udp["answers"]) < 40
    assert len(responder.respond(query("many"), "10.0.0.9", tcp=False)) <= 512  # type: ignore[arg-type]
    tcp = ask(responder, query("many"), tcp=True)
    assert not tcp["tc"] and len(tcp["answers"]) == 40


def test_malformed_header_readable_gets_formerr(responder: Responder) -> None:
    two = bytearray(query("web"))
    two[5] = 2  # qdcount 2
    reply = responder.respond(bytes(two), "10.0.0.9", tcp=False)
    assert isinstance(reply, bytes)
    assert decode(reply)["rcode"] == 1 and decode(reply)["id"] == 0x1234


def test_responses_and_runts_are_dropped(responder: Responder) -> None:
    assert responder.respond(query("web", flags=0x8100), "10.0.0.9", tcp=False) is None
    assert responder.respond(b"\x12\x34\x01", "10.0.0.9", tcp=False) is None


def test_other_opcodes_not_implemented(responder: Responder) -> None:
    assert ask(responder, query("web", flags=0x2800))["rcode"] == 4  # UPDATE


# -- helpers


def test_ptr_address() -> None:
    assert dns.ptr_address("4.3.2.1.in-addr.arpa") == "1.2.3.4"
    assert dns.ptr_address("4.3.2.01.in-addr.arpa") is None
    assert dns.ptr_address("256.3.2.1.in-addr.arpa") is None
    assert dns.ptr_address(".".join("1" + "0" * 31) + ".ip6.arpa") == "::1"
    assert dns.ptr_address("web") is None


def test_split_server() -> None:
    assert dns.split_server("1.2.3.4") == ("1.2.3.4", 53)
    assert dns.split_server("1.2.3.4:5353") == ("1.2.3.4", 5353)
    assert dns.split_server("fe80::1%eth0") == ("fe80::1", 53)
    assert dns.split_server("[::1]:5353") == ("::1", 5353)


def test_encode_name() -> None:
    assert dns.encode_name("a.bc.") == b"\x01a\x02bc\0"
    assert dns.encode_name(".") == b"\0"
    for bad in ("a" * 64, "é.x", ".".join(["a" * 60] * 5)):
        with pytest.raises(NetworkError):
            dns.encode_name(bad)


def test_rotation_memory_is_bounded(responder: Responder) -> None:
    for i in range(5000):
        responder._rotate(f"n{i}", ["a", "b"])
    assert len(responder._turns) <= 4097


def test_no_upstreams_servfail() -> None:
    responder = Responder(FakeNames())
    data = query("nothere")
    q = responder.respond(data, "10.0.0.9", tcp=False)
    assert isinstance(q, Query)
    reply = asyncio.run(responder._forward(data, q, "10.0.0.9", tcp=False))
    assert decode(reply)["rcode"] == 2
