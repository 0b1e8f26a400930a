"""`pycompose run`, `exec`, `cp` and `attach`: one-off containers and getting inside running ones.

The Compose half picks the service's container (labels) and builds the one-off's spec (compose/run/
oneoff); the engine does the rest through engine.api. Exit codes are docker compose's: `run` and `exec`
return the command's own code (125 when the engine cannot start it, as docker's daemon errors); `attach`
the container's.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from typing import Any


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
    _add_run(subparsers)
    _add_exec(subparsers)
    _add_cp(subparsers)
    _add_attach(subparsers)


def _add_run(subparsers) -> None:  # type: ignore[no-untyped-def]
    run = subparsers.add_parser("run", help="run a one-off command on a service")
    run.add_argument("service", metavar="SERVICE")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    run.add_argument("-d", "--detach", action="store_true", help="run in the background, print its id")
    run.add_argument("--rm", action="store_true", help="remove the container when it exits")
    run.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    run.add_argument("-l", "--label", action="append", default=[], help="add or override a label")
    run.add_argument("--entrypoint", help="override the image's entrypoint")
    run.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="do not allocate a TTY")
    run.add_argument(
        "-t", "--tty", dest="tty", action="store_true", help="allocate a TTY (default: if a terminal)"
    )
    run.add_argument(
        "-i", "--interactive", action="store_true", default=True, help="keep STDIN open (the default)"
    )
    run.add_argument("--no-deps", action="store_true", help="do not start linked services")
    run.add_argument("--service-ports", action="store_true", help="publish the service's ports")
    run.add_argument("-p", "--publish", action="append", default=[], help="publish a port to the host")
    run.add_argument("-v", "--volume", action="append", default=[], help="bind mount a volume")
    run.add_argument("--name", help="name of the container")
    run.add_argument("-u", "--user", help="run as this user (name or uid[:gid])")
    run.add_argument("-w", "--workdir", help="working directory inside the container")
    run.add_argument("--use-aliases", action="store_true", help="use the service's network aliases")
    run.add_argument("--remove-orphans", action="store_true", help="accepted for compatibility")
    run.add_argument("-q", "--quiet", action="store_true", help="accepted for compatibility")
    run.set_defaults(handler=_run)


def _add_exec(subparsers) -> None:  # type: ignore[no-untyped-def]
    exe = subparsers.add_parser("exec", help="execute a command in a running container")
    exe.add_argument("service", metavar="SERVICE")
    exe.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")
    exe.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    exe.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="do not allocate a TTY")
    exe.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    exe.add_argument("-u", "--user", help="run as this user")
    exe.add_argument("-w", "--workdir", help="working directory for the command")
    exe.add_argument("--index", type=int, help="index of the container if the service has replicas")
    exe.add_argument("--privileged", action="store_true", help="give extended privileges to the command")
    exe.set_defaults(handler=_exec)


def _add_cp(subparsers) -> None:  # type: ignore[no-untyped-def]
    cp = subparsers.add_parser("cp", help="copy files between a service container and the local filesystem")
    cp.add_argument("source", metavar="SRC")
    cp.add_argument("dest", metavar="DEST")
    cp.add_argument("-a", "--archive", action="store_true", help="keep uid/gid of the copied files")
    cp.add_argument("-L", "--follow-link", action="store_true", help="follow a symlink named by SRC")
    cp.add_argument("--index", type=int, help="index of the container if the service has replicas")
    cp.add_argument("--all", action="store_true", help="accepted for compatibility (deprecated)")
    cp.set_defaults(handler=_cp)


def _add_attach(subparsers) -> None:  # type: ignore[no-untyped-def]
    attach = subparsers.add_parser("attach", help="attach to a service's running container's output")
    attach.add_argument("service", metavar="SERVICE")
    attach.add_argument("--index", type=int, help="index of the container if the service has replicas")
    attach.add_argument("--no-stdin", action="store_true", help="do not attach STDIN (always the case)")
    attach.add_argument(
        "--sig-proxy",
        type=_bool,
        default=True,
        nargs="?",
        const=True,
        help="proxy received signals to the container (default true)",
    )
    attach.add_argument("--detach-keys", help="accepted for compatibility")
    attach.set_defaults(handler=_attach)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


# -- shared ---------------------------------------------------------------------------------------------


def _open(args, context):  # type: ignore[no-untyped-def]
    """The loaded project and an engine on the state root (closed by the caller)."""
    from compose.cli.commands.project_images import load
    from engine.api import Engine

    named = getattr(args, "service", None)
    loaded = load(args, context, enable=[named] if named else [])
    return loaded, Engine.open(getattr(args, "root", None))


def _command(args) -> tuple[str, ...]:  # type: ignore[no-untyped-def]
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return tuple(cmd)


def _wants_tty(no_tty: bool, forced: bool = False) -> bool:
    """docker compose: a TTY when the CLI's stdin is a terminal and -T is not given."""
    return not no_tty and (forced or sys.stdin.isatty())


# -- run --------------------------------------------------------------------------------------------------


def _run(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.run.oneoff import RunRequest, run_oneoff

    if args.detach and args.rm:
        from compose.errors import UsageError

        raise UsageError("--detach and --rm cannot be combined")
    request = RunRequest(
        service=args.service,
        command=_command(args),
        entrypoint=args.entrypoint,
        detach=args.detach,
        remove=args.rm,
        no_deps=args.no_deps,
        service_ports=args.service_ports,
        use_aliases=args.use_aliases,
        interactive=args.interactive and not args.detach,
        tty=not args.detach and _wants_tty(args.no_tty, args.tty),
        env=tuple(args.env),
        volumes=tuple(args.volume),
        publish=tuple(args.publish),
        name=args.name,
        user=args.user,
        workdir=args.workdir,
        labels=tuple(args.label),
    )
    loaded, engine = _open(args, context)
    with engine:
        context.stdout.flush()
        stdio, null = _run_stdio(request)
        try:
            record, code = run_oneoff(loaded, engine, request, stdio=stdio)
        finally:
            if null is not None:
                os.close(null)
    if code is None:  # docker compose run -d prints the container's id
        context.stdout.write(f"{record['id']}\n")
        return 0
    return code


def _run_stdio(request) -> tuple[tuple[int, int, int], int | None]:  # type: ignore[no-untyped-def]
    """The CLI's own fds for an attached one-off; stdin is /dev/null unless interactive."""
    if request.interactive or request.tty:
        return (0, 1, 2), None
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    return (null, 1, 2), null


# -- exec -------------------------------------------------------------------------------------------------


def _exec(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.errors import UsageError
    from compose.run.oneoff import find_container, parse_env

    command = _command(args)
    if not command:
        raise UsageError("exec requires at least 2 arguments: SERVICE COMMAND")
    loaded, engine = _open(args, context)
    with engine:
        record = find_container(engine, loaded.name, args.service, args.index)
        env = tuple((k, v) for k, v in parse_env(args.env).items() if v is not None)
        options: dict[str, Any] = {
            "env": env,
            "user": args.user,
            "workdir": args.workdir,
            "privileged": args.privileged,
        }
        context.stdout.flush()
        if args.detach:
            return _exec_detached(engine, record["id"], command, options)
        if _wants_tty(args.no_tty):
            return engine.exec_container_tty(record["id"], list(command), **options)
        return engine.exec_container(record["id"], list(command), **options)


def _exec_detached(engine, cid: str, command: tuple[str, ...], options: dict) -> int:  # type: ignore[no-untyped-def]
    """`exec -d`: a forked child (its own session, /dev/null as stdio) runs the command; we return at once."""
    from engine.api import Engine

    root = str(engine.root.path)
    engine.get_container(cid)  # fail here, not in the background, for an unknown container
    if os.fork() != 0:
        return 0
    code = 1  # pragma: no cover - the detached child
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR)
        with Engine.open(root) as own:  # never share the parent's database connection after a fork
            code = own.exec_container(cid, list(command), stdio=(null, null, null), **options)
    finally:
        os._exit(code)


# -- cp ---------------------------------------------------------------------------------------------------


def split_target(text: str, services: set[str]) -> tuple[str | None, str]:
    """`SERVICE:PATH` -> (service, path); a local path -> (None, path). A path starting with `/`, `.` or
    `~`, or whose prefix is not a service, is local (docker compose asks for the same disambiguation)."""
    if text.startswith(("/", ".", "~")) or text == "-":
        return None, text
    service, sep, path = text.partition(":")
    if sep and service in services:
        return service, path or "/"
    return None, text


def _cp(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.project_images import load
    from compose.errors import UsageError
    from engine.api import Engine

    loaded = load(args, context)
    services = set((loaded.data.get("services") or {}).keys())
    source_service, source = split_target(args.source, services)
    dest_service, dest = split_target(args.dest, services)
    if (source_service is None) == (dest_service is None):
        raise UsageError("one of SRC and DEST must be SERVICE:PATH, the other a local path")
    engine = Engine.open(getattr(args, "root", None))
    with engine:
        if source_service is not None:
            return _cp_out(engine, loaded.name, source_service, source, dest, args)
        return _cp_in(engine, loaded.name, dest_service, source, dest, args)


def _cp_out(engine, project: str, service: str, source: str, dest: str, args) -> int:  # type: ignore[no-untyped-def]
    import shutil
    import tempfile

    from compose.run.oneoff import find_container

    record = find_container(engine, project, service, args.index)
    with tempfile.TemporaryFile() as spool:
        engine.copy_from_container(record["id"], source, spool, follow_links=args.follow_link)
        spool.seek(0)
        if dest == "-":
            sys.stdout.flush()
            shutil.copyfileobj(spool, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        else:
            engine.unpack_archive(spool, dest, archive=args.archive)
    return 0


def _cp_in(engine, project: str, service: str, source: str, dest: str, args) -> int:  # type: ignore[no-untyped-def]
    import shutil
    import tempfile

    from compose.run.oneoff import find_container

    targets = (
        [find_container(engine, project, service, args.index)]
        if args.index
        else _all(engine, project, service)
    )
    with tempfile.TemporaryFile() as spool:
        if source == "-":
            shutil.copyfileobj(sys.stdin.buffer, spool)
        else:
            engine.pack_path(os.path.expanduser(source), spool, follow_links=args.follow_link)
        for record in targets:
            spool.seek(0)
            engine.copy_to_container(record["id"], dest, spool, archive=args.archive)
    return 0


def _all(engine, project: str, service: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every container of the service (docker compose copies into each replica without --index)."""
    from compose.labels import project_filter
    from compose.run.oneoff import find_container

    found = engine.list_containers(all=True, labels=project_filter(project, service, oneoff=False))
    return found or [find_container(engine, project, service)]


# -- attach -----------------------------------------------------------------------------------------------


def _attach(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.run.oneoff import find_container

    loaded, engine = _open(args, context)
    with engine:
        record = find_container(engine, loaded.name, args.service, args.index)

        def write(stream: str, text: str) -> None:
            out = context.stderr if stream == "stderr" else context.stdout
            out.write(text)
            out.flush()

        return engine.attach_container(record["id"], write, sig_proxy=args.sig_proxy)
