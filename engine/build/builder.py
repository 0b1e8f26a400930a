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

from dataclasses import dataclass
from typing import Protocol

from engine.images.types import Image
from engine.state.root import StateRoot


@dataclass(frozen=True, slots=True)
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


class Builder:
    def __init__(self, root: StateRoot) -> None:
        self.root = root

    def build(self, request: BuildRequest, progress: BuildProgress | None = None) -> Image:
        """Build and tag; raises BuildError (with the step, exit code and last output lines) on failure."""
        raise NotImplementedError
