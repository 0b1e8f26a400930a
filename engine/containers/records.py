"""The `containers` table (schema v4): one row per container, shared by the CLI, manager and supervisor.

Every write runs in its own `db.transaction(durable=False)` (BEGIN IMMEDIATE), so a supervisor recording
an exit and a CLI removing the container never interleave half-way. Not durable (no fsync of its own, see
Database.transaction): which containers exist and run is runtime state that a power loss makes moot; it
may undo the last seconds of changes (a container removed just before comes back as exited), never the
named volumes or images, whose rows stay durable. Rows come back as plain dicts with the column
names of LAYOUT.md, except that `labels` is decoded to a dict and `oom_killed` / `stopped_by_user` are
bools; `spec` stays the JSON text (`ContainerSpec.from_json` decodes it) so this module needs no spec.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from engine.errors import ContainerConflict, ContainerNotFound
from engine.state.db import Database

STATES = ("created", "running", "paused", "restarting", "exited", "dead")
MIN_PREFIX = 4

_COLUMNS = (
    "id, name, image_id, spec, labels, created, state, pid, started_at, finished_at, exit_code,"
    " oom_killed, restart_count, stopped_by_user, health, log_path"
)


def _to_dict(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["labels"] = json.loads(record["labels"] or "{}")
    record["oom_killed"] = bool(record["oom_killed"])
    record["stopped_by_user"] = bool(record["stopped_by_user"])
    return record


def insert(
    db: Database,
    *,
    id: str,
    name: str,
    image_id: str,
    spec_json: str,
    labels: dict[str, str],
    created: str,
) -> dict[str, Any]:
    """Add a container in state `created`; a taken name or id is a ContainerConflict, not a crash."""
    try:
        with db.transaction(durable=False) as conn:
            conn.execute(
                "INSERT INTO containers (id, name, image_id, spec, labels, created)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (id, name, image_id, spec_json, json.dumps(labels, sort_keys=True), created),
            )
    except sqlite3.IntegrityError as exc:
        text = str(exc)
        if "containers.name" in text:
            raise ContainerConflict(f"the container name {name!r} is already in use", subject=name) from exc
        if "FOREIGN KEY" in text:
            raise ContainerConflict(f"image {image_id} is not in the store", subject=name) from exc
        raise ContainerConflict(f"container id {id} already exists", subject=name) from exc
    record = get(db, id)
    assert record is not None
    return record


def get(db: Database, id_or_name: str) -> dict[str, Any] | None:
    """By full id, then exact name, then unique id prefix of at least MIN_PREFIX characters.

    An ambiguous prefix raises ContainerConflict (docker: "multiple IDs found") rather than guessing.
    """
    row = db.query_one(f"SELECT {_COLUMNS} FROM containers WHERE id = ?", (id_or_name,))
    if row is None:
        row = db.query_one(f"SELECT {_COLUMNS} FROM containers WHERE name = ?", (id_or_name,))
    if row is None and len(id_or_name) >= MIN_PREFIX and _is_hex(id_or_name):
        rows = db.query(
            f"SELECT {_COLUMNS} FROM containers WHERE substr(id, 1, ?) = ? LIMIT 2",
            (len(id_or_name), id_or_name),
        )
        if len(rows) > 1:
            raise ContainerConflict("multiple containers match this id prefix", subject=id_or_name)
        row = rows[0] if rows else None
    return None if row is None else _to_dict(row)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def list_all(db: Database, *, labels: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """All containers, oldest first; `labels` keeps those carrying every key (and value, unless None)."""
    records = [_to_dict(r) for r in db.query(f"SELECT {_COLUMNS} FROM containers ORDER BY created, id")]
    if not labels:
        return records
    return [r for r in records if _labels_match(r["labels"], labels)]


def _labels_match(have: dict[str, str], want: dict[str, str | None]) -> bool:
    return all(key in have and (value is None or have[key] == value) for key, value in want.items())


def _update(db: Database, id: str, assignments: str, params: tuple[Any, ...]) -> None:
    with db.transaction(durable=False) as conn:
        cursor = conn.execute(f"UPDATE containers SET {assignments} WHERE id = ?", (*params, id))
        if cursor.rowcount == 0:
            raise ContainerNotFound("no such container", subject=id)


def record_started(db: Database, id: str, pid: int, started_at: str) -> None:
    """The process runs: state running, its pid; the previous exit code and OOM flag no longer hold."""
    _update(
        db,
        id,
        "state = 'running', pid = ?, started_at = ?, exit_code = NULL, oom_killed = 0",
        (pid, started_at),
    )


def record_exited(db: Database, id: str, exit_code: int, oom_killed: bool, finished_at: str) -> None:
    """The process ended (pid cleared); whether it restarts is the supervisor's next write."""
    _update(
        db,
        id,
        "state = 'exited', pid = NULL, exit_code = ?, oom_killed = ?, finished_at = ?",
        (exit_code, int(oom_killed), finished_at),
    )


def set_state(db: Database, id: str, state: str) -> None:
    """Only the six docker states; anything else is a programming error caught here, not in inspect."""
    if state not in STATES:
        raise ValueError(f"unknown container state {state!r}")
    _update(db, id, "state = ?", (state,))


def set_stopped_by_user(db: Database, id: str, value: bool) -> None:
    """A user stop keeps `unless-stopped`/`always` from restarting it until the next explicit start."""
    _update(db, id, "stopped_by_user = ?", (int(value),))


def bump_restart(db: Database, id: str) -> int:
    """Count one more restart and return the new count (read and write in one transaction)."""
    with db.transaction(durable=False) as conn:
        cursor = conn.execute("UPDATE containers SET restart_count = restart_count + 1 WHERE id = ?", (id,))
        if cursor.rowcount == 0:
            raise ContainerNotFound("no such container", subject=id)
        return int(conn.execute("SELECT restart_count FROM containers WHERE id = ?", (id,)).fetchone()[0])


def set_health(db: Database, id: str, health_json: str | None) -> None:
    """JSON of supervise.health's state, or None for a container without a healthcheck."""
    _update(db, id, "health = ?", (health_json,))


def set_log_path(db: Database, id: str, path: str) -> None:
    _update(db, id, "log_path = ?", (path,))


def delete(db: Database, id: str) -> None:
    """Remove the row (the caller has already released the mounts, cgroup and volumes)."""
    with db.transaction(durable=False) as conn:
        if conn.execute("DELETE FROM containers WHERE id = ?", (id,)).rowcount == 0:
            raise ContainerNotFound("no such container", subject=id)


def containers_using(db: Database, image_id: str) -> list[str]:
    """Ids of containers created from the image: while any exists the image is "in use"."""
    rows = db.query("SELECT id FROM containers WHERE image_id = ? ORDER BY id", (image_id,))
    return [row[0] for row in rows]


def layers_in_use(db: Database) -> set[str]:
    """Chain ids of every layer some container's image stacks (they are its overlayfs lower dirs)."""
    rows = db.query(
        "SELECT DISTINCT il.chain_id FROM image_layers il JOIN containers c ON c.image_id = il.image_id"
    )
    return {row[0] for row in rows}


def bind_image_hooks(store: Any, db: Database) -> Any:
    """Answer ImageStore's `containers_using` / `layers_used_by_containers` hooks from this table.

    Kept here (not a subclass in manager.py) so `image rm` gets the check without importing the runtime.
    """
    store.containers_using = lambda image_id: containers_using(db, image_id)
    store.layers_used_by_containers = lambda: layers_in_use(db)
    return store


def reset_restart(db: Database, id: str) -> None:
    """A user start: the policy applies afresh (Docker clears the manual-stop flag and the restart count)."""
    _update(db, id, "stopped_by_user = 0, restart_count = 0", ())
