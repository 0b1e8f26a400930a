"""Build an image from a Dockerfile and a context: stages, steps, the layer cache. CONTRACT (owner: B3).

Per stage (independent stages may run in parallel; a stage waits for those it depends on):
- FROM: an image in the store (pulled when missing or with `pull`), `scratch`, or an earlier stage.
- Config instructions: instructions.apply; the image config changes, no layer (history empty_layer).
- RUN: a container of the engine on the current image (overlay of its layers + a fresh upper dir; the
  stage's environment, USER, WORKDIR, SHELL; network per `request.network`: "default" = a bridge
  network with outbound NAT so `apt-get` reaches the mirror, "host", "none"; `extra_hosts`,
  `shm_size`), its output streamed to `progress`; a non-zero exit fails the build with the exit code
  and the last output lines; the upper dir becomes a layer (commit.write_diff + commit.commit).
- COPY / ADD: copy.copy_into onto the current root (the image's merged layers visible, writes to a new
  upper dir), from the context, another stage (`--from=name|index`) or an image (`--from=ref`).
- The layer cache: before running a step, the key sha256(parent image id, history_text, the sources'
  content digest for COPY/ADD, the build args RUN sees) is looked up in the `build_cache` table (state
  migration v6: key -> image id, created); a hit reuses that image and does no work; `no_cache` skips
  lookups (still records). Intermediate images are untagged; `image ls` hides them unless `-a`.
- The result is tagged with every name of `request.tags`; a failed build tags nothing and leaves no
  container, mount or temp dir.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import selectors
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.build import cache as build_cache
from engine.build import commit as commits
from engine.build import copy as copies
from engine.build import dockerfile, instructions, run_step, shellwords
from engine.build.context import BuildContext, PatternMatcher
from engine.build.instructions import BuildPlan, Stage, StageState
from engine.containers import spawn
from engine.errors import BuildError, BuildStepFailed, ImageNotFound
from engine.frozen import frozen
from engine.images.store import ImageStore
from engine.images.types import Image
from engine.state.root import StateRoot


@frozen
class BuildRequest:
    """One image to build (compose's `build:` section, or `pycompose image build`'s flags)."""

    context: str  # a directory
    dockerfile: str = "Dockerfile"  # relative to the context (or absolute)
    dockerfile_inline: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    network: str = "default"  # "default" | "host" | "none"
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None
    no_cache: bool = False
    pull: bool = False
    platform: str | None = None


class BuildProgress(Protocol):
    """What the builder reports; the CLI renders it (plain lines or a live view)."""

    def step(self, stage: str, number: int, total: int, text: str) -> None: ...

    def output(self, stage: str, number: int, data: bytes) -> None: ...

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None: ...

    def warning(self, message: str) -> None: ...


class _Silent:
    """No progress wanted."""

    def step(self, stage: str, number: int, total: int, text: str) -> None:
        pass

    def output(self, stage: str, number: int, data: bytes) -> None:
        pass

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        pass

    def warning(self, message: str) -> None:
        pass


@dataclass(slots=True)
class _Job:
    """One build's fixed inputs, shared by its stages."""

    request: BuildRequest
    context: BuildContext
    plan: BuildPlan
    args: dict[str, str]
    escape: str
    progress: BuildProgress
    results: dict[int, Image | None] = field(default_factory=dict)


@dataclass(slots=True)
class _Cursor:
    """Where a stage is: its current image and state, and the step being numbered for progress."""

    stage: str
    image: Image | None
    state: StageState
    number: int
    total: int


class Builder:
    def __init__(self, root: StateRoot) -> None:
        self.root = root
        self.store = ImageStore(root)
        self.cache = build_cache.BuildCache(root.db)

    def build(self, request: BuildRequest, progress: BuildProgress | None = None) -> Image:
        """Build and tag; raises BuildError (with the step, exit code and last output lines) on failure."""
        job = self._job(request, progress or _Silent())
        with self.store.lease():
            self._run_stages(job)
            image = job.results[job.plan.target]
            if image is None:
                raise BuildError("the target stage produced no image", subject=request.target)
            image = self._labelled(image, request.labels)
            for tag in request.tags:
                self.store.tag(image.id, tag)
        job.context.save_memo()
        return self.store.get_image(image.id)

    def _labelled(self, image: Image, labels: Sequence[tuple[str, str]]) -> Image:
        """The request's labels on the result: one more config step, cached like the others."""
        if not labels:
            return image
        config = dict(image.config.get("config") or {})
        config["Labels"] = {**(config.get("Labels") or {}), **dict(labels)}
        text = "LABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels)
        key = build_cache.step_key(image.id, text)
        hit = self.cache.lookup(key)
        if hit is not None:
            return self.store.get_image(hit)
        result = commits.commit(self.store, image, None, config=config, history={"created_by": text})
        self.cache.record(key, result.id, image.id)
        return result

    # -- setup -----------------------------------------------------------------------------------------

    def _job(self, request: BuildRequest, progress: BuildProgress) -> _Job:
        context = BuildContext.open(request.context, request.dockerfile, memo_path=self._memo_path(request))
        if request.dockerfile_inline is not None:
            text, path = request.dockerfile_inline, "Dockerfile"
        else:
            text, path = context.dockerfile_text(), context.dockerfile
        parsed = dockerfile.parse(text, path)
        args = dict(request.args)
        plan = instructions.plan(parsed, args, request.target)
        for name in plan.unused_args:
            progress.warning(f"build argument {name!r} is not consumed by any ARG")
        return _Job(request, context, plan, args, parsed.escape, progress)

    def _memo_path(self, request: BuildRequest) -> str:
        """Where content hashes of this context are remembered between builds (the no-op rebuild's speed)."""
        directory = self.root.path / "build-memo"
        directory.mkdir(mode=0o700, exist_ok=True)
        name = hashlib.sha256(os.path.realpath(request.context).encode()).hexdigest()[:32]
        return str(directory / f"{name}.json")

    # -- stages ----------------------------------------------------------------------------------------

    def _run_stages(self, job: _Job) -> None:
        """Every stage of the plan, dependencies first. One stage ready at a time runs here; stages
        ready together run in forked single-threaded workers (RUN forks containers: no threads, ever),
        which report progress and their image id through a pipe."""
        pending = {stage.index: stage for stage in job.plan.stages}
        running: dict[int, _Worker] = {}
        failure: BaseException | None = None
        while pending or running:
            ready = [s for s in pending.values() if all(d in job.results for d in s.depends_on)]
            if failure is not None:
                ready = []
            if len(ready) == 1 and not running:
                del pending[ready[0].index]
                job.results[ready[0].index] = self._stage(job, ready[0])
                continue
            for stage in ready:
                del pending[stage.index]
                worker = self._fork_stage(job, stage)
                running[worker.fd] = worker
            if not running:
                break
            failure = self._collect(job, running) or failure
        if failure is not None:
            raise failure

    def _fork_stage(self, job: _Job, stage: Stage) -> _Worker:
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker reports through the pipe
            os.close(read_fd)
            _worker_main(self, job, stage, write_fd)
        os.close(write_fd)
        return _Worker(pid, read_fd, stage)

    def _collect(self, job: _Job, running: dict[int, _Worker]) -> BaseException | None:
        """Relay what the workers report until one finishes; its image (or error) is recorded."""
        with selectors.DefaultSelector() as sel:
            for fd in running:
                sel.register(fd, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    worker = running[key.fd]
                    if worker.feed(os.read(key.fd, 65536), job.progress):
                        continue
                    del running[key.fd]
                    os.close(key.fd)
                    spawn.wait(worker.pid)
                    if worker.error is not None:
                        return worker.error
                    job.results[worker.stage.index] = (
                        self.store.get_image(worker.image_id) if worker.image_id else None
                    )
                    return None

    def _stage(self, job: _Job, stage: Stage) -> Image | None:
        """FROM, the base's ONBUILD triggers, then each instruction through the cache."""
        label = stage.name or f"stage-{stage.index}"
        started = time.monotonic()
        base = self._base(job, stage)
        base_config = base.config.get("config") if base is not None else None
        state = instructions.start_stage(base_config, stage, job.plan, job.args)
        steps = [*self._triggers(base_config), *stage.instructions]
        cursor = _Cursor(label, base, state, 1, len(steps) + 1)
        job.progress.step(label, 1, cursor.total, f"FROM {stage.base}")
        job.progress.done(label, 1, cached=True, seconds=time.monotonic() - started)
        for instruction in steps:
            cursor.number += 1
            self._step(job, cursor, instruction)
        return cursor.image

    def _base(self, job: _Job, stage: Stage) -> Image | None:
        if stage.base.lower() == "scratch":
            return None
        earlier = _stage_index(job.plan, stage.base, before=stage.index)
        if earlier is not None:
            return job.results[earlier]
        return self._image(stage.base, job.request, stage.platform)

    def _image(self, ref: str, request: BuildRequest, platform: str | None = None) -> Image:
        """An image from the store, pulled when missing (or always with `pull`)."""
        if not request.pull:
            with contextlib.suppress(ImageNotFound):
                return self.store.resolve(ref)
        from engine.images.registry import RegistryClient
        from engine.images.types import Platform

        wanted = platform or request.platform
        target = None
        if wanted:
            parts = wanted.split("/")
            target = Platform(
                parts[0], parts[1] if len(parts) > 1 else "amd64", parts[2] if len(parts) > 2 else None
            )
        return RegistryClient().pull(self.store, ref, platform=target)

    @staticmethod
    def _triggers(base_config: Mapping[str, Any] | None) -> list[dockerfile.Instruction]:
        triggers = instructions.onbuild_triggers(base_config)
        return [i for text in triggers for i in dockerfile.parse(text, "ONBUILD").instructions]

    # -- one step --------------------------------------------------------------------------------------

    def _step(self, job: _Job, cursor: _Cursor, instruction: dockerfile.Instruction) -> None:
        started = time.monotonic()
        text = f"{instruction.keyword} {instruction.args}".strip()
        job.progress.step(cursor.stage, cursor.number, cursor.total, text)
        if instructions.apply(cursor.state, instruction, job.args):
            cached = self._config_step(job, cursor, instruction)
        elif instruction.keyword == "RUN":
            cached = self._run(job, cursor, instruction)
        elif instruction.keyword in ("COPY", "ADD"):
            cached = self._copy(job, cursor, instruction)
        else:
            raise dockerfile.DockerfileError(
                f"unknown instruction: {instruction.keyword}", subject=f"line {instruction.line}"
            )
        job.progress.done(cursor.stage, cursor.number, cached=cached, seconds=time.monotonic() - started)

    def _through_cache(self, job: _Job, cursor: _Cursor, key: str, make: Callable[[], Image]) -> bool:
        """The cached image for `key`, or `make()` recorded under it; True on a hit."""
        parent = cursor.image.id if cursor.image is not None else None
        if not job.request.no_cache:
            hit = self.cache.lookup(key)
            if hit is not None:
                cursor.image = self.store.get_image(hit)
                return True
        cursor.image = make()
        self.cache.record(key, cursor.image.id, parent)
        return False

    def _config_step(self, job: _Job, cursor: _Cursor, instruction: dockerfile.Instruction) -> bool:
        history = instructions.history_text(instruction, cursor.state)
        key = build_cache.step_key(_id(cursor.image), history)
        if instruction.keyword == "WORKDIR":
            workdir = cursor.state.config.get("WorkingDir") or "/"
            return self._through_cache(job, cursor, key, lambda: self._make_workdir(cursor, workdir, history))
        return self._through_cache(job, cursor, key, lambda: self._commit(cursor, None, history))

    def _make_workdir(self, cursor: _Cursor, workdir: str, history: str) -> Image:
        """WORKDIR creates its directory in the image (as Docker's builders do), owned by root, 0755; a
        directory that exists already makes no layer."""
        image = cursor.image
        layers = self.store.layer_dirs(image) if image is not None else []
        with run_step.scratch_dirs(self.root) as paths:
            run_step.in_merged_view(paths, layers, _MakeDirectory(workdir).run)
            return self._commit_upper(cursor, paths.upper, history)

    def _commit(self, cursor: _Cursor, layer: Any, history: str) -> Image:
        return commits.commit(
            self.store, cursor.image, layer, config=cursor.state.config, history={"created_by": history}
        )

    def _run(self, job: _Job, cursor: _Cursor, instruction: dockerfile.Instruction) -> bool:
        state = cursor.state
        for name, _ in instruction.flags:  # --mount, --network, --security: not carried out yet
            job.progress.warning(f"line {instruction.line}: RUN --{name} is not supported and was ignored")
        argv = instructions.run_command(state, instruction)
        history = instructions.history_text(instruction, state)
        key = build_cache.step_key(_id(cursor.image), history, args=state.args)
        return self._through_cache(job, cursor, key, lambda: self._run_container(job, cursor, argv, history))

    def _run_container(self, job: _Job, cursor: _Cursor, argv: Sequence[str], history: str) -> Image:
        image = cursor.image
        if image is None or not image.layers:
            raise BuildError("RUN needs a base image with a filesystem (not scratch)", subject=history)
        request = job.request
        options = run_step.RunOptions(request.network, request.extra_hosts, request.shm_size)
        config = cursor.state.config

        def output(data: bytes) -> None:
            job.progress.output(cursor.stage, cursor.number, data)

        with run_step.run_container(
            self.root,
            image.id,
            self.store.layer_dirs(image),
            argv,
            env=cursor.state.environment(),
            user=config.get("User") or None,
            workdir=config.get("WorkingDir") or None,
            options=options,
            output=output,
        ) as result:
            if result.exit_code != 0:
                raise _step_failed(cursor, argv, result.exit_code, result.tail)
            return self._commit_upper(cursor, result.upper, history)

    def _commit_upper(self, cursor: _Cursor, upper: Path, history: str) -> Image:
        """The step's upper dir as a layer (none when nothing changed), committed on the current image."""
        with tempfile.TemporaryFile(dir=self.store.tmp_dir) as out:
            entries = commits.write_diff(upper, out)
            out.seek(0)
            return self._commit(cursor, out if entries else None, history)

    # -- COPY / ADD ------------------------------------------------------------------------------------

    def _copy(self, job: _Job, cursor: _Cursor, instruction: dockerfile.Instruction) -> bool:
        env = cursor.state.environment()
        words = list(instruction.exec_form or shellwords.split(instruction.args, env, job.escape))
        if len(words) < 2:
            raise dockerfile.DockerfileError(
                f"{instruction.keyword} requires at least two arguments", subject=f"line {instruction.line}"
            )
        flags = {
            name: shellwords.expand(instruction.flag(name) or "", env, job.escape) or None
            for name in ("from", "chown", "chmod")
        }
        sources, dest = words[:-1], words[-1]
        history = instructions.history_text(instruction, cursor.state)
        add = instruction.keyword == "ADD"
        with tempfile.TemporaryDirectory(dir=self.store.tmp_dir, prefix="dl-") as downloads:
            if instruction.heredocs:  # COPY <<EOF /dest: each body becomes a file named after its delimiter
                source_image = None
                context, sources = _heredoc_context(instruction, sources, env, job.escape, Path(downloads))
                digest = copies.cache_key(context, sources, chmod=flags["chmod"])
            elif flags["from"]:
                source_image = self._copy_source(job, flags["from"], cursor)
                digest = f"image {_id(source_image)} {json.dumps(sources)}"
                context = None
            else:
                source_image, context = None, job.context
                sources = [copies.download(s, downloads) if add and copies.is_url(s) else s for s in sources]
                digest = copies.cache_key(context, sources, chmod=flags["chmod"])
            digest += f" chown {flags['chown'] or ''} chmod {flags['chmod'] or ''} dest {dest}"
            key = build_cache.step_key(_id(cursor.image), history, sources=digest)
            copy = _CopyWork(sources, dest, context, cursor.state.config.get("WorkingDir") or "/", flags, add)
            return self._through_cache(
                job, cursor, key, lambda: self._copy_layer(cursor, copy, source_image, history)
            )

    def _copy_source(self, job: _Job, ref: str, cursor: _Cursor) -> Image | None:
        """COPY --from: an earlier stage (name or index) or an image reference."""
        index = _stage_index(job.plan, ref, before=None)
        if index is not None:
            if index not in job.results:
                raise BuildError("COPY --from names a stage not built yet", subject=ref)
            return job.results[index]
        return self._image(ref, job.request)

    def _copy_layer(self, cursor: _Cursor, copy: _CopyWork, source: Image | None, history: str) -> Image:
        image = cursor.image
        layers = self.store.layer_dirs(image) if image is not None else []
        views = {"src": self.store.layer_dirs(source)} if source is not None else {}
        with run_step.scratch_dirs(self.root) as paths:
            run_step.in_merged_view(paths, layers, copy.run, views)
            return self._commit_upper(cursor, paths.upper, history)


@frozen
class _MakeDirectory:
    """What the forked WORKDIR helper does in its merged view: mkdir -p inside the image's root."""

    path: str

    def run(self, merged: str, roots: dict[str, str]) -> None:
        from engine.containers.rootfs import resolve_in

        target = resolve_in(merged, self.path)
        if not os.path.isdir(target):
            os.makedirs(target, mode=0o755, exist_ok=True)


def _heredoc_context(
    instruction: dockerfile.Instruction,
    words: Sequence[str],
    env: Mapping[str, str],
    escape: str,
    directory: Path,
) -> tuple[BuildContext, list[str]]:
    """COPY/ADD heredocs: write each body (expanded unless its delimiter was quoted) to `directory` under
    the delimiter's name; the sources are those names, in the order the words name them."""
    bodies = {doc.name: doc for doc in instruction.heredocs}
    sources = []
    for word in words:
        name = word.lstrip("<").lstrip("-").strip("'\"")
        doc = bodies.get(name) if word.startswith("<<") else None
        if doc is None:
            raise dockerfile.DockerfileError(
                f"{instruction.keyword} with heredocs takes only heredoc sources, got {word!r}",
                subject=f"line {instruction.line}",
            )
        content = shellwords.expand_heredoc(doc.content, env, escape) if doc.expand else doc.content
        (directory / name).write_text(content)
        sources.append(name)
    return BuildContext(str(directory), os.devnull, None, PatternMatcher([])), sources


@frozen
class _CopyWork:
    """What the forked copy helper does in its merged view."""

    sources: Sequence[Any]
    dest: str
    context: BuildContext | None
    workdir: str
    flags: Mapping[str, str | None]
    add: bool

    def run(self, merged: str, roots: dict[str, str]) -> None:
        context = self.context
        if context is None:  # another image's files: every path is a source, no ignore rules
            view = roots.get("src")
            if view is None:
                raise BuildError("COPY --from a stage without files", subject=self.dest)
            context = BuildContext(view, os.devnull, None, PatternMatcher([]))
        copies.copy_into(
            merged,
            self.sources,
            self.dest,
            context=context,
            workdir=self.workdir,
            chown=self.flags.get("chown"),
            chmod=self.flags.get("chmod"),
            add=self.add,
        )


def _id(image: Image | None) -> str | None:
    return image.id if image is not None else None


def _stage_index(plan: BuildPlan, text: str, *, before: int | None) -> int | None:
    """The index of the stage `text` names (its AS name or its number), if it is one of the plan's."""
    wanted = text.lower()
    for stage in plan.stages:
        if before is not None and stage.index >= before:
            continue
        if stage.name == wanted or str(stage.index) == text:
            return stage.index
    return None


def _step_failed(cursor: _Cursor, argv: Sequence[str], code: int, tail: Sequence[str]) -> BuildStepFailed:
    step = f"[{cursor.stage} {cursor.number}/{cursor.total}] RUN {' '.join(argv)}"
    lines = "\n".join(tail)
    message = f"process {' '.join(argv)!r} did not complete successfully: exit code: {code}"
    if lines:
        message += "\n" + lines
    return BuildStepFailed(message, subject=step, step=step, status=code, tail=tuple(tail))


# -- stage workers (forked) --------------------------------------------------------------------------


class _PipeProgress:
    """A worker's BuildProgress: every call becomes one JSON line to the parent."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, event: dict[str, Any]) -> None:
        data = (json.dumps(event) + "\n").encode()
        while data:
            data = data[os.write(self.fd, data) :]

    def step(self, stage: str, number: int, total: int, text: str) -> None:
        self.send({"ev": "step", "stage": stage, "number": number, "total": total, "text": text})

    def output(self, stage: str, number: int, data: bytes) -> None:
        self.send({"ev": "output", "stage": stage, "number": number, "data": base64.b64encode(data).decode()})

    def done(self, stage: str, number: int, *, cached: bool, seconds: float) -> None:
        self.send({"ev": "done", "stage": stage, "number": number, "cached": cached, "seconds": seconds})

    def warning(self, message: str) -> None:
        self.send({"ev": "warning", "message": message})


def _worker_main(builder: Builder, job: _Job, stage: Stage, fd: int) -> None:
    """In the forked worker: build the stage, report its image id or its error; never returns."""
    pipe = _PipeProgress(fd)
    try:
        worker_job = dataclasses.replace(job, progress=pipe, results=dict(job.results))
        image = builder._stage(worker_job, stage)
        pipe.send({"ev": "result", "id": _id(image)})
        code = 0
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            pipe.send({"ev": "error", **_error_body(exc)})
        code = 1
    os._exit(code)


def _error_body(exc: BaseException) -> dict[str, Any]:
    body = json.loads(spawn._encode_error(exc))
    if isinstance(exc, BuildStepFailed):
        body.update(step=exc.step, status=exc.status, tail=list(exc.tail))
    return body


def _error_from(body: Mapping[str, Any]) -> BaseException:
    if body.get("type") == "BuildStepFailed":
        return BuildStepFailed(
            str(body.get("message")),
            subject=body.get("subject"),
            step=str(body.get("step", "")),
            status=int(body.get("status", 1)),
            tail=tuple(body.get("tail", ())),
        )
    return spawn._error_from(json.dumps(body).encode(), "build")


@dataclass(slots=True)
class _Worker:
    """A forked stage worker as the parent sees it: its pipe, and what it has said so far."""

    pid: int
    fd: int
    stage: Stage
    buffer: bytes = b""
    image_id: str | None = None
    error: BaseException | None = None

    def feed(self, chunk: bytes, progress: BuildProgress) -> bool:
        """Relay complete lines to `progress`; False at the end of the stream."""
        if not chunk:
            if self.error is None and self.image_id is None:
                self.error = self.error or _missing_result(self)
            return False
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self._event(json.loads(line), progress)
        return True

    def _event(self, event: dict[str, Any], progress: BuildProgress) -> None:
        kind = event.pop("ev")
        if kind == "step":
            progress.step(event["stage"], event["number"], event["total"], event["text"])
        elif kind == "output":
            progress.output(event["stage"], event["number"], base64.b64decode(event["data"]))
        elif kind == "done":
            progress.done(event["stage"], event["number"], cached=event["cached"], seconds=event["seconds"])
        elif kind == "warning":
            progress.warning(event["message"])
        elif kind == "result":
            self.image_id = event["id"] or ""
        elif kind == "error":
            self.error = _error_from(event)


def _missing_result(worker: _Worker) -> BaseException | None:
    if worker.image_id is not None:
        return None
    return BuildError(
        "the stage worker died without a result", subject=worker.stage.name or str(worker.stage.index)
    )
