"""`pycompose version`."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("version", help="show the pycompose version information")
    parser.add_argument("-f", "--format", choices=("pretty", "json"), default="pretty", help="output format")
    parser.add_argument("--short", action="store_true", help="show only the version number")
    parser.set_defaults(handler=run)


def run(args, context) -> int:
    from compose import __version__

    if args.short:
        context.stdout.write(f"{__version__}\n")
    elif args.format == "json":
        import json

        context.stdout.write(json.dumps({"version": __version__}) + "\n")
    else:
        context.stdout.write(f"pycompose version v{__version__}\n")
    return 0
