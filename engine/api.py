"""The one door from the Compose half into the engine.

`compose/` never opens the state database, the store or a registry connection itself: it opens an `Engine`
on a state root and calls these typed operations. Nothing here knows about services or projects; each
method delegates to the module that owns the work (store, archive, registry) and adds no policy of its own,
so the CLI and later the executor see one small, stable surface.

Imports are lazy: opening the engine for `image ls` must not pay for httpx or zstandard.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO

from engine.errors import ImageNotFound

if TYPE_CHECKING:
    from collections.abc import Iterator

    from engine.build.builder import BuildProgress, BuildRequest
    from engine.containers.logs import LogRecord
    from engine.containers.manager import ContainerManager
    from engine.containers.spec import ContainerSpec, PortBinding
    from engine.images.store import ImageStore, PruneReport, RemoveReport
    from engine.images.types import Image, Platform
    from engine.net.manager import NetworkManager
    from engine.net.types import Network, NetworkSpec, PublishedPort
    from engine.state.root import StateRoot
    from engine.volumes import VolumeStore

# The value types and helpers the Compose half may use, re-exported here so that `compose/` imports from
# this one door only; resolved lazily (PEP 562) so `import engine.api` stays cheap for the CLI.
_EXPORTS = {
    "ContainerSpec": "engine.containers.spec",
    "Mount": "engine.containers.spec",
    "Process": "engine.containers.spec",
    "Resources": "engine.containers.spec",
    "Security": "engine.containers.spec",
    "resolve_args": "engine.containers.cmdline",
    "Image": "engine.images.types",
    "Platform": "engine.images.types",
    "parse_reference": "engine.images.reference",
    "looks_like_image_id": "engine.images.reference",
    "make_progress": "engine.images.progress",
    "PlainProgress": "engine.images.progress",
    "Volume": "engine.volumes",
    "VolumeStore": "engine.volumes",
    "labels_match": "engine.volumes",
    "NetworkAttachment": "engine.containers.spec",
    "PortBinding": "engine.containers.spec",
    "NetworkSpec": "engine.net.types",
    "IpamPool": "engine.net.types",
    "Network": "engine.net.types",
    "PublishedPort": "engine.net.types",
    "BuildRequest": "engine.build.builder",
    "BuildProgress": "engine.build.builder",
    "frozen": "engine.frozen",
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.api' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


ARCHIVE_FORMATS = ("docker", "oci")
_ADDED_BY_TAG = (
    "SELECT images.added AS pulled FROM tags JOIN images ON images.id = tags.image_id WHERE tags.name = ?"
)
_UPSERT_PULL = (
    "INSERT INTO pulls(name, pulled) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET pulled = excluded.pulled"
)


class Engine:
    """The engine on one state root. Open with `Engine.open()`; usable as a context manager."""

    def __init__(self, root: StateRoot) -> None:
        self.root = root
        self._store: ImageStore | None = None
        self._volumes: VolumeStore | None = None
        self._containers: ContainerManager | None = None
        self._networks: NetworkManager | None = None
        self._registry = None

    @classmethod
    def open(cls, root: str | None = None) -> Engine:
        """Open (creating, repairing) the state root: `root`, else $PYCOMPOSE_ROOT, else the default."""
        from engine.state.root import StateRoot, resolve_root

        return cls(StateRoot.open(resolve_root(root)))

    def close(self) -> None:
        """Release connections; the state on disk is already consistent after every call."""
        if self._registry is not None and hasattr(self._registry, "close"):
            self._registry.close()
        self._registry = None
        close = getattr(self.root, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def volumes(self) -> VolumeStore:
        """Named volumes of this state root."""
        if self._volumes is None:
            from engine.volumes import VolumeStore

            self._volumes = VolumeStore(self.root)
        return self._volumes

    @property
    def store(self) -> ImageStore:
        if self._store is None:
            from engine.containers import records
            from engine.images.store import ImageStore

            # an image is "in use" while a container row names it (image rm, prune)
            self._store = records.bind_image_hooks(ImageStore(self.root), self.root.db)
        return self._store

    @property
    def containers(self) -> ContainerManager:
        """Container lifecycle on this state root (imports the runtime only when used)."""
        if self._containers is None:
            from engine.containers.manager import ContainerManager

            self._containers = ContainerManager(self.root)
        return self._containers

    @property
    def networks(self) -> NetworkManager:
        """Networks of this state root (pyroute2 is imported only when the kernel is touched)."""
        if self._networks is None:
            from engine.net.manager import NetworkManager
            from engine.supervise.client import SupervisedBridges

            self._networks = NetworkManager(self.root, bridges=SupervisedBridges(self.root))
        return self._networks

    def _registry_client(self):
        if self._registry is None:
            from engine.images.registry import RegistryClient

            self._registry = RegistryClient()
        return self._registry

    # -- images in the store ------------------------------------------------------------------------------

    def list_images(self, all: bool = True) -> list[Image]:
        """Every image; `all=False` hides untagged build intermediates (`image ls` without -a)."""
        return self.store.list_images(all=all)

    def inspect_image(self, ref: str) -> Image:
        """The image a reference, full id or unambiguous id prefix names; ImageNotFound otherwise."""
        return self.store.resolve(ref)

    def image_exists(self, ref: str) -> bool:
        try:
            self.store.resolve(ref)
        except ImageNotFound:
            return False
        return True

    def remove_image(self, ref: str, force: bool = False) -> RemoveReport:
        """Docker semantics: a tag is untagged; the image goes when nothing names it (or with force)."""
        return self.store.remove(ref, force=force)

    def prune_images(self, all: bool = False) -> PruneReport:
        """Remove dangling images (untagged), or with `all` every image nothing uses."""
        return self.store.prune(all=all)

    def tag_image(self, source: str, target: str) -> Image:
        self.store.tag(source, target)
        return self.store.resolve(target)

    def build_image(self, request: BuildRequest, progress: BuildProgress | None = None) -> Image:
        """Build a Dockerfile (engine/build): steps through the layer cache, the result tagged."""
        from engine.build.builder import Builder

        return Builder(self.root).build(request, progress)

    # -- containers ---------------------------------------------------------------------------------------

    def create_container(self, spec: ContainerSpec) -> dict:
        """Record and prepare a container (not started); returns its row (see containers.records)."""
        return self.containers.create(spec)

    def warm_supervisor(self) -> None:
        """Launch this root's supervisor unless one answers or was launched, without waiting for it (the
        caller will start containers soon; the first start waits)."""
        self.containers.warm_supervisor()

    def start_container(self, ref: str) -> dict:
        return self.containers.start(ref)

    def stop_container(self, ref: str, timeout: float | None = None) -> dict:
        return self.containers.stop(ref, timeout)

    def kill_container(self, ref: str, signal: int | str = "SIGKILL") -> None:
        self.containers.kill(ref, signal)

    def pause_container(self, ref: str) -> None:
        self.containers.pause(ref)

    def unpause_container(self, ref: str) -> None:
        self.containers.unpause(ref)

    def remove_container(self, ref: str, force: bool = False, volumes: bool = False) -> str:
        """Delete the container and everything it held; returns its id."""
        return self.containers.remove(ref, force=force, volumes=volumes)

    def get_container(self, ref: str) -> dict:
        """The container's row by id, unique id prefix or name; ContainerNotFound otherwise."""
        return self.containers.get(ref)

    def list_containers(self, all: bool = False, labels: dict[str, str | None] | None = None) -> list[dict]:
        return self.containers.list(all=all, labels=labels)

    def inspect_container(self, ref: str) -> dict:
        return self.containers.inspect(ref)

    def container_logs(self, ref: str, **options) -> Iterator[LogRecord]:
        """follow, tail, since, until, timestamps as in `docker logs`."""
        return self.containers.logs(ref, **options)

    def exec_container(self, ref: str, args: Sequence[str], **options) -> int:
        """Run a command in the running container; env, user, workdir, tty, stdio; returns its exit code."""
        return self.containers.exec(ref, args, **options)

    def container_stats(self, ref: str, interval: float = 0.5) -> dict:
        return self.containers.stats(ref, interval)

    def container_top(self, ref: str) -> dict:
        return self.containers.top(ref)

    def container_port(
        self, ref: str, port: int | None = None, protocol: str | None = None
    ) -> list[PublishedPort]:
        """The published ports of a container (`docker port`), optionally of one private port/protocol."""
        found = self.networks.ports_of(self.containers.get(ref)["id"])
        wanted = [p for p in found if port is None or p.container_port == port]
        return [p for p in wanted if protocol is None or p.protocol == protocol]

    def check_ports(self, bindings: Sequence[PortBinding]) -> None:
        """PortInUse for the first fixed host port already taken (`up` asks before starting anything)."""
        self.networks.check_ports(bindings)

    # -- crash repair (issue 7: a CLI killed during a create or a remove) ----------------------------------

    def container_intact(self, ref: str) -> bool:
        """Whether the container's create finished and no remove began: its directory exists (create makes
        it after registering the networks, remove deletes it before unregistering them). A row without it
        cannot start; the caller removes it and creates it again."""
        from engine.containers.rootfs import container_paths

        record = self.get_container(ref)
        return container_paths(self.root, record["id"]).base.is_dir()

    # -- attached one-offs, attach and cp (issue 7: run, exec, cp, attach) ------------------------------

    def run_container_attached(
        self,
        ref: str,
        *,
        stdio: tuple[int, int, int] = (0, 1, 2),
        tty: bool = False,
        sig_proxy: bool = True,
        remove: bool = False,
    ) -> int:
        """Start a created container on `stdio` (a relayed pty with `tty`) under a waiter process of ours,
        not the supervisor; its exit code; `remove` deletes it after (engine/containers/attach: why)."""
        from engine.containers import attach

        return attach.run_attached(
            self.containers, ref, stdio=stdio, tty=tty, sig_proxy=sig_proxy, remove=remove
        )

    def exec_container_tty(self, ref: str, args: Sequence[str], **options) -> int:
        """`exec -t`: like exec_container, the command on a new pty relayed to `stdio` (raw mode)."""
        from engine.containers import attach

        return attach.exec_with_tty(self.containers, ref, args, **options)

    def attach_container(self, ref: str, write, *, sig_proxy: bool = True) -> int:  # type: ignore[no-untyped-def]
        """Follow a running container's output from now on (`write(stream, text)`); its exit code."""
        from engine.containers import attach

        return attach.follow_output(self.containers, ref, write, sig_proxy=sig_proxy)

    def copy_from_container(self, ref: str, path: str, out: BinaryIO, *, follow_links: bool = False) -> None:
        """A tar stream of `path` inside the container (running or stopped), docker cp's layout."""
        from engine.containers import copy

        copy.copy_out(self.containers, ref, path, out, follow_links=follow_links)

    def copy_to_container(self, ref: str, path: str, stream: BinaryIO, *, archive: bool = False) -> None:
        """Place a tar stream (as `pack_path` makes) at `path` inside the container, docker cp's rules."""
        from engine.containers import copy

        copy.copy_in(self.containers, ref, path, stream, archive=archive)

    @staticmethod
    def pack_path(path: str, out: BinaryIO, *, follow_links: bool = False) -> None:
        """The host side of `cp SRC container:DEST`: `path` as the tar stream copy_to_container takes."""
        from engine.containers import copy

        copy.pack(path, out, follow_links=follow_links)

    @staticmethod
    def unpack_archive(stream: BinaryIO, dest: str, *, archive: bool = False) -> None:
        """The host side of `cp container:SRC DEST`: place a copy_from_container stream at `dest`."""
        from engine.containers import copy

        copy.unpack(stream, dest, archive=archive)

    # -- networks -----------------------------------------------------------------------------------------

    def create_network(self, spec: NetworkSpec) -> Network:
        return self.networks.create_network(spec)

    def remove_network(self, ref: str) -> str:
        """Returns the removed network's name; NetworkInUse while a container is attached."""
        return self.networks.remove_network(ref)

    def list_networks(self) -> list[Network]:
        return self.networks.list_networks()

    def get_network(self, ref: str) -> Network:
        return self.networks.get_network(ref)

    def inspect_network(self, ref: str) -> dict:
        return self.networks.inspect_network(ref)

    def prune_networks(self) -> list[str]:
        """Remove every network no container is attached to; returns their names."""
        return self.networks.prune_networks()

    # -- volumes ------------------------------------------------------------------------------------------

    def create_volume(self, name: str | None = None, **options):
        """driver, driver_opts, labels as VolumeStore.create; no name makes an anonymous volume."""
        return self.volumes.create(name, **options)

    def list_volumes(self) -> list:
        return self.volumes.list()

    def inspect_volume(self, name: str) -> dict[str, object]:
        return self.volumes.inspect(name)

    def remove_volume(self, name: str, force: bool = False) -> bool:
        return self.volumes.remove(name, force=force)

    def prune_volumes(self, **options):
        return self.volumes.prune(**options)

    # -- offline ways in and out --------------------------------------------------------------------------

    def import_image(
        self,
        stream: BinaryIO,
        ref: str | None = None,
        changes: Sequence[str] = (),
        *,
        message: str | None = None,
        platform: str | Platform | None = None,
    ) -> Image:
        """A root filesystem tarball (plain, gzip or zstd) as a one-layer image, like `docker import`."""
        return self.store.import_rootfs(
            stream, ref, changes=tuple(changes), message=message, platform=_platform(platform)
        )

    def bootstrap_image(
        self,
        ref: str = "debian:bookworm-slim",
        *,
        mirror: str | None = None,
        variant: str | None = None,
        include: Sequence[str] = (),
        tag: str | None = None,
        no_cache: bool = False,
        cache_dir: str | None = None,
        log=None,
    ) -> Image:
        """`debian:<suite>[-slim]` built locally with mmdebstrap from the host's Debian mirror (no registry).

        Cached: an image already tagged with the same recipe key is returned as is; a cached tar is imported
        without rebuilding. `log` receives mmdebstrap's progress lines.
        """
        from pathlib import Path

        from engine.images import bootstrap as bs

        plan = bs.plan(ref, mirror=mirror, variant=variant, include=include, tag=tag)
        cache = Path(cache_dir) if cache_dir else bs.DEFAULT_CACHE
        return bs.bootstrap(self.store, plan, cache_dir=cache, no_cache=no_cache, log=log).image

    def load_images(self, stream: BinaryIO) -> list[str]:
        """Load a docker-archive or OCI layout tarball; returns the references (or ids) it brought."""
        from engine.images.archive import load_archive

        return load_archive(self.store, stream)

    def save_images(self, refs: Sequence[str], out: BinaryIO, format: str = "docker") -> None:
        """Write the images as one docker-archive (`docker load` accepts it) or OCI image layout."""
        from engine.errors import ArchiveError
        from engine.images.archive import save_archive

        if format not in ARCHIVE_FORMATS:
            wanted = ", ".join(ARCHIVE_FORMATS)
            raise ArchiveError(f"unknown archive format (want one of {wanted})", subject=format)
        for ref in refs:  # fail on an unknown name before writing a byte
            self.store.resolve(ref)
        save_archive(self.store, list(refs), out, format=format)

    # -- registries -----------------------------------------------------------------------------------------

    def pull_image(self, ref: str, platform: str | Platform | None = None, progress=None) -> Image:
        """Pull from the reference's registry (platform: this machine unless given); records the pull time."""
        image = self._registry_client().pull(self.store, ref, platform=_platform(platform), progress=progress)
        self._record_pull(ref)
        return image

    def push_image(self, ref: str, progress=None) -> str:
        """Push a stored image to the registry its reference names; returns the pushed manifest digest."""
        self.store.resolve(ref)
        return self._registry_client().push(self.store, ref, progress=progress)

    def last_pulled(self, ref: str) -> datetime | None:
        """When `ref` was last pulled (for pull_policy daily/weekly/every_<d>); None if never.

        An image that is in the store but was never pulled (imported, loaded) counts from when it arrived.
        """
        name = _canonical(ref)
        db = self.root.db
        row = db.query_one("SELECT pulled FROM pulls WHERE name = ?", (name,)) or db.query_one(
            _ADDED_BY_TAG, (name,)
        )
        value = _row_value(row, "pulled")
        return _parse_time(value) if value else None

    def _record_pull(self, ref: str) -> None:
        db = self.root.db
        now = datetime.now(UTC).isoformat()
        with db.transaction():
            db.execute(_UPSERT_PULL, (_canonical(ref), now))


def _platform(value: str | Platform | None) -> Platform | None:
    if value is None or not isinstance(value, str):
        return value
    from engine.images.manifest import parse_platform

    return parse_platform(value)


def _canonical(ref: str) -> str:
    from engine.images.reference import parse_reference

    return parse_reference(ref).canonical


def _row_value(row, key: str):
    if row is None:
        return None
    try:
        return row[key]
    except (KeyError, IndexError, TypeError):
        return row[0]


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
