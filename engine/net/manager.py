"""NetworkManager: the one object the engine calls for networks. CONTRACT (owner: engineer N5).

Composes store (state), ipam (addresses), links (kernel), firewall (rules), ports (host ports).
Order of work is chosen so a failure leaves nothing: create a network = state row, then bridge, then
rules (undone in reverse on error); prepare a container = netns, veths, addresses, port rules (undone on
error); release = the reverse, tolerant of parts already gone. `sweep()` converges kernel and firewall
state onto the database after a crash (stray bridges/veths/netns files of ours with no row or no running
container are deleted; rules re-synced).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.containers.spec import ContainerSpec, NetworkSetup, PortBinding
from engine.net.types import Network, NetworkSpec, PublishedPort
from engine.state.root import StateRoot

BRIDGE_PREFIX = "pyc-"  # our bridges: pyc-<12 hex of the network id>
VETH_PREFIX = "pv"  # host-side veths: pv<10 hex of the container id><index>


class NetworkManager:
    def __init__(self, root: StateRoot) -> None:
        self.root = root

    def create_network(self, spec: NetworkSpec) -> Network:
        raise NotImplementedError

    def remove_network(self, ref: str) -> str:
        """Returns the name removed. Raises NetworkInUse / NetworkNotFound."""
        raise NotImplementedError

    def get_network(self, ref: str) -> Network:
        raise NotImplementedError

    def list_networks(self) -> list[Network]:
        raise NotImplementedError

    def inspect_network(self, ref: str) -> dict[str, Any]:
        """Docker's `network inspect` document (Name, Id, Created, Driver, IPAM, Internal, Attachable,
        EnableIPv6, Options, Labels, Containers {id: {Name, EndpointID, MacAddress, IPv4Address}})."""
        raise NotImplementedError

    def prune_networks(self) -> list[str]:
        """Remove every network with no endpoint; returns their names."""
        raise NotImplementedError

    def register(self, spec: ContainerSpec) -> None:
        """At container create: every network of `spec.networks` must exist, static addresses must fit;
        endpoint rows recorded (names: aliases, container name, hostname, short id)."""
        raise NotImplementedError

    def unregister(self, container_id: str) -> None:
        """At container remove: endpoint and port rows gone (after `release`)."""
        raise NotImplementedError

    def check_ports(self, bindings: Sequence[PortBinding]) -> None:
        """Raise PortInUse for the first fixed host port already taken (`up` checks first)."""
        raise NotImplementedError

    def prepare(self, spec: ContainerSpec) -> NetworkSetup | None:
        """Before the container's process starts: for bridge mode a namespace file with one veth per
        network (addresses, routes, MTU, MAC), published ports chosen and DNAT'd; `container:<ref>` mode
        returns that container's namespace; none/host return None."""
        raise NotImplementedError

    def release(self, container_id: str) -> None:
        """After the container stopped: port rules, veths, namespace file, addresses gone; idempotent."""
        raise NotImplementedError

    def ports_of(self, container_id: str) -> list[PublishedPort]:
        raise NotImplementedError

    def gateways(self) -> list[str]:
        """The gateway addresses the DNS responder listens on (every network that has active endpoints)."""
        raise NotImplementedError

    def sweep(self) -> None:
        raise NotImplementedError
