"""`pycompose up`, `down`, `create` and `scale`: converging the project.

Each handler loads the project, builds what must be built (in this process, before any worker thread
exists: the builder forks), then hands over to compose/run's ProjectRunner with an Events renderer.
Attached `up` (without -d) hands over to compose/cli/attached.py (`attached_up`): logs, Ctrl-C, exit codes.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False

if TYPE_CHECKING:
    from compose.run.executor import ProjectRunner, UpRequest


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register the commands of this module."""
    up = subparsers.add_parser("up", help="create and start containers")
    _converge_flags(up)
    up.add_argument("-d", "--detach", action="store_true", help="run containers in the background")
    up.add_argument("--no-deps", action="store_true", help="don't start linked services")
    up.add_argument("--no-start", action="store_true", help="don't start the services after creating them")
    up.add_argument("--always-recreate-deps", action="store_true", help="recreate dependent containers")
    up.add_argument("--wait", action="store_true", help="wait for services to be running|healthy")
    up.add_argument("--wait-timeout", type=float, metavar="SECONDS", help="maximum duration to wait")
    up.add_argument("-t", "--timeout", type=float, metavar="SECONDS", help="shutdown timeout in seconds")
    up.add_argument("--abort-on-container-exit", action="store_true", help="stop all if any container stops")
    up.add_argument("--abort-on-container-failure", action="store_true", help="stop all if any fails")
    up.add_argument("--exit-code-from", metavar="SERVICE", help="return the exit code of this service")
    up.add_argument("--attach", action="append", default=[], metavar="SERVICE", help="attach to this service")
    up.add_argument("--attach-dependencies", action="store_true", help="also attach to dependencies")
    up.add_argument("--no-attach", action="append", default=[], metavar="SERVICE", help="don't attach")
    up.add_argument("--no-log-prefix", action="store_true", help="don't print a prefix in logs")
    up.add_argument("--no-color", action="store_true", help="produce monochrome output")
    up.add_argument("--timestamps", action="store_true", help="show timestamps")
    up.add_argument("-V", "--renew-anon-volumes", action="store_true", help="recreate anonymous volumes")
    up.add_argument("-y", "--yes", action="store_true", help="assume yes to prompts")
    up.set_defaults(handler=run_up)

    create = subparsers.add_parser("create", help="create containers for a service")
    _converge_flags(create)
    create.set_defaults(handler=run_create)

    down = subparsers.add_parser("down", help="stop and remove containers, networks")
    down.add_argument("services", nargs="*", metavar="SERVICE")
    down.add_argument("--remove-orphans", action="store_true", help="remove orphaned containers")
    down.add_argument("-v", "--volumes", action="store_true", help="remove named and anonymous volumes")
    down.add_argument("--rmi", choices=("local", "all"), help="remove images used by services")
    down.add_argument("-t", "--timeout", type=float, metavar="SECONDS", help="shutdown timeout in seconds")
    down.set_defaults(handler=run_down)

    scale = subparsers.add_parser("scale", help="scale services")
    scale.add_argument("scale", nargs="+", metavar="SERVICE=REPLICAS")
    scale.add_argument("--no-deps", action="store_true", help="don't start linked services")
    scale.set_defaults(handler=run_scale)


def _converge_flags(parser) -> None:  # type: ignore[no-untyped-def]
    """The flags `up` and `create` share (docker compose's create options)."""
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("--build", action="store_true", help="build images before starting containers")
    parser.add_argument("--no-build", action="store_true", help="don't build an image, even if it's missing")
    parser.add_argument("--pull", choices=("always", "missing", "never"), help="pull image before running")
    parser.add_argument("--quiet-pull", action="store_true", help="pull without printing progress")
    parser.add_argument("--force-recreate", action="store_true", help="recreate containers even if unchanged")
    parser.add_argument("--no-recreate", action="store_true", help="don't recreate existing containers")
    parser.add_argument(
        "--remove-orphans", action="store_true", help="remove containers of undefined services"
    )
    parser.add_argument(
        "--scale", action="append", default=[], metavar="SERVICE=NUM", help="scale SERVICE to NUM instances"
    )


# -- handlers ---------------------------------------------------------------------------------------------


def run_up(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.errors import UsageError

    if args.detach and (args.abort_on_container_exit or args.exit_code_from):
        raise UsageError("--abort-on-container-exit and --exit-code-from cannot be combined with --detach")
    if args.build and args.no_build:
        raise UsageError("--build and --no-build are incompatible")
    request = _up_request(args, detach=args.detach)
    if args.dry_run:
        return _dry_run_up(args, context, request)
    with _session(args, context) as runner:
        if not args.detach:  # a bad combination of attach flags is refused before anything starts
            from compose.cli.attached import validate

            validate(args, runner.loaded.model)
        containers = runner.up(request)
        if not args.detach:
            from compose.cli.attached import attached_up

            return attached_up(runner, containers, args, context)
    return 0


def run_create(args, context) -> int:  # type: ignore[no-untyped-def]
    request = _up_request(args, detach=True)
    if args.dry_run:
        return _dry_run_up(args, context, request)
    with _session(args, context) as runner:
        runner.create(request)
    return 0


def run_down(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.errors import ProjectNotFoundError
    from compose.run.executor import DownRequest

    request = DownRequest(
        remove_orphans=args.remove_orphans,
        volumes=args.volumes,
        rmi=args.rmi,
        timeout=args.timeout,
        services=tuple(args.services),
    )
    if args.dry_run:
        return _dry_run_down(args, context, request)
    try:
        with _session(args, context, build=False) as runner:  # loads before anything is opened
            runner.down(request)
    except ProjectNotFoundError:
        if not _by_name(args):
            raise
        return _down_by_name(args, context, args.project_name, request)
    return 0


def _by_name(args) -> bool:  # type: ignore[no-untyped-def]
    """`-p NAME` and no Compose file found: docker compose then works from the labels alone (not when
    -f names a file: its absence is the error)."""
    return bool(getattr(args, "project_name", None)) and not getattr(args, "files", None)


def _down_by_name(args, context, name: str, request) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.build import parallel_limit
    from compose.cli.commands.image import open_engine
    from compose.cli.progress import for_args
    from compose.run.executor import LabelsOnlyRunner

    limit = parallel_limit(getattr(args, "parallel", -1), os.environ)
    with open_engine(args) as engine:
        events = for_args(args, context)
        try:
            LabelsOnlyRunner(name, engine, events, parallel=limit).down(request)
        finally:
            events.close()
    return 0


def run_scale(args, context) -> int:  # type: ignore[no-untyped-def]
    replicas = parse_scale(args.scale)
    with _session(args, context) as runner:
        runner.scale(replicas, no_deps=args.no_deps)
    return 0


# -- pieces -----------------------------------------------------------------------------------------------


def parse_scale(values: list[str]) -> tuple[tuple[str, int], ...]:
    """`SERVICE=N` pairs (docker compose: `invalid scale value`)."""
    from compose.errors import UsageError

    pairs = []
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not name or not count.strip().isdigit():
            raise UsageError(f"invalid scale value {value!r}: want SERVICE=NUMBER")
        pairs.append((name, int(count)))
    return tuple(pairs)


def _up_request(args, *, detach: bool) -> UpRequest:  # type: ignore[no-untyped-def]
    from compose.errors import UsageError
    from compose.run.executor import UpRequest

    if args.force_recreate and args.no_recreate:
        raise UsageError("--force-recreate and --no-recreate are incompatible")
    return UpRequest(
        services=tuple(args.services),
        detach=detach,
        build=args.build,
        no_build=args.no_build,
        pull=args.pull,
        force_recreate=args.force_recreate,
        no_recreate=args.no_recreate,
        no_deps=getattr(args, "no_deps", False),
        no_start=getattr(args, "no_start", False),
        scale=parse_scale(args.scale),
        remove_orphans=args.remove_orphans,
        renew_anon_volumes=getattr(args, "renew_anon_volumes", False),
        always_recreate_deps=getattr(args, "always_recreate_deps", False),
        wait=getattr(args, "wait", False),
        wait_timeout=getattr(args, "wait_timeout", None),
        timeout=getattr(args, "timeout", None),
        quiet_pull=args.quiet_pull,
    )


class _session:
    """Load the project, open the engine and the progress view; close both whatever happens."""

    def __init__(self, args, context, *, build: bool = True) -> None:  # type: ignore[no-untyped-def]
        self.args, self.context, self.build = args, context, build

    def __enter__(self) -> ProjectRunner:
        from compose.cli.commands.build import parallel_limit
        from compose.cli.commands.image import open_engine
        from compose.cli.commands.project_images import load
        from compose.cli.progress import for_args
        from compose.run.executor import ProjectRunner

        args = self.args
        loaded = load(args, self.context, enable=getattr(args, "services", None) or ())
        self.engine = open_engine(args)
        self.events = for_args(args, self.context)
        builder = _builder(args, self.context, loaded) if self.build else None
        limit = parallel_limit(getattr(args, "parallel", -1), os.environ)
        return ProjectRunner(loaded, self.engine, self.events, parallel=limit, builder=builder)

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.events.close()
        finally:
            self.engine.close()


def _builder(args, context, loaded):  # type: ignore[no-untyped-def]
    """Builds through `pycompose build`'s code (BuildKit-like progress, forked parallel builds)."""
    from compose.cli.commands.build import build_services

    def build(generations, requests) -> None:  # type: ignore[no-untyped-def]
        build_services(args, context, loaded, generations, requests)

    return build


# -- dry run ----------------------------------------------------------------------------------------------


def _dry_run_up(args, context, request: UpRequest) -> int:  # type: ignore[no-untyped-def]
    """What `up` would do to containers, from the real plan; nothing is created, built or pulled."""
    from compose.cli.commands.image import open_engine
    from compose.cli.commands.project_images import load
    from compose.plan.converge import plan_up
    from compose.run.executor import image_facts, service_hash, up_options
    from compose.run.observe import as_observed, project_containers
    from engine.errors import ImageNotFound

    loaded = load(args, context)
    project = loaded.model
    with open_engine(args) as engine:
        observed = [as_observed(r) for r in project_containers(engine, loaded.name, oneoff=None)]
        hashes = {name: service_hash(loaded, name) for name in project.services}
        images = {}
        for name, service in project.services.items():
            try:
                images[name] = image_facts(engine, project, service).id
            except ImageNotFound:
                images[name] = "<to be built or pulled>"
    plan = plan_up(project, observed, hashes, images, up_options(request, loaded.disabled_services))
    _print_plan(args, context, loaded, plan, no_start=request.no_start)
    return 0


def _dry_run_down(args, context, request) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.image import open_engine
    from compose.cli.commands.project_images import load
    from compose.errors import ProjectNotFoundError
    from compose.plan.converge import plan_down
    from compose.run.observe import as_observed, project_containers

    try:
        loaded = load(args, context)
    except ProjectNotFoundError:
        if not _by_name(args):
            raise
        loaded = None
    name = loaded.name if loaded is not None else args.project_name
    with open_engine(args) as engine:
        observed = [as_observed(r) for r in project_containers(engine, name, oneoff=None)]
    model = loaded.model if loaded is not None else None
    disabled = loaded.disabled_services if loaded is not None else ()
    plan = plan_down(model, observed, remove_orphans=request.remove_orphans, disabled=disabled)
    _print_plan(args, context, loaded, plan)
    return 0


_WORDS = {
    "create": ("Created", "Started"),
    "recreate": ("Recreated", "Started"),
    "start": ("Started",),
    "restart": ("Restarted",),
    "keep": ("Running",),
    "remove": ("Stopped", "Removed"),
}


def _print_plan(args, context, loaded, plan, *, no_start: bool = False) -> None:  # type: ignore[no-untyped-def]
    """The plan's actions as the progress view's lines (the renderer marks them DRY-RUN)."""
    from compose.cli.progress import for_args
    from compose.plan.specs import container_name

    events = for_args(args, context)
    try:
        for generation in plan.generations:
            for action in generation:
                if action.container is not None:
                    name = action.container.name
                else:
                    service = loaded.model.services[action.service]
                    name = container_name(loaded.model, service, action.number)
                words = _WORDS[action.kind]
                for word in words[:1] if no_start else words:
                    events.resource("Container", name, word)
    finally:
        events.close()
