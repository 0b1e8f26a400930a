"""`pycompose port SERVICE PRIVATE_PORT`: the public address of one of the project's published ports.

Finds the project's containers the way `stats`/`top` do (Compose's labels), picks the replica `--index`
(its container-number label) and asks the engine which host address and port it was given.
"""

from __future__ import annotations

from compose.labels import CONTAINER_NUMBER


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("port", help="print the public port for a port binding")
    parser.add_argument("service", metavar="SERVICE")
    parser.add_argument("private_port", metavar="PRIVATE_PORT")
    parser.add_argument("--protocol", default="tcp", choices=("tcp", "udp", "sctp"), help="tcp (default)")
    parser.add_argument("--index", type=int, default=1, help="index of the container if there are replicas")
    parser.set_defaults(handler=_port)


def _port(args, context) -> int:
    from compose.cli.commands.project_containers import _project_name, project_containers
    from compose.errors import ComposeError, UsageError
    from engine.api import Engine

    port, protocol = parse_private(args.private_port, args.protocol)
    args.services = [args.service]
    project = _project_name(args, context)
    with Engine.open(getattr(args, "root", None)) as engine:
        rows = project_containers(engine, project, [args.service], all=True)
        record = pick_replica(rows, args.index)
        if record is None:
            raise ComposeError(f"service {args.service!r} has no container with index {args.index}")
        published = engine.container_port(record["id"], port, protocol)
    if not published:
        raise UsageError(f"no port {port}/{protocol} for container {record['name']}")
    first = published[0]
    context.stdout.write(f"{first.host_ip}:{first.host_port}\n")
    return 0


def parse_private(text: str, protocol: str) -> tuple[int, str]:
    """`80` or `80/udp` (the suffix wins over --protocol, as docker's `port` accepts both)."""
    from compose.errors import UsageError

    number, _, suffix = text.partition("/")
    try:
        port = int(number)
    except ValueError:
        raise UsageError(f"invalid private port {text!r}") from None
    if not 0 < port < 65536:
        raise UsageError(f"invalid private port {text!r}")
    return port, suffix or protocol


def pick_replica(rows: list[dict], index: int) -> dict | None:
    """The row whose container-number label is `index` (a row without the label counts as 1)."""
    for row in rows:
        if int((row.get("labels") or {}).get(CONTAINER_NUMBER, "1")) == index:
            return row
    return None
