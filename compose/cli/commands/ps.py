"""`pycompose ps` and `pycompose ls`: a project's containers, and the projects.

Containers are found by Compose's labels, never by name. `ps` shows running containers unless `-a`
(docker compose v2), sorted by name, with docker compose's columns: NAME, IMAGE, COMMAND (quoted, cut to
20 characters), SERVICE, CREATED (`2 minutes ago`), STATUS (`Up 2 minutes (healthy)`, `Exited (1) 3
seconds ago`) and PORTS (docker's DisplayablePorts: `0.0.0.0:8080->80/tcp`, ranges merged). `--format`
takes table, json (one object per line, keys as docker's ContainerContext) or a Go-template-like text
of `{{.Field}}` references. `ls` groups every container of this state root by its project label.

Everything that turns records into text is pure and unit-tested; only the handlers open the engine.
"""

from __future__ import annotations

import re

from compose.labels import CONFIG_FILES, PROJECT, SERVICE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

STATES = ("paused", "restarting", "removing", "running", "dead", "created", "exited")
PS_TITLES = ("NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS")
PS_FIELDS = ("Name", "Image", "Command", "Service", "RunningFor", "Status", "Ports")
HEADERS = {
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "Names": "NAMES",
    "Project": "PROJECT",
    "Service": "SERVICE",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Ports": "PORTS",
    "State": "STATE",
    "Status": "STATUS",
    "Health": "HEALTH",
    "ExitCode": "EXIT CODE",
    "Labels": "LABELS",
    "Networks": "NETWORKS",
    "Mounts": "MOUNTS",
    "LocalVolumes": "LOCAL VOLUMES",
    "Size": "SIZE",
    "Publishers": "PUBLISHERS",
}
_FIELD_RE = re.compile(r"\{\{\s*(json\s+)?\.(\w*)\s*(?:\"([^\"]*)\")?\s*\}\}")


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register `ps` and `ls` with docker compose's flags."""
    ps = subparsers.add_parser("ps", help="list the project's containers")
    ps.add_argument("services", nargs="*", metavar="SERVICE")
    ps.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    ps.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    ps.add_argument("--services", dest="list_services", action="store_true", help="display services")
    ps.add_argument(
        "--status", action="append", default=[], choices=STATES, help="filter by status; repeatable"
    )
    ps.add_argument(
        "--filter", dest="filters", action="append", default=[], metavar="KEY=VALUE", help="status=, service="
    )
    ps.add_argument("--format", default="table", help="table, json or a template like '{{.Name}}'")
    ps.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    ps.add_argument(
        "--orphans", nargs="?", const="true", default="true", metavar="BOOL", help="include orphans"
    )
    ps.set_defaults(handler=_ps)

    ls = subparsers.add_parser("ls", help="list running compose projects")
    ls.add_argument("-a", "--all", action="store_true", help="show all projects (default: running)")
    ls.add_argument("-q", "--quiet", action="store_true", help="only display project names")
    ls.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    ls.add_argument(
        "--filter", dest="filters", action="append", default=[], metavar="name=NAME", help="filter"
    )
    ls.set_defaults(handler=_ls)


# -- which project, which containers ---------------------------------------------------------------------


def project_name(args, context, services: Sequence[str] = ()) -> tuple[str, set[str] | None]:  # type: ignore[no-untyped-def]
    """The project's name and its service names; with `-p` and no Compose file, the name alone (None)."""
    from compose.cli.commands.project_images import load, selected_services
    from compose.errors import ProjectNotFoundError

    try:
        loaded = load(args, context)
    except ProjectNotFoundError:
        if not getattr(args, "project_name", None) or getattr(args, "files", None):
            raise
        return args.project_name, None
    if services:
        selected_services(loaded, services, include_deps=False)  # "no such service"
    return loaded.name, set(loaded.data.get("services") or {})


def find_containers(
    engine: Any,
    project: str,
    services: Sequence[str] = (),
    *,
    all: bool = True,
    oneoff: bool | None = False,
) -> list[dict[str, Any]]:
    """The project's containers by label (compose/run/observe.py), sorted by name as docker compose lists."""
    from compose.run.observe import project_containers

    found = project_containers(engine, project, services=services, all=all, oneoff=oneoff)
    return sorted(found, key=lambda r: r["name"])


def summary(record: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """docker compose's ContainerSummary from an engine record and its inspect document."""
    state = document.get("State") or {}
    config = document.get("Config") or {}
    ports = (document.get("NetworkSettings") or {}).get("Ports") or {}
    labels = record.get("labels") or {}
    return {
        "ID": record["id"],
        "Name": record["name"],
        "Names": [record["name"]],
        "Image": config.get("Image") or record.get("image_id", ""),
        "Command": " ".join([document.get("Path") or "", *(document.get("Args") or [])]).strip(),
        "Project": labels.get(PROJECT, ""),
        "Service": labels.get(SERVICE, ""),
        "Created": record.get("created") or "",
        "State": record["state"],
        "Health": (state.get("Health") or {}).get("Status", ""),
        "ExitCode": state.get("ExitCode", 0) if record["state"] in ("exited", "dead") else 0,
        "Publishers": publishers(ports),
        "Labels": labels,
        "Networks": sorted((document.get("NetworkSettings") or {}).get("Networks") or {}),
        "Mounts": [m.get("Name") or m.get("Source") or "" for m in document.get("Mounts") or []],
        "LocalVolumes": sum(1 for m in document.get("Mounts") or [] if m.get("Type") == "volume"),
        "Record": record,
    }


def publishers(ports: dict[str, list[dict[str, str]] | None]) -> list[dict[str, Any]]:
    """Docker's PortPublishers from inspect's NetworkSettings.Ports, sorted as docker compose sorts them."""
    found = []
    for key, bindings in ports.items():
        target, _, protocol = key.partition("/")
        for binding in bindings or [{"HostIp": "", "HostPort": "0"}]:
            found.append(
                {
                    "URL": binding.get("HostIp") or "",
                    "TargetPort": int(target),
                    "PublishedPort": int(binding.get("HostPort") or 0),
                    "Protocol": protocol or "tcp",
                }
            )
    return sorted(found, key=lambda p: (p["TargetPort"], p["URL"], p["PublishedPort"], p["Protocol"]))


def display_ports(ports: Iterable[dict[str, Any]]) -> str:
    """docker's DisplayablePorts: `0.0.0.0:8000-8001->8000-8001/tcp, 0.0.0.0:9000->90/tcp, 53/udp`.

    Ports published on the same number are merged into ranges per (address, protocol); a port published
    on another number is listed on its own after the groups."""
    ordered = sorted(ports, key=lambda p: (p["TargetPort"], p["URL"], p["PublishedPort"], p["Protocol"]))
    groups: dict[str, list[int]] = {}
    closed: list[str] = []
    mappings: list[str] = []
    for port in ordered:
        target, protocol, address = port["TargetPort"], port["Protocol"], port["URL"]
        key = protocol
        if address:
            if port["PublishedPort"] != target:
                mappings.append(f"{address}:{port['PublishedPort']}->{target}/{protocol}")
                continue
            key = f"{address}/{protocol}"
        group = groups.get(key)
        if group is None:
            groups[key] = [target, target]
        elif target == group[1] + 1:
            group[1] = target
        else:
            closed.append(_port_group(key, *group))
            groups[key] = [target, target]
    return ", ".join(closed + [_port_group(k, *g) for k, g in groups.items()] + mappings)


def _port_group(key: str, first: int, last: int) -> str:
    address, _, protocol = key.rpartition("/")
    span = str(first) if first == last else f"{first}-{last}"
    return f"{address}:{span}->{span}/{protocol}" if address else f"{span}/{protocol}"


def ellipsis(text: str, width: int) -> str:
    """docker's formatter.Ellipsis: cut to `width` characters, the last one `…`."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_quote(text: str) -> str:
    """strconv.Quote for the usual characters (docker quotes the COMMAND column)."""
    import json

    return json.dumps(text, ensure_ascii=False)


def fields(item: dict[str, Any], *, trunc: bool = True, now: float | None = None) -> dict[str, Any]:
    """The values docker compose's ContainerContext gives each template field (strings, mostly)."""
    from compose.cli.commands.container import status_text
    from compose.cli.commands.image import created_since, parse_time

    created = parse_time(item["Created"])
    labels = item["Labels"]
    return {
        "ID": item["ID"][:12] if trunc else item["ID"],
        "Name": item["Name"],
        "Names": ",".join(item["Names"]),
        "Project": item["Project"],
        "Service": item["Service"],
        "Image": item["Image"],
        "Command": go_quote(ellipsis(item["Command"], 20) if trunc else item["Command"]),
        "CreatedAt": _created_at(created),
        "RunningFor": created_since(item["Created"], now),
        "State": item["State"],
        "Status": status_text(item["Record"], now),
        "Health": item["Health"],
        "ExitCode": item["ExitCode"],
        "Publishers": item["Publishers"],
        "Ports": display_ports(item["Publishers"]),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Networks": ",".join(item["Networks"]),
        "Mounts": ",".join(ellipsis(m, 15) if trunc else m for m in item["Mounts"]),
        "LocalVolumes": str(item["LocalVolumes"]),
        "Size": "0B",
    }


def _created_at(timestamp: float | None) -> str:
    """Go's time.Time String() in local time: `2024-05-01 10:00:00 +0200 CEST`."""
    if timestamp is None:
        return ""
    import time

    local = time.localtime(timestamp)
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", local)


def render_template(template: str, values: dict[str, Any], labels: dict[str, str] | None = None) -> str:
    """A Go-template-like line: `{{.Field}}`, `{{json .Field}}`, `{{json .}}`, `{{.Label "key"}}`, `\\t`."""
    import json

    from compose.errors import UsageError

    def one(match: re.Match[str]) -> str:
        as_json, name, argument = match.group(1), match.group(2), match.group(3)
        if name == "" and as_json:
            return json.dumps(values, separators=(",", ":"))
        if name == "Label":
            return (labels or {}).get(argument or "", "")
        if name not in values:
            raise UsageError(f"template: can't evaluate field {name}")
        value = values[name]
        if as_json:
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return _FIELD_RE.sub(one, template.replace("\\t", "\t"))


def json_line(values: dict[str, Any]) -> str:
    """`ps --format json`: one object per container, keys sorted as Go marshals a method set."""
    import json

    return json.dumps(dict(sorted(values.items())), separators=(",", ":"), ensure_ascii=False)


def template_output(template: str, rows: Sequence[dict[str, Any]]) -> str:
    """`table {{...}}` (a header, tab-separated cells aligned as docker's tabwriter) or plain lines."""
    from compose.cli.commands.image import format_table

    if template.startswith("table"):
        body = template.removeprefix("table").strip() or "\t".join(f"{{{{.{f}}}}}" for f in PS_FIELDS)
        names = [m.group(2) for m in _FIELD_RE.finditer(body)]
        header = [HEADERS.get(n, n.upper()) for n in names]
        table = [header] + [render_template(body, r, r.get("_labels")).split("\t") for r in rows]
        if len({len(row) for row in table}) != 1:  # text between fields: no column layout
            return "".join(render_template(body, r, r.get("_labels")) + "\n" for r in rows)
        return format_table(table)
    return "".join(render_template(template, r, r.get("_labels")) + "\n" for r in rows)


def ps_table(rows: Sequence[dict[str, Any]]) -> str:
    from compose.cli.commands.image import format_table

    return format_table([list(PS_TITLES)] + [[str(r[f]) for f in PS_FIELDS] for r in rows])


def parse_filters(entries: Sequence[str], statuses: Sequence[str]) -> tuple[set[str], set[str]]:
    """(states, services) from `--filter status=...|service=...` and `--status`; UsageError otherwise."""
    from compose.errors import UsageError

    states, services = set(statuses), set()
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or key not in ("status", "service"):
            raise UsageError(f"invalid filter {entry!r}: supported filters are status=, service=")
        if key == "status" and value not in STATES:
            raise UsageError(f"invalid filter 'status={value}': want one of {', '.join(STATES)}")
        (states if key == "status" else services).add(value)
    return states, services


def select(
    records: Sequence[dict[str, Any]],
    *,
    states: set[str],
    services: set[str],
    known_services: set[str] | None,
    orphans: bool,
) -> list[dict[str, Any]]:
    """Records kept by the filters; orphans (service not in the project) dropped with --orphans=false."""
    kept = []
    for record in records:
        service = record["labels"].get(SERVICE)
        if states and record["state"] not in states:
            continue
        if services and service not in services:
            continue
        if not orphans and known_services is not None and service not in known_services:
            continue
        kept.append(record)
    return kept


def _truthy(text: str) -> bool:
    from compose.errors import UsageError

    if text.lower() in ("1", "t", "true"):
        return True
    if text.lower() in ("0", "f", "false"):
        return False
    raise UsageError(f"invalid boolean {text!r}")


def _ps(args, context) -> int:  # type: ignore[no-untyped-def]
    from engine.api import Engine
    from engine.errors import ContainerNotFound

    name, known = project_name(args, context, args.services)
    states, services = parse_filters(args.filters, args.status)
    orphans = _truthy(args.orphans)
    with Engine.open(getattr(args, "root", None)) as engine:
        every = args.all or bool(states)
        records = find_containers(engine, name, args.services, all=every)
        records = select(records, states=states, services=services, known_services=known, orphans=orphans)
        if args.list_services:
            seen = dict.fromkeys(r["labels"].get(SERVICE, "") for r in records)
            context.stdout.write("".join(f"{s}\n" for s in seen))
            return 0
        if args.quiet:
            context.stdout.write("".join(f"{r['id']}\n" for r in records))  # full ids, as compose
            return 0
        items = []
        for record in records:
            try:
                items.append(summary(record, engine.inspect_container(record["id"])))
            except ContainerNotFound:  # removed between the listing and the look
                continue
    context.stdout.write(format_ps(items, args.format, trunc=not args.no_trunc))
    return 0


def format_ps(items: Sequence[dict[str, Any]], template: str, *, trunc: bool = True) -> str:
    """The whole `ps` output for summaries in `--format` table, json or a template."""
    rows = [{**fields(item, trunc=trunc), "_labels": item["Labels"]} for item in items]
    if template == "table":
        return ps_table(rows)
    if template == "json":
        return "".join(json_line({k: v for k, v in r.items() if k != "_labels"}) + "\n" for r in rows)
    return template_output(template, rows)


# -- ls -------------------------------------------------------------------------------------------------


def project_names(engine: Any, *, all: bool) -> dict[str, list[dict[str, Any]]]:
    """Every project with containers under this state root (compose/run/observe.py); without `all`
    only running containers count, and projects with none are left out (docker compose ls)."""
    from compose.run import observe

    projects = {}
    for name, records in observe.project_names(engine).items():
        kept = records if all else [r for r in records if r["state"] == "running"]
        if kept:
            projects[name] = kept
    return projects


def combined_status(records: Iterable[dict[str, Any]]) -> str:
    """`exited(1), running(2)`: each state with its count, states in alphabetical order."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record["state"]] = counts.get(record["state"], 0) + 1
    return ", ".join(f"{state}({counts[state]})" for state in sorted(counts))


def config_files(records: Iterable[dict[str, Any]]) -> str:
    """The distinct config-files labels of a project's containers, joined by commas."""
    seen: dict[str, None] = {}
    for record in records:
        for path in (record["labels"].get(CONFIG_FILES) or "").split(","):
            if path:
                seen[path] = None
    return ",".join(seen)


def ls_rows(
    projects: dict[str, list[dict[str, Any]]], name_filters: Sequence[str] = ()
) -> list[dict[str, str]]:
    """One row per project sorted by name; `name=` filters match as docker's (regular expression search)."""
    rows = []
    for name in sorted(projects):
        if name_filters and not any(re.search(f, name) for f in name_filters):
            continue
        records = projects[name]
        rows.append({"Name": name, "Status": combined_status(records), "ConfigFiles": config_files(records)})
    return rows


def _ls(args, context) -> int:  # type: ignore[no-untyped-def]
    import json

    from compose.cli.commands.image import format_table
    from compose.errors import UsageError
    from engine.api import Engine

    names = []
    for entry in args.filters:
        key, sep, value = entry.partition("=")
        if key != "name" or not sep:
            raise UsageError(f"invalid filter {entry!r}: supported filter is name=")
        names.append(value)
    with Engine.open(getattr(args, "root", None)) as engine:
        projects = project_names(engine, all=args.all)
    rows = ls_rows(projects, names)
    if args.quiet:
        context.stdout.write("".join(f"{r['Name']}\n" for r in rows))
    elif args.format == "json":
        context.stdout.write(json.dumps(rows, separators=(",", ":")) + "\n")
    else:
        table = [["NAME", "STATUS", "CONFIG FILES"]] + [
            [r["Name"], r["Status"], r["ConfigFiles"]] for r in rows
        ]
        context.stdout.write(format_table(table))
    return 0
