"""The labels Compose puts on what it creates, so later commands find and diff them.

docker compose marks every container, network and volume it creates with `com.docker.compose.*`
labels; `ps`, `down`, `up` (what exists, what changed) and other tools (Portainer, scripts using
`docker ps --filter label=...`) read them. We write the same keys with the same value formats, so a user's
scripts keep working. The engine stores labels as plain data; only this module knows what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from compose import __version__
from engine.api import frozen

PREFIX = "com.docker.compose."
PROJECT = PREFIX + "project"
SERVICE = PREFIX + "service"
CONTAINER_NUMBER = PREFIX + "container-number"
ONEOFF = PREFIX + "oneoff"
CONFIG_HASH = PREFIX + "config-hash"
DEPENDS_ON = PREFIX + "depends_on"
WORKING_DIR = PREFIX + "project.working_dir"
CONFIG_FILES = PREFIX + "project.config_files"
ENVIRONMENT_FILE = PREFIX + "project.environment_file"
VERSION = PREFIX + "version"
IMAGE = PREFIX + "image"
NETWORK = PREFIX + "network"
VOLUME = PREFIX + "volume"
SLUG = PREFIX + "slug"  # one-off (`run`) containers: docker compose's random suffix

Labels = Mapping[str, str] | None


@frozen
class ProjectIdentity:
    """What every label set of one project repeats: its name, directory and files."""

    name: str
    working_dir: str
    config_files: tuple[str, ...]
    environment_files: tuple[str, ...] = ()


@frozen
class DependencyLabel:
    """One `depends_on` entry as the label lists it."""

    service: str
    condition: str = "service_started"
    restart: bool = False


def container_labels(
    project: ProjectIdentity,
    service: str,
    number: int,
    *,
    config_hash: str,
    depends_on: Sequence[DependencyLabel] = (),
    oneoff: bool = False,
    image_digest: str | None = None,
    slug: str | None = None,
    user_labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The labels of container `number` of `service`: the user's labels, then Compose's (which win, as
    in docker compose: a user cannot fake another project's container by labelling it)."""
    labels = dict(user_labels or {})
    labels.update(_project_labels(project))
    labels.update(
        {
            SERVICE: service,
            CONTAINER_NUMBER: str(number),
            ONEOFF: "True" if oneoff else "False",
            CONFIG_HASH: config_hash,
            DEPENDS_ON: format_depends_on(depends_on),
        }
    )
    if image_digest:
        labels[IMAGE] = image_digest
    if slug:
        labels[SLUG] = slug
    return labels


def network_labels(project: ProjectIdentity, key: str, user_labels: Labels = None) -> dict[str, str]:
    """Labels of the network declared as `key` under `networks:` (the key, not its resolved name)."""
    return {**(user_labels or {}), PROJECT: project.name, NETWORK: key, VERSION: __version__}


def volume_labels(project: ProjectIdentity, key: str, user_labels: Labels = None) -> dict[str, str]:
    """Labels of the volume declared as `key` under `volumes:`."""
    return {**(user_labels or {}), PROJECT: project.name, VOLUME: key, VERSION: __version__}


def format_depends_on(entries: Iterable[DependencyLabel]) -> str:
    """`db:service_healthy:false,cache:service_started:true`: docker compose's `service:condition:restart`."""
    return ",".join(f"{d.service}:{d.condition}:{'true' if d.restart else 'false'}" for d in entries)


def parse_depends_on(value: str) -> list[DependencyLabel]:
    """The inverse of format_depends_on; entries written by older tools (`db` alone) get the defaults."""
    entries = []
    for item in filter(None, value.split(",")):
        service, _, rest = item.partition(":")
        condition, _, restart = rest.partition(":")
        entries.append(DependencyLabel(service, condition or "service_started", restart == "true"))
    return entries


def project_filter(
    project: str, service: str | None = None, *, oneoff: bool | None = False
) -> dict[str, str]:
    """The label filter that selects a project's (or one service's) containers: `one-off` ones excluded
    unless asked for, as `docker compose ps` does."""
    selector = {PROJECT: project}
    if service is not None:
        selector[SERVICE] = service
    if oneoff is not None:
        selector[ONEOFF] = "True" if oneoff else "False"
    return selector


def _project_labels(project: ProjectIdentity) -> dict[str, str]:
    labels = {
        PROJECT: project.name,
        WORKING_DIR: project.working_dir,
        CONFIG_FILES: ",".join(project.config_files),
        VERSION: __version__,
    }
    if project.environment_files:
        labels[ENVIRONMENT_FILE] = ",".join(project.environment_files)
    return labels
