"""Project-level image commands: `pycompose images`, `pycompose pull`, `pycompose push`.

The Compose half decides *which* images (services, dependencies, pull_policy); the engine only pulls,
pushes and lists references it is handed. The pull decision is a pure function so each policy is
unit-testable without a registry.
"""

from __future__ import annotations

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from compose.loader.pipeline import LoadedProject
    from compose.model import Service

REFRESH_POLICIES = {"daily": "24h", "weekly": "168h"}
POLICIES = ("always", "missing", "never", "build", "if_not_present", "daily", "weekly", "every_<duration>")


def add_parser(subparsers) -> None:
    images = subparsers.add_parser("images", help="list images used by the project's services")
    images.add_argument("services", nargs="*", metavar="SERVICE")
    images.add_argument("-q", "--quiet", action="store_true", help="only display ids")
    images.add_argument("--format", choices=("table", "json"), default="table", help="output format")
    images.set_defaults(handler=_images)

    pull = subparsers.add_parser("pull", help="pull the images of the project's services")
    pull.add_argument("services", nargs="*", metavar="SERVICE")
    pull.add_argument("--ignore-pull-failures", action="store_true", help="pull what it can, ignore failures")
    pull.add_argument("--ignore-buildable", action="store_true", help="skip images that can be built")
    pull.add_argument(
        "--include-deps", action="store_true", help="also pull services declared as dependencies"
    )
    pull.add_argument("--policy", choices=("missing", "always"), help="override every service's pull_policy")
    pull.add_argument("-q", "--quiet", action="store_true", help="pull without printing progress")
    pull.set_defaults(handler=_pull)

    push = subparsers.add_parser("push", help="push the images of the project's services")
    push.add_argument("services", nargs="*", metavar="SERVICE")
    push.add_argument("--ignore-push-failures", action="store_true", help="push what it can, ignore failures")
    push.add_argument(
        "--include-deps", action="store_true", help="also push services declared as dependencies"
    )
    push.add_argument("-q", "--quiet", action="store_true", help="push without printing progress")
    push.set_defaults(handler=_push)


# -- which services, which image ------------------------------------------------------------------------


def load(args, context, *, enable: Sequence[str] = ()) -> LoadedProject:
    """The project of the global flags; `enable`: services named on the command line, turned on even
    when their profile is not active (docker compose's `run SVC`, `up SVC`)."""
    from compose.cli.project import project_options
    from compose.loader.pipeline import LoadSettings, load_project

    settings = LoadSettings(enable=tuple(enable))
    return load_project(project_options(args), settings, warn=context.warn)


def selected_services(loaded: LoadedProject, names: Sequence[str], *, include_deps: bool) -> list[str]:
    """The named services (all when none), plus their dependencies with `include_deps`, in start order."""
    from compose.graph import ServiceGraph

    graph = ServiceGraph(loaded.data.get("services") or {})
    if not names:
        return graph.start_order()
    order = graph.subgraph(names).start_order()  # raises "no such service" for an unknown name
    return order if include_deps else [name for name in order if name in set(names)]


def service_image(loaded: LoadedProject, service: Service) -> str:
    """The image a service runs: `image:`, else the name compose gives a built image (`<project>-<svc>`)."""
    return service.image or f"{loaded.name}-{service.name}"


# -- pull policy (pure) ---------------------------------------------------------------------------------


def refresh_interval(policy: str) -> float | None:
    """Seconds of a daily/weekly/every_<duration> policy; None for the others."""
    from compose.loader.syntax import parse_duration

    if policy in REFRESH_POLICIES:
        return parse_duration(REFRESH_POLICIES[policy]) / 1e9
    if policy.startswith("every_"):
        return parse_duration(policy.removeprefix("every_")) / 1e9
    return None


def pull_decision(
    policy: str | None, *, present: bool, last_pulled: datetime | None, now: datetime
) -> tuple[bool, str]:
    """(pull?, why not) for one service, as `docker compose pull` decides.

    No policy pulls (that is what `pull` is for); never/build skip; missing skips a present image;
    daily/weekly/every_<d> pull when absent or when the last pull is older than the interval.
    """
    if policy in (None, "", "always"):
        return True, ""
    if policy in ("never", "build"):
        return False, "Skipped"
    if policy in ("missing", "if_not_present"):
        return (False, "Skipped - Image is already present locally") if present else (True, "")
    interval = refresh_interval(policy)
    if interval is None:
        from compose.errors import InvalidProjectError

        raise InvalidProjectError(f"invalid pull_policy {policy!r}: want one of {', '.join(POLICIES)}")
    if not present or last_pulled is None:
        return True, ""
    if (now - last_pulled).total_seconds() >= interval:
        return True, ""
    period = {"daily": "a day", "weekly": "a week"}.get(policy) or policy.removeprefix("every_")
    return False, f"Skipped - Image was pulled less than {period} ago"


# -- images -----------------------------------------------------------------------------------------------


def _images(args, context) -> int:
    import json

    from compose.cli.commands.image import format_table, human_size, open_engine, split_tag
    from engine.errors import ImageNotFound

    loaded = load(args, context)
    rows = []
    with open_engine(args) as engine:
        for name in selected_services(loaded, args.services, include_deps=False):
            reference = service_image(loaded, loaded.model.services[name])
            try:
                image = engine.inspect_image(reference)
            except ImageNotFound:
                continue
            repository, tag = split_tag(_with_tag(reference))
            rows.append((name, repository, tag, image))
    if args.quiet:
        seen = dict.fromkeys(image.id.removeprefix("sha256:") for *_, image in rows)
        context.stdout.write("".join(f"{image_id}\n" for image_id in seen))
        return 0
    if args.format == "json":
        documents = [
            {"ID": image.id, "ContainerName": "", "Service": service, "Repository": repository, "Tag": tag,
             "Platform": str(image.platform), "Size": image.size, "Created": image.created or ""}
            for service, repository, tag, image in rows
        ]  # fmt: skip
        context.stdout.write(json.dumps(documents, indent=2) + "\n")
        return 0
    table = [["SERVICE", "REPOSITORY", "TAG", "PLATFORM", "IMAGE ID", "SIZE"]]
    table += [
        [service, repository, tag, str(image.platform), image.short_id, human_size(image.size)]
        for service, repository, tag, image in rows
    ]
    context.stdout.write(format_table(table))
    return 0


def _with_tag(reference: str) -> str:
    from engine.api import parse_reference

    return parse_reference(reference).canonical


# -- pull -------------------------------------------------------------------------------------------------


def _pull(args, context) -> int:
    from datetime import UTC, datetime

    from compose.cli.commands.image import make_progress, open_engine
    from engine.errors import EngineError

    loaded = load(args, context)
    names = selected_services(loaded, args.services, include_deps=args.include_deps)
    now = datetime.now(UTC)
    done: set[str] = set()
    must_build: list[str] = []
    with open_engine(args) as engine:
        for name in names:
            service = loaded.model.services[name]
            if not service.image:
                _event(args, context, name, "Skipped - No image to be pulled")
                continue
            if service.build is not None and args.ignore_buildable:
                _event(args, context, name, "Skipped - Image can be built")
                continue
            reference = _with_tag(service.image)
            if reference in done:
                continue
            policy = args.policy or service.pull_policy
            present = engine.image_exists(reference)
            last = engine.last_pulled(reference) if present else None
            pull, reason = pull_decision(policy, present=present, last_pulled=last, now=now)
            if not pull:
                _event(args, context, name, reason)
                continue
            done.add(reference)
            _event(args, context, name, "Pulling")
            reporter = make_progress(args, _StderrContext(context), args.quiet)
            try:
                engine.pull_image(reference, platform=service.platform, progress=reporter)
            except EngineError as exc:
                if service.build is not None:
                    must_build.append(name)
                elif not args.ignore_pull_failures:
                    raise
                context.warn(f"{name}: {exc}")
                continue
            finally:
                reporter.close()
            _event(args, context, name, "Pulled")
    if must_build:
        context.warn(
            "Some service image(s) must be built from source by running:\n"
            f"    pycompose build {' '.join(must_build)}"
        )
    return 0


class _StderrContext:
    """Compose prints pull/push progress on stderr (stdout stays for data)."""

    def __init__(self, context) -> None:
        self.stdout = context.stderr
        self.stderr = context.stderr


def _event(args, context, service: str, text: str) -> None:
    if not args.quiet:
        context.stderr.write(f" {service} {text}\n")


# -- push -------------------------------------------------------------------------------------------------


def _push(args, context) -> int:
    from compose.cli.commands.image import make_progress, open_engine
    from engine.errors import EngineError

    loaded = load(args, context)
    names = selected_services(loaded, args.services, include_deps=args.include_deps)
    with open_engine(args) as engine:
        for name in names:
            service = loaded.model.services[name]
            if service.build is None or not service.image:  # compose pushes only images it builds
                _event(args, context, name, "Skipped")
                continue
            for reference in [service.image, *(service.build.tags or ())]:
                _event(args, context, name, f"Pushing {reference}")
                reporter = make_progress(args, _StderrContext(context), args.quiet)
                try:
                    engine.push_image(reference, progress=reporter)
                except EngineError as exc:
                    if not args.ignore_push_failures:
                        raise
                    context.warn(f"Pushing {name}: {exc}")
                    continue
                finally:
                    reporter.close()
                _event(args, context, name, "Pushed")
    return 0
