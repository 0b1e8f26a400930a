"""`pycompose logs`, `events` and `wait`.

- `logs` prints the project's containers' logs through the LogPrinter (`web-1  | line`). Without -f each
  container's entries are printed in turn; with -f one reader thread per container (the engine's follow
  blocks) feeds the printer, so lines of one container keep their order and containers interleave by
  arrival. A poll of the project's containers picks up containers that start later and containers that
  start again (read on from the last entry seen); following ends when no container of the selection runs
  any more, as docker compose's does, or on Ctrl-C.
- `events`: the engine has no event bus, so events are derived by polling the project's containers every
  POLL seconds and comparing snapshots: a new container is `create`, a state change `start`, `die`,
  `pause`, `unpause`, a restart between two polls `die` + `start`, a health change `health_status: X`,
  a vanished container `destroy`. Times are when the change was seen.
- `wait SERVICE...` blocks until those containers are not running, printing docker compose's line per
  container; the exit status is the last one's exit code; `--down-project` then takes the project down.
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from compose.cli.logprinter import LogPrinter

ACTIVE = ("running", "paused", "restarting")  # the engine's states of a container that has a process
POLL = 0.25  # seconds between looks at the project's containers (follow, events, wait)
WAIT_ERROR = 42  # docker compose's exit status when waiting failed


def add_parser(subparsers) -> None:  # type: ignore[no-untyped-def]
    """Register `logs`, `events` and `wait` with docker compose's flags."""
    logs = subparsers.add_parser("logs", help="view output from the project's containers")
    logs.add_argument("services", nargs="*", metavar="SERVICE")
    logs.add_argument("-f", "--follow", action="store_true", help="follow log output")
    logs.add_argument("-n", "--tail", default="all", help="number of lines from the end, or 'all'")
    logs.add_argument("--since", help="since a timestamp (2013-01-02T13:23:37Z) or a duration (42m)")
    logs.add_argument("--until", help="before a timestamp or a duration ago")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    logs.add_argument("--no-color", action="store_true", help="produce monochrome output")
    logs.add_argument("--no-log-prefix", action="store_true", help="don't print a prefix in logs")
    logs.add_argument("--index", type=int, default=0, help="index of the container of a scaled service")
    logs.set_defaults(handler=_logs)

    events = subparsers.add_parser("events", help="receive real time events from the project's containers")
    events.add_argument("services", nargs="*", metavar="SERVICE")
    events.add_argument("--json", action="store_true", help="output events as a stream of json objects")
    events.set_defaults(handler=_events)

    wait = subparsers.add_parser("wait", help="block until the services' containers stop")
    wait.add_argument("services", nargs="+", metavar="SERVICE")
    wait.add_argument("--down-project", action="store_true", help="take the project down when one exits")
    wait.set_defaults(handler=_wait)


# -- logs -------------------------------------------------------------------------------------------------


def parse_tail(text: str) -> int | None:
    """`all` (or a negative number, as docker) is everything; else the last N entries."""
    from compose.errors import UsageError

    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise UsageError(f"invalid --tail {text!r}: want a number or 'all'") from None
    return None if count < 0 else count


def parse_instant(text: str | None, now: float | None = None) -> float | str | None:
    """--since/--until: a Go duration (`10m`: that long ago), epoch seconds, or RFC 3339 text."""
    import re

    from compose.errors import UsageError

    if not text:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if re.fullmatch(r"[-+]?(\d+(\.\d*)?[a-zµ]+)+", text):
        from compose.loader.syntax import parse_duration

        try:
            return (time.time() if now is None else now) - parse_duration(text) / 1e9
        except Exception:
            raise UsageError(f"invalid duration {text!r}") from None
    from compose.cli.commands.image import parse_time

    stamp = parse_time(text if "T" in text or " " in text else text + "T00:00:00")
    if stamp is None:
        raise UsageError(f"invalid time {text!r}: want RFC 3339 (2013-01-02T13:23:37Z) or a duration")
    return stamp


def with_index(records: Sequence[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """Only replica number `index` (0: all), as --index."""
    from compose.run.observe import container_number

    return [r for r in records if not index or container_number(r) == index]


def make_printer(args, context, project: str, records: Iterable[dict[str, Any]]) -> LogPrinter:  # type: ignore[no-untyped-def]
    from compose.cli.logprinter import LogPrinter, short_name, use_color

    color = use_color(context.stdout, no_color=args.no_color, ansi=getattr(args, "ansi", "auto"))
    return LogPrinter(
        context.stdout,
        [short_name(r["name"], project) for r in records],
        err=context.stderr,
        color=color,
        prefix=not args.no_log_prefix,
        timestamps=args.timestamps,
    )


def copy_entries(entries: Iterable[Any], printer: LogPrinter, name: str) -> int | None:
    """Print a container's entries; returns the time (ns) of the last one, None if there was none."""
    last = None
    try:
        for entry in entries:
            printer.line(name, entry.stream, entry.line, entry.time)
            last = entry.time
    finally:
        close = getattr(entries, "close", None)
        if close is not None:
            close()
    return last


def _logs(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.ps import find_containers, project_name
    from compose.cli.logprinter import short_name
    from engine.api import Engine
    from engine.errors import EngineError

    project, _ = project_name(args, context, args.services)
    options = {
        "tail": parse_tail(args.tail),
        "since": parse_instant(args.since),
        "until": parse_instant(args.until),
    }
    with Engine.open(getattr(args, "root", None)) as engine:
        records = with_index(find_containers(engine, project, args.services), args.index)
        printer = make_printer(args, context, project, records)
        if args.follow:
            try:
                Follower(engine, project, args.services, args.index, printer, options).run(context.warn)
            except KeyboardInterrupt:
                pass
            return 0
        for record in records:
            try:
                entries = engine.container_logs(record["id"], **options)
            except EngineError as exc:
                context.warn(f"{record['name']}: {exc}")
                continue
            copy_entries(entries, printer, short_name(record["name"], project))
    return 0


class Follower:
    """`logs -f`: a reader thread per container, a poll for containers that (re)start."""

    def __init__(
        self,
        engine: Any,
        project: str,
        services: Sequence[str],
        index: int,
        printer: LogPrinter,
        options: dict[str, Any],
    ) -> None:
        self.engine = engine
        self.project = project
        self.services = services
        self.index = index
        self.printer = printer
        self.options = options
        self.threads: dict[str, threading.Thread] = {}
        self.started: dict[str, str | None] = {}  # container id -> started_at when its reader began
        self.last: dict[str, int] = {}  # container id -> time (ns) of the last entry printed
        self.errors: list[str] = []
        self.stopped = False

    def stop(self) -> None:
        """The command ends while readers may still follow (containers it leaves running): what they
        meet from now on, the engine closed under them, ends them quietly."""
        self.stopped = True

    def run(self, warn: Callable[[str], None]) -> None:
        """Follow until no container runs and every reader is done."""
        while True:
            records = self.step(warn)
            busy = any(t.is_alive() for t in self.threads.values())
            if not busy and not any(r["state"] in ACTIVE for r in records):
                return
            time.sleep(POLL)

    def step(self, warn: Callable[[str], None]) -> list[dict[str, Any]]:
        """One look at the selection: readers for new and restarted containers (attached `up` drives
        this itself); returns the records seen."""
        from compose.cli.commands.ps import find_containers

        records = with_index(find_containers(self.engine, self.project, self.services), self.index)
        for record in records:
            self._maybe_follow(record)
        while self.errors:
            warn(self.errors.pop(0))
        return records

    def first_options(self, record: dict[str, Any]) -> dict[str, Any]:
        """Read options for a container's first reader (attached `up` starts at the current run)."""
        return dict(self.options)

    def _maybe_follow(self, record: dict[str, Any]) -> None:
        from compose.cli.logprinter import format_timestamp

        cid = record["id"]
        thread = self.threads.get(cid)
        if thread is not None and (thread.is_alive() or self.started.get(cid) == record["started_at"]):
            return  # being read, or read to its end and not started again since
        if thread is not None and record["state"] not in ACTIVE:
            return
        options = self.first_options(record)
        if cid in self.last:  # a restart: read on after what was printed, everything new
            # as RFC 3339 text: a float of seconds keeps only µs and would read the last line again
            options.update(tail=None, since=format_timestamp(self.last[cid] + 1))
        elif thread is not None:
            options["tail"] = None
        self.started[cid] = record["started_at"]
        thread = threading.Thread(target=self._read, args=(record, options), daemon=True)
        self.threads[cid] = thread
        thread.start()

    def _read(self, record: dict[str, Any], options: dict[str, Any]) -> None:
        from compose.cli.logprinter import short_name
        from engine.errors import EngineError

        try:
            entries = self.engine.container_logs(record["id"], follow=True, **options)
            last = copy_entries(entries, self.printer, short_name(record["name"], self.project))
        except EngineError as exc:
            self.errors.append(f"{record['name']}: {exc}")
            return
        except Exception:
            if self.stopped:  # e.g. sqlite3.ProgrammingError: the database was closed at exit
                return
            raise
        if last is not None:
            self.last[record["id"]] = last


# -- events -----------------------------------------------------------------------------------------------


def snapshot(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What events compare between two polls, per container id."""
    import json

    shots = {}
    for r in records:
        health = json.loads(r["health"]).get("Status") if r.get("health") else None
        shots[r["id"]] = {
            "id": r["id"],
            "name": r["name"],
            "service": r["labels"].get("com.docker.compose.service", ""),
            "image": r.get("image_id", ""),
            "labels": r["labels"],
            "state": r["state"],
            "health": health,
            "restarts": r.get("restart_count") or 0,
            "started_at": r.get("started_at"),
            "exit_code": r.get("exit_code"),
        }
    return shots


def diff(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """(action, snapshot) pairs, docker's action names, for what changed between two polls."""
    found: list[tuple[str, dict[str, Any]]] = []
    for cid, now in after.items():
        old = before.get(cid)
        if old is None:
            found.append(("create", now))
            old = {**now, "state": "created", "health": None, "restarts": 0, "started_at": None}
            if now["state"] == "created":
                continue
        found.extend((action, now) for action in _transitions(old, now))
    for cid, old in before.items():
        if cid not in after:
            found.append(("destroy", old))
    return found


def _transitions(old: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Docker's actions for one container's change of state and health."""
    up_before, up_now = old["state"] in ("running", "paused"), now["state"] in ("running", "paused")
    actions: list[str] = []
    if up_before and not up_now:
        actions.append("die")
    elif up_before and up_now and now["started_at"] != old["started_at"]:
        actions += ["die", "start"]  # died and came back between two polls
    elif up_now and not up_before:
        actions.append("start")
    elif now["started_at"] != old["started_at"]:
        actions += ["start", "die"]  # started and ended between two polls
    if (old["state"], now["state"]) == ("running", "paused"):
        actions.append("pause")
    if (old["state"], now["state"]) == ("paused", "running"):
        actions.append("unpause")
    if now["health"] and now["health"] != old["health"]:
        actions.append(f"health_status: {now['health']}")
    return actions


def event_attributes(shot: dict[str, Any], action: str) -> dict[str, str]:
    """docker's attributes (image, name, exitCode on die) plus the user's labels, Compose's left out."""
    attributes = {k: v for k, v in shot["labels"].items() if not k.startswith("com.docker.compose.")}
    attributes.update(image=shot["image"], name=shot["name"])
    if action == "die":
        attributes["exitCode"] = str(shot["exit_code"] or 0)
    return dict(sorted(attributes.items()))


def event_text(when: float, cid: str, action: str, attributes: dict[str, str]) -> str:
    """docker compose's line: `2024-05-01 10:00:00.123456 container start <id> (image=..., name=...)`."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1e6):06d}"
    pairs = ", ".join(f"{k}={v}" for k, v in attributes.items())
    return f"{stamp} container {action} {cid} ({pairs})"


def event_json(when: float, shot: dict[str, Any], cid: str, action: str, attributes: dict[str, str]) -> str:
    """docker compose's --json object (keys sorted as Go marshals a map)."""
    import json
    from datetime import datetime

    stamp = datetime.fromtimestamp(when).astimezone().isoformat()
    document = {
        "action": action,
        "attributes": attributes,
        "id": cid,
        "service": shot["service"],
        "time": stamp,
        "type": "container",
    }
    return json.dumps(document, separators=(",", ":"))


def _events(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.ps import find_containers, project_name
    from engine.api import Engine

    project, _ = project_name(args, context, args.services)
    with Engine.open(getattr(args, "root", None)) as engine:
        before = snapshot(find_containers(engine, project, args.services, oneoff=None))
        try:
            while True:
                time.sleep(POLL)
                after = snapshot(find_containers(engine, project, args.services, oneoff=None))
                when = time.time()
                for action, shot in diff(before, after):
                    cid = shot["id"]
                    attributes = event_attributes(shot, action)
                    if args.json:
                        line = event_json(when, shot, cid, action, attributes)
                    else:
                        line = event_text(when, cid, action, attributes)
                    context.stdout.write(line + "\n")
                context.stdout.flush()
                before = after
        except KeyboardInterrupt:
            pass
    return 0


# -- wait -------------------------------------------------------------------------------------------------


def wait_exits(
    engine: Any, records: Sequence[dict[str, Any]], report: Callable[[dict[str, Any]], None]
) -> int | None:
    """Poll until every container is not running; `report` each as it stops; the last one's exit code.

    None when a container vanished meanwhile (docker compose's `No such container` failure)."""
    from engine.errors import ContainerNotFound

    pending = {r["id"]: r for r in records}
    code: int | None = 0
    while pending:
        for cid in list(pending):
            try:
                record = engine.get_container(cid)
            except ContainerNotFound:
                del pending[cid]
                code = None
                continue
            if record["state"] not in ACTIVE:
                del pending[cid]
                report(record)
                code = record["exit_code"] or 0 if code is not None else None
        if pending:
            time.sleep(POLL / 2)
    return code


def _wait(args, context) -> int:  # type: ignore[no-untyped-def]
    from compose.cli.commands.ps import find_containers, project_name
    from compose.errors import ComposeError
    from engine.api import Engine

    project, _ = project_name(args, context, args.services)
    with Engine.open(getattr(args, "root", None)) as engine:
        records = find_containers(engine, project, args.services, oneoff=None)
        if not records:
            raise ComposeError(f'no containers for project "{project}"')

        def report(record: dict[str, Any]) -> None:
            code = record["exit_code"] or 0
            context.stdout.write(f'container "{record["id"]}" exited with status code {code}\n')
            context.stdout.flush()

        code = wait_exits(engine, records, report)
        if code is None:
            context.stderr.write("Error: a container was removed while waiting\n")
            return WAIT_ERROR
        if args.down_project:
            _down(args, context, engine)
    return code


def _down(args, context, engine: Any) -> None:  # type: ignore[no-untyped-def]
    """`wait --down-project`: the executor's down, orphans removed, as docker compose's."""
    from compose.cli.commands.project_images import load
    from compose.run.events import NullEvents
    from compose.run.executor import DownRequest, ProjectRunner

    runner = ProjectRunner(load(args, context), engine, NullEvents())
    runner.down(DownRequest(remove_orphans=True))
