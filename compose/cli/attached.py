"""Attached `up`: stream every container's logs with prefixes, stop the project on Ctrl-C.

CONTRACT (owner: engineer P3). `attached_up(runner, containers, args, context) -> int` is called by
`pycompose up` (without -d) once the project is up; it returns the CLI's exit code.

What docker compose does (pkg/compose/up.go, printer.go, attach.go; cmd/compose/up.go), and so do we:
- `Attaching to web-1, db-1` (stdout, names sorted), then every attached container's output through the
  LogPrinter, read by `logs -f`'s Follower (one reader per container; a restarted container is read on).
  A container's output is read from the start of its current run (docker attaches before starting).
- The attached services: those named with --attach, else the services `up` was given (all when none),
  with their dependencies under --attach-dependencies, leaving out `attach: false` ones; minus --no-attach.
- `web-1 exited with code 3` whenever an attached container exits (also before a restart policy brings it
  back). Attached `up` returns once every attached container has exited for good.
- --abort-on-container-exit: the first exit prints `Aborting on container exit...` and stops the project;
  the exit status is that container's code. --abort-on-container-failure: the same, for the first non-zero
  exit. --exit-code-from SERVICE (implies abort on exit): the status is that service's first exit code.
- SIGINT/SIGTERM: `Gracefully stopping... (press Ctrl+C again to force)` on stderr, stop (dependents first,
  with -t), exit status 130 (docker compose's status for a cancelled command); a second signal kills.
  Once stopping or aborting, no more log lines or exit lines are printed (docker compose's printer).
- An exit of a restarting container seen only after it runs again (a back-off shorter than a poll) has no
  code left in the engine: it counts for --abort-on-container-exit, is not printed.
"""

from __future__ import annotations

import signal
import threading
import time

from compose.cli.commands.logs import ACTIVE, Follower

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from compose.cli.logprinter import LogPrinter
    from compose.model import Project

POLL = 0.1  # seconds between looks at the attached containers (a restart back-off starts at 0.1 s)
CANCELLED = 130  # docker compose's exit status once a signal cancelled `up`
GRACEFUL = "Gracefully stopping... (press Ctrl+C again to force)"
ABORTING = "Aborting on container exit..."
SETTLE = 1.0  # seconds an exit of a service with a restart policy must last to be final
DRAIN = 2.0  # seconds an exit line waits for the container's reader to print its last lines


# -- flags ------------------------------------------------------------------------------------------------


def cascade_mode(args) -> str:  # type: ignore[no-untyped-def]
    """`stop` (--abort-on-container-exit, implied by --exit-code-from), `fail` or `ignore`."""
    if args.abort_on_container_exit or (args.exit_code_from and not args.abort_on_container_failure):
        return "stop"
    if args.abort_on_container_failure:
        return "fail"
    return "ignore"


def validate(args, project: Project) -> None:  # type: ignore[no-untyped-def]
    """docker compose's checks of the attach flags (best run before converging: see the report)."""
    from compose.errors import UsageError

    if args.abort_on_container_exit and args.abort_on_container_failure:
        raise UsageError("--abort-on-container-failure cannot be combined with --abort-on-container-exit")
    if args.wait and (args.attach_dependencies or cascade_mode(args) != "ignore" or args.attach):
        raise UsageError(
            "--wait cannot be combined with --abort-on-container-exit, --attach or --attach-dependencies"
        )
    if args.attach and args.attach_dependencies:
        raise UsageError("cannot combine --attach and --attach-dependencies")
    if args.exit_code_from and args.exit_code_from not in project.services:
        raise UsageError(f"no such service: {args.exit_code_from}")
    unknown = sorted(set(args.attach) - set(project.services))
    if unknown:
        raise UsageError(f"cannot attach to services not included in up: {', '.join(unknown)}")


def attach_services(args, project: Project) -> list[str]:  # type: ignore[no-untyped-def]
    """The services whose containers attached `up` follows, in the project's order."""
    from compose.plan.converge import project_graph

    if args.attach:
        wanted = set(args.attach)
    else:
        named = list(args.services) or list(project.services)
        if args.attach_dependencies:
            named = project_graph(project).subgraph(named).services
        wanted = {n for n in named if _attachable(project, n)}
    wanted -= set(args.no_attach)
    return [name for name in project.services if name in wanted]


def may_restart(project: Project, name: str) -> bool:
    """Whether the service has a restart policy (`restart:` or deploy's) that could bring it back."""
    service = project.services.get(name)
    if service is None:
        return False
    policy = service.deploy.restart_policy if service.deploy is not None else None
    if policy is not None:
        return (policy.condition or "any") != "none"
    return (service.restart or "no") != "no"


def _attachable(project: Project, name: str) -> bool:
    """A service's `attach:` (not modelled: kept in extras), true unless set false."""
    service = project.services.get(name)
    value = (service.extras or {}).get("attach", True) if service is not None else True
    return value not in (False, "false", "False")


# -- decisions --------------------------------------------------------------------------------------------


class Exit:
    """One run of a container ended: `code` None when the engine no longer knows it."""

    __slots__ = ("cid", "code", "name", "restarting", "service")

    def __init__(self, cid: str, name: str, service: str, code: int | None, restarting: bool) -> None:
        self.cid, self.name, self.service = cid, name, service
        self.code, self.restarting = code, restarting

    def __repr__(self) -> str:
        return f"Exit({self.name!r}, code={self.code}, restarting={self.restarting})"


class ExitWatch:
    """Finds exits in successive looks at the containers' records, each run's exit once.

    A run is known by its started_at. An exit is seen as `exited`/`dead` (final) or `restarting`
    (the supervisor's back-off, exit code kept), or as a new run appearing while the last was not seen
    ending (code unknown). `ready(cid)` holds a final exit back until the container's reader is done;
    `settle(service)` how long an `exited` must last before it is final (services that may restart)."""

    def __init__(
        self,
        settle: Callable[[str], float] = lambda service: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settle, self.clock = settle, clock  # seconds an `exited` must last to be final, per service
        self.runs: dict[str, str | None] = {}  # cid -> started_at of the run last seen
        self.reported: set[tuple[str, str | None]] = set()
        self.exited_at: dict[tuple[str, str | None], float] = {}  # first seen `exited`, per run

    def update(
        self, records: Iterable[dict[str, Any]], ready: Callable[[str], bool] = lambda cid: True
    ) -> list[Exit]:
        """The exits these records show that were not reported before."""
        exits = []
        for record in records:
            found = self._look(record, ready)
            if found is not None:
                exits.append(found)
        return exits

    def _look(self, record: dict[str, Any], ready: Callable[[str], bool]) -> Exit | None:
        cid, state = record["id"], record["state"]
        run = record.get("started_at")  # a run's start (µs): restart_count moves before the restart
        previous = self.runs.get(cid)
        self.runs[cid] = run
        if run is None:
            return None  # never started
        missed = previous is not None and previous != run
        if missed and (cid, previous) not in self.reported and state != "restarting":
            self.reported.add((cid, previous))
            return self._exit(record, None, restarting=True)
        if (cid, run) in self.reported:
            return None
        if state == "restarting" and record.get("exit_code") is not None:
            self.reported.add((cid, run))
            return self._exit(record, int(record["exit_code"]), restarting=True)
        if state not in ACTIVE and state != "created" and self._settled(record) and ready(cid):
            self.reported.add((cid, run))
            return self._exit(record, int(record.get("exit_code") or 0), restarting=False)
        return None

    def _settled(self, record: dict[str, Any]) -> bool:
        """An exit of a service with a restart policy is final only once no restart followed for a while:
        the supervisor records `exited` before it decides (and tears the network down) for a restart."""
        service = (record.get("labels") or {}).get("com.docker.compose.service", "")
        wait = self.settle(service)
        if wait <= 0:
            return True
        first = self.exited_at.setdefault((record["id"], record.get("started_at")), self.clock())
        return self.clock() - first >= wait

    def ended(self, cid: str) -> bool:
        """Whether the container's last seen run was reported ended."""
        run = self.runs.get(cid)
        return run is not None and (cid, run) in self.reported

    @staticmethod
    def _exit(record: dict[str, Any], code: int | None, *, restarting: bool) -> Exit:
        service = (record.get("labels") or {}).get("com.docker.compose.service", "")
        return Exit(record["id"], record["name"], service, code, restarting)


class Verdict:
    """The cascade rules: which exits stop the project and what the exit status becomes."""

    def __init__(self, cascade: str = "ignore", exit_code_from: str | None = None) -> None:
        self.cascade = cascade
        self.exit_code_from = exit_code_from
        self.exit_code = 0
        self.aborting = False  # a cascade stop began: printing ends
        self.cancelled = False  # a signal: printing ends, status 130
        self._from_seen = False

    @property
    def quiet(self) -> bool:
        return self.aborting or self.cancelled

    def exited(self, event: Exit) -> bool:
        """Record an exit; True when it must start the cascade stop now."""
        start = False
        triggers = self.cascade == "stop" or (event.code is not None and event.code != 0)
        if self.cascade != "ignore" and not self.quiet and triggers:
            self.aborting, start = True, True
            self.exit_code = event.code or 0
        chosen = self.exit_code_from and event.service == self.exit_code_from
        if chosen and not self._from_seen and event.code is not None:
            self._from_seen = True
            self.exit_code = event.code
        return start

    def status(self) -> int:
        return CANCELLED if self.cancelled else self.exit_code


# -- the session ------------------------------------------------------------------------------------------


class _Gate:
    """The LogPrinter as the Follower sees it: lines dropped once the session is stopping."""

    def __init__(self, printer: LogPrinter, verdict: Verdict) -> None:
        self.printer, self.verdict = printer, verdict

    def line(self, name: str, stream: str, text: str, time_ns: int | None = None) -> None:
        if not self.verdict.quiet:
            self.printer.line(name, stream, text, time_ns)

    def register(self, name: str) -> None:
        self.printer.register(name)


class _RunFollower(Follower):
    """`logs -f`'s follower reading each container from the start of its current run."""

    def first_options(self, record: dict[str, Any]) -> dict[str, Any]:
        from compose.cli.commands.image import parse_time

        options = dict(self.options)
        started = parse_time(record.get("started_at"))
        if started is not None:
            since = started - 1.0  # the first lines may be stamped before started_at is written
            finished = parse_time(record.get("finished_at"))
            if finished is not None and finished < started:
                since = max(since, finished + 1e-6)  # not the previous run's last lines
            options["since"] = since
        return options


class Session:
    """One attached `up`: follows, watches exits, reacts to signals, stops the project."""

    def __init__(self, runner, args, context, services: Sequence[str]) -> None:  # type: ignore[no-untyped-def]
        self.runner, self.args, self.context = runner, args, context
        self.services = list(services)
        self.verdict = Verdict(cascade_mode(args), args.exit_code_from)
        project = runner.project
        self.watch = ExitWatch(lambda service: SETTLE if may_restart(project, service) else 0.0)
        self.signals = 0
        self.handled = 0
        self.workers: list[threading.Thread] = []
        self.failures: list[BaseException] = []
        self.events = None

    # -- entry ------------------------------------------------------------------------------------

    def run(self) -> int:
        from compose.cli.commands.logs import make_printer
        from compose.cli.commands.ps import find_containers
        from compose.cli.logprinter import short_name

        project = self.runner.loaded.name
        records = find_containers(self.runner.engine, project, self.services) if self.services else []
        names = [short_name(r["name"], project) for r in records]
        self.context.stdout.write(f"Attaching to {', '.join(names)}\n")
        self.context.stdout.flush()
        self.printer = make_printer(self.args, self.context, project, records)
        options = {"tail": None, "since": None, "until": None}
        self.follower = _RunFollower(
            self.runner.engine, project, self.services, 0, _Gate(self.printer, self.verdict), options
        )
        previous = self._trap()
        try:
            self._loop()
        finally:
            self.follower.stop()  # readers of containers left running go on until the process ends
            self._restore(previous)
            self._finish()
        return self.verdict.status()

    def _loop(self) -> None:
        while True:
            self._on_signals()
            records = self.follower.step(self.context.warn) if self.services else []
            self._on_exits(self.watch.update(records, self._drained))
            if self.workers:
                if not any(t.is_alive() for t in self.workers):
                    self._on_exits(self.watch.update(self._records(), lambda cid: True))
                    return
            elif self.services and self._all_done(records):
                return
            time.sleep(POLL)

    def _all_done(self, records: Sequence[dict[str, Any]]) -> bool:
        """Every attached container exited for good, its exit reported and its reader finished."""
        for record in records:
            if record["state"] in ACTIVE:
                return False
            if record.get("started_at") and not self.watch.ended(record["id"]):
                return False
        return not any(t.is_alive() for t in self.follower.threads.values())

    def _records(self) -> list[dict[str, Any]]:
        from compose.cli.commands.ps import find_containers

        if not self.services:
            return []
        return find_containers(self.runner.engine, self.runner.loaded.name, self.services)

    def _drained(self, cid: str) -> bool:
        thread = self.follower.threads.get(cid)
        if thread is None or not thread.is_alive():
            return True
        thread.join(DRAIN)
        return not thread.is_alive()

    # -- exits and cascade ------------------------------------------------------------------------

    def _on_exits(self, exits: Iterable[Exit]) -> None:
        from compose.cli.logprinter import short_name

        for event in exits:
            quiet = self.verdict.quiet
            start = self.verdict.exited(event)
            if not quiet and event.code is not None:
                name = short_name(event.name, self.runner.loaded.name)
                if not event.restarting:
                    self._catch_up(event.cid, name)
                self.printer.status(name, f"exited with code {event.code}")
            if start:
                self.context.stdout.write(ABORTING + "\n")
                self.context.stdout.flush()
                self._spawn(self._stop)

    def _catch_up(self, cid: str, name: str) -> None:
        """Lines the reader's follow ended before (written late by a loaded supervisor), then the exit."""
        from compose.cli.commands.logs import copy_entries
        from compose.cli.logprinter import format_timestamp
        from engine.errors import EngineError

        last = self.follower.last.get(cid)
        if last is None:
            return
        try:
            entries = self.runner.engine.container_logs(cid, since=format_timestamp(last + 1))
            found = copy_entries(entries, _Gate(self.printer, self.verdict), name)
        except EngineError:
            return
        if found is not None:
            self.follower.last[cid] = found

    # -- signals ----------------------------------------------------------------------------------

    def _trap(self) -> dict[int, Any]:
        """SIGINT and SIGTERM counted, acted on by the loop (never inside the handler)."""
        previous = {}

        def count(signum: int, frame: Any) -> None:
            self.signals += 1

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, count)
        return previous

    @staticmethod
    def _restore(previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signals(self) -> None:
        while self.handled < self.signals:
            self.handled += 1
            if self.handled == 1:
                self.verdict.cancelled = True
                self.context.stderr.write(GRACEFUL + "\n")
                self.context.stderr.flush()
                if not self.verdict.aborting:
                    self._spawn(self._stop)
            elif self.handled == 2:
                self._spawn(self._kill)

    # -- stop and kill ----------------------------------------------------------------------------

    def _progress(self):  # type: ignore[no-untyped-def]
        if self.events is None:
            from compose.cli.progress import for_args

            self.events = for_args(self.args, self.context, title="Stopping")
        return self.events

    def _stop(self) -> None:
        from compose.run.lifecycle import stop

        runner = self.runner
        stop(runner.loaded, runner.engine, self._progress(), self.args.services, self.args.timeout)

    def _kill(self) -> None:
        from compose.run.lifecycle import kill

        runner = self.runner
        kill(runner.loaded, runner.engine, self._progress(), self.args.services, "SIGKILL")

    def _spawn(self, work: Callable[[], None]) -> None:
        self._progress()  # made here, in this thread: the two workers share one view

        def guarded() -> None:
            try:
                work()
            except BaseException as exc:  # re-raised in the CLI's thread
                self.failures.append(exc)

        thread = threading.Thread(target=guarded, daemon=True)
        self.workers.append(thread)
        thread.start()

    def _finish(self) -> None:
        for thread in self.workers:
            thread.join()
        if self.events is not None:
            self.events.close()
        errors = [e for e in self.failures if not _already_gone(e)]
        if errors and not self.verdict.cancelled:
            raise errors[0]


def _already_gone(exc: BaseException) -> bool:
    """A kill racing the stop finds containers stopped or removed: not a failure (docker compose too)."""
    from engine.errors import ContainerNotFound

    return isinstance(exc, ContainerNotFound)


def attached_up(runner, containers, args, context) -> int:  # type: ignore[no-untyped-def]
    """Follow the attached containers until they have all exited, a cascade ends them or Ctrl-C."""
    project = runner.project
    validate(args, project)
    if args.wait or args.no_start:
        return 0  # --wait implies detached; --no-start has nothing to attach to
    runner.events.close()  # the progress view's last frame stays above the logs
    return Session(runner, args, context, attach_services(args, project)).run()
