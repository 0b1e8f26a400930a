"""Value types of the network side: what the caller asks for and what the state holds."""

from __future__ import annotations

from engine.frozen import frozen

DEFAULT_DRIVER = "bridge"
# driver_opts keys Docker users set (compose passes them through unchanged)
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
OPT_ICC = "com.docker.network.bridge.enable_icc"
OPT_HOST_BINDING_IPV4 = "com.docker.network.bridge.host_binding_ipv4"


@frozen
class IpamPool:
    """One `ipam.config` entry; every field optional (None = choose one)."""

    subnet: str | None = None
    ip_range: str | None = None
    gateway: str | None = None
    aux_addresses: tuple[tuple[str, str], ...] = ()  # (name, address): reserved, never handed out


@frozen
class NetworkSpec:
    """A network to create (compose: one entry of the top-level `networks`, name already resolved)."""

    name: str
    driver: str = DEFAULT_DRIVER
    options: tuple[tuple[str, str], ...] = ()  # driver_opts
    ipam: tuple[IpamPool, ...] = ()
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    labels: tuple[tuple[str, str], ...] = ()


@frozen
class Subnet:
    """An allocated subnet of a network: CIDR, gateway and the range addresses come from."""

    subnet: str  # "172.18.0.0/16"
    gateway: str  # "172.18.0.1"
    ip_range: str | None = None
    aux_addresses: tuple[tuple[str, str], ...] = ()


@frozen
class Network:
    """A network as the state records it."""

    id: str  # 64 hex
    name: str
    bridge: str  # Linux bridge name ("pyc-" + 12 hex of the id unless driver_opts name one)
    spec: NetworkSpec
    subnets: tuple[Subnet, ...]  # IPv4 first, then IPv6 when enabled
    created: str  # RFC 3339
    mtu: int = 1500


@frozen
class Endpoint:
    """One container's attachment to one network, as recorded (addresses set while it runs)."""

    container_id: str
    network_id: str
    names: tuple[str, ...]  # every DNS name it answers to in this network (aliases, container name, hostname)
    ipv4: str | None = None  # "172.18.0.2" (no prefix)
    ipv6: str | None = None
    mac: str | None = None
    host_veth: str | None = None  # the host-side veth name while active
    active: bool = False


@frozen
class PublishedPort:
    """A port published for a running container: what `port` and `ps` show."""

    container_id: str
    container_port: int
    protocol: str
    host_ip: str  # "0.0.0.0" when every address
    host_port: int
    container_ip: str = ""
