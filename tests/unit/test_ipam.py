"""engine.net.ipam: default pools, user subnets, free addresses, MACs, host routes."""

from __future__ import annotations

import ipaddress
import time

import pytest

from engine.errors import AddressUnavailable, NetworkError
from engine.net import ipam
from engine.net.types import IpamPool, Subnet


def plan(pools=(), in_use=(), routes=(), **kw):
    return ipam.plan_subnets(list(pools), list(in_use), routes=list(routes), **kw)


# -- default pools


def test_first_default_pool_is_172_17():
    (subnet,) = plan()
    assert subnet == Subnet(subnet="172.17.0.0/16", gateway="172.17.0.1")


def test_default_pools_skip_our_networks_and_host_routes():
    (subnet,) = plan(in_use=["172.17.0.0/16", "172.19.0.0/16"], routes=["172.18.5.0/24"])
    assert subnet.subnet == "172.20.0.0/16"


def test_default_pools_order_then_192_168_twenties():
    candidates = [str(c) for c in ipam.default_candidates()]
    assert candidates[:2] == ["172.17.0.0/16", "172.18.0.0/16"]
    assert candidates[14] == "172.31.0.0/16"
    assert candidates[15:17] == ["192.168.0.0/20", "192.168.16.0/20"]
    assert len(candidates) == 15 + 16
    taken = [f"172.{n}.0.0/16" for n in range(17, 32)]
    (subnet,) = plan(in_use=taken, routes=["192.168.1.0/24"])  # a LAN route inside the first /20
    assert subnet.subnet == "192.168.16.0/20" and subnet.gateway == "192.168.16.1"


def test_a_wide_route_blocks_every_pool_it_covers():
    (subnet,) = plan(routes=["172.16.0.0/12"])
    assert subnet.subnet == "192.168.0.0/20"


def test_defaults_exhausted():
    with pytest.raises(AddressUnavailable, match="non-overlapping IPv4 address pool"):
        plan(in_use=["172.16.0.0/12", "192.168.0.0/16"])


def test_ipv6_routes_do_not_block_ipv4_pools():
    (subnet,) = plan(routes=["fd00::/8"])
    assert subnet.subnet == "172.17.0.0/16"


def test_routes_default_to_the_host_table(monkeypatch):
    monkeypatch.setattr(ipam, "host_routes", lambda: ["172.17.0.0/16"])
    (subnet,) = ipam.plan_subnets([], [])
    assert subnet.subnet == "172.18.0.0/16"


# -- IPv6


def test_enable_ipv6_without_subnet_gives_a_ula_64_from_the_seed():
    v4, v6 = plan(enable_ipv6=True, seed="net-a")
    net = ipaddress.ip_network(v6.subnet)
    assert v4.subnet == "172.17.0.0/16"
    assert net.prefixlen == 64 and v6.subnet.startswith("fd") and net.is_private
    assert v6.gateway == str(net.network_address + 1)
    assert plan(enable_ipv6=True, seed="net-a")[1] == v6  # stable for a seed
    assert plan(enable_ipv6=True, seed="net-b")[1] != v6


def test_ula_rehashed_when_taken():
    _, first = plan(enable_ipv6=True, seed="s")
    _, second = plan(in_use=[first.subnet], enable_ipv6=True, seed="s")
    assert second.subnet != first.subnet


def test_user_ipv6_subnet_comes_after_ipv4():
    pools = [IpamPool(subnet="fd00:1::/64"), IpamPool(subnet="10.5.0.0/24")]
    v4, v6 = plan(pools, enable_ipv6=True)
    assert (v4.subnet, v6.subnet, v6.gateway) == ("10.5.0.0/24", "fd00:1::/64", "fd00:1::1")


def test_only_an_ipv6_subnet_still_gets_a_default_ipv4():
    v4, v6 = plan([IpamPool(subnet="2001:db8::/64")], enable_ipv6=True)
    assert v4.subnet == "172.17.0.0/16" and v6.subnet == "2001:db8::/64"


def test_ipv6_subnet_without_enable_ipv6_is_refused():
    with pytest.raises(NetworkError, match="enable_ipv6"):
        plan([IpamPool(subnet="fd00:1::/64")])


# -- user subnets


def test_user_subnet_with_gateway_range_and_aux():
    pool = IpamPool(
        subnet="10.10.0.0/16",
        ip_range="10.10.5.0/24",
        gateway="10.10.0.254",
        aux_addresses=(("r", "10.10.5.1"),),
    )
    (subnet,) = plan([pool])
    assert subnet == Subnet("10.10.0.0/16", "10.10.0.254", "10.10.5.0/24", (("r", "10.10.5.1"),))


def test_user_subnet_default_gateway_is_the_first_host():
    assert plan([IpamPool(subnet="10.1.2.0/24")])[0].gateway == "10.1.2.1"


def test_user_subnet_with_host_bits_set_is_invalid_like_docker():
    with pytest.raises(NetworkError, match=r"invalid subnet 172\.20\.0\.1/16: it should be 172\.20\.0\.0/16"):
        plan([IpamPool(subnet="172.20.0.1/16")])
    with pytest.raises(NetworkError, match="invalid subnet fd00::1/64: it should be fd00::/64"):
        plan([IpamPool(subnet="fd00::1/64")], enable_ipv6=True)
    with pytest.raises(NetworkError, match="invalid subnet"):
        plan([IpamPool(subnet="10.0.0.0/33")])
    with pytest.raises(NetworkError, match="invalid subnet"):
        plan([IpamPool(subnet="banana")])


@pytest.mark.parametrize(
    "pool, message",
    [
        (IpamPool(subnet="10.1.0.0/24", gateway="10.2.0.1"), "gateway 10.2.0.1 is not inside"),
        (IpamPool(subnet="10.1.0.0/24", gateway="fd00::1"), "not inside"),
        (IpamPool(subnet="10.1.0.0/24", gateway="nope"), "invalid gateway"),
        (IpamPool(subnet="10.1.0.0/24", ip_range="10.1.0.0/23"), "ip_range 10.1.0.0/23 is not inside"),
        (IpamPool(subnet="10.1.0.0/24", ip_range="10.1.0.1/28"), "invalid subnet 10.1.0.1/28"),
        (IpamPool(subnet="10.1.0.0/24", aux_addresses=(("x", "10.9.0.1"),)), "aux address x"),
        (IpamPool(gateway="10.1.0.1"), "need a subnet"),
    ],
)
def test_user_subnet_fields_must_lie_inside(pool, message):
    with pytest.raises(NetworkError, match=message):
        plan([pool])


def test_user_subnet_overlapping_ours_is_unavailable_but_host_routes_are_allowed():
    with pytest.raises(AddressUnavailable, match="overlaps"):
        plan([IpamPool(subnet="172.18.1.0/24")], in_use=["172.18.0.0/16"])
    with pytest.raises(AddressUnavailable, match="overlaps"):
        plan([IpamPool(subnet="10.0.0.0/24"), IpamPool(subnet="10.0.0.128/25")])
    assert plan([IpamPool(subnet="192.0.2.0/24")], routes=["192.0.2.0/24"])[0].subnet == "192.0.2.0/24"


# -- addresses


def test_next_address_lowest_free_skipping_gateway_and_aux():
    s = Subnet("10.0.0.0/24", "10.0.0.1", aux_addresses=(("a", "10.0.0.3"),))
    assert ipam.next_address(s, []) == "10.0.0.2"
    assert ipam.next_address(s, ["10.0.0.2"]) == "10.0.0.4"
    assert ipam.next_address(s, ["10.0.0.2", "10.0.0.5"]) == "10.0.0.4"
    assert ipam.next_address(s, ["10.0.0.2", "10.0.0.4", "10.0.0.6"]) == "10.0.0.5"


def test_next_address_fills_a_released_hole_first():
    s = Subnet("10.0.0.0/24", "10.0.0.1")
    used = [f"10.0.0.{n}" for n in range(2, 50) if n != 7]
    assert ipam.next_address(s, used) == "10.0.0.7"


def test_next_address_inside_ip_range_and_gateway_at_the_end():
    s = Subnet("10.0.0.0/16", "10.0.255.254", ip_range="10.0.8.0/30")
    got = []
    for _ in range(4):
        got.append(ipam.next_address(s, got))
    assert got == ["10.0.8.0", "10.0.8.1", "10.0.8.2", "10.0.8.3"]
    with pytest.raises(AddressUnavailable, match=r"10\.0\.8\.0/30"):
        ipam.next_address(s, got)


def test_next_address_never_network_or_broadcast():
    s = Subnet("10.0.0.0/30", "10.0.0.1")
    assert ipam.next_address(s, []) == "10.0.0.2"
    with pytest.raises(AddressUnavailable, match="no available IPv4 addresses"):
        ipam.next_address(s, ["10.0.0.2"])
    r = Subnet("10.0.0.0/24", "10.0.0.1", ip_range="10.0.0.0/24")
    assert ipam.next_address(r, []) == "10.0.0.2"


def test_next_address_ipv6():
    s = Subnet("fd00::/64", "fd00::1")
    assert ipam.next_address(s, ["fd00::2"]) == "fd00::3"


def test_next_address_fast_on_a_full_slash_16():
    s = Subnet("172.18.0.0/16", "172.18.0.1")
    net = ipaddress.ip_network(s.subnet)
    used = [str(net.network_address + n) for n in range(2, 60_000)]
    start = time.perf_counter()
    got = ipam.next_address(s, used)
    elapsed = time.perf_counter() - start
    assert got == str(net.network_address + 60_000)
    assert elapsed < 0.5  # sorting 60k ints; enumerating the subnet per candidate would take far longer


def test_check_static():
    s = Subnet("10.0.0.0/24", "10.0.0.1", ip_range="10.0.0.128/25", aux_addresses=(("a", "10.0.0.9"),))
    ipam.check_static(s, "10.0.0.20", ["10.0.0.2"])  # outside ip_range is fine, as in Docker
    for bad, message in [
        ("10.0.1.5", "no configured subnet"),
        ("fd00::5", "no configured subnet"),
        ("10.0.0.1", "reserved"),
        ("10.0.0.9", "reserved"),
        ("10.0.0.0", "reserved"),
        ("10.0.0.255", "reserved"),
        ("10.0.0.2", "Address already in use"),
        ("ten", "invalid IP address"),
    ]:
        with pytest.raises(AddressUnavailable, match=message):
            ipam.check_static(s, bad, ["10.0.0.2"])


def test_mac_for():
    assert ipam.mac_for("172.18.0.2") == "02:42:ac:12:00:02"
    assert ipam.mac_for("10.255.0.1") == "02:42:0a:ff:00:01"


# -- host routes


def test_host_routes_parse_proc_files(tmp_path, monkeypatch):
    route = tmp_path / "route"
    route.write_text(
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    )
    route6 = tmp_path / "ipv6_route"
    route6.write_text(
        "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n"
    )
    monkeypatch.setattr(ipam, "ROUTE_FILE", str(route))
    monkeypatch.setattr(ipam, "ROUTE6_FILE", str(route6))
    assert ipam.host_routes() == ["192.168.2.0/24", "172.17.0.0/16", "fd00::/64"]


def test_host_routes_of_this_machine_are_cidrs():
    for cidr in ipam.host_routes():
        assert ipaddress.ip_network(cidr).prefixlen > 0
