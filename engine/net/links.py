"""The kernel side of networks, through pyroute2 (imported lazily: it costs 125 ms). CONTRACT (owner: N2).

Every function is idempotent where it says so, so a crashed half-done operation can simply be redone
or undone. Namespaces: `setns` around a plain `IPRoute()` (never `IPRoute(netns=...)`: it forks a helper).
Call from a single-threaded process or keep the setns in one thread (setns changes the calling thread).
"""

from __future__ import annotations

from collections.abc import Sequence


def ensure_bridge(name: str, addresses: Sequence[str], mtu: int = 1500) -> None:
    """Create (if missing) and bring up bridge `name` with the gateway `addresses` (CIDR: "172.18.0.1/16"),
    its MTU, and `route_localnet=1` (DNAT to 127.0.0.1 needs it). Idempotent."""
    raise NotImplementedError


def delete_bridge(name: str) -> None:
    """Delete the bridge (its attached host veths go with it); no error if it is missing."""
    raise NotImplementedError


def create_netns(path: str) -> None:
    """A new network namespace kept alive by a bind mount on `path` (like `ip netns add`), loopback up.
    Idempotent: an existing namespace file is kept."""
    raise NotImplementedError


def delete_netns(path: str) -> None:
    """Unmount (MNT_DETACH) and unlink the namespace file; no error if missing."""
    raise NotImplementedError


def attach(
    netns_path: str,
    bridge: str,
    host_veth: str,
    ifname: str,
    addresses: Sequence[str],
    *,
    mac: str | None = None,
    mtu: int = 1500,
    gateway: str | None = None,
    gateway6: str | None = None,
) -> None:
    """A veth pair: `host_veth` enslaved to `bridge` and up; the peer moved into the namespace as `ifname`
    (eth0, eth1, ...) with `addresses` (CIDR), MAC, MTU, up; a default route via `gateway` when given.
    On failure nothing is left (the host veth is deleted)."""
    raise NotImplementedError


def detach(host_veth: str) -> None:
    """Delete the host-side veth explicitly (the kernel may take seconds after the namespace dies)."""
    raise NotImplementedError


def link_names(prefix: str) -> list[str]:
    """Names of host links starting with `prefix` (sweeping what a crash left)."""
    raise NotImplementedError


def enable_forwarding() -> None:
    """net.ipv4.ip_forward=1 (and IPv6 forwarding when asked): outbound NAT needs it; Docker sets it too."""
    raise NotImplementedError
