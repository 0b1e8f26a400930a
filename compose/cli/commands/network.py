"""`pycompose network ls|inspect|rm|prune|create` (connect/disconnect: not yet), docker's flags and output.

Works on the networks of the engine on the state root (`--root`, else $PYCOMPOSE_ROOT, else the default);
engine errors propagate to the CLI's single handler, which prints them and picks the exit code.
"""

from __future__ import annotations

from compose.cli.commands import apply_each, inspect_each
from compose.cli.commands import subcommand as _command

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.api import Engine, Network

FILTER_KEYS = ("driver", "id", "label", "label!=", "name", "scope", "type", "dangling")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("network", help="manage networks")
    commands = parser.add_subparsers(dest="network_command", metavar="COMMAND", required=True)
    _add_ls(commands)
    _add_inspect(commands)
    _add_rm(commands)
    _add_prune(commands)
    _add_create(commands)
    for name, text in (("connect", "connect a container"), ("disconnect", "disconnect a container")):
        later = _command(commands, name, _not_yet, f"{text} to a network (not implemented yet)")
        later.add_argument("rest", nargs="*")


def _open(args) -> Engine:
    from compose.cli.commands.image import open_engine

    return open_engine(args)


def _usage(message: str) -> Exception:
    from compose.errors import UsageError

    return UsageError(message)


def _not_yet(args, context) -> int:
    from compose.errors import ComposeError

    raise ComposeError(f"'network {args.network_command}' is not implemented yet in pycompose")


def _pairs(values: list[str], what: str) -> dict[str, str]:
    """`key=value` flags (`--opt`, `--label`); a bare `key` means an empty value, as docker."""
    result: dict[str, str] = {}
    for value in values:
        key, _, text = value.partition("=")
        if not key:
            raise _usage(f"invalid {what} {value!r}: expected key=value")
        result[key] = text
    return result


# -- ls ---------------------------------------------------------------------------------------------------


def _add_ls(commands) -> None:
    parser = _command(commands, "ls", _ls, "list networks", aliases=("list",))
    parser.add_argument("-q", "--quiet", action="store_true", help="only display network ids")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate the output")
    parser.add_argument(
        "-f",
        "--filter",
        dest="filters",
        action="append",
        default=[],
        help="driver=, id=, label=key[=value], label!=, name=, scope=, type=custom|builtin, dangling=",
    )
    parser.add_argument("--format", default="table", help="'table' (default) or 'json' (one object per line)")


def _ls(args, context) -> int:
    import json

    with _open(args) as engine:
        networks = [n for n in engine.list_networks() if _passes(engine, n, args.filters)]
    networks.sort(key=lambda n: n.name)
    width = None if args.no_trunc else 12
    if args.quiet:
        context.stdout.write("".join(f"{n.id[:width]}\n" for n in networks))
        return 0
    if args.format == "json":
        for network in networks:
            context.stdout.write(json.dumps(ls_document(network, width), sort_keys=True) + "\n")
        return 0
    if args.format != "table":
        raise _usage(f"unsupported --format {args.format!r}: use 'table' or 'json'")
    from compose.cli.commands.image import format_table

    rows = [["NETWORK ID", "NAME", "DRIVER", "SCOPE"]]
    rows += [[n.id[:width], n.name, n.spec.driver or "bridge", "local"] for n in networks]
    context.stdout.write(format_table(rows))
    return 0


def ls_document(network: Network, width: int | None = 12) -> dict[str, str]:
    """The fields `docker network ls --format json` prints (booleans and labels as text)."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(network.spec.labels))
    return {
        "CreatedAt": network.created,
        "Driver": network.spec.driver or "bridge",
        "ID": network.id[:width],
        "IPv4": "true",
        "IPv6": str(network.spec.enable_ipv6).lower(),
        "Internal": str(network.spec.internal).lower(),
        "Labels": labels,
        "Name": network.name,
        "Scope": "local",
    }


def _filters(entries: list[str]) -> Iterator[tuple[str, str]]:
    for entry in entries:
        key, sep, value = entry.partition("=")
        if key.endswith("!"):
            key = key[:-1] + "!="
        if not sep or key not in FILTER_KEYS:
            raise _usage(f"invalid filter {entry!r}")
        yield key, value


def _passes(engine: Engine, network: Network, entries: list[str]) -> bool:
    """Values of one key are ORed, different keys ANDed (docker's filter semantics)."""
    wanted: dict[str, list[str]] = {}
    for key, value in _filters(entries):
        wanted.setdefault(key, []).append(value)
    return all(any(_holds(engine, network, k, v) for v in values) for k, values in wanted.items())


def _holds(engine: Engine, network: Network, key: str, value: str) -> bool:
    from engine.api import labels_match

    if key == "driver":
        return (network.spec.driver or "bridge") == value
    if key == "id":
        return network.id.startswith(value)
    if key == "name":
        return value in network.name  # docker matches a substring
    if key == "scope":
        return value == "local"
    if key == "type":
        return value == "custom"  # no predefined networks (bridge/host/none) are rows here
    if key == "dangling":
        if value.lower() not in ("true", "false", "1", "0"):
            raise _usage(f"invalid filter 'dangling={value}'")
        unused = not engine.inspect_network(network.id)["Containers"]
        return unused == (value.lower() in ("true", "1"))
    matched = labels_match(dict(network.spec.labels), [value])
    return matched if key == "label" else not matched


# -- inspect ----------------------------------------------------------------------------------------------


def _add_inspect(commands) -> None:
    parser = _command(commands, "inspect", _inspect, "display detailed information on networks")
    parser.add_argument("networks", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--format", default="json", help="only 'json' (docker's default) is supported")
    parser.add_argument("-v", "--verbose", action="store_true", help="accepted for docker compatibility")


def _inspect(args, context) -> int:
    from engine.errors import NetworkNotFound

    if args.format != "json":
        raise _usage("network inspect: only --format json is supported")
    with _open(args) as engine:
        return inspect_each(context, args.networks, engine.inspect_network, NetworkNotFound)


# -- rm / prune -------------------------------------------------------------------------------------------


def _add_rm(commands) -> None:
    parser = _command(commands, "rm", _rm, "remove one or more networks", aliases=("remove",))
    parser.add_argument("networks", nargs="+", metavar="NETWORK")
    parser.add_argument("-f", "--force", action="store_true", help="no error for networks that do not exist")


def _rm(args, context) -> int:
    from engine.errors import NetworkNotFound

    with _open(args) as engine:
        skip = (NetworkNotFound,) if args.force else ()
        return apply_each(context, args.networks, engine.remove_network, skip=skip)


def _add_prune(commands) -> None:
    parser = _command(commands, "prune", _prune, "remove all unused networks")
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")


def _prune(args, context) -> int:
    from compose.cli.commands.image import confirm

    question = "WARNING! This will remove all custom networks not used by at least one container.\n"
    if not args.force and not confirm(context, question + "Are you sure you want to continue?"):
        return 0
    with _open(args) as engine:
        removed = engine.prune_networks()
    if removed:
        context.stdout.write("Deleted Networks:\n" + "".join(f"{n}\n" for n in removed))
    return 0


# -- create -----------------------------------------------------------------------------------------------


def _add_create(commands) -> None:
    parser = _command(commands, "create", _create, "create a network")
    parser.add_argument("name", metavar="NETWORK")
    parser.add_argument("-d", "--driver", default="bridge", help="network driver (only 'bridge')")
    parser.add_argument("--subnet", action="append", default=[], help="subnet in CIDR form")
    parser.add_argument("--gateway", action="append", default=[], help="gateway of the subnet (same order)")
    parser.add_argument("--ip-range", action="append", default=[], help="allocate from a sub-range")
    parser.add_argument(
        "--aux-address", action="append", default=[], help="name=address reserved, never handed out"
    )
    parser.add_argument("--internal", action="store_true", help="no access from or to the outside")
    parser.add_argument("--attachable", action="store_true", help="containers may attach by hand")
    parser.add_argument("--ipv6", action="store_true", help="enable IPv6")
    parser.add_argument("--label", dest="labels", action="append", default=[], help="metadata key=value")
    parser.add_argument("-o", "--opt", dest="opts", action="append", default=[], help="driver option k=v")


def _create(args, context) -> int:
    from engine.api import NetworkSpec

    spec = NetworkSpec(
        name=args.name,
        driver=args.driver,
        options=tuple(_pairs(args.opts, "option").items()),
        ipam=ipam_pools(args.subnet, args.gateway, args.ip_range, args.aux_address),
        internal=args.internal,
        attachable=args.attachable,
        enable_ipv6=args.ipv6,
        labels=tuple(_pairs(args.labels, "label").items()),
    )
    with _open(args) as engine:
        network = engine.create_network(spec)
    context.stdout.write(f"{network.id}\n")
    return 0


def ipam_pools(subnets: list[str], gateways: list[str], ranges: list[str], aux: list[str]) -> tuple:
    """docker's flags to IPAM pools: the n-th --gateway/--ip-range belongs to the n-th --subnet; every
    --aux-address to the first subnet (docker matches them by containment; one subnet is the usual case)."""
    from engine.api import IpamPool

    if len(gateways) > len(subnets) or len(ranges) > len(subnets):
        raise _usage("every --gateway and --ip-range needs a --subnet")
    reserved = tuple(_pairs(aux, "aux-address").items())
    pools = []
    for i, subnet in enumerate(subnets):
        pools.append(
            IpamPool(
                subnet=subnet,
                gateway=gateways[i] if i < len(gateways) else None,
                ip_range=ranges[i] if i < len(ranges) else None,
                aux_addresses=reserved if i == 0 else (),
            )
        )
    return tuple(pools)
