"""A project's containers as the engine lists them. CONTRACT (owner: engineer R1).

Found by Compose's labels (compose/labels.py), never by name: a renamed or foreign container with the
same name is not ours. Records are engine.api's container dicts (id, name, state, labels, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from compose.plan.converge import Observed


def project_containers(
    engine: Any, project: str, *, services: Sequence[str] = (), all: bool = True, oneoff: bool | None = False
) -> list[dict[str, Any]]:
    """The project's containers (stopped ones too unless `all=False`), of `services` if given, sorted by
    service then number; one-off (`run`) containers only with oneoff=True/None."""
    raise NotImplementedError


def as_observed(record: dict[str, Any]) -> Observed:
    """The planner's view of a record (service, number, config hash, image id, state, oneoff)."""
    raise NotImplementedError


def project_names(engine: Any) -> dict[str, list[dict[str, Any]]]:
    """Every project that has containers under this state root: name -> its records (`pycompose ls`)."""
    raise NotImplementedError
