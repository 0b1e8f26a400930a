"""Synchronous rtnetlink requests for engine/net/links (bridges, a container's attach, veth deletes):
pyroute2's message classes encode them, a plain netlink socket carries them, the kernel's ACK is read back.

Why not pyroute2's IPRoute here: in 0.9 its synchronous API drives an asyncio loop for every request
(about 0.4 ms each, 0.8 ms to open a socket), and each container start makes seven requests on two
sockets in a freshly forked helper, 20 times over in a 20-service `up`. Here a request costs about
0.05 ms besides the kernel's own work. Failures raise pyroute2's NetlinkError (errno in `.code`), as
IPRoute does, so callers handle both alike.

The socket is bound to the network namespace of the calling thread when it is made: make one per
namespace (setns first).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any

from engine.net import pyroute2_light  # noqa: F401  (first: pyroute2's package without its __init__)

# isort: split
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWNEIGH, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.ndmsg import ndmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

IFF_UP = 0x1
IFA_F_NODAD = 0x02  # IPv6 addresses usable at once: a fresh veth has no duplicate to detect
NUD_STALE = 0x04  # a neighbour entry used at once and confirmed by the kernel later
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4  # what `ip route add` marks a route with
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
_ERRNO = struct.Struct("=i")


def _family(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


class Rtnl:
    """One NETLINK_ROUTE socket in the caller's current network namespace; each method is one request,
    acknowledged by the kernel before it returns."""

    def __init__(self) -> None:
        kind = socket.SOCK_RAW | socket.SOCK_CLOEXEC
        self._sock = socket.socket(socket.AF_NETLINK, kind, socket.NETLINK_ROUTE)
        self._sock.bind((0, 0))
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    # -- requests

    def add_veth(
        self, name: str, *, master: int, mtu: int, peer_name: str, peer_netns_fd: int, peer_mac: str | None
    ) -> None:
        """A veth pair: `name` here, enslaved to `master` and up; its peer born in the namespace of
        `peer_netns_fd` as `peer_name` (down, with `peer_mac` when given). EEXIST when `name` exists."""
        peer: list[tuple[str, Any]] = [
            ("IFLA_IFNAME", peer_name),
            ("IFLA_NET_NS_FD", peer_netns_fd),
            ("IFLA_MTU", mtu),
        ]
        if peer_mac:
            peer.append(("IFLA_ADDRESS", peer_mac))
        data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}
        msg = ifinfmsg()
        msg["flags"] = msg["change"] = IFF_UP
        msg["attrs"] = [
            ("IFLA_IFNAME", name),
            ("IFLA_MTU", mtu),
            ("IFLA_MASTER", master),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", data)]}),
        ]
        self._call(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)

    def add_bridge(self, name: str, *, mtu: int, mac: str) -> None:
        """A bridge (down) with its own MAC; EEXIST when `name` exists."""
        msg = ifinfmsg()
        msg["attrs"] = [
            ("IFLA_IFNAME", name),
            ("IFLA_MTU", mtu),
            ("IFLA_ADDRESS", mac),
            ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "bridge")]}),
        ]
        self._call(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)

    def set_up(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        msg["flags"] = msg["change"] = IFF_UP
        self._call(msg, RTM_NEWLINK, 0)

    def set_mtu(self, index: int, mtu: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        msg["attrs"] = [("IFLA_MTU", mtu)]
        self._call(msg, RTM_NEWLINK, 0)

    def delete_link(self, index: int) -> None:
        msg = ifinfmsg()
        msg["index"] = index
        self._call(msg, RTM_DELLINK, 0)

    def add_address(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        """`ip addr add` (no broadcast, as iproute2); IPv6 without duplicate detection. EEXIST when there."""
        msg = ifaddrmsg()
        msg["family"] = _family(iface.ip)
        msg["prefixlen"] = iface.network.prefixlen
        msg["index"] = index
        address = str(iface.ip)
        msg["attrs"] = [("IFA_LOCAL", address), ("IFA_ADDRESS", address)]
        if iface.version == 6:
            msg["flags"] = IFA_F_NODAD
        self._call(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)

    def add_default_route(self, gateway: ipaddress.IPv4Address | ipaddress.IPv6Address, oif: int) -> None:
        """`ip route add default via GATEWAY dev OIF` (main table, proto static)."""
        msg = rtmsg()
        msg["family"] = _family(gateway)
        msg["table"] = RT_TABLE_MAIN
        msg["proto"] = RTPROT_STATIC
        msg["scope"] = RT_SCOPE_UNIVERSE
        msg["type"] = RTN_UNICAST
        msg["attrs"] = [("RTA_GATEWAY", str(gateway)), ("RTA_OIF", oif)]
        self._call(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)

    def replace_neighbour(self, address: ipaddress.IPv4Address, mac: str, index: int, state: int) -> None:
        """`ip neigh replace ADDRESS lladdr MAC dev INDEX nud STATE`."""
        msg = ndmsg()
        msg["family"] = _family(address)
        msg["ifindex"] = index
        msg["state"] = state
        msg["attrs"] = [("NDA_DST", str(address)), ("NDA_LLADDR", mac)]
        self._call(msg, RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE)

    # -- the wire

    def _call(self, msg: Any, kind: int, flags: int) -> None:
        """Send one request and wait for its ACK; a negative ACK raises NetlinkError."""
        self._seq += 1
        msg["header"]["type"] = kind
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | flags
        msg["header"]["sequence_number"] = self._seq
        msg.encode()
        self._sock.send(msg.data)
        while True:
            data = self._sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, _, seq, _ = _HEADER.unpack_from(data, offset)
                if mtype == NLMSG_ERROR and seq == self._seq:
                    code = -_ERRNO.unpack_from(data, offset + _HEADER.size)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
                if length < _HEADER.size:
                    break
                offset += (length + 3) & ~3


def warm() -> None:
    """Compile the message classes' attribute tables now, in a process that forks the helpers doing
    attaches: each helper then starts with them compiled (the first encode costs ~0.8 ms)."""
    for msg_class in (ifinfmsg, ifaddrmsg, rtmsg, ndmsg):
        msg = msg_class()
        msg["header"]["type"] = 0
        msg.encode()
    peer = {"attrs": [("IFLA_IFNAME", "x"), ("IFLA_MTU", 1500)]}
    data = {"attrs": [("VETH_INFO_PEER", peer)]}
    msg = ifinfmsg()
    msg["attrs"] = [("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", data)]})]
    msg.encode()
