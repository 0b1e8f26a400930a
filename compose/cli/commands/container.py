"""`pycompose container create|start|stop|kill|rm|ls|inspect|logs|exec|pause|unpause|stats|top`.

A low-level group like `docker container`, for tests and users: it works on single containers through
`engine.api.Engine` and prints what docker prints. Engine errors propagate to the CLI's single handler.
"""

from __future__ import annotations

from compose.cli.commands import inspect_each
from compose.cli.commands import subcommand as _command
from compose.cli.commands.image import open_engine

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from engine.api import Engine


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("container", help="manage single containers")
    commands = parser.add_subparsers(dest="container_command", metavar="COMMAND", required=True)
    for add in (_add_create, _add_simple, _add_stop, _add_kill, _add_rm, _add_ls, _add_inspect, _add_logs):
        add(commands)
    _add_exec(commands)
    _add_stats(commands)
    _add_top(commands)


def _usage(message: str) -> Exception:
    from compose.errors import UsageError

    return UsageError(message)


def _pairs(values: list[str], what: str) -> tuple[tuple[str, str], ...]:
    """`key=value` flags; a bare `key` means an empty value, as docker's --label."""
    result = []
    for value in values:
        key, _, text = value.partition("=")
        if not key:
            raise _usage(f"invalid {what} {value!r}: expected key=value")
        result.append((key, text))
    return tuple(result)


def _each(args, context, action) -> int:
    """Apply `action(engine, ref)` to every named container; print each name; errors don't stop the rest."""
    from engine.errors import EngineError

    status = 0
    with open_engine(args) as engine:
        for ref in args.containers:
            try:
                action(engine, ref)
            except EngineError as exc:
                context.stderr.write(f"Error response: {exc}\n")
                status = 1
                continue
            context.stdout.write(f"{ref}\n")
    return status


# -- create -----------------------------------------------------------------------------------------------


def _add_create(commands) -> None:
    parser = _command(commands, "create", _create, "create a container (not started)")
    parser.add_argument("--name", default="")
    parser.add_argument("-e", "--env", action="append", default=[], help="KEY=VALUE; repeatable")
    parser.add_argument("-l", "--label", action="append", default=[], help="key=value; repeatable")
    parser.add_argument(
        "-v", "--volume", action="append", default=[], help="NAME:/path[:ro], /host:/path[:ro] or /path"
    )
    parser.add_argument("--tmpfs", action="append", default=[], help="/path[:options]")
    parser.add_argument("-w", "--workdir")
    parser.add_argument("-u", "--user")
    parser.add_argument("--hostname")
    parser.add_argument("--entrypoint")
    parser.add_argument("-t", "--tty", action="store_true")
    parser.add_argument("--network", default="none", choices=("none", "host"))
    parser.add_argument("--restart", default="no", help="no, always, unless-stopped, on-failure[:N]")
    parser.add_argument("--memory", help="bytes, or with k/m/g suffix")
    parser.add_argument("--cpus", type=float)
    parser.add_argument("--pids-limit", type=int)
    parser.add_argument("--stop-signal", default="SIGTERM")
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("--log-driver", default="json-file")
    parser.add_argument("--log-opt", action="append", default=[], help="key=value; repeatable")
    parser.add_argument("image")
    parser.add_argument("command", nargs="...")


def _create(args, context) -> int:
    with open_engine(args) as engine:
        spec = build_spec(engine, args)
        record = engine.create_container(spec)
    context.stdout.write(record["id"] + "\n")
    return 0


def build_spec(engine: Engine, args):
    """A ContainerSpec from the create flags and the image's config (Docker's cmd/env/workdir merge)."""
    from engine.api import ContainerSpec, Process, Resources, resolve_args

    image = engine.store.resolve(args.image)
    config = image.config.get("config") or {}
    entrypoint = None if args.entrypoint is None else ([args.entrypoint] if args.entrypoint else [""])
    argv = resolve_args(
        config.get("Entrypoint"), config.get("Cmd"), entrypoint, args.command or None, subject=args.image
    )
    env = dict(e.partition("=")[::2] for e in config.get("Env") or ())
    env.update(dict(_pairs(args.env, "environment variable")))
    process = Process(
        args=argv,
        env=tuple(env.items()),
        user=args.user or config.get("User") or None,
        working_dir=args.workdir or config.get("WorkingDir") or None,
        tty=args.tty,
    )
    resources = Resources(memory=_bytes(args.memory), cpus=args.cpus, pids_limit=args.pids_limit)
    labels = dict(config.get("Labels") or {})
    labels.update(dict(_pairs(args.label, "label")))
    return ContainerSpec(
        id="",
        name=args.name,
        image_id=image.id,
        layer_dirs=(),
        process=process,
        hostname=args.hostname,
        mounts=tuple(_mount(v) for v in args.volume) + tuple(_tmpfs(t) for t in args.tmpfs),
        resources=resources,
        network_mode=args.network,
        stop_signal=args.stop_signal,
        stop_grace_period=args.stop_timeout,
        labels=tuple(labels.items()),
        image=args.image,
        log_driver=args.log_driver,
        log_options=_pairs(args.log_opt, "log option"),
        restart=args.restart,
    )


def _bytes(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    lowered = text.strip().lower()
    factor = units.get(lowered[-1:], 0)
    number = lowered[:-1] if factor else lowered
    if not number.isdigit():
        raise _usage(f"invalid size {text!r}")
    return int(number) * (factor or 1)


def _mount(text: str):
    """docker -v: `/path` (anonymous volume), `name:/path`, `/host:/path`, each with an optional `:ro`."""
    from engine.api import Mount

    parts = text.split(":")
    read_only = len(parts) > 1 and parts[-1] in ("ro", "rw") and parts.pop() == "ro"
    if len(parts) == 1:
        return Mount(type="volume", target=parts[0], read_only=read_only)
    if len(parts) != 2 or not parts[1].startswith("/"):
        raise _usage(f"invalid volume specification {text!r}")
    kind = "bind" if parts[0].startswith(("/", ".")) else "volume"
    return Mount(type=kind, source=parts[0], target=parts[1], read_only=read_only)


def _tmpfs(text: str):
    from engine.api import Mount

    target, _, options = text.partition(":")
    return Mount(type="tmpfs", target=target, options=tuple(o for o in options.split(",") if o))


# -- start / pause / unpause ------------------------------------------------------------------------------


def _add_simple(commands) -> None:
    for name, method, help in (
        ("start", "start_container", "start created or stopped containers"),
        ("pause", "pause_container", "freeze every process of containers"),
        ("unpause", "unpause_container", "thaw paused containers"),
    ):
        parser = _command(commands, name, _simple, help)
        parser.set_defaults(engine_method=method)
        parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _simple(args, context) -> int:
    return _each(args, context, lambda engine, ref: getattr(engine, args.engine_method)(ref))


def _add_stop(commands) -> None:
    parser = _command(commands, "stop", _stop, "stop running containers (stop signal, then SIGKILL)")
    parser.add_argument("-t", "--timeout", type=float, help="seconds to wait before SIGKILL")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _stop(args, context) -> int:
    return _each(args, context, lambda engine, ref: engine.stop_container(ref, args.timeout))


def _add_kill(commands) -> None:
    parser = _command(commands, "kill", _kill, "send a signal to containers' main process")
    parser.add_argument("-s", "--signal", default="KILL")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _kill(args, context) -> int:
    return _each(args, context, lambda engine, ref: engine.kill_container(ref, args.signal))


def _add_rm(commands) -> None:
    parser = _command(commands, "rm", _rm, "remove containers", aliases=("remove",))
    parser.add_argument("-f", "--force", action="store_true", help="kill a running container first")
    parser.add_argument("-v", "--volumes", action="store_true", help="also remove anonymous volumes")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _rm(args, context) -> int:
    return _each(args, context, lambda engine, ref: engine.remove_container(ref, args.force, args.volumes))


# -- ls / inspect -----------------------------------------------------------------------------------------


def _add_ls(commands) -> None:
    parser = _command(commands, "ls", _ls, "list containers", aliases=("list", "ps"))
    parser.add_argument("-a", "--all", action="store_true", help="show all containers (default: running)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    parser.add_argument("--no-trunc", action="store_true")
    parser.add_argument("-f", "--filter", dest="filters", action="append", default=[], help="label=k[=v]")
    parser.add_argument("--format", default="table", help="'table' (default) or 'json' (one object per line)")


def _ls(args, context) -> int:
    import json

    labels: dict[str, str | None] = {}
    for entry in args.filters:
        kind, _, value = entry.partition("=")
        if kind != "label" or not value:
            raise _usage(f"unsupported filter {entry!r}: use label=key[=value]")
        key, eq, wanted = value.partition("=")
        labels[key] = wanted if eq else None
    with open_engine(args) as engine:
        found = engine.list_containers(all=args.all, labels=labels or None)
        specs = {r["id"]: engine.containers.spec_of(r) for r in found}
    if args.quiet:
        context.stdout.write("".join(f"{_short(r['id'], args.no_trunc)}\n" for r in found))
        return 0
    rows = [ls_row(r, specs[r["id"]], args.no_trunc) for r in found]
    if args.format == "json":
        titles = ("ID", "Image", "Command", "CreatedAt", "Status", "Names")
        for row in rows:
            context.stdout.write(json.dumps(dict(zip(titles, row, strict=True))) + "\n")
        return 0
    from compose.cli.commands.image import format_table

    header = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
    context.stdout.write(format_table([header] + [ls_display(row) for row in rows]))
    return 0


def _short(cid: str, no_trunc: bool) -> str:
    return cid if no_trunc else cid[:12]


def ls_row(record: dict, spec, no_trunc: bool = False) -> list[str]:
    """ID, image, command, created (RFC 3339), status, name: the raw values of one `ls` line."""
    command = " ".join(spec.process.args)
    if not no_trunc and len(command) > 20:
        command = command[:19] + "…"
    return [
        _short(record["id"], no_trunc),
        spec.image or record["image_id"][7:19],
        f'"{command}"',
        record["created"],
        status_text(record),
        record["name"],
    ]


def ls_display(row: list[str]) -> list[str]:
    from compose.cli.commands.image import created_since

    return [*row[:3], created_since(row[3]), *row[4:]]


def status_text(record: dict, now: float | None = None) -> str:
    """Docker's STATUS column: `Up 5 minutes (Paused)`, `Exited (0) 2 hours ago`, `Created`..."""
    import time

    from compose.cli.commands.image import human_duration, parse_time

    now = now or time.time()
    state = record["state"]
    started = parse_time(record.get("started_at"))
    finished = parse_time(record.get("finished_at"))
    if state in ("running", "paused") and started is not None:
        text = "Up " + human_duration(max(0.0, now - started))
        health = _health_status(record.get("health"))
        if state == "paused":
            return text + " (Paused)"
        return text + (f" ({health})" if health else "")
    if state == "restarting" and finished is not None:
        return f"Restarting ({record['exit_code'] or 0}) {human_duration(max(0.0, now - finished))} ago"
    if state in ("exited", "dead") and finished is not None:
        word = "Exited" if state == "exited" else "Dead"
        return f"{word} ({record['exit_code'] or 0}) {human_duration(max(0.0, now - finished))} ago"
    return state.capitalize()


def _health_status(text: str | None) -> str | None:
    import json

    if not text:
        return None
    status = json.loads(text).get("Status") or json.loads(text).get("status")
    return "health: starting" if status == "starting" else status


def _add_inspect(commands) -> None:
    parser = _command(commands, "inspect", _inspect, "show containers' details as JSON")
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _inspect(args, context) -> int:
    from engine.errors import ContainerNotFound

    with open_engine(args) as engine:
        return inspect_each(context, args.containers, engine.inspect_container, ContainerNotFound)


# -- logs -------------------------------------------------------------------------------------------------


def _add_logs(commands) -> None:
    parser = _command(commands, "logs", _logs, "print a container's logs")
    parser.add_argument("-f", "--follow", action="store_true")
    parser.add_argument("-t", "--timestamps", action="store_true")
    parser.add_argument("-n", "--tail", default="all", help="number of lines from the end, or 'all'")
    parser.add_argument("--since")
    parser.add_argument("--until")
    parser.add_argument("container")


def _logs(args, context) -> int:
    tail = None if args.tail == "all" else int(args.tail)
    with open_engine(args) as engine:
        entries = engine.container_logs(
            args.container,
            follow=args.follow,
            tail=tail,
            since=args.since,
            until=args.until,
            timestamps=args.timestamps,
        )
        try:
            for entry in entries:
                stream = context.stderr if entry.stream == "stderr" else context.stdout
                stream.write(entry.line)
                if args.follow:
                    stream.flush()
        except KeyboardInterrupt:
            pass
        finally:
            close = getattr(entries, "close", None)
            if close is not None:
                close()
    return 0


# -- exec / stats / top -----------------------------------------------------------------------------------


def _add_exec(commands) -> None:
    parser = _command(commands, "exec", _exec, "run a command in a running container")
    parser.add_argument("-e", "--env", action="append", default=[])
    parser.add_argument("-u", "--user")
    parser.add_argument("-w", "--workdir")
    parser.add_argument("-t", "--tty", action="store_true")
    parser.add_argument("-i", "--interactive", action="store_true", help="accepted; stdin is always passed")
    parser.add_argument("container")
    parser.add_argument("command", nargs="...")


def _exec(args, context) -> int:
    import sys

    if not args.command:
        raise _usage("exec needs a command")
    for stream in (context.stdout, context.stderr):
        stream.flush()
    stdio = (sys.stdin.fileno(), _fileno(context.stdout, 1), _fileno(context.stderr, 2))
    with open_engine(args) as engine:
        return engine.exec_container(
            args.container,
            args.command,
            env=_pairs(args.env, "environment variable"),
            user=args.user,
            workdir=args.workdir,
            tty=args.tty,
            stdio=stdio,
        )


def _fileno(stream, default: int) -> int:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return default


def _add_stats(commands) -> None:
    parser = _command(commands, "stats", _stats, "one sample of containers' resource usage")
    parser.add_argument("--no-stream", action="store_true", help="accepted: one sample is always printed")
    parser.add_argument("--format", default="table", help="'table' (default) or 'json'")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER", help="default: every running one")


def _stats(args, context) -> int:
    """docker's `stats --no-stream`: the same columns and units as the project-level `pycompose stats`."""
    import json

    from compose.cli.commands.project_containers import stats_json, stats_table

    with open_engine(args) as engine:
        refs = args.containers or [r["id"] for r in engine.list_containers()]
        rows = [engine.container_stats(ref) for ref in refs]
    if args.format == "json":
        context.stdout.write("".join(json.dumps(stats_json(r)) + "\n" for r in rows))
        return 0
    context.stdout.write(stats_table(rows))
    return 0


def _add_top(commands) -> None:
    parser = _command(commands, "top", _top, "list the processes of a running container")
    parser.add_argument("container")


def _top(args, context) -> int:
    from compose.cli.commands.image import format_table

    with open_engine(args) as engine:
        table = engine.container_top(args.container)
    context.stdout.write(format_table([table["Titles"], *table["Processes"]]))
    return 0
