"""The build step cache (state migration v6): a step's key -> the image it produced.

A key names everything a step's result depends on: the image it starts from (its id covers the whole
filesystem and config so far), the instruction as history records it (arguments expanded, build args
used), what COPY/ADD bring in (a content digest), and the ARG values RUN sees. Equal keys give equal
results, so a hit reuses the image and does no work. Rows go with their image (ON DELETE CASCADE), so a
pruned image is only a miss the next time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime

from engine.state.db import Database

# Untagged images some cached step started from, whose child still exists: Docker's "intermediate".
INTERMEDIATE_SQL = (
    "SELECT DISTINCT c.parent_id AS id FROM build_cache c JOIN images i ON i.id = c.image_id"
    " WHERE c.parent_id IS NOT NULL AND c.parent_id != c.image_id"
    " AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.image_id = c.parent_id)"
)


def step_key(
    parent_id: str | None,
    text: str,
    *,
    sources: str | None = None,
    args: Mapping[str, str] | None = None,
) -> str:
    """sha256 over the parent image id, the history text, the sources digest and the ARGs in scope."""
    body = json.dumps(
        {"parent": parent_id or "scratch", "text": text, "sources": sources, "args": dict(args or {})},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


class BuildCache:
    """Lookups and records on the `build_cache` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def lookup(self, key: str) -> str | None:
        """The image id recorded for `key`, if that image is still in the store."""
        row = self.db.query_one(
            "SELECT c.image_id FROM build_cache c JOIN images i ON i.id = c.image_id WHERE c.key = ?", (key,)
        )
        return None if row is None else str(row["image_id"])

    def record(self, key: str, image_id: str, parent_id: str | None) -> None:
        """Remember the step's result (a newer result for the same key replaces the old one)."""
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        with self.db.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO build_cache(key, image_id, parent_id, created) VALUES (?, ?, ?, ?)",
                (key, image_id, parent_id, now),
            )


def intermediate_ids(db: Database) -> set[str]:
    """Untagged images that a cached build step started from (hidden by `image ls` without -a)."""
    return {str(row["id"]) for row in db.query(INTERMEDIATE_SQL)}
