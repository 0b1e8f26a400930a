"""`pycompose image ls|inspect|rm|prune|tag|import|load|save|pull|push`, with docker's flags and output.

Everything goes through `engine.api.Engine`; engine errors propagate to the CLI's single handler, which
prints them and picks the exit code. Helpers for docker's table layout and units live here too because the
project-level `images` command prints the same table.
"""

from __future__ import annotations

import sys

from compose.cli.commands import apply_each, inspect_each
from compose.cli.commands import subcommand as _command

TYPE_CHECKING = False  # `import typing` costs start-up time; type checkers treat this alike

if TYPE_CHECKING:
    from collections.abc import Sequence

    from engine.api import Engine, Image

NONE = "<none>"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("image", help="manage images in the engine's store")
    commands = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)
    _add_ls(commands)
    _add_inspect(commands)
    _add_rm(commands)
    _add_prune(commands)
    _add_tag(commands)
    _add_import(commands)
    _add_load(commands)
    _add_save(commands)
    _add_pull(commands)
    _add_push(commands)
    _add_bootstrap(commands)


def open_engine(args) -> Engine:
    """The engine on `--root` (else $PYCOMPOSE_ROOT, else the default state root)."""
    from engine.api import Engine

    return Engine.open(getattr(args, "root", None))


# -- docker's units and table layout ----------------------------------------------------------------------


def human_size(size: float) -> str:
    """Decimal units with 3 significant digits, as docker prints sizes (`187MB`, `7.8MB`, `512B`)."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    return f"{value:.3g}{units[unit]}"


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: `About a minute`, `3 hours`, `2 weeks`, `5 months`..."""
    if seconds < 1:
        return "Less than a second"
    if seconds < 2:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600 / 24 / 365)} years"


def created_since(created: str | None, now: float | None = None) -> str:
    """`2 weeks ago` from an RFC 3339 time; `N/A` when the image does not say."""
    timestamp = parse_time(created)
    if timestamp is None:
        return "N/A"
    import time

    return human_duration(max(0.0, (now or time.time()) - timestamp)) + " ago"


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (nanosecond fractions allowed), or None."""
    if not value:
        return None
    import re
    from datetime import UTC, datetime

    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year <= 1:
        return None
    return parsed.timestamp()


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Docker's tabwriter layout: columns padded to the widest cell + 3, at least 10 wide; last unpadded."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(max(width + 3, 10)) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append(("".join(cells) + row[-1]).rstrip())
    return "\n".join(lines) + "\n"


def split_tag(name: str) -> tuple[str, str]:
    """(REPOSITORY, TAG) columns of a stored tag, in docker's familiar form."""
    from engine.api import parse_reference

    ref = parse_reference(name, default_tag=None)
    return ref.familiar_name, ref.tag or NONE


def image_rows(image: Image, *, digests: bool = False) -> list[dict[str, str]]:
    """One row per tag (or a `<none>` row for a dangling image), with docker's field names."""
    names = [split_tag(tag) for tag in image.repo_tags] or [(NONE, NONE)]
    digest_by_repo = {}
    for repo_digest in image.repo_digests:
        repo, _, digest = repo_digest.rpartition("@")
        digest_by_repo.setdefault(split_tag(repo)[0], digest)
    if not image.repo_tags and image.repo_digests:
        names = [(split_tag(d.rpartition("@")[0])[0], NONE) for d in image.repo_digests]
    return [
        {
            "Repository": repository,
            "Tag": tag,
            "Digest": digest_by_repo.get(repository, NONE),
            "ID": image.id,
            "CreatedAt": image.created or "",
            "CreatedSince": created_since(image.created),
            "Size": human_size(image.size),
        }
        for repository, tag in names
    ]


# -- ls ---------------------------------------------------------------------------------------------------


def _add_ls(commands) -> None:
    parser = _command(commands, "ls", _ls, "list images", aliases=("list",))
    parser.add_argument("repository", nargs="?", help="only images of this repository (optionally :tag)")
    parser.add_argument(
        "-a", "--all", action="store_true", help="show all images (default hides build intermediates)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only show image ids")
    parser.add_argument("--digests", action="store_true", help="show digests")
    parser.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    parser.add_argument("--format", default="table", help="'table' (default) or 'json' (one object per line)")


def _ls(args, context) -> int:
    import json

    with open_engine(args) as engine:
        images = engine.list_images(all=args.all)
    images.sort(key=lambda image: parse_time(image.created) or 0.0, reverse=True)
    rows = [row for image in images for row in image_rows(image)]
    if args.repository:
        rows = _matching(rows, args.repository)
    for row in rows:
        row["ID"] = row["ID"] if args.no_trunc else row["ID"].removeprefix("sha256:")[:12]
    if args.quiet:
        context.stdout.write("".join(f"{row['ID']}\n" for row in rows))
        return 0
    if args.format == "json":
        for row in rows:
            extra = {
                "Containers": "N/A",
                "SharedSize": "N/A",
                "UniqueSize": "N/A",
                "VirtualSize": row["Size"],
            }
            context.stdout.write(json.dumps({**row, **extra}, sort_keys=True) + "\n")
        return 0
    if args.format != "table":
        from compose.errors import UsageError

        raise UsageError(f"unsupported --format {args.format!r}: use 'table' or 'json'")
    columns = ["Repository", "Tag"] + (["Digest"] if args.digests else []) + ["ID", "CreatedSince", "Size"]
    header = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID"}
    header |= {"CreatedSince": "CREATED", "Size": "SIZE"}
    table = [[header[c] for c in columns]] + [[row[c] for c in columns] for row in rows]
    context.stdout.write(format_table(table))
    return 0


def _matching(rows: list[dict[str, str]], wanted: str) -> list[dict[str, str]]:
    """`image ls nginx` / `image ls nginx:1`: docker's positional repository filter."""
    from engine.api import parse_reference

    ref = parse_reference(wanted, default_tag=None)
    return [
        row
        for row in rows
        if row["Repository"] == ref.familiar_name and (ref.tag is None or row["Tag"] == ref.tag)
    ]


# -- inspect ----------------------------------------------------------------------------------------------


def _add_inspect(commands) -> None:
    parser = _command(commands, "inspect", _inspect, "display detailed information on images")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-f", "--format", default="json", help="only 'json' (docker's default) is supported")


def inspect_document(image: Image) -> dict:
    """The shape `docker image inspect` prints, from what the store knows."""
    config = image.config or {}
    document = {
        "Id": image.id,
        "RepoTags": [_familiar(tag) for tag in image.repo_tags],
        "RepoDigests": [_familiar(digest) for digest in image.repo_digests],
        "Parent": "",
        "Comment": next((h.get("comment", "") for h in reversed(config.get("history") or [])), ""),
        "Created": image.created or "",
        "Author": config.get("author", ""),
        "Config": config.get("config") or {},
        "Architecture": image.platform.architecture,
        "Os": image.platform.os,
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": [layer.diff_id for layer in image.layers]},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }
    if image.platform.variant:
        document["Variant"] = image.platform.variant
    document["Descriptor"] = {"mediaType": image.manifest_media_type, "digest": image.manifest_digest}
    return document


def _familiar(name: str) -> str:
    from engine.api import parse_reference

    return parse_reference(name, default_tag=None).familiar


def _inspect(args, context) -> int:
    from engine.errors import ImageNotFound

    if args.format != "json":
        from compose.errors import UsageError

        raise UsageError("image inspect: only --format json is supported")
    with open_engine(args) as engine:
        return inspect_each(
            context, args.images, lambda name: inspect_document(engine.inspect_image(name)), ImageNotFound
        )


# -- rm / prune / tag ------------------------------------------------------------------------------------


def _add_rm(commands) -> None:
    parser = _command(commands, "rm", _rm, "remove one or more images", aliases=("remove", "rmi"))
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-f", "--force", action="store_true", help="remove even when several tags name it")
    parser.add_argument("--no-prune", action="store_true", help="accepted for docker compatibility")


def _report_lines(report) -> list[str]:
    """`Untagged: x` / `Deleted: sha256:...` lines from a store removal report."""
    lines = [f"Untagged: {_familiar(name)}" for name in getattr(report, "untagged", ())]
    lines += [f"Deleted: {image_id}" for image_id in getattr(report, "deleted", ())]
    return lines


def _rm(args, context) -> int:
    with open_engine(args) as engine:
        return apply_each(
            context,
            args.images,
            lambda name: engine.remove_image(name, force=args.force),
            report=lambda _name, removal: _report_lines(removal),
        )


def _add_prune(commands) -> None:
    parser = _command(commands, "prune", _prune, "remove unused images")
    parser.add_argument(
        "-a", "--all", action="store_true", help="remove all unused images, not just dangling"
    )
    parser.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")


def confirm(context, question: str) -> bool:
    """Docker's `[y/N]` prompt on stderr; no terminal input counts as no."""
    context.stderr.write(f"{question} [y/N] ")
    context.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _prune(args, context) -> int:
    what = (
        "all images without at least one container associated to them" if args.all else "all dangling images"
    )
    if not args.force and not confirm(
        context, f"WARNING! This will remove {what}.\nAre you sure you want to continue?"
    ):
        return 0
    with open_engine(args) as engine:
        report = engine.prune_images(all=args.all)
    lines = [f"untagged: {_familiar(name)}" for name in getattr(report, "untagged", ())]
    lines += [f"deleted: {image_id}" for image_id in getattr(report, "deleted", ())]
    if lines:
        context.stdout.write("Deleted Images:\n" + "".join(line + "\n" for line in lines) + "\n")
    reclaimed = getattr(report, "reclaimed", getattr(report, "space_reclaimed", 0)) or 0
    context.stdout.write(f"Total reclaimed space: {human_size(reclaimed)}\n")
    return 0


def _add_tag(commands) -> None:
    parser = _command(commands, "tag", _tag, "create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def _tag(args, context) -> int:
    with open_engine(args) as engine:
        engine.tag_image(args.source, args.target)
    return 0


# -- import / load / save ---------------------------------------------------------------------------------


def _add_import(commands) -> None:
    parser = _command(commands, "import", _import, "import a root filesystem tarball as an image")
    parser.add_argument("file", metavar="file|-", help="tarball (plain, gzip or zstd), '-' for stdin")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument(
        "-c", "--change", dest="changes", action="append", default=[], help="apply a Dockerfile instruction"
    )
    parser.add_argument("-m", "--message", help="commit message for the imported image")
    parser.add_argument("--platform", help="set the platform (os/arch[/variant])")


def _import(args, context) -> int:
    with open_engine(args) as engine, _input(args.file, context) as stream:
        image = engine.import_image(
            stream, args.reference, args.changes, message=args.message, platform=args.platform
        )
    context.stdout.write(f"{image.id}\n")
    return 0


class _input:
    """A named file, or stdin's bytes for '-' (refused when stdin is a terminal)."""

    def __init__(self, name: str | None, context) -> None:
        self.name = name
        self._file = None

    def __enter__(self):
        if self.name in (None, "-"):
            if sys.stdin.isatty():
                from compose.errors import UsageError

                raise UsageError("requested load from stdin, but stdin is empty")
            return sys.stdin.buffer
        try:
            self._file = open(self.name, "rb")
        except OSError as exc:
            from engine.errors import ArchiveError

            raise ArchiveError(exc.strerror or str(exc), subject=self.name) from None
        return self._file

    def __exit__(self, *exc_info: object) -> None:
        if self._file is not None:
            self._file.close()


def _add_load(commands) -> None:
    parser = _command(commands, "load", _load, "load images from a docker-archive or OCI layout tarball")
    parser.add_argument("-i", "--input", help="read from this tar archive instead of stdin")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress the load output")


def _load(args, context) -> int:
    from engine.api import looks_like_image_id

    with open_engine(args) as engine, _input(args.input, context) as stream:
        loaded = engine.load_images(stream)
    if not args.quiet:
        for name in loaded:
            if looks_like_image_id(name) and ":" not in name.removeprefix("sha256:"):
                context.stdout.write(f"Loaded image ID: {name}\n")
            else:
                context.stdout.write(f"Loaded image: {_familiar(name)}\n")
    return 0


def _add_save(commands) -> None:
    parser = _command(commands, "save", _save, "save images to a tar archive (stdout by default)")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("-o", "--output", help="write to a file instead of stdout")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker", help="archive layout")


def _save(args, context) -> int:
    if args.output is None:
        if sys.stdout.isatty():
            from compose.errors import UsageError

            raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        with open_engine(args) as engine:
            engine.save_images(args.images, sys.stdout.buffer, format=args.format)
            sys.stdout.buffer.flush()
        return 0
    _save_to_file(args)
    return 0


def _save_to_file(args) -> None:
    """Write next to the target, then rename: a failed save never leaves a truncated archive behind."""
    import os
    import tempfile

    directory = os.path.dirname(os.path.abspath(args.output))
    fd, temp = tempfile.mkstemp(prefix=".pycompose-save-", dir=directory)
    try:
        with open(fd, "wb") as out, open_engine(args) as engine:
            engine.save_images(args.images, out, format=args.format)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, args.output)
    except BaseException:
        os.unlink(temp)
        raise


# -- pull / push ------------------------------------------------------------------------------------------


def _add_pull(commands) -> None:
    parser = _command(commands, "pull", _pull, "download an image from a registry")
    parser.add_argument("reference", metavar="NAME[:TAG|@DIGEST]")
    parser.add_argument("--platform", help="os/arch[/variant] to pull from a multi-platform image")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")


def make_progress(args, context, quiet: bool):
    """The progress reporter matching `--quiet` and the global `--progress` flag."""
    from engine import api

    mode = getattr(args, "progress", "auto")
    if quiet or mode == "quiet":
        return api.make_progress(quiet=True)
    if mode == "plain":
        return api.PlainProgress(context.stdout)
    return api.make_progress(stream=context.stdout)


def pull_one(engine: Engine, reference: str, *, platform: str | None, reporter) -> Image:
    """Pull with a progress reporter (the registry client prints docker's `Digest:` / `Status:` lines)."""
    try:
        return engine.pull_image(reference, platform=platform, progress=reporter)
    finally:
        reporter.close()


def _pull(args, context) -> int:
    from engine.api import parse_reference

    ref = parse_reference(args.reference)
    if not args.quiet and ":" not in args.reference.rpartition("/")[2] and "@" not in args.reference:
        context.stdout.write(f"Using default tag: {ref.tag}\n")
    reporter = make_progress(args, context, args.quiet)
    with open_engine(args) as engine:
        pull_one(engine, args.reference, platform=args.platform, reporter=reporter)
    context.stdout.write(f"{ref.canonical}\n")
    return 0


def _add_push(commands) -> None:
    parser = _command(commands, "push", _push, "upload an image to a registry")
    parser.add_argument("reference", metavar="NAME[:TAG]")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")


def push_one(engine: Engine, reference: str, *, reporter) -> str:
    """Push with a progress reporter (the client prints docker's `<tag>: digest: ... size: N` line)."""
    try:
        return engine.push_image(reference, progress=reporter)
    finally:
        reporter.close()


def _push(args, context) -> int:
    from engine.api import parse_reference

    reporter = make_progress(args, context, args.quiet)
    with open_engine(args) as engine:
        push_one(engine, args.reference, reporter=reporter)
    if args.quiet:
        context.stdout.write(f"{parse_reference(args.reference).canonical}\n")
    return 0


# -- image bootstrap ------------------------------------------------------------------------------------


def _add_bootstrap(commands) -> None:
    parser = _command(
        commands, "bootstrap", _bootstrap, "build debian:<suite>[-slim] from Debian packages (no registry)"
    )
    parser.add_argument("reference", nargs="?", default="debian:bookworm-slim", metavar="debian:SUITE[-slim]")
    parser.add_argument("--mirror", help="Debian mirror URL (default: the one the host's apt uses)")
    parser.add_argument("--variant", help="mmdebstrap variant (default: minbase)")
    parser.add_argument(
        "--include", action="append", default=[], metavar="PKG[,PKG...]", help="extra packages to install"
    )
    parser.add_argument("-t", "--tag", help="name the image REPOSITORY[:TAG] (default: the reference)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild even if a cached result exists")
    parser.add_argument("--cache-dir", help="where root filesystem tars are cached")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the image id")


def _bootstrap(args, context) -> int:
    def log(line: str) -> None:
        context.stderr.write(line + "\n")
        context.stderr.flush()

    with open_engine(args) as engine:
        image = engine.bootstrap_image(
            args.reference,
            mirror=args.mirror,
            variant=args.variant,
            include=args.include,
            tag=args.tag,
            no_cache=args.no_cache,
            cache_dir=args.cache_dir,
            log=None if args.quiet else log,
        )
    context.stdout.write(f"{image.id}\n")
    return 0
