"""Value types the image modules hand each other and the engine API hands the Compose half."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from engine.frozen import frozen


@frozen
class Platform:
    """An OCI platform; `variant` only matters for arm."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@frozen
class Descriptor:
    """Points at a blob: what it is, its digest and size (OCI content descriptor)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)


@frozen
class Layer:
    """One unpacked layer as the store knows it."""

    chain_id: str
    diff_id: str
    blob_digest: str | None
    path: str
    size: int


@frozen
class Image:
    """An image in the store: id is the config digest."""

    id: str
    manifest_digest: str
    manifest_media_type: str
    created: str | None
    size: int
    platform: Platform
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]
