"""NetworkManager: the one object the engine calls for networks (owner: engineer N5).

Composes store (state), ipam (addresses), links (kernel), firewall (rules), ports (host ports). The state
database is the truth; the kernel and the firewall follow it:
- create a network = state row, then bridge and rules (undone on error);
- remove a network = in-use check and the row (with a note under run/bridges-to-delete naming its bridge),
  then bridge and rules, then the note: a crash leaves a note `sweep` completes, never a bridge of ours
  nothing names; and a sweep running meanwhile never makes the bridge again (it makes those of rows);
- prepare a container = netns, then per network: address (store.activate), veth; then ports and rules;
  any error undoes it all through `release`, which tolerates parts already gone.
Every mutating operation holds `root.lock("network")`, so two processes never race on one root; bridges are
made and deleted outside it (`bridges` may be the supervisor, whose loop takes that lock).

Names for DNS: each endpoint row carries the names every container sharing the network may resolve
(aliases, container name, hostname, 12-char id). `links` aliases are private to the container that
declares them, so they are NOT stored in endpoint rows: `StoreNames.lookup` first maps a link alias of
the asking container to the linked container's name, then asks the store as usual.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.containers.spec import ContainerSpec, NetworkSetup, PortBinding
from engine.errors import ContainerNotFound, NetworkError, NetworkInUse
from engine.net.types import (
    OPT_BRIDGE_NAME,
    OPT_ICC,
    OPT_MASQUERADE,
    OPT_MTU,
    Endpoint,
    Network,
    NetworkSpec,
    PublishedPort,
)
from engine.state.root import StateRoot

BRIDGE_PREFIX = "pyc-"  # our bridges: pyc-<11 hex> unless driver_opts name one (IFNAMSIZ: 15 chars)
VETH_PREFIX = "pv"  # host-side veths: pv<10 hex of the container id><index in hex>
LOCK_NAME = "network"
RUNNING_STATES = ("running", "paused", "restarting")
FRESH_NETNS = 30.0  # seconds: a netns of a container still "created" may be a start in flight
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")  # Docker's fallback when the host names no resolver


def scope_of(root: StateRoot) -> str:
    """The firewall scope of a state root: 8 hex of sha256 of its path (several roots share a host)."""
    return hashlib.sha256(str(Path(root.path).resolve()).encode()).hexdigest()[:8]


def veth_name(container_id: str, index: int) -> str:
    """The host-side veth of the container's `index`-th network (<= 15 characters, IFNAMSIZ)."""
    return f"{VETH_PREFIX}{container_id[:10]}{index:x}"


def endpoint_names(spec: ContainerSpec, aliases: Sequence[str]) -> tuple[str, ...]:
    """The names one endpoint answers to: aliases, container name, hostname, 12-char id (no repeats)."""
    candidates = [*aliases, spec.name, spec.hostname or "", spec.id[:12]]
    seen: dict[str, None] = {}
    for name in candidates:
        if name and name.lower() not in seen:
            seen[name.lower()] = None
    return tuple(seen)


def _option(spec: NetworkSpec, key: str) -> str | None:
    return dict(spec.options).get(key)


def _flag(spec: NetworkSpec, key: str, default: bool) -> bool:
    value = _option(spec, key)
    return default if value is None else value.strip().lower() in ("1", "true", "yes")


def _prefix(subnet: str) -> int:
    return ipaddress.ip_network(subnet, strict=False).prefixlen


class Bridges(Protocol):
    """Who makes and deletes a network's bridge: this process (LocalBridges) or a long-lived one that
    already has the netlink code loaded (the supervisor: importing it costs ~0.04 s per CLI run)."""

    def ensure(self, name: str, addresses: Sequence[str], mtu: int) -> None: ...

    def delete(self, name: str) -> None: ...

    def retire(self, name: str) -> bool:
        """Have the rules synced and the bridge deleted in the background (then its note, see
        remove_network); False when this kind cannot (the caller does both itself)."""
        ...


class LocalBridges:
    """Bridges made by this process through engine.net.links."""

    def retire(self, name: str) -> bool:
        return False  # this process may exit at once: it deletes the bridge itself

    def ensure(self, name: str, addresses: Sequence[str], mtu: int) -> None:
        from engine.net import links

        links.ensure_bridge(name, addresses, mtu)

    def delete(self, name: str) -> None:
        from engine.net import links

        links.delete_bridge(name)


class NetworkManager:
    """Networks of one state root and the attachment of its containers."""

    def __init__(self, root: StateRoot, bridges: Bridges | None = None) -> None:
        from engine.net.store import NetworkStore

        self.bridges: Bridges = bridges or LocalBridges()
        self.root = root
        self.db = root.db
        self.store = NetworkStore(root.db)
        self.scope = scope_of(root)
        self.netns_dir = Path(root.path) / "run" / "netns"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self.root.lock(LOCK_NAME):
            yield

    # -- networks --------------------------------------------------------------------------------------

    def create_network(self, spec: NetworkSpec) -> Network:
        """State row, bridge (gateway addresses, MTU), rules; on any error the earlier steps are undone.

        The bridge is made outside the network lock: `bridges` may be the supervisor, whose loop takes that
        lock to start containers (holding it while waiting for the supervisor could deadlock). Meanwhile
        the row names a bridge not made yet, the state a crash leaves and `sweep` repairs.
        """
        from engine.net import ipam, links

        if spec.driver not in ("bridge", ""):
            raise NetworkError(f"driver {spec.driver!r} is not supported (only bridge)", subject=spec.name)
        mtu = self._mtu(spec)
        with self._locked():
            in_use = [*self.store.subnets_in_use(), *ipam.host_routes()]
            subnets = ipam.plan_subnets(spec.ipam, in_use, enable_ipv6=spec.enable_ipv6, seed=spec.name)
            bridge = _option(spec, OPT_BRIDGE_NAME) or BRIDGE_PREFIX + os.urandom(6).hex()[:11]
            network = self.store.create(spec, subnets, bridge, mtu)
        try:
            with _beside(self.bridges.ensure, bridge, _gateway_cidrs(network), mtu), self._locked():
                links.enable_forwarding()
                self._sync_firewall()  # rules name the bridge, which need not exist yet
        except BaseException:
            with self._locked():
                self._doom(bridge)
                self.store.remove(network.id)
                with contextlib.suppress(Exception):
                    self._sync_firewall()
            with contextlib.suppress(Exception):
                self.delete_doomed(bridge)
            raise
        return network

    @staticmethod
    def _mtu(spec: NetworkSpec) -> int:
        value = _option(spec, OPT_MTU)
        if not value:
            return 1500
        try:
            mtu = int(value)
        except ValueError:
            mtu = 0
        if not 68 <= mtu <= 65535:
            raise NetworkError(f"invalid MTU {value!r} (68..65535)", subject=spec.name)
        return mtu

    def remove_network(self, ref: str) -> str:
        """Returns the name removed. Raises NetworkInUse / NetworkNotFound.

        The row goes first, with a note naming its bridge (see the module's docstring). A supervisor
        then syncs the rules and deletes the bridge and the note in the background (`Bridges.retire`;
        a bridge asked for later is made after); without one, this process deletes the bridge outside
        the network lock while it syncs the rules (~30 ms of iptables, mostly RCU waits).
        """
        with self._locked():
            network = self.store.get(ref)
            self._check_unused(network)
            self._doom(network.bridge)
            try:
                self.store.remove(network.id)  # checks the endpoints again, atomically
            except BaseException:
                self._spare(network.bridge)
                raise
        if self.bridges.retire(network.bridge):  # the supervisor syncs the rules, deletes the bridge
            return network.name  # and its note in the background (~30 ms of iptables, ~5 of netlink)
        with _beside(self.delete_doomed, network.bridge), self._locked():
            self._sync_firewall()
        return network.name

    # -- bridges whose row is gone: a note each until the bridge is deleted ----------------------------

    @property
    def _doomed_dir(self) -> Path:
        return Path(self.root.path) / "run" / "bridges-to-delete"

    def _doom(self, bridge: str) -> None:
        self._doomed_dir.mkdir(parents=True, exist_ok=True)
        (self._doomed_dir / bridge).touch()

    def _spare(self, bridge: str) -> None:
        (self._doomed_dir / bridge).unlink(missing_ok=True)

    def delete_doomed(self, bridge: str) -> None:
        """Delete the bridge, then its note (a failure leaves the note to the next sweep). Also the
        supervisor's half of a retired bridge (Bridges.retire), whose manager deletes bridges itself."""
        self.bridges.delete(bridge)
        self._spare(bridge)

    def _check_unused(self, network: Network) -> None:
        """NetworkInUse before anything is touched (the store's remove checks again, atomically)."""
        endpoints = self.store.endpoints_in(network.id)
        if endpoints:
            names = ", ".join(self._container_name(e.container_id) for e in endpoints)
            raise NetworkInUse(f"network {network.name} is in use by {names}", subject=network.name)

    def get_network(self, ref: str) -> Network:
        return self.store.get(ref)

    def list_networks(self) -> list[Network]:
        return self.store.list()

    def inspect_network(self, ref: str) -> dict[str, Any]:
        """Docker's `network inspect` document (Name, Id, Created, Driver, IPAM, Internal, Attachable,
        EnableIPv6, Options, Labels, Containers {id: {Name, EndpointID, MacAddress, IPv4Address}})."""
        network = self.store.get(ref)
        containers = {}
        for ep in self.store.endpoints_in(network.id):
            if ep.active:
                containers[ep.container_id] = self._endpoint_doc(network, ep)
        spec = network.spec
        return {
            "Name": network.name,
            "Id": network.id,
            "Created": network.created,
            "Scope": "local",
            "Driver": spec.driver or "bridge",
            "EnableIPv6": spec.enable_ipv6,
            "IPAM": {"Driver": "default", "Options": None, "Config": [_ipam_doc(s) for s in network.subnets]},
            "Internal": spec.internal,
            "Attachable": spec.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": {**dict(spec.options), "com.docker.network.bridge.name": network.bridge},
            "Labels": dict(spec.labels),
        }

    def _endpoint_doc(self, network: Network, ep: Endpoint) -> dict[str, str]:
        prefix4 = _prefix(network.subnets[0].subnet) if network.subnets else 32
        v6 = [s for s in network.subnets if ":" in s.subnet]
        return {
            "Name": self._container_name(ep.container_id),
            "EndpointID": hashlib.sha256(f"{ep.container_id}/{network.id}".encode()).hexdigest(),
            "MacAddress": ep.mac or "",
            "IPv4Address": f"{ep.ipv4}/{prefix4}" if ep.ipv4 else "",
            "IPv6Address": f"{ep.ipv6}/{_prefix(v6[0].subnet)}" if ep.ipv6 and v6 else "",
        }

    def prune_networks(self) -> list[str]:
        """Remove every network with no endpoint; returns their names."""
        removed = []
        for network in self.store.list():
            if self.store.endpoints_in(network.id):
                continue
            with contextlib.suppress(NetworkInUse):  # a container joined meanwhile
                removed.append(self.remove_network(network.id))
        return removed

    # -- containers: create/remove ---------------------------------------------------------------------

    def register(self, spec: ContainerSpec) -> None:
        """At container create: every network of `spec.networks` must exist, static addresses must fit;
        endpoint rows recorded (names: aliases, container name, hostname, short id)."""
        from engine.net import ipam

        rows, statics = [], []
        for attachment in spec.networks:
            network = self.store.get(attachment.network)
            for address in (attachment.ipv4_address, attachment.ipv6_address):
                if address:
                    ipam.check_static(self._subnet_for(network, address), address, ())
            names = endpoint_names(spec, attachment.aliases)
            rows.append(Endpoint(spec.id, network.id, names, mac=attachment.mac_address))
            statics.append((attachment.ipv4_address, attachment.ipv6_address))
        with self._locked():
            self.store.add_endpoints(spec.id, rows, statics)

    @staticmethod
    def _subnet_for(network: Network, address: str):  # type: ignore[no-untyped-def]
        from engine.errors import AddressUnavailable

        family = ipaddress.ip_address(address).version
        for subnet in network.subnets:
            if ipaddress.ip_network(subnet.subnet, strict=False).version == family:
                return subnet
        raise AddressUnavailable(
            f"network {network.name} has no IPv{family} subnet for {address}", subject=address
        )

    def unregister(self, container_id: str) -> None:
        """At container remove: endpoint and port rows gone (after `release`)."""
        with self._locked():
            self.store.clear_ports(container_id)
            self.store.remove_endpoints(container_id)

    def check_ports(self, bindings: Sequence[PortBinding]) -> None:
        """Raise PortInUse for the first fixed host port already taken (`up` checks first)."""
        from engine.net import ports

        taken = self._taken_ports()
        for b in bindings:
            if b.host_port:
                ports.choose(b.host_ip, b.protocol, b.host_port, b.host_port_end, taken)

    def _taken_ports(self) -> set[tuple[str, int, str]]:
        return {(p.host_ip, p.host_port, p.protocol) for _, p in self.store.all_ports()}

    # -- containers: start/stop ------------------------------------------------------------------------

    def netns_path(self, container_id: str) -> Path:
        return self.netns_dir / container_id

    def prepare(
        self, spec: ContainerSpec, *, kernel_steps: list[Callable[[], None]] | None = None
    ) -> NetworkSetup | None:
        """Before the container's process starts: for bridge mode a namespace file with one veth per
        network (addresses, routes, MTU, MAC), published ports chosen and DNAT'd; `container:<ref>` mode
        returns that container's namespace; none/host return None.

        With `kernel_steps` the namespace and veths are not made here but appended to it, in order, for
        the caller to run before the container starts (the supervisor runs them in its forked spawn
        helper, off its event loop); the rows, ports and rules are written here. If a step fails, the
        caller must `release` the container."""
        mode = spec.network_mode
        if mode.startswith("container:"):
            return self._joined(mode.partition(":")[2])
        if mode != "bridge" or not spec.networks:
            return None
        with self._locked():
            try:
                return self._attach_all(spec, kernel_steps)
            except BaseException:
                self._release_locked(spec.id)
                raise

    def _attach_all(self, spec: ContainerSpec, kernel_steps: list[Callable[[], None]] | None) -> NetworkSetup:
        from engine.net import links

        def kernel(step: Callable[[], None]) -> None:
            step() if kernel_steps is None else kernel_steps.append(step)

        path = self.netns_path(spec.id)
        self.netns_dir.mkdir(parents=True, exist_ok=True)
        kernel(functools.partial(links.create_netns, str(path)))
        attached: list[tuple[Network, Endpoint]] = []
        routed = False
        for index, row in enumerate(self.store.endpoints_of(spec.id)):
            network = self.store.get(row.network_id)
            veth = veth_name(spec.id, index)
            ep = self.store.activate(spec.id, network, veth)
            route = not routed and not network.spec.internal
            kernel(functools.partial(self._attach_one, str(path), network, ep, index, route))
            routed = routed or route
            attached.append((network, ep))
        if self._publish(spec, attached):  # a join alone changes no rule: rules are per network
            self._sync_firewall()
        first_net, first_ep = attached[0]
        return NetworkSetup(
            netns_path=str(path),
            hosts=self._hosts(spec, first_ep),
            nameservers=(first_net.subnets[0].gateway,),
        )

    @staticmethod
    def _attach_one(path: str, network: Network, ep: Endpoint, index: int, route: bool) -> None:
        from engine.net import links

        if not links.link_exists(network.bridge):  # made outside the lock by its creator: maybe not yet
            links.ensure_bridge(network.bridge, _gateway_cidrs(network), network.mtu)

        addresses, gw4, gw6 = [], None, None
        for subnet in network.subnets:
            v6 = ":" in subnet.subnet
            address = ep.ipv6 if v6 else ep.ipv4
            if address:
                addresses.append(f"{address}/{_prefix(subnet.subnet)}")
                if route and v6:
                    gw6 = subnet.gateway
                elif route:
                    gw4 = subnet.gateway
        links.attach(
            path,
            network.bridge,
            ep.host_veth or "",
            f"eth{index}",
            addresses,
            mac=ep.mac,
            mtu=network.mtu,
            gateway=gw4,
            gateway6=gw6,
        )

    @staticmethod
    def _hosts(spec: ContainerSpec, ep: Endpoint) -> tuple[tuple[str, str], ...]:
        """The /etc/hosts entry for the container itself: its address with the FQDN (when a domainname is
        set) and the hostname, as moby writes it, then the container name (so a program looking itself
        up by name needs no DNS); aliases are not written (the resolver answers them)."""
        hostname = spec.hostname or spec.id[:12]
        names = f"{hostname}.{spec.domainname} {hostname}" if spec.domainname else hostname
        if spec.name and spec.name != hostname:
            names += f" {spec.name}"
        entries = []
        for address in (ep.ipv4, ep.ipv6):
            if address:
                entries.append((address, names))
        return tuple(entries)

    def _publish(self, spec: ContainerSpec, attached: Sequence[tuple[Network, Endpoint]]) -> bool:
        """Host ports chosen (random or first free of a range) and recorded on the default-route network
        (ports on an internal network are not published, as Docker)."""
        from engine.net import ports

        if not spec.ports:
            return False
        target = next(((n, e) for n, e in attached if not n.spec.internal and e.ipv4), None)
        if target is None:
            return False
        network, ep = target
        taken = self._taken_ports()
        chosen = []
        for b in spec.ports:
            host_ip = b.host_ip or "0.0.0.0"
            port = ports.choose(b.host_ip, b.protocol, b.host_port, b.host_port_end, taken)
            taken.add((host_ip, port, b.protocol))
            chosen.append(PublishedPort(spec.id, b.container_port, b.protocol, host_ip, port, ep.ipv4 or ""))
        self.store.set_ports(spec.id, chosen, network.bridge)
        return True

    def _joined(self, ref: str) -> NetworkSetup:
        """`container:<ref>`: the running target's namespace (its netns file, else /proc/<pid>/ns/net)."""
        from engine.containers import records

        target = records.get(self.db, ref)
        if target is None:
            raise ContainerNotFound(f"no such container: {ref}", subject=ref)
        if target["state"] not in ("running", "paused") or not target["pid"]:
            raise NetworkError(f"cannot join the network of {target['name']}: it is not running", subject=ref)
        path = self.netns_path(target["id"])
        netns = str(path) if path.exists() else f"/proc/{target['pid']}/ns/net"
        endpoints = [e for e in self.store.endpoints_of(target["id"]) if e.active]
        nameservers: tuple[str, ...] = ()
        if endpoints:
            nameservers = (self.store.get(endpoints[0].network_id).subnets[0].gateway,)
        return NetworkSetup(netns_path=netns, nameservers=nameservers)

    def release(
        self, container_id: str, *, defer_veths: list[str] | None = None, defer_rules: bool = False
    ) -> bool:
        """After the container stopped: port rules, veths, namespace file, addresses gone; idempotent.

        With `defer_veths` the host veths are only appended to it, for the caller to delete later: the
        kernel takes ~25 ms per veth deletion, which a stop need not wait for (the endpoint rows and the
        namespace file are gone; a leftover pair of the same name is replaced at the next attach and the
        sweep removes what a crash left). With `defer_rules` the published ports' rows go but the rules
        are not synced here: True is returned when the caller owes a `sync_rules()` (a stop need not wait
        ~30 ms of iptables for rules pointing at an address nobody holds any more; any later sync, made
        from the rows, drops them too)."""
        if not self._holds_anything(container_id):
            return False  # none/host mode, or already released: no lock, no pyroute2, no iptables
        with self._locked():
            return self._release_locked(container_id, defer_veths, defer_rules)

    def sync_rules(self) -> None:
        """Bring the firewall in line with the rows now (what a deferred release owes)."""
        with self._locked():
            self._sync_firewall()

    def _holds_anything(self, container_id: str) -> bool:
        if os.path.lexists(self.netns_path(container_id)) or self.store.ports_of(container_id):
            return True
        return any(e.active for e in self.store.endpoints_of(container_id))

    def _release_locked(
        self, container_id: str, defer_veths: list[str] | None = None, defer_rules: bool = False
    ) -> bool:
        """release's steps, under the lock; True when rules are owed (defer_rules and ports went)."""
        from engine.net import links

        errors: list[BaseException] = []
        had_ports = bool(self.store.ports_of(container_id))
        steps = [
            lambda: self.store.clear_ports(container_id),
            lambda: self._detach_all(container_id, defer_veths),
            lambda: links.delete_netns(str(self.netns_path(container_id))),
        ]
        if had_ports and not defer_rules:
            steps.append(self._sync_firewall)
        for step in steps:  # every step runs even if one fails: leave as little as possible
            try:
                step()
            except Exception as exc:  # reported after the rest ran
                errors.append(exc)
        if errors:
            raise errors[0]
        return had_ports and defer_rules

    def _detach_all(self, container_id: str, defer_veths: list[str] | None = None) -> None:
        from engine.net import links

        veths = {e.host_veth for e in self.store.deactivate(container_id) if e.host_veth}
        if defer_veths is not None:
            defer_veths.extend(sorted(veths))
            return
        for veth in sorted(veths):  # recorded before the pair is made (activate, then attach)
            links.detach(veth)

    def ports_of(self, container_id: str) -> list[PublishedPort]:
        return self.store.ports_of(container_id)

    def gateways(self) -> list[str]:
        """The gateway addresses the DNS responder listens on (every network that has active endpoints)."""
        active = self.store.networks_with_active_endpoints()
        found = []
        for network in self.store.list():
            if network.id in active:
                found.extend(s.gateway for s in network.subnets)
        return found

    def names(self) -> StoreNames:
        """The data of the DNS responder (engine.net.dns.Names) for this root."""
        return StoreNames(self)

    # -- crash recovery --------------------------------------------------------------------------------

    def sweep(self) -> None:
        """Converge the kernel and the rules onto the state after a crash.

        Every network row gets its bridge back; containers that do not run lose their addresses, ports,
        veths and namespace file; netns files of unknown containers go; rules are re-synced. Only names
        this root can prove are its own are touched (bridges of its rows, veths of its containers, files
        under its run/netns): other roots and other programs on the host are left alone.
        """
        from engine.net import links

        with self._locked():
            kept = set()
            for network in self.store.list():
                links.ensure_bridge(network.bridge, _gateway_cidrs(network), network.mtu)
                kept.add(network.bridge)
            doomed = sorted(self._doomed_dir.iterdir()) if self._doomed_dir.is_dir() else []
            for note in doomed:  # a removal that did not finish: its bridge goes (unless a row names it)
                if note.name not in kept:
                    links.delete_bridge(note.name)
                note.unlink(missing_ok=True)
            stale = self._stale_containers()
            for cid in stale:
                self._release_locked(cid)
            prefixes = tuple(VETH_PREFIX + cid[:10] for cid in stale)
            for veth in links.link_names(VETH_PREFIX):  # a pair whose row was lost: only stale containers'
                if prefixes and veth.startswith(prefixes):
                    links.detach(veth)
            self._sync_firewall()

    def _stale_containers(self) -> set[str]:
        from engine.containers import records

        stale = set()
        candidates = {r["id"]: r for r in records.list_all(self.db)}
        files = sorted(self.netns_dir.iterdir()) if self.netns_dir.is_dir() else []
        for path in files:
            row = candidates.get(path.name)
            if row is None or self._is_stale(row, path):
                stale.add(path.name)
        for cid, row in candidates.items():
            active = any(e.active for e in self.store.endpoints_of(cid))
            if active and self._is_stale(row, self.netns_path(cid)):
                stale.add(cid)
        return stale

    def _is_stale(self, row: dict[str, Any], path: Path) -> bool:
        return row["state"] not in RUNNING_STATES and not self._is_fresh(path, row)

    @staticmethod
    def _is_fresh(path: Path, row: dict[str, Any]) -> bool:
        """A container still "created" whose netns is new may be a start in flight (prepare, then spawn)."""
        if row["state"] != "created":
            return False
        try:
            return time.time() - path.lstat().st_mtime < FRESH_NETNS
        except OSError:
            return False

    # -- helpers ---------------------------------------------------------------------------------------

    def _sync_firewall(self) -> None:
        """Our rules for every network row and every published port."""
        from engine.net import firewall

        rules = []
        for network in self.store.list():
            v4 = [s for s in network.subnets if ":" not in s.subnet]
            if not v4:
                continue
            rules.append(
                firewall.BridgeRules(
                    bridge=network.bridge,
                    subnet=v4[0].subnet,
                    internal=network.spec.internal,
                    masquerade=_flag(network.spec, OPT_MASQUERADE, True),
                    icc=_flag(network.spec, OPT_ICC, True),
                )
            )
        ports = [
            firewall.PortRule(bridge, p.protocol, p.host_ip, p.host_port, p.container_ip, p.container_port)
            for bridge, p in self.store.all_ports()
        ]
        firewall.sync(self.scope, rules, ports)

    def _container_name(self, container_id: str) -> str:
        from engine.containers import records

        row = records.get(self.db, container_id)
        return row["name"] if row else container_id[:12]


@contextlib.contextmanager
def _beside(fn: Callable[..., Any], *args: Any) -> Iterator[None]:
    """Run fn(*args) in a thread while the body runs; its error is raised after both are done. A bridge
    is made or deleted (~5-50 ms of kernel time, maybe by the supervisor) while our iptables batch runs."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"beside-{getattr(fn, '__name__', 'call')}")
    worker.start()
    try:
        yield
    finally:
        worker.join()
    if failure:
        raise failure[0]


def _gateway_cidrs(network: Network) -> list[str]:
    """The bridge's addresses: each subnet's gateway with the subnet's prefix."""
    return [f"{s.gateway}/{_prefix(s.subnet)}" for s in network.subnets]


def _ipam_doc(subnet: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"Subnet": subnet.subnet, "Gateway": subnet.gateway}
    if subnet.ip_range:
        doc["IPRange"] = subnet.ip_range
    if subnet.aux_addresses:
        doc["AuxiliaryAddresses"] = dict(subnet.aux_addresses)
    return doc


class StoreNames:
    """engine.net.dns.Names over the state database of one root.

    The asking container is found by its source address (an active endpoint's IPv4/IPv6); its spec gives
    its `links` (alias -> container name, private to it) and its `dns` servers. Specs are cached per
    container id (a spec never changes after create).
    """

    def __init__(self, manager: NetworkManager) -> None:
        self.manager = manager
        self.store = manager.store
        self._specs: dict[str, ContainerSpec | None] = {}

    def lookup(self, client_ip: str, name: str) -> tuple[list[str], list[str]] | None:
        name = name.rstrip(".").lower()
        found = self.store.lookup(client_ip, name)
        if found is not None:
            return found
        target = self._link_target(client_ip, name)
        return self.store.lookup(client_ip, target) if target else None

    def reverse(self, client_ip: str, address: str) -> str | None:
        return self.store.reverse(client_ip, address)

    def upstreams(self, client_ip: str) -> list[str]:
        spec = self._asker(client_ip)
        if spec is not None and spec.dns:
            return list(spec.dns)
        return host_nameservers()

    def _link_target(self, client_ip: str, name: str) -> str | None:
        spec = self._asker(client_ip)
        if spec is None:
            return None
        for container, alias in spec.links:
            if alias.lower() == name:
                return container.lower()
        return None

    def _asker(self, client_ip: str) -> ContainerSpec | None:
        cid = self._container_at(client_ip)
        if cid is None:
            return None
        if cid not in self._specs:
            from engine.containers import records

            row = records.get(self.manager.db, cid)
            self._specs[cid] = ContainerSpec.from_json(row["spec"]) if row else None
        return self._specs[cid]

    def _container_at(self, client_ip: str) -> str | None:
        """The container whose active endpoint has this address (the endpoints table of LAYOUT.md)."""
        row = self.manager.db.query_one(
            "SELECT container_id FROM endpoints WHERE active AND (ipv4 = ? OR ipv6 = ?) LIMIT 1",
            (client_ip, client_ip),
        )
        return row[0] if row else None


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """The host's resolvers, loopback ones included (the responder runs in the host's namespace)."""
    servers = []
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                servers.append(words[1].split("%")[0])
    return servers or list(FALLBACK_DNS)
