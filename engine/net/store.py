"""The network tables of the state database (migration v5). CONTRACT (owner: engineer N1).

Tables (documented in engine/state/LAYOUT.md):
  networks(id PK, name UNIQUE, bridge UNIQUE, spec JSON, subnets JSON, mtu, created)
  endpoints(container_id, network_id REFERENCES networks, position, names JSON, static_ipv4, static_ipv6,
            mac, ipv4, ipv6, host_veth, active; PRIMARY KEY (container_id, network_id);
            UNIQUE (network_id, ipv4), UNIQUE (network_id, ipv6))
  published_ports(container_id, protocol, host_ip, host_port, container_port, container_ip, bridge)
Endpoint rows exist from container create to container remove (a network with endpoints is in use);
addresses are set by `activate` at each start and cleared by `deactivate` at each stop. Every write
that reads what is free first runs in one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.net.types import Endpoint, Network, NetworkSpec, PublishedPort, Subnet
from engine.state.db import Database


class NetworkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- networks
    def create(self, spec: NetworkSpec, subnets: Sequence[Subnet], bridge: str, mtu: int) -> Network:
        """Insert a network (new random id). Raises NetworkExists for a taken name or bridge."""
        raise NotImplementedError

    def get(self, ref: str) -> Network:
        """By exact name, exact id, or unique id prefix. Raises NetworkNotFound."""
        raise NotImplementedError

    def list(self) -> list[Network]:
        raise NotImplementedError

    def remove(self, network_id: str) -> None:
        """Delete the row; raises NetworkInUse (naming the containers) while endpoints exist."""
        raise NotImplementedError

    def subnets_in_use(self) -> list[str]:
        raise NotImplementedError

    # -- endpoints
    def add_endpoints(
        self, container_id: str, rows: Sequence[Endpoint], statics: Sequence[tuple[str | None, str | None]]
    ) -> None:
        """At container create: one row per network in order, with the static (ipv4, ipv6) asked for."""
        raise NotImplementedError

    def activate(self, container_id: str, network: Network, host_veth: str) -> Endpoint:
        """Allocate the endpoint's addresses (static or the next free one, ipam.next_address) and the
        MAC, mark it active, all in one transaction. Raises AddressUnavailable."""
        raise NotImplementedError

    def deactivate(self, container_id: str) -> list[Endpoint]:
        """Clear addresses (keeping static ones as asked) and mark inactive; returns what was active."""
        raise NotImplementedError

    def remove_endpoints(self, container_id: str) -> None:
        raise NotImplementedError

    def endpoints_of(self, container_id: str) -> list[Endpoint]:
        """In the order the container joined (position)."""
        raise NotImplementedError

    def endpoints_in(self, network_id: str) -> list[Endpoint]:
        raise NotImplementedError

    # -- names (the DNS responder's data, engine/net/dns.Names)
    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        raise NotImplementedError

    def reverse(self, client_ip: str, address: str) -> str | None:
        raise NotImplementedError

    # -- published ports
    def set_ports(self, container_id: str, ports: Sequence[PublishedPort], bridge: str) -> None:
        raise NotImplementedError

    def clear_ports(self, container_id: str) -> None:
        raise NotImplementedError

    def ports_of(self, container_id: str) -> list[PublishedPort]:
        raise NotImplementedError

    def all_ports(self) -> list[tuple[str, PublishedPort]]:
        """(bridge, port) for every published port of a running container: the firewall's input."""
        raise NotImplementedError
