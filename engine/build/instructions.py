"""What each Dockerfile instruction means for the image being built; stages and their order. Pure.

CONTRACT (owner: engineer B2). No I/O: the builder (builder.py) runs RUN and COPY/ADD; this module
turns a parsed Dockerfile (dockerfile.py) plus build args into stages, and applies the config-changing
instructions to an image config, with BuildKit's variable rules (shellwords.py):
- ARG before the first FROM is global and usable in FROM lines only, unless re-declared (`ARG NAME`) in a
  stage; a stage's ARG takes the build arg, else its default; the predefined proxy args (HTTP_PROXY,
  http_proxy, HTTPS_PROXY, https_proxy, FTP_PROXY, ftp_proxy, NO_PROXY, no_proxy, ALL_PROXY, all_proxy)
  and the automatic platform args (TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT, BUILDPLATFORM,
  BUILDOS, BUILDARCH, BUILDVARIANT) are known without declaration; build args never given an ARG are
  reported as unused (a warning, as BuildKit);
- ENV values are expanded with the ARGs and ENVs before them; ENV wins over ARG of the same name;
- RUN sees the stage's ARGs and ENVs as its environment (ARGs are not kept in the image config);
- the config instructions: CMD, ENTRYPOINT (resets CMD inherited from the base image, as Docker), ENV,
  LABEL, EXPOSE, USER, WORKDIR (relative to the previous one; created by the builder), VOLUME,
  STOPSIGNAL, HEALTHCHECK (options --interval --timeout --start-period --start-interval --retries; CMD
  and NONE), SHELL (JSON only), ONBUILD (stored as triggers; a base image's triggers run after its FROM),
  MAINTAINER (deprecated: the author field);
- `docker import --change` (engine/images/changes.py) applies a subset of these through this module.
Errors: DockerfileError naming the file and line.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import posixpath
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.build.dockerfile import INSTRUCTIONS, Dockerfile, DockerfileError, Instruction, json_array
from engine.build.shellwords import ExpansionError, expand, split
from engine.frozen import frozen
from engine.images.manifest import host_platform

PROXY_ARGS = (
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
PLATFORM_ARGS = (
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
)
DEFAULT_SHELL = ("/bin/sh", "-c")
FILESYSTEM_INSTRUCTIONS = ("RUN", "COPY", "ADD")
# the flags each instruction takes (BuildKit refuses any other with "unknown flag")
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount", "network", "security"}),
    "COPY": frozenset({"from", "chown", "chmod", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude", "unpack"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "start-interval", "retries"}),
}
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_DURATION_PART = re.compile(r"(\d*\.?\d*)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_DURATION_UNITS |= {"m": 60 * 10**9, "h": 3600 * 10**9}
_MIN_HEALTH_DURATION = 10**6  # Docker refuses non-zero health intervals under 1 ms
_NOT_TRIGGERS = ("FROM", "MAINTAINER")


def _fail(where: str, message: str) -> DockerfileError:
    return DockerfileError(message, subject=where)


# -- plan: stages, references, target --------------------------------------------------------------


@frozen
class Stage:
    """One FROM ... up to the next FROM."""

    index: int
    name: str | None  # `AS name` (lower case), else None
    base: str  # the expanded FROM argument: an image reference, "scratch", or an earlier stage's name/index
    platform: str | None  # --platform, expanded
    instructions: tuple[Instruction, ...]  # after the FROM line (FROM itself is in base/platform)
    depends_on: tuple[int, ...]  # stages it uses: as its base or through COPY --from / RUN --mount from
    line: int
    base_stage: int | None = None  # the stage used as the base, when `base` names one


@frozen
class BuildPlan:
    """The stages needed for the target, in an order that respects their dependencies."""

    stages: tuple[Stage, ...]
    target: int  # index of the stage whose image is the result
    global_args: tuple[tuple[str, str | None], ...]
    unused_args: tuple[str, ...]  # build args no ARG declares (warned about)
    path: str = "Dockerfile"  # for error subjects `path:line`
    escape: str = "\\"
    platform_args: tuple[tuple[str, str], ...] = ()  # TARGETPLATFORM, BUILDARCH, ...


def plan(dockerfile: Dockerfile, build_args: Mapping[str, str], target: str | None = None) -> BuildPlan:
    """Stages with their bases expanded (global ARGs), dependencies, and only what `target` needs."""
    path, escape = dockerfile.path, dockerfile.escape
    for instruction in dockerfile.instructions:
        _check_flags(instruction, path)
    globals_, rest = _global_part(dockerfile, build_args)
    platform_args = platform_values(build_args)
    meta = dict(platform_args) | {k: v for k, v in globals_ if v is not None}
    stages = _stages(rest, meta, path, escape)
    stages = _with_dependencies(stages, meta, path, escape)
    chosen = _target_index(stages, target, path)
    needed = _needed(stages, chosen, path)
    ordered = tuple(s for s in stages if s.index in needed)
    declared = {k for k, _ in globals_} | {k for s in ordered for k in _declared_args(s, path, escape)}
    ignored = set(PROXY_ARGS) | set(PLATFORM_ARGS)
    unused = tuple(sorted(k for k in build_args if k not in declared and k not in ignored))
    return BuildPlan(
        ordered, chosen, tuple(globals_), unused, path, escape, tuple(sorted(platform_args.items()))
    )


def platform_values(build_args: Mapping[str, str]) -> dict[str, str]:
    """The automatic platform ARGs: the host's, TARGET* from a `TARGETPLATFORM` build arg if given."""
    host = host_platform()
    target = build_args.get("TARGETPLATFORM") or str(host)
    os_, _, rest = target.partition("/")
    arch, _, variant = rest.partition("/")
    return {
        "BUILDPLATFORM": str(host),
        "BUILDOS": host.os,
        "BUILDARCH": host.architecture,
        "BUILDVARIANT": host.variant or "",
        "TARGETPLATFORM": target,
        "TARGETOS": os_,
        "TARGETARCH": arch,
        "TARGETVARIANT": variant,
    }


def _check_flags(instruction: Instruction, path: str) -> None:
    allowed = FLAGS.get(instruction.keyword, frozenset())
    for name, _ in instruction.flags:
        if name not in allowed:
            raise _fail(f"{path}:{instruction.line}", f"unknown flag: {name}")


def _global_part(
    dockerfile: Dockerfile, build_args: Mapping[str, str]
) -> tuple[list[tuple[str, str | None]], list[Instruction]]:
    """The ARGs before the first FROM (build args over defaults), and the instructions from it on."""
    found: list[tuple[str, str | None]] = []
    env: dict[str, str] = {}
    instructions = list(dockerfile.instructions)
    while instructions and instructions[0].keyword != "FROM":
        instruction = instructions.pop(0)
        where = f"{dockerfile.path}:{instruction.line}"
        if instruction.keyword != "ARG":
            raise _fail(where, f"{instruction.keyword} before the first FROM: no build stage in context")
        for key, default in arg_pairs(instruction, dockerfile.path, dockerfile.escape):
            value = build_args.get(key)
            if value is None and default is not None:
                value = _expand(default, env, dockerfile.escape, where, "ARG")
            if value is not None:
                env[key] = value
            found = [(k, v) for k, v in found if k != key] + [(key, value)]
    if not instructions:
        raise _fail(f"{dockerfile.path}:1", "the Dockerfile has no FROM: no build stage")
    return found, instructions


def _stages(instructions: list[Instruction], meta: dict[str, str], path: str, escape: str) -> list[Stage]:
    """Split at each FROM; expand the base and --platform with the global ARGs."""
    stages: list[Stage] = []
    names: set[str] = set()
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"] + [len(instructions)]
    for number, (start, end) in enumerate(itertools.pairwise(starts)):
        head = instructions[start]
        base, name, platform = _from(head, meta, path, escape)
        if name is not None:
            if name in names:
                raise _fail(f"{path}:{head.line}", f"duplicate stage name {name!r}")
            names.add(name)
        body = tuple(instructions[start + 1 : end])
        stages.append(Stage(number, name, base, platform, body, (), head.line))
    return stages


def _from(instruction: Instruction, meta: dict[str, str], path: str, escape: str) -> tuple:
    """FROM [--platform=p] image [AS name]: the expanded base, the stage name and the platform."""
    where = f"{path}:{instruction.line}"
    words = instruction.args.split()
    if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
        raise _fail(where, "FROM requires either one or three arguments (image [AS name])")
    name = None
    if len(words) == 3:
        name = words[2].lower()
        if not _STAGE_NAME.fullmatch(name):
            raise _fail(
                where,
                f"invalid name for build stage: {words[2]!r}, "
                "name can't start with a number or contain symbols",
            )
    base = _expand(words[0], meta, escape, where, "FROM")
    if not base:
        raise _fail(where, f"base name ({words[0]}) should not be blank")
    platform = instruction.flag("platform")
    if platform is not None:
        platform = _expand(platform, meta, escape, where, "FROM") or None
    return base, name, platform


def _with_dependencies(stages: list[Stage], meta: dict[str, str], path: str, escape: str) -> list[Stage]:
    """Fill `depends_on` (and `base_stage`) from FROM, COPY --from and RUN --mount from=."""
    by_name = {s.name: s.index for s in stages if s.name}
    result = []
    for stage in stages:
        base_stage = by_name.get(stage.base.lower())
        if base_stage == stage.index:
            raise _fail(f"{path}:{stage.line}", f"circular dependency detected on stage: {stage.name}")
        deps = [] if base_stage is None else [base_stage]
        for instruction in stage.instructions:
            for ref in _sources(instruction):
                where = f"{path}:{instruction.line}"
                index = stage_reference(_expand(ref, meta, escape, where, "--from"), stages, where)
                if index == stage.index:
                    raise _fail(where, f"circular dependency detected on stage: {stage.name or index}")
                if index is not None and index not in deps:
                    deps.append(index)
        result.append(_replace_stage(stage, tuple(deps), base_stage))
    return result


def _replace_stage(stage: Stage, deps: tuple[int, ...], base_stage: int | None) -> Stage:
    return Stage(
        stage.index,
        stage.name,
        stage.base,
        stage.platform,
        stage.instructions,
        deps,
        stage.line,
        base_stage,
    )


def _sources(instruction: Instruction) -> list[str]:
    """The `--from` of COPY and the `from=` of every RUN --mount."""
    if instruction.keyword == "COPY":
        source = instruction.flag("from")
        return [source] if source else []
    if instruction.keyword != "RUN":
        return []
    found = []
    for name, value in instruction.flags:
        if name == "mount" and value:
            for part in value.split(","):
                key, _, val = part.partition("=")
                if key.strip().lower() == "from" and val:
                    found.append(val.strip().strip('"'))
    return found


def stage_reference(text: str, stages: Sequence[Stage], where: str) -> int | None:
    """The stage `text` names (its name, case-insensitive, or its index), or None for an image."""
    if text.isdigit():
        index = int(text)
        if index >= len(stages):
            raise _fail(where, f"invalid stage index {index}")
        return index
    lowered = text.lower()
    for stage in stages:
        if stage.name == lowered:
            return stage.index
    return None


def _target_index(stages: list[Stage], target: str | None, path: str) -> int:
    if not target:
        return stages[-1].index
    for stage in stages:
        if stage.name == target.lower():
            return stage.index
    raise _fail(path, f"target stage {target!r} could not be found")


def _needed(stages: list[Stage], target: int, path: str) -> set[int]:
    """The target and every stage it reaches; a cycle is an error."""
    needed: set[int] = set()
    visiting: set[int] = set()

    def visit(index: int) -> None:
        if index in needed:
            return
        if index in visiting:
            stage = stages[index]
            raise _fail(
                f"{path}:{stage.line}", f"circular dependency detected on stage: {stage.name or index}"
            )
        visiting.add(index)
        for dep in stages[index].depends_on:
            visit(dep)
        visiting.discard(index)
        needed.add(index)

    visit(target)
    return needed


def _declared_args(stage: Stage, path: str, escape: str) -> list[str]:
    names = []
    for instruction in stage.instructions:
        if instruction.keyword == "ARG":
            names.extend(k for k, _ in arg_pairs(instruction, path, escape))
    return names


def ordered_stages(build: BuildPlan) -> list[Stage]:
    """The stages with every dependency before its users (index order where free)."""
    done: list[int] = []
    by_index = {s.index: s for s in build.stages}

    def visit(index: int) -> None:
        if index in done:
            return
        for dep in by_index[index].depends_on:
            visit(dep)
        done.append(index)

    for stage in build.stages:
        visit(stage.index)
    return [by_index[i] for i in done]


# -- stage state ----------------------------------------------------------------------------------


@dataclass
class StageState:
    """What a stage carries from one instruction to the next."""

    config: dict[str, Any]  # the OCI image config's `config` section (Env, Cmd, Entrypoint, ...)
    args: dict[str, str] = field(default_factory=dict)  # the stage's ARGs in scope with their values
    shell: tuple[str, ...] = DEFAULT_SHELL
    onbuild: list[str] = field(default_factory=list)
    path: str = "Dockerfile"
    escape: str = "\\"
    meta: dict[str, str] = field(default_factory=dict)  # global and platform ARGs a stage may re-declare
    proxy: dict[str, str] = field(default_factory=dict)  # proxy build args: RUN's, never the image's
    cmd_set: bool = False  # a CMD in this stage (then ENTRYPOINT keeps it)
    author: str | None = None  # MAINTAINER
    history: tuple[Instruction, str] | None = None  # the last applied instruction's created_by
    build_args: dict[str, str] = field(default_factory=dict)  # for history_text before apply

    def environment(self) -> dict[str, str]:
        """The variables for expansion and for RUN: ARGs, then the config's Env over them."""
        env = dict(self.proxy) | dict(self.args)
        for entry in self.config.get("Env") or []:
            key, _, value = entry.partition("=")
            env[key] = value
        return env


def start_stage(
    base_config: Mapping[str, Any] | None, stage: Stage, plan: BuildPlan, build_args: Mapping[str, str]
) -> StageState:
    """The state after FROM: the base image's config (or empty for scratch), global ARGs not yet in scope."""
    config = copy.deepcopy(dict(base_config or {}))
    config.pop("OnBuild", None)  # the base's triggers run once, right after FROM; not inherited
    shell = tuple(config.get("Shell") or DEFAULT_SHELL)
    meta = dict(plan.platform_args) | {k: v for k, v in plan.global_args if v is not None}
    proxy = {k: build_args[k] for k in PROXY_ARGS if k in build_args}
    return StageState(
        config,
        shell=shell,
        path=plan.path,
        escape=plan.escape,
        meta=meta,
        proxy=proxy,
        build_args=dict(build_args),
    )


def onbuild_triggers(base_config: Mapping[str, Any] | None) -> Sequence[str]:
    """The base image's ONBUILD triggers, to be parsed and run after FROM."""
    return tuple((base_config or {}).get("OnBuild") or ())


# -- apply ----------------------------------------------------------------------------------------


def apply(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> bool:
    """Apply ARG and every config-changing instruction to `state`; True if it was one (no filesystem
    work), False for RUN, COPY and ADD (the builder's). Raises DockerfileError for invalid arguments."""
    keyword = instruction.keyword
    if keyword in FILESYSTEM_INSTRUCTIONS:
        return False
    handler = _HANDLERS.get(keyword)
    if handler is None:
        raise _fail(_where(state, instruction), f"{keyword} cannot be applied to a stage's config")
    _check_flags(instruction, state.path)
    text = handler(state, instruction, build_args)
    state.history = (instruction, text)
    return True


def _where(state: StageState, instruction: Instruction) -> str:
    return f"{state.path}:{instruction.line}"


def _expand(text: str, env: Mapping[str, str], escape: str, where: str, keyword: str) -> str:
    try:
        return expand(text, env, escape)
    except ExpansionError as exc:
        raise _fail(where, f"cannot parse {keyword} arguments: {exc.message} ({exc.subject})") from None


def _split(text: str, env: Mapping[str, str], escape: str, where: str, keyword: str) -> list[str]:
    try:
        return split(text, env, escape)
    except ExpansionError as exc:
        raise _fail(where, f"cannot parse {keyword} arguments: {exc.message} ({exc.subject})") from None


def _raw_words(text: str, escape: str) -> list[str]:
    """Whitespace-separated words with quotes and escapes kept (BuildKit's parseWords)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        ch = text[index]
        if not quote and ch.isspace():
            if current:
                words.append("".join(current))
                current = []
        elif ch == escape and quote != "'" and index + 1 < len(text):
            current.append(text[index : index + 2])
            index += 1
        else:
            if not quote and ch in "'\"":
                quote = ch
            elif ch == quote:
                quote = ""
            current.append(ch)
        index += 1
    if current:
        words.append("".join(current))
    return words


def arg_pairs(instruction: Instruction, path: str, escape: str) -> list[tuple[str, str | None]]:
    """`ARG a b=1 "c"=x`: names with their unexpanded defaults (None when there is none)."""
    where = f"{path}:{instruction.line}"
    words = _raw_words(instruction.args, escape)
    if not words:
        raise _fail(where, "ARG requires at least one argument")
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not key:
            raise _fail(where, "ARG names can not be blank")
        pairs.append((key, value if eq else None))
    return pairs


def name_value_pairs(instruction: Instruction, escape: str, where: str) -> list[tuple[str, str]]:
    """ENV/LABEL: `k=v k2="v 2"` pairs, or the legacy `key value with spaces` (all unexpanded)."""
    keyword, rest = instruction.keyword, instruction.args
    words = _raw_words(rest, escape)
    if not words:
        raise _fail(where, f"{keyword} requires at least one argument: needs key=value")
    if "=" not in words[0]:
        parts = re.split(r"\s+", rest.strip(), maxsplit=1)
        if len(parts) < 2:
            raise _fail(where, f"{keyword} must have two arguments: needs key=value (or 'key value')")
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise _fail(where, f"Syntax error - can't find = in {word!r}: {keyword} expects key=value")
        if not key:
            raise _fail(where, f"{keyword} names can not be blank: expects key=value, got {word!r}")
        pairs.append((key, value))
    return pairs


def _arg(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    """A stage ARG: the build arg, else its default (expanded), else the global/platform value."""
    where = _where(state, instruction)
    shown = []
    for key, default in arg_pairs(instruction, state.path, state.escape):
        key = _expand(key, state.environment(), state.escape, where, "ARG")
        if key in build_args:
            value: str | None = build_args[key]
        elif default is not None:
            value = _expand(default, state.environment(), state.escape, where, "ARG")
        else:
            value = state.meta.get(key)
        if value is not None:
            state.args[key] = value
        shown.append(key if value is None else f"{key}={value}")
    return _nop(state, "ARG " + " ".join(shown))


def _env(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    """ENV: every pair expanded with the environment before the instruction; replaced in place."""
    where = _where(state, instruction)
    before = state.environment()
    env = list(state.config.get("Env") or [])
    shown = []
    for raw_key, raw_value in name_value_pairs(instruction, state.escape, where):
        key = _expand(raw_key, before, state.escape, where, "ENV")
        value = _expand(raw_value, before, state.escape, where, "ENV")
        if not key:
            raise _fail(where, "ENV names can not be blank: expects key=value")
        env = _set_env(env, key, value)
        shown.append(f"{key}={value}")
    state.config["Env"] = env
    return _nop(state, "ENV " + " ".join(shown))


def _set_env(env: list[str], key: str, value: str) -> list[str]:
    for index, entry in enumerate(env):
        if entry.partition("=")[0] == key:
            return [*env[:index], f"{key}={value}", *env[index + 1 :]]
    return [*env, f"{key}={value}"]


def _label(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    env = state.environment()
    labels = dict(state.config.get("Labels") or {})
    shown = []
    for raw_key, raw_value in name_value_pairs(instruction, state.escape, where):
        key = _expand(raw_key, env, state.escape, where, "LABEL")
        if not key:
            raise _fail(where, f"LABEL names can not be blank: expects key=value, got {raw_key!r}")
        labels[key] = _expand(raw_value, env, state.escape, where, "LABEL")
        shown.append(f"{key}={labels[key]}")
    state.config["Labels"] = labels
    return _nop(state, "LABEL " + " ".join(shown))


def _command(state: StageState, instruction: Instruction) -> list[str]:
    """CMD/ENTRYPOINT's argv: the JSON form as is, else the stage's SHELL with the text."""
    if instruction.exec_form is not None:
        return list(instruction.exec_form)
    if not instruction.args:
        raise _fail(_where(state, instruction), f"{instruction.keyword} requires at least one argument")
    return [*state.shell, instruction.args]


def _cmd(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    state.config["Cmd"] = _command(state, instruction)
    state.cmd_set = state.cmd_set or bool(state.config["Cmd"])  # `CMD []` keeps the reset, as Docker
    return _nop(state, f"CMD {_go_strings(state.config['Cmd'])}")


def _entrypoint(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    """ENTRYPOINT; a CMD inherited from the base (none set in this stage yet) is dropped, as Docker."""
    state.config["Entrypoint"] = _command(state, instruction)
    if not state.cmd_set:
        state.config.pop("Cmd", None)
    return _nop(state, f"ENTRYPOINT {_go_strings(state.config['Entrypoint'])}")


def _expose(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    words = _split(instruction.args, state.environment(), state.escape, where, "EXPOSE")
    if not words:
        raise _fail(where, "EXPOSE requires at least one argument")
    ports = dict(state.config.get("ExposedPorts") or {})
    added: set[str] = set()
    for word in words:
        added.update(exposed_ports(word, where))
    for port in sorted(added):
        ports[port] = {}
    state.config["ExposedPorts"] = ports
    return _nop(state, "EXPOSE " + " ".join(sorted(added)))


def exposed_ports(word: str, where: str) -> list[str]:
    """`80`, `53/udp`, `8000-8001/tcp` (or `ip:host:container`): the `port/proto` keys."""
    spec, _, proto = word.rpartition(":")[2].partition("/")
    proto = (proto or "tcp").lower()
    low, dash, high = spec.partition("-")
    if proto not in ("tcp", "udp", "sctp") or not low.isdigit() or (dash and not high.isdigit()):
        raise _fail(where, f"invalid port {word!r}: expected port[-port][/tcp|udp|sctp]")
    first, last = int(low), int(high or low)
    if not 0 < first <= last <= 65535:
        raise _fail(where, f"invalid port range {word!r}")
    return [f"{port}/{proto}" for port in range(first, last + 1)]


def _user(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    user = _expand(instruction.args, state.environment(), state.escape, where, "USER")
    if not user:
        raise _fail(where, "USER requires exactly one argument")
    state.config["User"] = user
    return _nop(state, f"USER {user}")


def _workdir(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    """WORKDIR: relative to the previous one (cleaned); an absolute path is taken as written."""
    where = _where(state, instruction)
    path = _expand(instruction.args, state.environment(), state.escape, where, "WORKDIR")
    if not path:
        raise _fail(where, "WORKDIR requires exactly one argument")
    state.config["WorkingDir"] = workdir(state.config.get("WorkingDir") or "", path)
    return _nop(state, f"WORKDIR {state.config['WorkingDir']}")


def workdir(current: str, requested: str) -> str:
    if requested.startswith("/"):
        return requested
    cleaned = posixpath.normpath(posixpath.join("/", current, requested))
    return "/" + cleaned.lstrip("/")


def _volume(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    env = state.environment()
    if instruction.exec_form is not None:
        paths = [_expand(p, env, state.escape, where, "VOLUME") for p in instruction.exec_form]
    else:
        paths = _split(instruction.args, env, state.escape, where, "VOLUME")
    if not paths:
        raise _fail(where, "VOLUME requires at least one argument")
    volumes = dict(state.config.get("Volumes") or {})
    for path in paths:
        if not path.strip():
            raise _fail(where, "VOLUME specified can not be an empty string")
        volumes[path.strip()] = {}
    state.config["Volumes"] = volumes
    return _nop(state, f"VOLUME [{' '.join(p.strip() for p in paths)}]")


def _stopsignal(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    value = _expand(instruction.args, state.environment(), state.escape, where, "STOPSIGNAL")
    if not valid_signal(value):
        raise _fail(where, f"invalid stop signal {value!r}")
    state.config["StopSignal"] = value
    return _nop(state, f"STOPSIGNAL {value}")


def valid_signal(text: str) -> bool:
    """A number or a name with or without SIG (SIGRTMIN+3 too), as Docker's ParseSignal."""
    if text.isdigit():
        return 0 < int(text) < signal.NSIG
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return name in signal.Signals.__members__


def _healthcheck(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    state.config["Healthcheck"] = healthcheck(instruction, _where(state, instruction))
    return _nop(state, "HEALTHCHECK " + _go_health(state.config["Healthcheck"]))


def healthcheck(instruction: Instruction, where: str) -> dict[str, Any]:
    """HEALTHCHECK NONE, or [options] CMD command (JSON: CMD, shell text: CMD-SHELL)."""
    kind, _, rest = instruction.args.strip().partition(" ")
    kind, rest = kind.upper(), rest.strip()
    if kind == "NONE":
        if rest or instruction.flags:
            raise _fail(where, "HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind != "CMD":
        raise _fail(where, f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    if not rest:
        raise _fail(where, "Missing command after HEALTHCHECK CMD")
    exec_form = json_array(rest)
    config: dict[str, Any] = {"Test": ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        value = _health_duration(instruction.flag(flag), flag, where)
        if value:
            config[key] = value
    retries = instruction.flag("retries")
    if retries:
        if not re.fullmatch(r"[+-]?\d+", retries):
            raise _fail(where, f"--retries: invalid number {retries!r}")
        if int(retries) < 0:
            raise _fail(where, "--retries cannot be negative")
        if int(retries):
            config["Retries"] = int(retries)
    return config


def _health_duration(text: str | None, flag: str, where: str) -> int:
    if not text:
        return 0
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise _fail(where, f"--{flag}: {exc}") from None
    if value < 0 or 0 < value < _MIN_HEALTH_DURATION:
        raise _fail(where, f"Interval {flag!r} cannot be less than 1ms")
    return value


def parse_duration(text: str) -> int:
    """Go's duration syntax (`1m30s`, `1.5h`, `300ms`, `0`) in nanoseconds."""
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body == "0":
        return 0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(body):
        number = match.group(1)
        if match.start() != pos or number in ("", "."):
            break
        total += float(number) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body or pos != len(body):
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * round(total)


def _shell(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    where = _where(state, instruction)
    if instruction.exec_form is None:
        raise _fail(where, "SHELL requires the arguments to be in JSON form")
    if not instruction.exec_form:
        raise _fail(where, "SHELL requires at least one argument")
    state.shell = tuple(instruction.exec_form)
    state.config["Shell"] = list(instruction.exec_form)
    return _nop(state, f"SHELL [{' '.join(state.shell)}]")


def _onbuild(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    """ONBUILD: stored as text, run by the images built FROM this one."""
    where = _where(state, instruction)
    trigger = instruction.args.strip()
    keyword = trigger.split(None, 1)[0].upper() if trigger else ""
    if not keyword:
        raise _fail(where, "ONBUILD requires at least one argument")
    if keyword == "ONBUILD":
        raise _fail(where, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if keyword in _NOT_TRIGGERS:
        raise _fail(where, f"{keyword} isn't allowed as an ONBUILD trigger")
    if keyword not in INSTRUCTIONS:
        raise _fail(where, f"unknown instruction: {keyword}")
    state.onbuild.append(trigger)
    state.config["OnBuild"] = [*(state.config.get("OnBuild") or []), trigger]
    return _nop(state, f"ONBUILD {trigger}")


def _maintainer(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> str:
    if not instruction.args:
        raise _fail(_where(state, instruction), "MAINTAINER requires exactly one argument")
    state.author = instruction.args
    return _nop(state, f"MAINTAINER {instruction.args}")


_HANDLERS = {
    "ARG": _arg,
    "ENV": _env,
    "LABEL": _label,
    "CMD": _cmd,
    "ENTRYPOINT": _entrypoint,
    "EXPOSE": _expose,
    "USER": _user,
    "WORKDIR": _workdir,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "HEALTHCHECK": _healthcheck,
    "SHELL": _shell,
    "ONBUILD": _onbuild,
    "MAINTAINER": _maintainer,
}


# -- RUN and history ------------------------------------------------------------------------------


def run_command(state: StageState, instruction: Instruction) -> tuple[str, ...]:
    """RUN's argv: the exec form as is, or the shell form through the stage's SHELL."""
    if instruction.exec_form is not None:
        if not instruction.exec_form:
            raise _fail(_where(state, instruction), "RUN requires at least one argument")
        return instruction.exec_form
    if not instruction.args:
        raise _fail(_where(state, instruction), "RUN requires at least one argument")
    if instruction.heredocs:
        return (*state.shell, _heredoc_script(instruction))
    return (*state.shell, instruction.args)


def _heredoc_script(instruction: Instruction) -> str:
    """`RUN <<EOF` alone runs the body as the script (a `#!` line picks the interpreter); otherwise
    the shell gets the command line followed by the bodies, and does the here-documents itself."""
    first = instruction.heredocs[0]
    if len(instruction.heredocs) == 1 and re.fullmatch(
        r"<<-?\s*(['\"]?)" + re.escape(first.name) + r"\1", instruction.args.strip()
    ):
        if first.content.startswith("#!"):
            interpreter = first.content.splitlines()[0][2:].strip()
            return f"{interpreter} <<'{first.name}'\n{first.content}{first.name}\n"
        return first.content
    bodies = "".join(f"{doc.content}{doc.name}\n" for doc in instruction.heredocs)
    return f"{instruction.args}\n{bodies}"


def history_text(instruction: Instruction, state: StageState) -> str:
    """The `created_by` of the history entry, as the classic builder writes it (`/bin/sh -c #(nop)  CMD
    ["nginx"]`, `RUN |2 A=1 B=2 /bin/sh -c make` with the build args used) — also part of the cache key."""
    if state.history is not None and state.history[0] == instruction:
        return state.history[1]
    if instruction.keyword == "RUN":
        return _run_history(state, instruction)
    if instruction.keyword in ("COPY", "ADD"):
        return _copy_history(state, instruction)
    trial = copy.deepcopy(state)  # not applied yet: what applying it would record
    apply(trial, instruction, trial.build_args)
    return trial.history[1] if trial.history else ""


def _run_history(state: StageState, instruction: Instruction) -> str:
    """`|N K=V ... argv`: the ARG values RUN sees (not those an ENV overrides), sorted."""
    env_keys = {e.partition("=")[0] for e in state.config.get("Env") or []}
    used = sorted(f"{k}={v}" for k, v in state.args.items() if k not in env_keys)
    argv = " ".join(run_command(state, instruction))
    return f"|{len(used)} {' '.join(used)} {argv}" if used else argv


def _copy_history(state: StageState, instruction: Instruction) -> str:
    where = _where(state, instruction)
    words = _split(instruction.args, state.environment(), state.escape, where, instruction.keyword)
    flags = [f"--{k}" if v is None else f"--{k}={v}" for k, v in instruction.flags]
    docs = [
        f"<<{d.name}:sha256:{hashlib.sha256(d.content.encode()).hexdigest()}" for d in instruction.heredocs
    ]
    return _nop(state, " ".join([instruction.keyword, *flags, *words, *docs]), spaces=" ")


def _nop(state: StageState, text: str, spaces: str = "  ") -> str:
    """The classic builder's comment-only step: `<shell> #(nop)  TEXT`."""
    return f"{' '.join(state.shell)} #(nop){spaces}{text}"


def _go_strings(values: Sequence[str]) -> str:
    """Go's %q of a []string: `["a" "b c"]`."""
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def _go_health(config: Mapping[str, Any]) -> str:
    """Go's %q of the HealthConfig pointer, as Docker's history shows it."""
    durations = [
        json.dumps(go_duration(config.get(k, 0)))
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")
    ]
    return f"&{{{_go_strings(config['Test'])} {' '.join(durations)} {_go_rune(config.get('Retries', 0))}}}"


def go_duration(ns: int) -> str:
    """Go's Duration.String(): `0s`, `500ms`, `1.5s`, `1m30s`, `1h0m0s`."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1000:
        return f"{sign}{ns}ns"
    if ns < 10**9:
        unit, scale = ("µs", 10**3) if ns < 10**6 else ("ms", 10**6)
        return f"{sign}{_trim(ns, scale)}{unit}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = f"{_trim(rest, 10**9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    return f"{sign}{minutes}m{seconds}" if minutes else f"{sign}{seconds}"


def _trim(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    digits = len(str(scale)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".") if frac else str(whole)


def _go_rune(number: int) -> str:
    """Go's %q of an int (a rune literal), as in Docker's HEALTHCHECK history: `'\\x03'`."""
    named = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"}
    if number in named:
        return f"'{named[number]}'"
    if 0x20 <= number < 0x7F:
        return f"'{chr(number)}'"
    return f"'\\x{number:02x}'" if number < 0x100 else f"'\\u{number:04x}'"
