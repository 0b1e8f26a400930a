"""`pycompose volume ls|inspect|rm|prune|create`, with docker's flags and output.

Works on `engine.volumes.VolumeStore` of the state root (`--root`, else $PYCOMPOSE_ROOT, else the
default); engine errors propagate to the CLI's single handler, which prints them and picks the exit code.
"""

from __future__ import annotations

from compose.cli.commands import apply_each, inspect_each
from compose.cli.commands import subcommand as _command

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.api import Volume, VolumeStore


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("volume", help="manage named volumes")
    commands = parser.add_subparsers(dest="volume_command", metavar="COMMAND", required=True)
    _add_ls(commands)
    _add_inspect(commands)
    _add_rm(commands)
    _add_prune(commands)
    _add_create(commands)


class _opened:
    """The volume store of the engine on `--root`, closed when the block ends."""

    def __init__(self, args) -> None:
        from compose.cli.commands.image import open_engine

        self.engine = open_engine(args)

    def __enter__(self) -> VolumeStore:
        return self.engine.volumes

    def __exit__(self, *exc_info: object) -> None:
        self.engine.close()


def _usage(message: str) -> Exception:
    from compose.errors import UsageError

    return UsageError(message)


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
    parser = _command(commands, "ls", _ls, "list volumes", aliases=("list",))
    parser.add_argument("-q", "--quiet", action="store_true", help="only display volume names")
    parser.add_argument(
        "-f",
        "--filter",
        dest="filters",
        action="append",
        default=[],
        help="dangling=true|false, driver=, label=key[=value], label!=key[=value], name=",
    )
    parser.add_argument("--format", default="table", help="'table' (default) or 'json' (one object per line)")


def _ls(args, context) -> int:
    import json

    with _opened(args) as store:
        volumes = [v for v in store.list() if _passes(store, v, args.filters)]
    if args.quiet:
        context.stdout.write("".join(f"{v.name}\n" for v in volumes))
        return 0
    if args.format == "json":
        for volume in volumes:
            context.stdout.write(json.dumps(_ls_document(volume), sort_keys=True) + "\n")
        return 0
    if args.format != "table":
        raise _usage(f"unsupported --format {args.format!r}: use 'table' or 'json'")
    from compose.cli.commands.image import format_table

    rows = [["DRIVER", "VOLUME NAME"]] + [[v.driver, v.name] for v in volumes]
    context.stdout.write(format_table(rows))
    return 0


def _ls_document(volume: Volume) -> dict[str, str]:
    """The fields `docker volume ls --format json` prints (labels as `k=v,k2=v2`)."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(volume.labels.items()))
    document = dict.fromkeys(("Availability", "Group", "Links", "Size", "Status"), "N/A")
    document |= {"Driver": volume.driver, "Labels": labels, "Mountpoint": str(volume.mountpoint)}
    document |= {"Name": volume.name, "Scope": "local"}
    return document


def _filters(entries: list[str]) -> Iterator[tuple[str, str]]:
    for entry in entries:
        key, sep, value = entry.partition("=")
        if key.endswith("!"):
            key = key[:-1] + "!="
        if not sep or key not in ("dangling", "driver", "label", "label!=", "name"):
            raise _usage(f"invalid filter {entry!r}")
        yield key, value


def _passes(store: VolumeStore, volume: Volume, entries: list[str]) -> bool:
    """Every filter must hold (docker ANDs different keys)."""
    return all(_holds(store, volume, key, value) for key, value in _filters(entries))


def _holds(store: VolumeStore, volume: Volume, key: str, value: str) -> bool:
    from engine.api import labels_match

    if key == "dangling":
        if value.lower() not in ("true", "false", "1", "0"):
            raise _usage(f"invalid filter 'dangling={value}'")
        return (value.lower() in ("true", "1")) != bool(store.users(volume.name))
    if key == "driver":
        return volume.driver == value
    if key == "name":
        return value in volume.name  # docker matches a substring
    matched = labels_match(volume.labels, [value])
    return matched if key == "label" else not matched


# -- inspect ----------------------------------------------------------------------------------------------


def _add_inspect(commands) -> None:
    parser = _command(commands, "inspect", _inspect, "display detailed information on volumes")
    parser.add_argument("volumes", nargs="+", metavar="VOLUME")
    parser.add_argument("-f", "--format", default="json", help="only 'json' (docker's default) is supported")


def _inspect(args, context) -> int:
    from engine.errors import VolumeNotFound

    if args.format != "json":
        raise _usage("volume inspect: only --format json is supported")
    with _opened(args) as store:
        return inspect_each(context, args.volumes, store.inspect, VolumeNotFound)


# -- rm / prune -------------------------------------------------------------------------------------------


def _add_rm(commands) -> None:
    parser = _command(commands, "rm", _rm, "remove one or more volumes", aliases=("remove",))
    parser.add_argument("volumes", nargs="+", metavar="VOLUME")
    parser.add_argument(
        "-f", "--force", action="store_true", help="no error for missing volumes (in use is still refused)"
    )


def _rm(args, context) -> int:
    with _opened(args) as store:
        return apply_each(context, args.volumes, lambda name: store.remove(name, force=args.force))


def _add_prune(commands) -> None:
    parser = _command(commands, "prune", _prune, "remove unused local volumes")
    parser.add_argument(
        "-a", "--all", action="store_true", help="remove all unused volumes, not just anonymous ones"
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    parser.add_argument(
        "--filter", dest="filters", action="append", default=[], help="label=key[=value], label!=key[=value]"
    )


def _prune(args, context) -> int:
    from compose.cli.commands.image import confirm, human_size

    wanted, unwanted = [], []
    for key, value in _filters(args.filters):
        if key not in ("label", "label!="):
            raise _usage(f"volume prune: unsupported filter {key!r} (use label=, label!=)")
        (wanted if key == "label" else unwanted).append(value)
    what = "all local volumes" if args.all else "anonymous local volumes"
    question = f"WARNING! This will remove {what} not used by at least one container.\n"
    if not args.force and not confirm(context, question + "Are you sure you want to continue?"):
        return 0
    with _opened(args) as store:
        report = store.prune(all=args.all, label=wanted, label_not=unwanted)
    if report.deleted:
        context.stdout.write("Deleted Volumes:\n" + "".join(f"{n}\n" for n in report.deleted) + "\n")
    context.stdout.write(f"Total reclaimed space: {human_size(report.reclaimed)}\n")
    return 0


# -- create -----------------------------------------------------------------------------------------------


def _add_create(commands) -> None:
    parser = _command(commands, "create", _create, "create a volume")
    parser.add_argument("name", nargs="?", metavar="VOLUME", help="a name (default: a random anonymous one)")
    parser.add_argument("-d", "--driver", default="local", help="volume driver (only 'local')")
    parser.add_argument(
        "-o", "--opt", dest="opts", action="append", default=[], help="driver option: type=, o=, device="
    )
    parser.add_argument("--label", dest="labels", action="append", default=[], help="metadata key=value")
    parser.add_argument("--name", dest="name_flag", help="a name (same as the positional argument)")


def _create(args, context) -> int:
    if args.name and args.name_flag and args.name != args.name_flag:
        raise _usage("conflicting options: either specify --name or provide positional arg, not both")
    name = args.name or args.name_flag
    with _opened(args) as store:
        volume = store.create(
            name,
            driver=args.driver,
            driver_opts=_pairs(args.opts, "option"),
            labels=_pairs(args.labels, "label"),
        )
    context.stdout.write(f"{volume.name}\n")
    return 0
