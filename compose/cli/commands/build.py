"""`pycompose build [SERVICE...]`: build the images of the project's services, as docker compose does.

compose/build.py decides which services and what each request says; this module walks the generations
(a service builds after those it depends on; one generation's builds run in parallel, bounded by
`--parallel` / COMPOSE_PARALLEL_LIMIT), renders progress on stderr and turns a failed build into exit 17.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False

if TYPE_CHECKING:
    from compose.cli.buildprogress import BuildDisplay
    from compose.loader.pipeline import LoadedProject
    from engine.api import BuildRequest


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("build", help="build or rebuild services")
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("--no-cache", action="store_true", help="do not use cache when building the image")
    parser.add_argument(
        "--pull", action="store_true", help="always attempt to pull a newer version of the image"
    )
    parser.add_argument(
        "--build-arg",
        dest="build_args",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set build-time variables for services (KEY alone: from the environment); repeatable",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="don't print anything to stdout/stderr")
    parser.add_argument(
        "--with-dependencies", action="store_true", help="also build dependencies (transitively)"
    )
    parser.set_defaults(handler=run)


def run(args, context) -> int:
    from compose.build import BuildOptions, build_order, build_request, parse_build_args
    from compose.cli.commands.project_images import load

    loaded = load(args, context)
    generations = build_order(loaded, args.services, with_dependencies=args.with_dependencies)
    options = BuildOptions(no_cache=args.no_cache, pull=args.pull, args=parse_build_args(args.build_args))
    # every request first, so a bad build section fails before any image is built
    requests = {
        name: build_request(loaded, loaded.model.services[name], options)
        for generation in generations
        for name in generation
    }
    if args.dry_run:
        for name, request in requests.items():
            context.stderr.write(f"DRY-RUN MODE -  build service {name} -> {', '.join(request.tags)}\n")
        return 0
    return build_services(args, context, loaded, generations, requests)


def build_services(
    args, context, loaded: LoadedProject, generations: list[list[str]], requests: dict[str, BuildRequest]
) -> int:
    """Build generation after generation; the first failure stops before the next generation."""
    from compose.cli.buildprogress import make_display

    if not requests:
        return 0
    display = make_display(
        getattr(args, "progress", "auto"),
        context.stderr,
        quiet=getattr(args, "quiet", False),
        color=_color(args),
    )
    try:
        for generation in generations:
            _build_generation(args, generation, requests, display)
    finally:
        if display is not None:
            display.close()
    return 0


def _build_generation(
    args, names: list[str], requests: dict[str, BuildRequest], display: BuildDisplay | None
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    workers = min(len(names), parallel_limit(getattr(args, "parallel", -1), os.environ))
    if workers <= 1:
        failures = [_build_one(args, name, requests[name], display) for name in names]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyc-build") as pool:
            failures = list(pool.map(lambda name: _build_one(args, name, requests[name], display), names))
    errors = [failure for failure in failures if failure is not None]
    if errors:
        raise errors[0]


def _build_one(args, name: str, request: BuildRequest, display: BuildDisplay | None) -> Exception | None:
    """Build one service on its own engine handle (each thread its own connection); the failure is
    returned, not raised, so the builds running beside it finish and report first."""
    from compose.cli.commands.image import open_engine
    from compose.errors import BuildFailed
    from engine.api import parse_reference
    from engine.errors import EngineError

    progress = display.for_service(name) if display is not None else None
    try:
        with open_engine(args) as engine:
            image = engine.build_image(request, progress=progress)
    except EngineError as exc:
        if display is not None:
            display.failed(name, str(exc))
        return BuildFailed(f"failed to solve: {exc}", path=("services", name, "build"))
    if display is not None:
        display.built(name, image.id, tuple(parse_reference(tag).canonical for tag in request.tags))
    return None


def parallel_limit(flag: int, environ) -> int:  # type: ignore[no-untyped-def]
    """`--parallel N`, else COMPOSE_PARALLEL_LIMIT, else unlimited (docker compose's order)."""
    if flag and flag > 0:
        return flag
    try:
        value = int(environ.get("COMPOSE_PARALLEL_LIMIT", "0"))
    except ValueError:
        value = 0
    return value if value > 0 else 1 << 16


def _color(args) -> bool:
    ansi = getattr(args, "ansi", "auto")
    if ansi == "never":
        return False
    return ansi == "always" or not os.environ.get("NO_COLOR")
