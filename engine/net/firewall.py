"""Our iptables rules: forwarding, isolation, NAT and published ports. CONTRACT (owner: engineer N3).

The whole rule set is computed from the state (networks and published ports) and applied in ONE
`iptables-restore --noflush` batch that flushes and refills our own chains, so it converges: a crash
half-way is repaired by the next `sync`. Only our chains and our jump rules are ever touched; other
programs' rules (a Docker engine's) never.

Scopes: several state roots may live on one host (every test uses its own), so each root has a `scope`
(8 hex of a hash of its path) and its own chains `PYC-<scope>-FWD`, `-ISO`, `-DNAT`, `-POST`, reached
by jump rules tagged `-m comment --comment pycompose:<scope>`; a sync of one scope never touches
another's. Isolation between scopes holds too: traffic from one of our bridges to any other bridge of
ours (`pyc-+`, or a bridge this scope knows) is dropped.

As built:
- Backend: the host's `iptables` (nf_tables or legacy flavour, whichever `iptables -V` reports; Docker
  uses the same one, and a rule in a separate nft table could not override Docker's FORWARD drop). A
  native `nft` backend is future work. IPv6 subnets and ports go to `ip6tables` with the same chains.
- One `iptables-save` per family tells which of our chains and jumps exist; one `iptables-restore -w
  --noflush` then declares (= creates or flushes) our chains, refills them, adds a missing jump once and
  deletes duplicate jumps (two processes syncing the same scope at once may both add one: the next sync
  repairs it, so no lock is needed). A batch is atomic per table; a failed one is re-read and retried.
- Filter: FORWARD -> FWD (inserted at the top: a Docker engine's DROP policy or DOCKER-USER cannot stop
  us first). FWD first jumps to ISO, then per bridge: replies and DNAT'd (published) connections into the
  bridge accepted; bridge-internal traffic accepted (dropped when icc is off; br_netfilter makes bridged
  frames traverse FORWARD); outbound accepted; everything else into the bridge dropped (as Docker 28
  does: a LAN host cannot route to container addresses). An internal network drops all that leaves or
  enters it from another interface. ISO: from a bridge of ours to any other of ours dropped, except
  DNAT'd connections (a published port is public: reachable from any network, as from the host).
- Nat: PREROUTING and OUTPUT (`--dst-type LOCAL`) -> DNAT; POSTROUTING -> POST. DNAT: one rule per
  published port (`-d host_ip` unless every address). POST: masquerade of the subnet leaving by another
  interface (unless internal or masquerade off); masquerade of 127.0.0.0/8 sources going out the bridge
  (publishing on loopback; the bridge needs route_localnet=1); hairpin masquerade of a container that
  reaches its own published port (its reply would otherwise stay inside its namespace).
- Ports on internal networks are not published (Docker ignores them too). A port whose host address is
  of another family than the container's cannot be DNAT'd (it would need a userland proxy: not built).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from functools import cache

from engine.errors import FirewallError
from engine.frozen import frozen

BRIDGE_WILDCARD = "pyc-+"  # every bridge any scope of ours names (manager.BRIDGE_PREFIX "pyc-" + hex)
PROTOCOLS = ("tcp", "udp", "sctp")
FILTER_CHAINS = ("FWD", "ISO")
NAT_CHAINS = ("DNAT", "POST")
_JUMPS = {  # table -> (builtin chain, our chain, match before the comment)
    "filter": (("FORWARD", "FWD", ""),),
    "nat": (
        ("PREROUTING", "DNAT", "-m addrtype --dst-type LOCAL "),
        ("OUTPUT", "DNAT", "-m addrtype --dst-type LOCAL "),
        ("POSTROUTING", "POST", ""),
    ),
}
_SCOPE_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_RETRIES = 3
_TIMEOUT = 60.0


@frozen
class BridgeRules:
    """What the rules need of one network."""

    bridge: str
    subnet: str  # IPv4 CIDR
    internal: bool = False
    masquerade: bool = True  # driver_opts enable_ip_masquerade
    icc: bool = True  # driver_opts enable_icc: containers of the network reach each other


@frozen
class PortRule:
    """One published port: host side -> container side on `bridge`."""

    bridge: str
    protocol: str
    host_ip: str  # "" or "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int


@frozen
class _Backend:
    """The save/restore commands of one address family."""

    family: int
    save: str
    restore: str


def scope_of(root_path: str) -> str:
    """The scope of a state root: 8 hex of a hash of its path (stable across runs)."""
    return hashlib.sha256(str(root_path).encode()).hexdigest()[:8]


def sync(scope: str, networks: Sequence[BridgeRules], ports: Sequence[PortRule]) -> None:
    """Make our chains hold exactly the rules for these networks and ports (empty = remove our chains and
    jumps altogether, leaving the tables as they were before us). Raises FirewallError."""
    _check_scope(scope)
    for backend in _backends():
        nets = [n for n in networks if _family(n.subnet) == backend.family]
        prts = [p for p in ports if _family(p.container_ip) == backend.family]
        if backend.family == 6 and not (nets or prts) and not _has_tool(backend.save):
            continue
        _sync_family(backend, scope, nets, prts)


def our_rules(scope: str | None = None) -> list[str]:
    """Every rule line of ours (of one scope, or of all) in iptables-save form (tests count them)."""
    if scope is not None:
        _check_scope(scope)
    lines: list[str] = []
    for backend in _backends():
        if backend.family == 6 and not _has_tool(backend.save):
            continue
        for table_lines in _parse_save(_save(backend)).values():
            lines += [line for line in table_lines if line.startswith("-A ") and _is_ours(line, scope)]
    return lines


# ---- the rules (pure) -------------------------------------------------------------------------------


def chain(scope: str, name: str) -> str:
    """Our chain `name` (FWD, ISO, DNAT, POST) of a scope."""
    return f"PYC-{scope}-{name}"


def tag(scope: str) -> str:
    """The comment match that marks a jump rule of a scope."""
    return f"-m comment --comment pycompose:{scope}"


def desired_rules(
    scope: str, family: int, networks: Sequence[BridgeRules], ports: Sequence[PortRule]
) -> dict[str, list[str]]:
    """table -> the `-A` lines of our chains for one address family (checked input, no I/O)."""
    for net in networks:
        _check_network(net)
    for port in ports:
        _check_port(port)
    internal = {n.bridge for n in networks if n.internal}
    published = [p for p in ports if p.bridge not in internal and _host_family_fits(p, family)]
    return {
        "filter": _filter_rules(scope, networks),
        "nat": _dnat_rules(scope, published) + _post_rules(scope, family, networks, published),
    }


def _filter_rules(scope: str, networks: Sequence[BridgeRules]) -> list[str]:
    """FWD (after a jump to ISO) and ISO, one block per bridge (a bridge with two subnets once)."""
    fwd, iso = chain(scope, "FWD"), chain(scope, "ISO")
    by_bridge = _unique_bridges(networks)
    rules = [f"-A {fwd} -j {iso}"] if by_bridge else []
    for net in by_bridge:
        rules += [f"-A {fwd} {rule}" for rule in _forward_block(net)]
    if by_bridge:
        rules.append(f"-A {iso} -m conntrack --ctstate DNAT -j RETURN")
    names = [n.bridge for n in by_bridge]
    for bridge in names:
        rules += [f"-A {iso} {rule}" for rule in _isolation_block(bridge, names)]
    return rules


def _forward_block(net: BridgeRules) -> list[str]:
    """What may leave, enter and cross one bridge."""
    b = net.bridge
    intra = f"-i {b} -o {b} -j {'ACCEPT' if net.icc else 'DROP'}"
    if net.internal:
        return [f"-i {b} ! -o {b} -j DROP", f"-o {b} ! -i {b} -j DROP", intra]
    return [
        f"-o {b} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-o {b} -m conntrack --ctstate DNAT -j ACCEPT",
        intra,
        f"-i {b} ! -o {b} -j ACCEPT",
        f"-o {b} -j DROP",
    ]


def _isolation_block(bridge: str, names: Sequence[str]) -> list[str]:
    """Drop from this bridge to any other of ours, and into it from any `pyc-` bridge (that also guards a
    bridge named by driver_opts against other scopes, whose own wildcard cannot name it)."""
    rules = [f"-i {bridge} -o {bridge} -j RETURN", f"-i {bridge} -o {BRIDGE_WILDCARD} -j DROP"]
    rules.append(f"-i {BRIDGE_WILDCARD} -o {bridge} -j DROP")
    rules += [f"-i {bridge} -o {other} -j DROP" for other in names if other != bridge]
    return rules


def _dnat_rules(scope: str, ports: Sequence[PortRule]) -> list[str]:
    """One DNAT per published port; PREROUTING and OUTPUT only jump here for local destinations."""
    rules = []
    for p in ports:
        dest = "" if _is_wildcard(p.host_ip) else f"-d {_host(p.host_ip)} "
        target = _endpoint(p.container_ip, p.container_port)
        match = f"-p {p.protocol} -m {p.protocol} --dport {p.host_port}"
        rules.append(f"-A {chain(scope, 'DNAT')} {dest}{match} -j DNAT --to-destination {target}")
    return rules


def _post_rules(
    scope: str, family: int, networks: Sequence[BridgeRules], ports: Sequence[PortRule]
) -> list[str]:
    """Outbound masquerade, loopback publishing and hairpin."""
    post = chain(scope, "POST")
    rules = []
    for net in networks:
        if net.internal:
            continue
        subnet = str(ipaddress.ip_network(net.subnet, strict=False))
        if net.masquerade:
            rules.append(f"-A {post} -s {subnet} ! -o {net.bridge} -j MASQUERADE")
    if family == 4:  # IPv6 has no route_localnet: ::1 cannot be DNAT'd out of the host
        for bridge in sorted({p.bridge for p in ports}):
            rules.append(f"-A {post} -s 127.0.0.0/8 -o {bridge} -j MASQUERADE")
    for p in sorted(set(ports), key=lambda p: (p.container_ip, p.protocol, p.container_port)):
        me = _host(p.container_ip)
        match = f"-p {p.protocol} -m {p.protocol} --dport {p.container_port}"
        rule = f"-A {post} -s {me} -d {me} -o {p.bridge} {match} -j MASQUERADE"
        if rule not in rules:
            rules.append(rule)
    return rules


def _unique_bridges(networks: Sequence[BridgeRules]) -> list[BridgeRules]:
    """First entry per bridge, in order (a dual-stack network comes once per subnet)."""
    seen: dict[str, BridgeRules] = {}
    for net in networks:
        seen.setdefault(net.bridge, net)
    return list(seen.values())


# ---- input checks (the batch is text: nothing unchecked goes into it) --------------------------------


def _check_scope(scope: str) -> None:
    if not _SCOPE_RE.match(scope):
        raise FirewallError(f"bad firewall scope {scope!r}: 1-12 letters or digits")


def _check_ifname(name: str) -> None:
    if not _IFNAME_RE.match(name):
        raise FirewallError(f"bad bridge name {name!r}")


def _check_network(net: BridgeRules) -> None:
    _check_ifname(net.bridge)
    try:
        ipaddress.ip_network(net.subnet, strict=False)
    except ValueError as exc:
        raise FirewallError(f"bad subnet {net.subnet!r}", subject=net.bridge) from exc


def _check_port(port: PortRule) -> None:
    _check_ifname(port.bridge)
    subject = f"{port.host_ip}:{port.host_port}/{port.protocol}"
    if port.protocol not in PROTOCOLS:
        raise FirewallError(f"protocol must be one of {', '.join(PROTOCOLS)}", subject=subject)
    if not (0 < port.host_port < 65536 and 0 < port.container_port < 65536):
        raise FirewallError("port out of range", subject=subject)
    try:
        ipaddress.ip_address(port.container_ip)
        if port.host_ip:
            ipaddress.ip_address(port.host_ip)
    except ValueError as exc:
        raise FirewallError(f"bad address: {exc}", subject=subject) from exc


def _family(address: str) -> int:
    """4 or 6, of an address or a CIDR."""
    return ipaddress.ip_network(address, strict=False).version


def _is_wildcard(host_ip: str) -> bool:
    return host_ip in ("", "0.0.0.0", "::")


def _host_family_fits(port: PortRule, family: int) -> bool:
    """ "" means every address of the container's family; "0.0.0.0" / "::" only their own family."""
    if not port.host_ip:
        return True
    return _family(port.host_ip) == family


def _host(address: str) -> str:
    """An address as iptables-save prints a host match (with its prefix length)."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


def _endpoint(address: str, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


# ---- what exists, and the batch -----------------------------------------------------------------------


def _is_ours(line: str, scope: str | None) -> bool:
    """A rule in a chain of ours, or a jump tagged with our comment."""
    pattern = re.escape(scope) if scope else r"[A-Za-z0-9]{1,12}"
    return bool(re.search(rf"(^-A PYC-{pattern}-\w+ |--comment \"?pycompose:{pattern}\"?(\s|$))", line))


def _parse_save(text: str) -> dict[str, list[str]]:
    """table -> its lines (chain declarations and rules) from iptables-save output."""
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:].strip(), [])
        elif current is not None and line.startswith((":", "-A ")):
            current.append(line)
    return tables


def _existing(
    lines: Sequence[str], scope: str, table: str
) -> tuple[set[str], dict[tuple[str, str], list[str]]]:
    """Our chains present in one table, and (builtin, our chain) -> the jump rule lines found."""
    chains = {line[1:].split()[0] for line in lines if line.startswith(f":PYC-{scope}-")}
    jumps: dict[tuple[str, str], list[str]] = {}
    for builtin, ours, _match in _JUMPS[table]:
        target = f"-j {chain(scope, ours)}"
        jumps[(builtin, ours)] = [
            line
            for line in lines
            if line.startswith(f"-A {builtin} ") and line.endswith(target) and _is_ours(line, scope)
        ]
    return chains, jumps


def _table_batch(scope: str, table: str, lines: Sequence[str], rules: Sequence[str] | None) -> list[str]:
    """The restore lines of one table: refill (rules given) or remove (None); [] when nothing to do."""
    names = FILTER_CHAINS if table == "filter" else NAT_CHAINS
    chains, jumps = _existing(lines, scope, table)
    if rules is None:
        if not chains and not any(jumps.values()):
            return []
        out = [f"-D{found[2:]}" for found_list in jumps.values() for found in found_list]
        out += [f"-F {name}" for name in sorted(chains)]
        out += [f"-X {name}" for name in sorted(chains)]
        return [f"*{table}", *out, "COMMIT"]
    out = [f":{chain(scope, name)} - [0:0]" for name in names]
    for builtin, ours, match in _JUMPS[table]:
        found = jumps[(builtin, ours)]
        if not found:
            out.append(f"-I {builtin} 1 {match}{tag(scope)} -j {chain(scope, ours)}")
        out += [f"-D{extra[2:]}" for extra in found[1:]]
    return [f"*{table}", *out, *rules, "COMMIT"]


def _sync_family(backend: _Backend, scope: str, networks: list[BridgeRules], ports: list[PortRule]) -> None:
    """Read what exists, write one batch; retry when another process changed the tables meanwhile."""
    wanted = desired_rules(scope, backend.family, networks, ports) if (networks or ports) else None
    error = ""
    for attempt in range(_RETRIES):
        tables = _parse_save(_save(backend))
        batch: list[str] = []
        for table in ("filter", "nat"):
            rules = None if wanted is None else wanted[table]
            batch += _table_batch(scope, table, tables.get(table, []), rules)
        if not batch:
            return
        error = _restore(backend, "\n".join(batch) + "\n")
        if not error:
            return
        time.sleep(0.05 * (attempt + 1))
    raise FirewallError(f"{backend.restore} refused our rules: {error}", subject=f"scope {scope}")


# ---- the backend --------------------------------------------------------------------------------------


@cache
def _backends() -> tuple[_Backend, ...]:
    """The host's iptables (and ip6tables when installed); FirewallError when iptables is missing."""
    if not _has_tool("iptables") or not _has_tool("iptables-restore"):
        raise FirewallError(
            "iptables not found: published ports, NAT and isolation need it (apt-get install iptables); "
            "a native nft backend is not built yet"
        )
    out = [_Backend(4, "iptables-save", "iptables-restore")]
    if _has_tool("ip6tables-restore"):
        out.append(_Backend(6, "ip6tables-save", "ip6tables-restore"))
    return tuple(out)


def backend_flavour() -> str:
    """`nf_tables` or `legacy`: what `iptables -V` reports (for messages and inspect)."""
    _backends()
    version = _run(["iptables", "-V"]).stdout
    found = re.search(r"\((\w+)\)", version)
    return found.group(1) if found else "legacy"


@cache
def _has_tool(name: str) -> bool:
    return shutil.which(name) is not None


def _run(argv: list[str], text_in: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, input=text_in, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"{argv[0]} failed: {exc}") from exc


def _save(backend: _Backend) -> str:
    done = _run([backend.save])
    if done.returncode != 0:
        raise FirewallError(f"{backend.save} failed: {done.stderr.strip()}")
    return done.stdout


def _restore(backend: _Backend, batch: str) -> str:
    """Apply a batch atomically per table; '' on success, else iptables' complaint."""
    done = _run([backend.restore, "-w", "--noflush"], batch)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")
