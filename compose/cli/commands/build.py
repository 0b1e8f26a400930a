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
    from compose.build import BuildOptions, build_order, build_request, check_sources, parse_build_args
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
    check_sources(requests)
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
    from compose.cli.progress import resolve

    if not requests:
        return 0
    mode, color = resolve(getattr(args, "progress", "auto"), getattr(args, "ansi", "auto"), context.stderr)
    display = make_display(mode, context.stderr, quiet=getattr(args, "quiet", False), color=color)
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
    """One service builds here; several build in forked children at once (a child per service, at most
    the parallel limit running), their progress relayed over a pipe. Children rather than threads: the
    builder itself forks (stage workers, RUN containers), which is only safe from a single thread."""
    limit = min(len(names), parallel_limit(getattr(args, "parallel", -1), os.environ))
    if limit <= 1:
        failures = [_build_one(args, name, requests[name], display) for name in names]
    else:
        failures = _build_forked(args, names, requests, display, limit)
    errors = [failure for failure in failures if failure is not None]
    if errors:
        raise errors[0]


def _build_one(args, name: str, request: BuildRequest, display: BuildDisplay | None) -> Exception | None:
    """Build one service in this process; the failure is returned so the caller decides when to raise."""
    from engine.errors import EngineError

    progress = display.for_service(name) if display is not None else None
    try:
        image_id = _engine_build(args, request, progress)
    except EngineError as exc:
        return _failed(name, str(exc), display)
    return _built(name, image_id, request, display)


def _engine_build(args, request: BuildRequest, progress) -> str:  # type: ignore[no-untyped-def]
    from compose.cli.commands.image import open_engine

    with open_engine(args) as engine:
        return engine.build_image(request, progress=progress).id


def _failed(name: str, message: str, display: BuildDisplay | None) -> Exception:
    from compose.errors import BuildFailed

    if display is not None:
        display.failed(name, message)
    return BuildFailed(f"failed to solve: {message}", path=("services", name, "build"))


def _built(name: str, image_id: str, request: BuildRequest, display: BuildDisplay | None) -> None:
    from engine.api import parse_reference

    if display is not None:
        display.built(name, image_id, tuple(parse_reference(tag).canonical for tag in request.tags))
    return None


# -- parallel builds in forked children -----------------------------------------------------------------


class _PipeProgress:
    """A child's BuildProgress: every event one JSON line on the pipe to the parent."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **event) -> None:  # type: ignore[no-untyped-def]
        import json

        data = (json.dumps(event) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def step(self, stage: str, number: int, total: int, text: str) -> None:
        self.send(ev="step", stage=stage, number=number, total=total, text=text)

    def output(self, stage: str, number: int, data: bytes) -> None:
        import base64

        self.send(ev="output", stage=stage, number=number, data=base64.b64encode(data).decode())

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        self.send(ev="done", stage=stage, number=number, cached=cached, seconds=seconds)

    def warning(self, message: str) -> None:
        self.send(ev="warning", message=message)


class _Child:
    """A forked build as the parent sees it: pid, pipe, partial line, and its outcome."""

    def __init__(self, name: str, pid: int, fd: int) -> None:
        self.name, self.pid, self.fd = name, pid, fd
        self.buffer = b""
        self.image_id: str | None = None
        self.error: str | None = None

    def feed(self, chunk: bytes, progress) -> None:  # type: ignore[no-untyped-def]
        import base64
        import json

        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            event = json.loads(line)
            kind = event.pop("ev")
            if kind == "built":
                self.image_id = event["id"]
            elif kind == "failed":
                self.error = event["message"]
            elif progress is None:
                continue
            elif kind == "output":
                progress.output(event["stage"], event["number"], base64.b64decode(event["data"]))
            elif kind == "done":
                progress.done(
                    event["stage"], event["number"], cached=event["cached"], seconds=event["seconds"]
                )
            else:
                getattr(progress, kind)(**event)


def _build_forked(
    args, names: list[str], requests: dict[str, BuildRequest], display: BuildDisplay | None, limit: int
) -> list[Exception | None]:
    import selectors

    pending = list(names)
    results: dict[str, Exception | None] = {}
    running: dict[int, _Child] = {}
    with selectors.DefaultSelector() as selector:
        try:
            while pending or running:
                while pending and len(running) < limit:
                    child = _fork_build(args, pending.pop(0), requests, display is not None)
                    running[child.fd] = child
                    selector.register(child.fd, selectors.EVENT_READ)
                for key, _ in selector.select():
                    child = running[key.fd]
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        child.feed(chunk, display.for_service(child.name) if display else None)
                        continue
                    selector.unregister(key.fd)
                    del running[key.fd]
                    results[child.name] = _reap(child, requests[child.name], display)
        finally:
            for child in running.values():  # interrupted: stop the others and leave no zombie
                _kill(child)
    return [results[name] for name in names]


def _fork_build(args, name: str, requests: dict[str, BuildRequest], with_progress: bool) -> _Child:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: build, report, and leave without running the parent's cleanups
        os.close(read_fd)
        _child_main(args, requests[name], write_fd, with_progress)
    os.close(write_fd)
    return _Child(name, pid, read_fd)


def _child_main(args, request: BuildRequest, fd: int, with_progress: bool) -> None:
    pipe = _PipeProgress(fd)
    try:
        image_id = _engine_build(args, request, pipe if with_progress else None)
        pipe.send(ev="built", id=image_id)
    except BaseException as exc:  # everything becomes the parent's error
        from engine.errors import EngineError

        message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        try:
            pipe.send(ev="failed", message=message)
        except OSError:
            pass
    finally:
        os._exit(0)


def _reap(child: _Child, request: BuildRequest, display: BuildDisplay | None) -> Exception | None:
    os.close(child.fd)
    _, status = os.waitpid(child.pid, 0)
    if child.image_id is not None:
        return _built(child.name, child.image_id, request, display)
    message = child.error or f"the build process ended without a result (wait status {status})"
    return _failed(child.name, message, display)


def _kill(child: _Child) -> None:
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child.pid, 0)
    with contextlib.suppress(OSError):
        os.close(child.fd)


def parallel_limit(flag: int, environ) -> int:  # type: ignore[no-untyped-def]
    """`--parallel N`, else COMPOSE_PARALLEL_LIMIT, else unlimited (docker compose's order)."""
    if flag and flag > 0:
        return flag
    try:
        value = int(environ.get("COMPOSE_PARALLEL_LIMIT", "0"))
    except ValueError:
        value = 0
    return value if value > 0 else 1 << 16
