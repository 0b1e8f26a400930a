"""engine.net.ports: bind tests against real loopback sockets, our own table, choice of ports."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from engine.errors import PortInUse
from engine.net import ports


@contextlib.contextmanager
def held(kind=socket.SOCK_STREAM, address="127.0.0.1", port=0, listen=True):
    """A socket of 'the host' holding a port on loopback; closed whatever happens."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.bind((address, port))
        if listen and kind == socket.SOCK_STREAM:
            sock.listen()
        yield sock.getsockname()[1]
    finally:
        sock.close()


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_a_listening_tcp_port_is_not_free_on_its_address_nor_on_every_address():
    with held() as port:
        assert not ports.is_free("127.0.0.1", port, "tcp")
        assert not ports.is_free("", port, "tcp")
        assert not ports.is_free("0.0.0.0", port, "tcp")
        assert ports.is_free("127.0.0.2", port, "tcp")  # another address of lo
        assert ports.is_free("127.0.0.1", port, "udp")  # other protocol
    assert ports.is_free("127.0.0.1", port, "tcp")


def test_a_bound_but_not_listening_socket_holds_the_port():
    with held(listen=False) as port:
        assert not ports.is_free("127.0.0.1", port, "tcp")


def test_a_wildcard_holder_blocks_specific_addresses():
    with held(address="0.0.0.0") as port:
        assert not ports.is_free("127.0.0.1", port, "tcp")


def test_udp_port_held():
    with held(kind=socket.SOCK_DGRAM) as port:
        assert not ports.is_free("127.0.0.1", port, "udp")
        assert not ports.is_free("", port, "udp")
        assert ports.is_free("127.0.0.1", port, "tcp")


def test_hosts_error_is_worded_like_docker():
    with held() as port:
        in_use = "bind: address already in use"
        with pytest.raises(PortInUse, match=rf"listen tcp4 127\.0\.0\.1:{port}: {in_use}"):
            ports.check("127.0.0.1", port, "tcp")
        with pytest.raises(PortInUse, match=rf"listen tcp4 0\.0\.0\.0:{port}: bind: address already in use"):
            ports.choose("", "tcp", port)


def test_an_address_the_host_does_not_have_is_refused():
    with held() as port:  # a port nothing else holds now
        pass
    assert not ports.is_free("192.0.2.77", port, "tcp")
    with pytest.raises(PortInUse, match="assign requested address"):
        ports.check("192.0.2.77", port, "tcp")


def test_our_own_table_and_wildcards():
    with held() as port:
        pass  # free on the host
    taken = [("0.0.0.0", port, "tcp")]
    assert not ports.is_free("127.0.0.1", port, "tcp", taken)
    assert not ports.is_free("", port, "tcp", taken)
    assert ports.is_free("127.0.0.1", port, "udp", taken)
    assert ports.is_free("127.0.0.1", port + 1 if port < 65535 else port - 1, "tcp", taken)
    with pytest.raises(PortInUse, match=rf"^Bind for 127\.0\.0\.1:{port} failed: port is already allocated$"):
        ports.check("127.0.0.1", port, "tcp", taken)
    with pytest.raises(PortInUse, match=rf"^Bind for 0\.0\.0\.0:{port} failed: port is already allocated$"):
        ports.check("", port, "tcp", [("127.0.0.1", port, "tcp")])  # "" overlaps a specific address
    assert ports.is_free("127.0.0.2", port, "tcp", [("127.0.0.1", port, "tcp")])


def test_overlaps():
    assert ports.overlaps("", "10.0.0.1") and ports.overlaps("::1", "")
    assert ports.overlaps("0.0.0.0", "127.0.0.1") and ports.overlaps("127.0.0.1", "0.0.0.0")
    assert not ports.overlaps("0.0.0.0", "::1")
    assert ports.overlaps("::", "::1") and ports.overlaps("[::1]", "0:0::1")
    assert not ports.overlaps("127.0.0.1", "127.0.0.2")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_bind_test():
    with held(address="::1") as port:
        assert not ports.is_free("::1", port, "tcp")
        with pytest.raises(PortInUse, match=rf"listen tcp6 \[::1\]:{port}: bind: address already in use"):
            ports.check("::1", port, "tcp")


def test_choose_fixed_port():
    with held() as port:
        pass
    assert ports.choose("127.0.0.1", "tcp", port) == port
    assert ports.choose("127.0.0.1", "tcp", port, port) == port
    with held(port=port), pytest.raises(PortInUse):
        ports.choose("127.0.0.1", "tcp", port)


def test_choose_first_free_of_a_range():
    with held() as first:
        start = first
        end = min(start + 20, 65535)
        taken = [("127.0.0.1", start + 1, "tcp")] if start + 1 <= end else []
        got = ports.choose("127.0.0.1", "tcp", start, end, taken)
        assert start < got <= end and (not taken or got != start + 1)
        for port in range(start + 1, got):
            assert not ports.is_free("127.0.0.1", port, "tcp", taken)


def test_choose_range_exhausted():
    with held() as port, pytest.raises(PortInUse, match=rf"Bind for 127\.0\.0\.1:{port}-{port + 1} failed"):
        ports.choose("127.0.0.1", "tcp", port, port + 1, [("127.0.0.1", port + 1, "tcp")])
    with pytest.raises(PortInUse, match="invalid port range"):
        ports.choose("127.0.0.1", "tcp", 9000, 8000)


def test_choose_random_from_the_ephemeral_range_avoiding_taken_and_bound():
    low, high = ports.ephemeral_range()
    assert (low, high) == tuple(int(v) for v in Path(ports.EPHEMERAL_RANGE_FILE).read_text().split())
    seen = set()
    for _ in range(20):
        got = ports.choose("127.0.0.1", "tcp")
        assert low <= got <= high
        seen.add(got)
    assert len(seen) > 1  # random, not always the first


def test_choose_random_skips_what_is_bound_and_taken(tmp_path, monkeypatch):
    with held() as port:
        pass
    path = tmp_path / "range"
    monkeypatch.setattr(ports, "EPHEMERAL_RANGE_FILE", str(path))
    path.write_text(f"{port}\t{port + 2}\n")
    taken = [("0.0.0.0", port + 1, "tcp")]
    with held(port=port):
        for _ in range(10):  # whatever the random start, only port + 2 is left
            assert ports.choose("127.0.0.1", "tcp", taken=taken) == port + 2
        with pytest.raises(PortInUse, match=rf"127\.0\.0\.1:{port}-{port + 2} failed"):
            ports.choose("127.0.0.1", "tcp", taken=[*taken, ("127.0.0.1", port + 2, "tcp")])


def test_ephemeral_range_fallback(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("nonsense")
    assert ports.ephemeral_range(str(bad)) == ports.DEFAULT_EPHEMERAL
    assert ports.ephemeral_range(str(tmp_path / "missing")) == ports.DEFAULT_EPHEMERAL
