"""One module per command (or command group); each exposes `add_parser(subparsers)`.

Every leaf parser sets `handler`, the function `main` calls with `(args, context)`; a command group
(`image`, `container`, `volume`) registers its subcommands through `subcommand`.
"""

from __future__ import annotations


def subcommand(commands, name: str, handler, help: str, aliases=()):  # type: ignore[no-untyped-def]
    """Add `name` to a command group's subparsers, with the function that runs it."""
    parser = commands.add_parser(name, help=help, aliases=list(aliases))
    parser.set_defaults(handler=handler)
    return parser


def inspect_each(context, names, inspect, not_found: type[Exception]) -> int:  # type: ignore[no-untyped-def]
    """docker's `inspect A B ...`: a JSON list of what exists; every missing name is an error, the last
    one raised (exit 1) after the others are printed, so one missing name gives one line."""
    import json

    documents, missing = [], []
    for name in names:
        try:
            documents.append(inspect(name))
        except not_found as exc:
            missing.append(exc)
    context.stdout.write(json.dumps(documents, indent=4) + "\n")
    for exc in missing[:-1]:
        context.stderr.write(f"Error: {exc}\n")
    if missing:
        raise missing[-1]
    return 0


def apply_each(context, names, action, *, report=None, skip: tuple[type[Exception], ...] = ()) -> int:  # type: ignore[no-untyped-def]
    """docker's `rm A B ...`: `action(name)` for every name, printing `report(name, result)` lines (by
    default the name); an engine error does not stop the others, and after them the last one is raised
    (exit 1) with the earlier ones printed first. Errors of the `skip` types are ignored (`rm -f` of a
    name that does not exist)."""
    from engine.errors import EngineError

    failures: list[EngineError] = []
    for name in names:
        try:
            result = action(name)
        except skip:
            continue
        except EngineError as exc:
            failures.append(exc)
            continue
        context.stdout.write("".join(line + "\n" for line in (report(name, result) if report else [name])))
    for exc in failures[:-1]:
        context.stderr.write(f"Error: {exc}\n")
    if failures:
        raise failures[-1]
    return 0
