"""State: the state root on disk, its SQLite database, file locks and crash repair.

Modules (one job each):
- `root`   where the state root is (`resolve_root`), its layout, staging paths, repair (`StateRoot`).
- `db`     the SQLite database: WAL, per-thread connections, transactions, versioned schema (`Database`).
- `locks`  flock-based shared/exclusive locks with timeouts (`FileLock`).

The layout and the schema are documented in LAYOUT.md next to this file, the one place they are described.
"""

from engine.state.db import SCHEMA_VERSION, Database
from engine.state.locks import FileLock
from engine.state.root import RepairReport, StateRoot, resolve_root

__all__ = ["SCHEMA_VERSION", "Database", "FileLock", "RepairReport", "StateRoot", "resolve_root"]
