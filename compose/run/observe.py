"""A project's containers as the engine lists them. CONTRACT (owner: engineer R1).

Found by Compose's labels (compose/labels.py), never by name: a renamed or foreign container with the
same name is not ours. Records are engine.api's container dicts (id, name, state, labels, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from compose.labels import CONFIG_HASH, CONTAINER_NUMBER, ONEOFF, PROJECT, SERVICE, project_filter

if TYPE_CHECKING:  # the planner is loaded only where records become Observed (ps, logs, exec need not)
    from compose.plan.converge import Observed


def project_containers(
    engine: Any, project: str, *, services: Sequence[str] = (), all: bool = True, oneoff: bool | None = False
) -> list[dict[str, Any]]:
    """The project's containers (stopped ones too unless `all=False`), of `services` if given, sorted by
    service then number; one-off (`run`) containers only with oneoff=True/None."""
    found = engine.list_containers(all=all, labels=project_filter(project, oneoff=oneoff))
    wanted = set(services)
    mine = [r for r in found if not wanted or _label(r, SERVICE) in wanted]
    return sorted(mine, key=_sort_key)


def as_observed(record: dict[str, Any]) -> Observed:
    """The planner's view of a record (service, number, config hash, image id, state, oneoff)."""
    from compose.plan.converge import Observed

    return Observed(
        id=record["id"],
        name=record["name"],
        service=_label(record, SERVICE),
        number=container_number(record),
        config_hash=_label(record, CONFIG_HASH),
        image_id=record.get("image_id") or "",
        state=record.get("state") or "created",
        oneoff=_label(record, ONEOFF) == "True",
    )


def project_names(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """Every project that has containers under this state root: name -> its records (`pycompose ls`)."""
    projects: dict[str, list[dict[str, Any]]] = {}
    for record in engine.list_containers(all=True, labels={PROJECT: None}):
        projects.setdefault(_label(record, PROJECT), []).append(record)
    return {name: sorted(records, key=_sort_key) for name, records in sorted(projects.items())}


def container_number(record: dict[str, Any]) -> int:
    """The `container-number` label; 0 when missing or garbled (the planner removes such containers)."""
    try:
        return int(_label(record, CONTAINER_NUMBER) or 0)
    except ValueError:
        return 0


def _label(record: dict[str, Any], key: str) -> str:
    return (record.get("labels") or {}).get(key, "")


def _sort_key(record: dict[str, Any]) -> tuple[str, int, str]:
    return (_label(record, SERVICE), container_number(record), record["name"])
