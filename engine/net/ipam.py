"""Address arithmetic for networks: pools, subnets, gateways, free addresses. Pure; no I/O but `host_routes`.

CONTRACT (owner: engineer N1). Docker's default pools: 172.17.0.0/16 ... 172.31.0.0/16 as /16s, then
192.168.0.0/16 cut into /20s; IPv6 (enable_ipv6 without a subnet): a ULA /64 derived from the network id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.net.types import IpamPool, Subnet

DEFAULT_POOLS: tuple[tuple[str, int], ...] = (("172.17.0.0/12", 16), ("192.168.0.0/16", 20))


def plan_subnets(
    pools: Sequence[IpamPool], in_use: Iterable[str], *, enable_ipv6: bool = False, seed: str = ""
) -> tuple[Subnet, ...]:
    """The subnets of a new network: the user's (checked: valid, gateway/ip_range inside, no overlap with
    `in_use`) or the first free default pool; IPv4 first. Raises AddressUnavailable naming the subnet."""
    raise NotImplementedError


def next_address(subnet: Subnet, used: Iterable[str]) -> str:
    """The lowest free host address of `subnet` (inside ip_range if set), never the network, broadcast,
    gateway or aux addresses. Raises AddressUnavailable when exhausted."""
    raise NotImplementedError


def check_static(subnet: Subnet, address: str, used: Iterable[str]) -> None:
    """A static ipv4_address/ipv6_address must be inside the subnet, not reserved and not used."""
    raise NotImplementedError


def mac_for(ipv4: str) -> str:
    """Docker's MAC derived from the address: 02:42 followed by the four bytes (02:42:ac:12:00:02)."""
    raise NotImplementedError


def host_routes() -> list[str]:
    """CIDRs the host already routes (from /proc/net/route and /proc/net/ipv6_route), default route excluded:
    a new network must not overlap them (another engine's bridge, a VPN, the LAN)."""
    raise NotImplementedError
