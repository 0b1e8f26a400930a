"""Pure parts of the network manager and the network/port CLI: names, scopes, /etc/hosts, flags."""

from __future__ import annotations

import pytest

from compose.cli.commands.network import ipam_pools
from compose.cli.commands.port import parse_private, pick_replica
from compose.errors import UsageError
from engine.containers.spec import ContainerSpec, Process
from engine.net.manager import NetworkManager, endpoint_names, host_nameservers, scope_of, veth_name
from engine.net.types import Endpoint, IpamPool

CID = "0123456789abcdef" * 4


def _spec(**fields) -> ContainerSpec:
    return ContainerSpec(
        id=CID, name="proj-web-1", image_id="x", layer_dirs=(), process=Process(args=("sh",)), **fields
    )


def test_veth_names_fit_ifnamsiz_and_differ_per_network() -> None:
    names = [veth_name(CID, i) for i in range(40)]
    assert all(n.startswith("pv0123456789") and len(n) <= 15 for n in names)
    assert len(set(names)) == 40


def test_endpoint_names_keep_order_and_drop_repeats() -> None:
    spec = _spec(hostname="web")
    assert endpoint_names(spec, ("web", "www")) == ("web", "www", "proj-web-1", CID[:12])


def test_scope_is_8_hex_and_differs_per_root(tmp_path) -> None:
    class Root:
        def __init__(self, path) -> None:
            self.path = path

    a, b = scope_of(Root(tmp_path / "a")), scope_of(Root(tmp_path / "b"))
    assert len(a) == 8 and int(a, 16) >= 0 and a != b


def test_hosts_entry_is_hostname_like_moby_then_the_container_name() -> None:
    ep = Endpoint(CID, "n", (), ipv4="172.18.0.2")
    name = _spec().name
    assert NetworkManager._hosts(_spec(), ep) == (("172.18.0.2", f"{CID[:12]} {name}"),)
    with_domain = _spec(hostname="web", domainname="example.org")
    assert NetworkManager._hosts(with_domain, ep) == (("172.18.0.2", f"web.example.org web {name}"),)


def test_host_nameservers_keep_loopback_and_fall_back(tmp_path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nsearch lan\n")
    assert host_nameservers(str(conf)) == ["127.0.0.53", "fe80::1"]
    conf.write_text("search lan\n")
    assert host_nameservers(str(conf)) == ["8.8.8.8", "8.8.4.4"]


def test_ipam_pools_pair_flags_by_position() -> None:
    pools = ipam_pools(["10.5.0.0/16", "10.6.0.0/16"], ["10.5.0.254"], ["10.5.1.0/24"], ["router=10.5.0.9"])
    assert pools == (
        IpamPool("10.5.0.0/16", "10.5.1.0/24", "10.5.0.254", (("router", "10.5.0.9"),)),
        IpamPool("10.6.0.0/16"),
    )
    with pytest.raises(UsageError):
        ipam_pools([], ["10.0.0.1"], [], [])


def test_private_port_and_replica() -> None:
    assert parse_private("80", "tcp") == (80, "tcp")
    assert parse_private("53/udp", "tcp") == (53, "udp")
    for bad in ("x", "0", "70000"):
        with pytest.raises(UsageError):
            parse_private(bad, "tcp")
    rows = [{"labels": {"com.docker.compose.container-number": "2"}, "id": "b"}, {"labels": {}, "id": "a"}]
    assert pick_replica(rows, 1)["id"] == "a"
    assert pick_replica(rows, 2)["id"] == "b"
    assert pick_replica(rows, 3) is None
