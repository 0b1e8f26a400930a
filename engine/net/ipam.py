"""Address arithmetic for networks: pools, subnets, gateways, free addresses. Pure; no I/O but `host_routes`.

CONTRACT (owner: engineer N1). Docker's default pools: 172.17.0.0/16 ... 172.31.0.0/16 as /16s, then
192.168.0.0/16 cut into /20s; IPv6 (enable_ipv6 without a subnet): a ULA /64 derived from the network id.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from engine.errors import AddressUnavailable, NetworkError
from engine.net.types import IpamPool, Subnet

DEFAULT_POOLS: tuple[tuple[str, int], ...] = (("172.17.0.0/12", 16), ("192.168.0.0/16", 20))
ROUTE_FILE = "/proc/net/route"
ROUTE6_FILE = "/proc/net/ipv6_route"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def plan_subnets(
    pools: Sequence[IpamPool],
    in_use: Iterable[str],
    *,
    enable_ipv6: bool = False,
    seed: str = "",
    routes: Iterable[str] | None = None,
) -> tuple[Subnet, ...]:
    """The subnets of a new network: the user's (checked: valid, gateway/ip_range inside, no overlap with
    `in_use`) or the first free default pool; IPv4 first. Raises AddressUnavailable naming the subnet.

    `routes` are the host's routed CIDRs a default pool must avoid (None: read them with host_routes());
    user subnets are not checked against them, as Docker does not (the user asked for that subnet).
    """
    taken = [_network(cidr) for cidr in in_use]
    planned: list[Subnet] = []
    for pool in pools:
        subnet = _user_subnet(pool, taken) if pool.subnet else _default_for(pool, taken, routes)
        taken.append(ipaddress.ip_network(subnet.subnet))
        planned.append(subnet)
    if not any(_is_v4(s) for s in planned):
        subnet = _default_for(IpamPool(), taken, routes)
        taken.append(ipaddress.ip_network(subnet.subnet))
        planned.append(subnet)
    has_v6 = any(not _is_v4(s) for s in planned)
    if has_v6 and not enable_ipv6:
        raise NetworkError("an IPv6 subnet is configured but enable_ipv6 is not set")
    if enable_ipv6 and not has_v6:
        planned.append(_ula_subnet(seed, taken))
    return tuple(sorted(planned, key=lambda s: 0 if _is_v4(s) else 1))


def next_address(subnet: Subnet, used: Iterable[str]) -> str:
    """The lowest free host address of `subnet` (inside ip_range if set), never the network, broadcast,
    gateway or aux addresses. Raises AddressUnavailable when exhausted.

    Cost grows with the number of used addresses (sorted once), not with the size of the subnet.
    """
    net = ipaddress.ip_network(subnet.subnet)
    pool = ipaddress.ip_network(subnet.ip_range) if subnet.ip_range else net
    low, high = _host_bounds(net)
    low = max(low, int(pool.network_address))
    high = min(high, int(pool.broadcast_address))
    blocked = {int(ipaddress.ip_address(a)) for a in _reserved(subnet)}
    blocked.update(int(ipaddress.ip_address(a)) for a in used if a)
    candidate = low
    for value in sorted(v for v in blocked if low <= v <= high):
        if value != candidate:
            break
        candidate += 1
    if candidate > high:
        where = subnet.ip_range or subnet.subnet
        raise AddressUnavailable(f"no available IPv{net.version} addresses left in {where}", subject=where)
    return str(ipaddress.ip_address(candidate))


def check_static(subnet: Subnet, address: str, used: Iterable[str]) -> None:
    """A static ipv4_address/ipv6_address must be inside the subnet, not reserved and not used."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise AddressUnavailable(f"invalid IP address {address!r}", subject=address) from None
    net = ipaddress.ip_network(subnet.subnet)
    if ip.version != net.version or ip not in net:
        message = f"no configured subnet or ip-range contain the IP address {address}"
        raise AddressUnavailable(message, subject=address)
    low, high = _host_bounds(net)
    if not low <= int(ip) <= high or any(ip == ipaddress.ip_address(r) for r in _reserved(subnet)):
        raise AddressUnavailable(f"address {address} is reserved in {subnet.subnet}", subject=address)
    if any(a and ipaddress.ip_address(a) == ip for a in used):
        raise AddressUnavailable("Address already in use", subject=address)


def mac_for(ipv4: str) -> str:
    """Docker's MAC derived from the address: 02:42 followed by the four bytes (02:42:ac:12:00:02)."""
    packed = ipaddress.IPv4Address(ipv4).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def host_routes() -> list[str]:
    """CIDRs the host already routes (from /proc/net/route and /proc/net/ipv6_route), default route excluded:
    a new network must not overlap them (another engine's bridge, a VPN, the LAN)."""
    return list(_routes_v4(Path(ROUTE_FILE))) + list(_routes_v6(Path(ROUTE6_FILE)))


# -- default pools ------------------------------------------------------------------------------------


def default_candidates() -> Iterator[IPNetwork]:
    """Every subnet of the default pools, in Docker's order of preference."""
    for base, prefix in DEFAULT_POOLS:
        start = ipaddress.ip_address(base.split("/")[0])  # 172.17.0.0/12: the /12 from 172.17 on
        for candidate in _network(base).subnets(new_prefix=prefix):
            if candidate.network_address >= start:
                yield candidate


def _default_for(pool: IpamPool, taken: list[IPNetwork], routes: Iterable[str] | None) -> Subnet:
    """The first default subnet overlapping neither our networks nor the host's routes."""
    if pool.gateway or pool.ip_range:
        raise NetworkError("gateway and ip_range need a subnet in the same ipam config entry")
    routed = [_network(r) for r in (host_routes() if routes is None else routes)]
    avoid = [n for n in taken + routed if n.version == 4]
    for candidate in default_candidates():
        if not any(candidate.overlaps(other) for other in avoid):
            return Subnet(subnet=str(candidate), gateway=str(candidate.network_address + 1))
    raise AddressUnavailable(
        "could not find an available, non-overlapping IPv4 address pool among the defaults"
        " to assign to the network"
    )


def _ula_subnet(seed: str, taken: list[IPNetwork]) -> Subnet:
    """fdXX:XXXX:XXXX::/64 with the 40-bit global id hashed from `seed` (RFC 4193), rehashed on overlap."""
    for attempt in range(64):
        digest = hashlib.sha256(f"{seed}/{attempt}".encode()).digest()
        prefix = bytes([0xFD]) + digest[:5] + bytes(10)
        net = ipaddress.IPv6Network((prefix, 64))
        if not any(net.overlaps(other) for other in taken if other.version == 6):
            return Subnet(subnet=str(net), gateway=str(net.network_address + 1))
    raise AddressUnavailable("could not find a free IPv6 unique local subnet")


# -- user subnets -------------------------------------------------------------------------------------


def _user_subnet(pool: IpamPool, taken: list[IPNetwork]) -> Subnet:
    """Validate one `ipam.config` entry with a subnet, as Docker does at network create."""
    assert pool.subnet is not None
    net = _strict_subnet(pool.subnet)
    for other in taken:
        if other.version == net.version and net.overlaps(other):
            raise AddressUnavailable(
                f"Pool overlaps with other one on this address space ({other})", subject=pool.subnet
            )
    ip_range = None
    if pool.ip_range:
        rng = _strict_subnet(pool.ip_range)
        if rng.version != net.version or not rng.subnet_of(net):  # type: ignore[arg-type]
            raise NetworkError(f"ip_range {pool.ip_range} is not inside subnet {net}", subject=pool.subnet)
        ip_range = str(rng)
    gateway = _inside(net, pool.gateway, "gateway") if pool.gateway else str(net.network_address + 1)
    aux = tuple((name, _inside(net, address, f"aux address {name}")) for name, address in pool.aux_addresses)
    return Subnet(subnet=str(net), gateway=gateway, ip_range=ip_range, aux_addresses=aux)


def _strict_subnet(cidr: str) -> IPNetwork:
    """A CIDR with no host bits set; Docker refuses 172.20.0.1/16 and names the subnet it meant."""
    try:
        return ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        pass
    try:
        meant = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise NetworkError(f"invalid subnet {cidr}", subject=cidr) from None
    raise NetworkError(f"invalid subnet {cidr}: it should be {meant}", subject=cidr)


def _inside(net: IPNetwork, address: str, what: str) -> str:
    """`address` parsed and checked to lie inside `net` (normalised text form)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise NetworkError(f"invalid {what} address {address!r}", subject=address) from None
    if ip.version != net.version or ip not in net:
        raise NetworkError(f"{what} {address} is not inside subnet {net}", subject=address)
    return str(ip)


# -- helpers ------------------------------------------------------------------------------------------


def _network(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr, strict=False)


def _is_v4(subnet: Subnet) -> bool:
    return ":" not in subnet.subnet


def _host_bounds(net: IPNetwork) -> tuple[int, int]:
    """First and last assignable host: the network address never; IPv4's broadcast never (/31, /32 aside)."""
    first, last = int(net.network_address), int(net.broadcast_address)
    if net.version == 4 and net.prefixlen >= 31:
        return first, last
    if net.version == 6:
        return first + 1, last
    return first + 1, last - 1


def _reserved(subnet: Subnet) -> list[str]:
    return [subnet.gateway, *(address for _, address in subnet.aux_addresses)]


def _routes_v4(path: Path) -> Iterator[str]:
    """Destination/mask pairs of /proc/net/route (little-endian hex), the default route skipped."""
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        if int(mask) == 0:
            continue
        yield str(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))


def _routes_v6(path: Path) -> Iterator[str]:
    """Destination/prefix of /proc/net/ipv6_route (32 hex digits, prefix in hex), ::/0 skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        if len(fields) < 2 or int(fields[1], 16) == 0:
            continue
        dest = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
        yield str(ipaddress.IPv6Network((dest, int(fields[1], 16)), strict=False))
