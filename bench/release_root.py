"""Leave a bench's state root with nothing running: every container removed (with its volumes), the
supervisor stopped, the networks removed, the bench's cgroup parent gone. Errors are skipped: it runs
from an exit trap, whatever state the bench stopped in.
Usage: python bench/release_root.py ROOT CGROUP_PARENT
"""

from __future__ import annotations

import sys
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.api import Engine
from engine.containers import cgroups
from engine.errors import EngineError
from engine.supervise import client


def release(root: str, cgroup_parent: str) -> None:
    with Engine.open(root) as engine:
        for record in engine.list_containers(all=True):
            with suppress(EngineError):
                engine.remove_container(record["id"], force=True, volumes=True)
        with suppress(EngineError):
            client.shutdown(engine.root, timeout=10)
        for network in engine.list_networks():
            with suppress(EngineError):
                engine.remove_network(network.id)
    cgroups.remove_parent(cgroup_parent)


if __name__ == "__main__":
    release(sys.argv[1], sys.argv[2])
