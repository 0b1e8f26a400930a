"""Project-level container views: `pycompose stats` and `pycompose top`.

The Compose half only decides *which* containers belong to the project (Compose's labels) and how to
print them; the numbers come from `engine.api.Engine` (`container_stats`, `container_top`). Formatting is
pure so the columns are unit-tested without containers.
"""

from __future__ import annotations

from compose.labels import PROJECT as PROJECT_LABEL
from compose.labels import SERVICE as SERVICE_LABEL

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from engine.api import Engine

STATS_TITLES = ("CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS")
SAMPLE_SECONDS = 1.0  # streaming refresh period; also the CPU % window, as docker's one-second ticks
NO_STREAM_SECONDS = 0.5  # --no-stream still needs two samples for CPU %


def add_parser(subparsers) -> None:
    stats = subparsers.add_parser("stats", help="display a live stream of the project's resource usage")
    stats.add_argument("services", nargs="*", metavar="SERVICE")
    stats.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    stats.add_argument("--no-stream", action="store_true", help="print one sample and exit")
    stats.add_argument("--no-trunc", action="store_true", help="do not truncate the container id")
    stats.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    stats.set_defaults(handler=_stats)

    top = subparsers.add_parser("top", help="display the running processes of the project's containers")
    top.add_argument("services", nargs="*", metavar="SERVICE")
    top.set_defaults(handler=_top)


# -- which containers -----------------------------------------------------------------------------------


def _project_name(args, context) -> str:
    """The project's name; named services must exist in it (docker compose: `no such service`)."""
    from compose.cli.commands.project_images import load, selected_services

    loaded = load(args, context)
    if args.services:
        selected_services(loaded, args.services, include_deps=False)
    return loaded.name


def project_containers(
    engine: Engine, project: str, services: Sequence[str] = (), *, all: bool = False
) -> list[dict]:
    """Rows of the project's containers (only those of `services` when given), sorted by name."""
    found = engine.list_containers(all=all, labels={PROJECT_LABEL: project})
    return sorted((r for r in found if in_services(r, services)), key=lambda r: r["name"])


def in_services(record: dict, services: Sequence[str]) -> bool:
    """True when no services were named or the row's service label is one of them."""
    labels = record.get("labels") or {}
    return not services or labels.get(SERVICE_LABEL) in services


# -- stats ----------------------------------------------------------------------------------------------


def _stats(args, context) -> int:
    from engine.api import Engine

    project = _project_name(args, context)
    with Engine.open(getattr(args, "root", None)) as engine:
        sample = lambda interval: sample_stats(  # noqa: E731
            engine, project_containers(engine, project, args.services, all=args.all), interval
        )
        if args.no_stream:
            _print_sample(sample(NO_STREAM_SECONDS), args, context)
            return 0
        try:
            _stream(sample, args, context)
        except KeyboardInterrupt:
            pass
    return 0


def sample_stats(engine: Engine, rows: Sequence[dict], interval: float) -> list[dict]:
    """One stats row per container, sampled in parallel so N containers still take `interval` seconds.

    A container that is not running (or stops meanwhile) gets docker's all-zero row.
    """
    from concurrent.futures import ThreadPoolExecutor

    from engine.errors import EngineError

    def one(record: dict) -> dict:
        if record["state"] in ("running", "paused"):
            try:
                return engine.container_stats(record["id"], interval)
            except EngineError:
                pass
        return zero_stats(record)

    if not rows:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(rows))) as pool:
        return list(pool.map(one, rows))


def zero_stats(record: dict) -> dict:
    """What docker shows for a stopped container with `stats -a`."""
    return {
        "ID": record["id"],
        "Name": record["name"],
        "CPUPerc": 0.0,
        "MemUsage": 0,
        "MemLimit": 0,
        "MemPerc": 0.0,
        "PIDs": 0,
        "BlockRead": 0,
        "BlockWrite": 0,
    }


def stats_cells(row: dict, no_trunc: bool = False) -> list[str]:
    """Docker's stats columns: memory in binary units (4 digits), I/O in decimal units (3 digits)."""
    return [
        row["ID"] if no_trunc else row["ID"][:12],
        row["Name"],
        f"{row['CPUPerc']:.2f}%",
        f"{binary_size(row['MemUsage'])} / {binary_size(row['MemLimit'])}",
        f"{row['MemPerc']:.2f}%",
        f"{decimal_size(row.get('NetRx', 0))} / {decimal_size(row.get('NetTx', 0))}",
        f"{decimal_size(row['BlockRead'])} / {decimal_size(row['BlockWrite'])}",
        str(row["PIDs"]),
    ]


def stats_json(row: dict, no_trunc: bool = False) -> dict[str, str]:
    """`docker compose stats --format json`: docker's keys, every value the string the table shows."""
    cells = stats_cells(row, no_trunc)
    return {
        "BlockIO": cells[6],
        "CPUPerc": cells[2],
        "Container": cells[0],
        "ID": cells[0],
        "MemPerc": cells[4],
        "MemUsage": cells[3],
        "Name": cells[1],
        "NetIO": cells[5],
        "PIDs": cells[7],
    }


def stats_table(rows: Sequence[dict], no_trunc: bool = False) -> str:
    from compose.cli.commands.image import format_table

    return format_table([list(STATS_TITLES)] + [stats_cells(r, no_trunc) for r in rows])


def binary_size(size: float) -> str:
    """go-units BytesSize: `%.4g` with KiB, MiB... (docker's memory columns)."""
    return _scaled(size, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), 4)


def decimal_size(size: float) -> str:
    """go-units HumanSizeWithPrecision(x, 3): `%.3g` with kB, MB... (docker's I/O columns)."""
    return _scaled(size, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB"), 3)


def _scaled(size: float, base: float, units: tuple[str, ...], digits: int) -> str:
    size = float(size)
    index = 0
    while size >= base and index < len(units) - 1:
        size /= base
        index += 1
    return f"{size:.{digits}g}{units[index]}"


def _print_sample(rows: Sequence[dict], args, context) -> None:
    if args.format == "json":
        import json

        lines = [json.dumps(stats_json(r, args.no_trunc)) + "\n" for r in rows]
        context.stdout.write("".join(lines))
    else:
        context.stdout.write(stats_table(rows, args.no_trunc))
    context.stdout.flush()


def _stream(sample: Callable[[float], list[dict]], args, context) -> None:
    """Refresh every second until Ctrl-C: rich Live on a terminal, plain samples otherwise."""
    if args.format == "table" and _is_tty(context.stdout):
        from rich.console import Console
        from rich.live import Live
        from rich.text import Text

        def frame(rows: list[dict]) -> Text:  # cropped, not wrapped: a narrow terminal keeps one line a row
            return Text(stats_table(rows, args.no_trunc).rstrip("\n"), no_wrap=True, overflow="crop")

        console = Console(file=context.stdout)
        with Live(frame([]), console=console, auto_refresh=False) as live:
            while True:
                live.update(frame(sample(SAMPLE_SECONDS)), refresh=True)
    while True:
        _print_sample(sample(SAMPLE_SECONDS), args, context)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- top ------------------------------------------------------------------------------------------------


def _top(args, context) -> int:
    from engine.api import Engine
    from engine.errors import EngineError

    project = _project_name(args, context)
    blocks = []
    with Engine.open(getattr(args, "root", None)) as engine:
        for record in project_containers(engine, project, args.services):
            try:
                table = engine.container_top(record["id"])
            except EngineError:  # stopped between the listing and the look
                continue
            blocks.append(top_block(record["name"], table))
    context.stdout.write("\n".join(blocks))
    return 0


def top_block(name: str, table: dict) -> str:
    """docker compose top: the container's name, then its ps table (UID PID PPID C STIME TTY TIME CMD)."""
    from compose.cli.commands.image import format_table

    return f"{name}\n" + format_table([table["Titles"], *table["Processes"]])
