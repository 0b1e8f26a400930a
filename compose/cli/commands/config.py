"""`pycompose config`: load, validate and print the canonical project, like `docker compose config`."""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike
if TYPE_CHECKING:
    from typing import Any


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "config", help="parse, resolve and render the compose file in canonical format"
    )
    parser.add_argument(
        "services", nargs="*", metavar="SERVICE", help="only these services (and their dependencies)"
    )
    parser.add_argument("--format", choices=("yaml", "json"), default="yaml", help="output format")
    parser.add_argument("-o", "--output", metavar="FILE", help="save to file (default: standard output)")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only validate the configuration, print nothing"
    )
    parser.add_argument(
        "--services", dest="list_services", action="store_true", help="print the service names"
    )
    parser.add_argument("--volumes", dest="list_volumes", action="store_true", help="print the volume names")
    parser.add_argument(
        "--networks", dest="list_networks", action="store_true", help="print the network names"
    )
    parser.add_argument(
        "--profiles", dest="list_profiles", action="store_true", help="print the profile names"
    )
    parser.add_argument("--images", dest="list_images", action="store_true", help="print the image names")
    parser.add_argument(
        "--hash", metavar="SERVICES", help='print the config hash of these services ("*" for all)'
    )
    parser.add_argument(
        "--variables", action="store_true", help="print the model variables and their defaults"
    )
    parser.add_argument("--environment", action="store_true", help="print the interpolation environment")
    parser.add_argument(
        "--no-interpolate", action="store_true", help="don't interpolate environment variables"
    )
    parser.add_argument("--no-normalize", action="store_true", help="don't normalize the compose model")
    parser.add_argument("--no-path-resolution", action="store_true", help="don't resolve file paths")
    parser.add_argument("--no-env-resolution", action="store_true", help="don't resolve service env files")
    parser.add_argument(
        "--no-consistency",
        action="store_true",
        help="don't check model consistency (references, cycles, conflicts)",
    )
    parser.set_defaults(handler=run)


def run(args, context) -> int:
    from compose.cli.project import project_options
    from compose.loader.pipeline import LoadSettings, load_project

    options = project_options(args)
    if args.list_profiles:
        options = options.__class__(**{**options.__dict__, "profiles": ("*",)})
    settings = LoadSettings(
        interpolate=not args.no_interpolate,
        normalize=not args.no_normalize,
        resolve_paths=not args.no_path_resolution,
        resolve_environment=not args.no_env_resolution,
        consistency=not args.no_consistency,
        services=tuple(args.services),
    )
    loaded = load_project(options, settings, warn=context.warn)
    if args.quiet:
        return 0
    data = loaded.data
    services: Mapping[str, Any] = data.get("services") or {}
    if args.list_services:
        return _print_lines(context, args, dependency_order(services))
    if args.list_volumes:
        return _print_lines(context, args, sorted(data.get("volumes") or {}))
    if args.list_networks:
        return _print_lines(context, args, sorted(data.get("networks") or {}))
    if args.list_profiles:
        profiles = {p for service in services.values() for p in service.get("profiles") or ()}
        return _print_lines(context, args, sorted(profiles))
    if args.list_images:
        images = [
            service.get("image") or f"{loaded.name}-{name}" for name, service in sorted(services.items())
        ]
        return _print_lines(context, args, images)
    if args.hash is not None:
        from compose.hashing import service_config_hash

        names = (
            sorted(services) if args.hash.strip() == "*" else [s.strip() for s in args.hash.split(",") if s]
        )
        missing = [n for n in names if n not in services]
        if missing:
            from compose.errors import ComposeError

            raise ComposeError(f"no such service: {missing[0]}")
        return _print_lines(context, args, [f"{n} {service_config_hash(services[n])}" for n in names])
    if args.environment:
        return _print_lines(context, args, [f"{k}={v}" for k, v in sorted(loaded.environment.items())])
    if args.variables:
        return _print_variables(context, args, loaded)
    from compose import render

    text = render.to_json(data) + "\n" if args.format == "json" else render.to_yaml(data)
    if settings.interpolate:
        # Values are final now; a `$` left in them is literal and must not be read as a variable when this
        # output is loaded again (docker compose escapes the same way).
        text = text.replace("$", "$$")
    return _write(context, args, text)


def dependency_order(services: Mapping[str, Any]) -> list[str]:
    """Service names, each after the services it depends on (docker compose `config --services` order)."""
    seen: set[str] = set()
    order: list[str] = []

    def visit(name: str) -> None:
        if name in seen or name not in services:
            return
        seen.add(name)
        for dependency in sorted((services[name].get("depends_on") or {}).keys()):
            visit(dependency)
        order.append(name)

    for name in sorted(services):
        visit(name)
    return order


def _print_variables(context, args, loaded) -> int:
    import json

    from compose.loader.interpolate import list_variables
    from compose.loader.yamlparse import parse_yaml

    variables: dict[str, dict] = {}
    for filename in loaded.files:
        if filename == "-":
            continue
        with open(filename, encoding="utf-8") as handle:
            for document in parse_yaml(handle.read(), filename):
                variables.update(list_variables(document.data))
    if args.format == "json":
        return _write(context, args, json.dumps(variables, indent=2) + "\n")
    rows = [("NAME", "REQUIRED", "DEFAULT VALUE", "ALTERNATE VALUE")]
    for name, info in sorted(variables.items()):
        required = str(bool(info.get("Required"))).lower()
        rows.append((name, required, info.get("DefaultValue") or "", info.get("PresenceValue") or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "   ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]
    return _print_lines(context, args, lines)


def _print_lines(context, args, lines) -> int:
    return _write(context, args, "".join(f"{line}\n" for line in lines))


def _write(context, args, text: str) -> int:
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        context.stdout.write(text)
    return 0
