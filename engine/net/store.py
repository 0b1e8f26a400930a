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

As built: endpoints also keep `static_mac` (a user's mac_address survives a stop; a derived one does
not); `endpoint_names(network_id, name, container_id, position)` holds each endpoint's DNS names in lower
case without a leading "/" (plus the container's own name), so `lookup` is two index searches. Endpoint and
port rows cascade away with their container row.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from engine.errors import (
    AddressUnavailable,
    NetworkError,
    NetworkExists,
    NetworkInUse,
    NetworkNotFound,
    PortInUse,
)
from engine.net import ipam
from engine.net.types import Endpoint, IpamPool, Network, NetworkSpec, PublishedPort, Subnet
from engine.state.db import Database

_NETWORK_COLUMNS = "id, name, bridge, spec, subnets, mtu, created"
_ENDPOINT_COLUMNS = "container_id, network_id, names, ipv4, ipv6, mac, host_veth, active"
_PORT_COLUMNS = "container_id, container_port, protocol, host_ip, host_port, container_ip"
# the networks a client sees: every active network of the container that owns the asking address (as
# Docker's resolver, which serves the container, not the one network the packet came in on)
_CLIENT_NETWORKS = (
    "SELECT network_id FROM endpoints WHERE active = 1 AND container_id ="
    " (SELECT container_id FROM endpoints WHERE {column} = ? AND active = 1 LIMIT 1)"
)


class NetworkStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- networks
    def create(self, spec: NetworkSpec, subnets: Sequence[Subnet], bridge: str, mtu: int) -> Network:
        """Insert a network (new random id). Raises NetworkExists for a taken name or bridge."""
        network = Network(
            id=secrets.token_hex(32),
            name=spec.name,
            bridge=bridge,
            spec=spec,
            subnets=tuple(subnets),
            created=_now(),
            mtu=mtu,
        )
        try:
            self.db.execute(
                f"INSERT INTO networks ({_NETWORK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    network.id,
                    network.name,
                    bridge,
                    json.dumps(asdict(spec)),
                    json.dumps([asdict(s) for s in network.subnets]),
                    mtu,
                    network.created,
                ),
            )
        except sqlite3.IntegrityError as exc:
            if "networks.bridge" in str(exc):
                raise NetworkExists(f"bridge {bridge} is used by another network", subject=bridge) from None
            raise NetworkExists(f"network with name {spec.name} already exists", subject=spec.name) from None
        return network

    def get(self, ref: str) -> Network:
        """By exact name, exact id, or unique id prefix. Raises NetworkNotFound."""
        sql = f"SELECT {_NETWORK_COLUMNS} FROM networks"
        row = self.db.query_one(f"{sql} WHERE name = ?", (ref,)) or self.db.query_one(
            f"{sql} WHERE id = ?", (ref,)
        )
        if row is None and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.query(f"{sql} WHERE id >= ? AND id < ? LIMIT 2", (ref, ref + "g"))
            if len(rows) > 1:
                raise NetworkError(
                    f"network {ref} is ambiguous (more than one id starts with it)", subject=ref
                )
            row = rows[0] if rows else None
        if row is None:
            raise NetworkNotFound(f"network {ref} not found", subject=ref)
        return _network(row)

    def list(self) -> list[Network]:
        return [
            _network(r)
            for r in self.db.query(f"SELECT {_NETWORK_COLUMNS} FROM networks ORDER BY created, id")
        ]

    def remove(self, network_id: str) -> None:
        """Delete the row; raises NetworkInUse (naming the containers) while endpoints exist."""
        with self.db.transaction() as conn:
            row = conn.execute("SELECT name FROM networks WHERE id = ?", (network_id,)).fetchone()
            if row is None:
                raise NetworkNotFound(f"network {network_id} not found", subject=network_id)
            users = conn.execute(
                "SELECT coalesce(c.name, e.container_id) FROM endpoints e"
                " LEFT JOIN containers c ON c.id = e.container_id WHERE e.network_id = ? ORDER BY 1",
                (network_id,),
            ).fetchall()
            if users:
                names = ", ".join(u[0].lstrip("/") for u in users)
                message = f"error while removing network: network {row[0]} has active endpoints ({names})"
                raise NetworkInUse(message, subject=row[0])
            conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    def subnets_in_use(self) -> list[str]:
        return [s.subnet for network in self.list() for s in network.subnets]

    # -- endpoints
    def add_endpoints(
        self, container_id: str, rows: Sequence[Endpoint], statics: Sequence[tuple[str | None, str | None]]
    ) -> None:
        """At container create: one row per network in order, with the static (ipv4, ipv6) asked for.

        The endpoint's `mac` is taken as the user's static mac_address. The container row must exist.
        """
        if len(statics) != len(rows):
            raise ValueError("one (ipv4, ipv6) pair per endpoint")
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            found = conn.execute("SELECT name FROM containers WHERE id = ?", (container_id,)).fetchone()
            own = [found[0]] if found else []
            for position, (row, (ipv4, ipv6)) in enumerate(zip(rows, statics, strict=True)):
                conn.execute(
                    "INSERT INTO endpoints (container_id, network_id, position, names, static_ipv4,"
                    " static_ipv6, static_mac, mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        container_id,
                        row.network_id,
                        position,
                        json.dumps(list(row.names)),
                        _address(ipv4),
                        _address(ipv6),
                        row.mac,
                        row.mac,
                    ),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO endpoint_names (network_id, name, container_id, position)"
                    " VALUES (?, ?, ?, ?)",
                    [
                        (row.network_id, name, container_id, n)
                        for n, name in enumerate(_dns_names([*row.names, *own]))
                    ],
                )

    def activate(self, container_id: str, network: Network, host_veth: str) -> Endpoint:
        """Allocate the endpoint's addresses (static or the next free one, ipam.next_address) and the
        MAC, mark it active, all in one transaction. Raises AddressUnavailable."""
        v4 = next((s for s in network.subnets if ":" not in s.subnet), None)
        v6 = next((s for s in network.subnets if ":" in s.subnet), None)
        if not network.spec.enable_ipv6:
            v6 = None
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            row = conn.execute(
                "SELECT static_ipv4, static_ipv6, static_mac FROM endpoints"
                " WHERE container_id = ? AND network_id = ?",
                (container_id, network.id),
            ).fetchone()
            if row is None:
                raise NetworkNotFound(
                    f"container {container_id} has no endpoint in network {network.name}",
                    subject=network.name,
                )
            ipv4 = _allocate(conn, network.id, container_id, v4, row[0], "ipv4")
            ipv6 = _allocate(conn, network.id, container_id, v6, row[1], "ipv6")
            mac = row[2] or (ipam.mac_for(ipv4) if ipv4 else _random_mac())
            try:
                conn.execute(
                    "UPDATE endpoints SET ipv4 = ?, ipv6 = ?, mac = ?, host_veth = ?, active = 1"
                    " WHERE container_id = ? AND network_id = ?",
                    (ipv4, ipv6, mac, host_veth, container_id, network.id),
                )
            except sqlite3.IntegrityError:
                raise AddressUnavailable("Address already in use", subject=ipv4 or ipv6) from None
            out = conn.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE container_id = ? AND network_id = ?",
                (container_id, network.id),
            ).fetchone()
        return _endpoint(out)

    def deactivate(self, container_id: str) -> list[Endpoint]:
        """Clear addresses (keeping static ones as asked) and mark inactive; returns what was active."""
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            was = conn.execute(
                f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE container_id = ? AND active = 1"
                " ORDER BY position",
                (container_id,),
            ).fetchall()
            conn.execute(
                "UPDATE endpoints SET ipv4 = NULL, ipv6 = NULL, mac = static_mac, host_veth = NULL,"
                " active = 0 WHERE container_id = ?",
                (container_id,),
            )
        return [_endpoint(r) for r in was]

    def remove_endpoints(self, container_id: str) -> None:
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            conn.execute("DELETE FROM endpoints WHERE container_id = ?", (container_id,))  # names cascade

    def endpoints_of(self, container_id: str) -> list[Endpoint]:
        """In the order the container joined (position)."""
        rows = self.db.query(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE container_id = ? ORDER BY position",
            (container_id,),
        )
        return [_endpoint(r) for r in rows]

    def networks_with_active_endpoints(self) -> set[str]:
        """Ids of networks where some container is attached (one query: the supervisor asks at every
        start, and decoding every endpoint of every network made that quadratic in a 20-service up)."""
        return {r[0] for r in self.db.query("SELECT DISTINCT network_id FROM endpoints WHERE active = 1")}

    def endpoints_in(self, network_id: str) -> list[Endpoint]:
        rows = self.db.query(
            f"SELECT {_ENDPOINT_COLUMNS} FROM endpoints WHERE network_id = ? ORDER BY rowid", (network_id,)
        )
        return [_endpoint(r) for r in rows]

    # -- names (the DNS responder's data, engine/net/dns.Names)
    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        """(IPv4, IPv6) of active endpoints named `name` in the networks of the container at `client_ip`;
        None when the client is not ours (the host) or no shared network has the name (forward it)."""
        column = _client_column(client_ip)
        if column is None:
            return None
        rows = self.db.query(
            "SELECT e.ipv4, e.ipv6 FROM endpoint_names n"
            " JOIN endpoints e ON e.container_id = n.container_id AND e.network_id = n.network_id"
            f" WHERE n.network_id IN ({_CLIENT_NETWORKS.format(column=column)})"
            " AND n.name = ? AND e.active = 1 ORDER BY e.rowid",
            (_address(client_ip), _dns_name(name)),
        )
        if not rows:
            return None
        v4 = list(dict.fromkeys(r[0] for r in rows if r[0]))
        v6 = list(dict.fromkeys(r[1] for r in rows if r[1]))
        return v4, v6

    def reverse(self, client_ip: str, address: str) -> str | None:
        """The container name (no leading "/") of the active endpoint at `address` in a network the client
        shares; its first DNS name if the container row has none. None for anything else."""
        client = _client_column(client_ip)
        target = _client_column(address)
        if client is None or target is None:
            return None
        row = self.db.query_one(
            "SELECT c.name, e.names FROM endpoints e LEFT JOIN containers c ON c.id = e.container_id"
            f" WHERE e.{target} = ? AND e.active = 1"
            f" AND e.network_id IN ({_CLIENT_NETWORKS.format(column=client)})"
            " LIMIT 1",
            (_address(address), _address(client_ip)),
        )
        if row is None:
            return None
        if row[0]:
            return str(row[0]).lstrip("/")
        names = json.loads(row[1])
        return names[0] if names else None

    # -- published ports
    def set_ports(self, container_id: str, ports: Sequence[PublishedPort], bridge: str) -> None:
        """Replace the container's published ports; a host port another container holds already is refused
        by the unique index (host_ip, host_port, protocol) as PortInUse."""
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            conn.execute("DELETE FROM published_ports WHERE container_id = ?", (container_id,))
            for port in ports:
                try:
                    conn.execute(
                        "INSERT INTO published_ports (container_id, protocol, host_ip, host_port,"
                        " container_port, container_ip, bridge) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            container_id,
                            port.protocol,
                            port.host_ip,
                            port.host_port,
                            port.container_port,
                            port.container_ip,
                            bridge,
                        ),
                    )
                except sqlite3.IntegrityError:
                    where = f"{port.host_ip or '0.0.0.0'}:{port.host_port}"
                    raise PortInUse(f"Bind for {where} failed: port is already allocated") from None

    def clear_ports(self, container_id: str) -> None:
        with self.db.transaction(durable=False) as conn:  # runtime state (Database.transaction)
            conn.execute("DELETE FROM published_ports WHERE container_id = ?", (container_id,))

    def ports_of(self, container_id: str) -> list[PublishedPort]:
        rows = self.db.query(
            f"SELECT {_PORT_COLUMNS} FROM published_ports WHERE container_id = ?"
            " ORDER BY container_port, protocol, host_ip",
            (container_id,),
        )
        return [_port(r) for r in rows]

    def all_ports(self) -> list[tuple[str, PublishedPort]]:
        """(bridge, port) for every published port of a running container: the firewall's input."""
        rows = self.db.query(
            f"SELECT bridge, {_PORT_COLUMNS} FROM published_ports"
            " ORDER BY bridge, host_port, protocol, host_ip"
        )
        return [(r[0], _port(r[1:])) for r in rows]


# -- allocation ---------------------------------------------------------------------------------------


def _allocate(
    conn: sqlite3.Connection,
    network_id: str,
    container_id: str,
    subnet: Subnet | None,
    static: str | None,
    column: str,
) -> str | None:
    """The static address (checked) or the lowest free one, reading what is used inside the caller's
    transaction (the unique index is the last word if two writers ever raced anyway)."""
    if subnet is None:
        return None
    used = [
        r[0]
        for r in conn.execute(
            f"SELECT {column} FROM endpoints WHERE network_id = ? AND {column} IS NOT NULL"
            " AND container_id != ?",
            (network_id, container_id),
        )
    ]
    if static:
        ipam.check_static(subnet, static, used)
        return static
    return ipam.next_address(subnet, used)


# -- rows <-> values ----------------------------------------------------------------------------------


def _network(row: sqlite3.Row | Sequence[Any]) -> Network:
    return Network(
        id=row[0],
        name=row[1],
        bridge=row[2],
        spec=_spec(json.loads(row[3])),
        subnets=tuple(_subnet(s) for s in json.loads(row[4])),
        created=row[6],
        mtu=int(row[5]),
    )


def _spec(data: dict[str, Any]) -> NetworkSpec:
    return NetworkSpec(
        name=data["name"],
        driver=data["driver"],
        options=_pairs(data["options"]),
        ipam=tuple(
            IpamPool(
                subnet=p["subnet"],
                ip_range=p["ip_range"],
                gateway=p["gateway"],
                aux_addresses=_pairs(p["aux_addresses"]),
            )
            for p in data["ipam"]
        ),
        internal=bool(data["internal"]),
        attachable=bool(data["attachable"]),
        enable_ipv6=bool(data["enable_ipv6"]),
        labels=_pairs(data["labels"]),
    )


def _subnet(data: dict[str, Any]) -> Subnet:
    return Subnet(
        subnet=data["subnet"],
        gateway=data["gateway"],
        ip_range=data["ip_range"],
        aux_addresses=_pairs(data["aux_addresses"]),
    )


def _pairs(items: Sequence[Sequence[str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(a), str(b)) for a, b in items)


def _endpoint(row: sqlite3.Row | Sequence[Any]) -> Endpoint:
    return Endpoint(
        container_id=row[0],
        network_id=row[1],
        names=tuple(json.loads(row[2])),
        ipv4=row[3],
        ipv6=row[4],
        mac=row[5],
        host_veth=row[6],
        active=bool(row[7]),
    )


def _port(row: sqlite3.Row | Sequence[Any]) -> PublishedPort:
    return PublishedPort(
        container_id=row[0],
        container_port=int(row[1]),
        protocol=row[2],
        host_ip=row[3],
        host_port=int(row[4]),
        container_ip=row[5],
    )


# -- names and addresses ------------------------------------------------------------------------------


def _dns_name(name: str) -> str:
    """How a name is stored and looked up: lower case, no leading "/", no trailing dot."""
    return name.strip().lstrip("/").rstrip(".").lower()


def _dns_names(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(n for n in (_dns_name(x) for x in names) if n))


def _address(text: str | None) -> str | None:
    """The canonical text of an address (so "fd00:0::2" and "fd00::2" are one), None stays None."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise AddressUnavailable(f"invalid IP address {text!r}", subject=text) from None


def _client_column(address: str) -> str | None:
    """Which endpoint column an address is compared with; None for text that is no address."""
    try:
        return "ipv6" if ipaddress.ip_address(address).version == 6 else "ipv4"
    except ValueError:
        return None


def _random_mac() -> str:
    """A locally administered unicast MAC (an endpoint with no IPv4 address to derive one from)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
