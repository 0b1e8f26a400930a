"""The containers table through engine.containers.records."""

from __future__ import annotations

import pytest

from engine.containers import records
from engine.errors import ContainerConflict, ContainerNotFound
from engine.state.db import Database

IMAGE = "sha256:" + "ab" * 32


@pytest.fixture
def db(tmp_path):
    database = Database(tmp_path / "pycompose.db")
    database.execute(
        "INSERT INTO images (id, manifest_digest, manifest_media_type, size, os, architecture, added)"
        " VALUES (?, 'sha256:00', 'x', 0, 'linux', 'amd64', 't')",
        (IMAGE,),
    )
    try:
        yield database
    finally:
        database.close()


def _add(db, id="a1b2c3d4" + "0" * 56, name="web", labels=None, created="2026-01-01T00:00:00Z"):
    return records.insert(
        db, id=id, name=name, image_id=IMAGE, spec_json="{}", labels=labels or {}, created=created
    )


def test_insert_and_get_by_id_name_prefix(db):
    record = _add(db, labels={"a": "1"})
    assert record["state"] == "created" and record["labels"] == {"a": "1"}
    assert record["oom_killed"] is False and record["stopped_by_user"] is False
    assert records.get(db, record["id"])["name"] == "web"
    assert records.get(db, "web")["id"] == record["id"]
    assert records.get(db, "a1b2")["id"] == record["id"]
    assert records.get(db, "a1b") is None  # too short a prefix
    assert records.get(db, "nope") is None


def test_ambiguous_prefix_and_taken_name(db):
    _add(db, id="abcd1" + "0" * 59, name="one")
    _add(db, id="abcd2" + "0" * 59, name="two")
    with pytest.raises(ContainerConflict):
        records.get(db, "abcd")
    assert records.get(db, "abcd1")["name"] == "one"
    with pytest.raises(ContainerConflict, match="already in use"):
        _add(db, id="ffff" + "0" * 60, name="one")


def test_unknown_image_is_refused(db):
    with pytest.raises(ContainerConflict, match="not in the store"):
        records.insert(
            db, id="e" * 64, name="x", image_id="sha256:none", spec_json="{}", labels={}, created="t"
        )


def test_lifecycle_updates(db):
    cid = _add(db)["id"]
    records.record_started(db, cid, 1234, "2026-01-01T00:00:01Z")
    row = records.get(db, cid)
    assert (row["state"], row["pid"], row["exit_code"]) == ("running", 1234, None)
    records.record_exited(db, cid, 137, True, "2026-01-01T00:00:02Z")
    row = records.get(db, cid)
    assert (row["state"], row["pid"], row["exit_code"], row["oom_killed"]) == ("exited", None, 137, True)
    records.record_started(db, cid, 99, "2026-01-01T00:00:03Z")
    assert records.get(db, cid)["oom_killed"] is False
    assert records.bump_restart(db, cid) == 1
    assert records.bump_restart(db, cid) == 2
    records.set_stopped_by_user(db, cid, True)
    records.set_health(db, cid, '{"status": "healthy"}')
    records.set_log_path(db, cid, "/x/log.json")
    records.set_state(db, cid, "paused")
    row = records.get(db, cid)
    assert row["stopped_by_user"] is True and row["health"] == '{"status": "healthy"}'
    assert row["log_path"] == "/x/log.json" and row["state"] == "paused" and row["restart_count"] == 2
    with pytest.raises(ValueError):
        records.set_state(db, cid, "sleeping")


def test_list_with_label_filter(db):
    _add(db, id="1" * 64, name="a", labels={"p": "x", "s": "web"}, created="2026-01-01T00:00:01Z")
    _add(db, id="2" * 64, name="b", labels={"p": "x"}, created="2026-01-01T00:00:02Z")
    _add(db, id="3" * 64, name="c", labels={}, created="2026-01-01T00:00:03Z")
    assert [r["name"] for r in records.list_all(db)] == ["a", "b", "c"]
    assert [r["name"] for r in records.list_all(db, labels={"p": "x"})] == ["a", "b"]
    assert [r["name"] for r in records.list_all(db, labels={"s": None})] == ["a"]
    assert [r["name"] for r in records.list_all(db, labels={"p": "y"})] == []


def test_missing_container_is_not_found(db):
    for call in (
        lambda: records.set_state(db, "x", "running"),
        lambda: records.bump_restart(db, "x"),
        lambda: records.delete(db, "x"),
        lambda: records.record_exited(db, "x", 0, False, "t"),
    ):
        with pytest.raises(ContainerNotFound):
            call()


def test_delete(db):
    cid = _add(db)["id"]
    records.delete(db, cid)
    assert records.get(db, cid) is None and records.list_all(db) == []


def test_image_hooks_answer_from_the_table(db):
    class Store:
        def containers_using(self, image_id):
            return []

        def layers_used_by_containers(self):
            return set()

    db.execute("INSERT INTO layers (chain_id, diff_id, size, created) VALUES ('sha256:l1', 'd', 0, 't')")
    db.execute("INSERT INTO image_layers (image_id, position, chain_id) VALUES (?, 0, 'sha256:l1')", (IMAGE,))
    store = records.bind_image_hooks(Store(), db)
    assert store.containers_using(IMAGE) == [] and store.layers_used_by_containers() == set()
    cid = _add(db)["id"]
    assert store.containers_using(IMAGE) == [cid]
    assert store.layers_used_by_containers() == {"sha256:l1"}
