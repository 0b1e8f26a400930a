"""State: the state root on disk, its SQLite database, file locks and crash repair.

Modules (one job each):
- `root`   where the state root is (`resolve_root`), its layout, staging paths, repair (`StateRoot`).
- `db`     the SQLite database: WAL, per-thread connections, transactions, versioned schema (`Database`).
- `locks`  flock-based shared/exclusive locks with timeouts (`FileLock`).

The layout and the schema are documented in LAYOUT.md next to this file, the one place they are described.
The names below are imported on first use: the keeper needs `locks` at start-up, not sqlite3 (~30 ms).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SCHEMA_VERSION": "db",
    "Database": "db",
    "FileLock": "locks",
    "RepairReport": "root",
    "StateRoot": "root",
    "resolve_root": "root",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"engine.state.{module}"), name)


__all__ = ["SCHEMA_VERSION", "Database", "FileLock", "RepairReport", "StateRoot", "resolve_root"]
