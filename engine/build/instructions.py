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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.build.dockerfile import Dockerfile, Instruction


@dataclass(frozen=True, slots=True)
class Stage:
    """One FROM ... up to the next FROM."""

    index: int
    name: str | None  # `AS name` (lower case), else None
    base: str  # the expanded FROM argument: an image reference, "scratch", or an earlier stage's name/index
    platform: str | None  # --platform, expanded
    instructions: tuple[Instruction, ...]
    depends_on: tuple[
        int, ...
    ]  # earlier stages it uses: as its base or through COPY --from / RUN --mount from
    line: int


@dataclass(frozen=True, slots=True)
class BuildPlan:
    """The stages needed for the target, in an order that respects their dependencies."""

    stages: tuple[Stage, ...]
    target: int  # index of the stage whose image is the result
    global_args: tuple[tuple[str, str | None], ...]
    unused_args: tuple[str, ...]  # build args no ARG declares (warned about)


def plan(dockerfile: Dockerfile, build_args: Mapping[str, str], target: str | None = None) -> BuildPlan:
    """Stages with their bases expanded (global ARGs), dependencies, and only what `target` needs."""
    raise NotImplementedError


@dataclass
class StageState:
    """What a stage carries from one instruction to the next."""

    config: dict[str, Any]  # the OCI image config's `config` section (Env, Cmd, Entrypoint, ...)
    args: dict[str, str] = field(default_factory=dict)  # the stage's ARGs in scope with their values
    shell: tuple[str, ...] = ("/bin/sh", "-c")
    onbuild: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """The variables for expansion and for RUN: ARGs, then the config's Env over them."""
        raise NotImplementedError


def start_stage(
    base_config: Mapping[str, Any] | None, stage: Stage, plan: BuildPlan, build_args: Mapping[str, str]
) -> StageState:
    """The state after FROM: the base image's config (or empty for scratch), global ARGs not yet in scope."""
    raise NotImplementedError


def apply(state: StageState, instruction: Instruction, build_args: Mapping[str, str]) -> bool:
    """Apply ARG and every config-changing instruction to `state`; True if it was one (no filesystem
    work), False for RUN, COPY and ADD (the builder's). Raises DockerfileError for invalid arguments."""
    raise NotImplementedError


def run_command(state: StageState, instruction: Instruction) -> tuple[str, ...]:
    """RUN's argv: the exec form as is, or the shell form through the stage's SHELL."""
    raise NotImplementedError


def history_text(instruction: Instruction, state: StageState) -> str:
    """The `created_by` of the history entry, as the classic builder writes it (`/bin/sh -c #(nop)  CMD
    ["nginx"]`, `RUN |2 A=1 B=2 /bin/sh -c make` with the build args used) — also part of the cache key."""
    raise NotImplementedError


def onbuild_triggers(base_config: Mapping[str, Any] | None) -> Sequence[str]:
    """The base image's ONBUILD triggers, to be parsed and run after FROM."""
    raise NotImplementedError
