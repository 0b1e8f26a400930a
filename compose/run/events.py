"""What the executor tells the user, as data. CONTRACT (owner: engineer R2 renders it; R1/R5 emit it).

docker compose v2 prints one line per resource with its state and elapsed time:
    [+] Running 4/4
     ✔ Network shop_default  Created   0.1s
     ✔ Volume "shop_data"    Created   0.0s
     ✔ Container shop-db-1   Healthy   5.6s
     ✔ Container shop-web-1  Started   0.4s
Kinds: "Network", "Volume", "Container", "Image". Status words as docker compose's: Creating/Created,
Starting/Started, Waiting/Healthy/Exited, Running, Recreate/Recreated, Stopping/Stopped, Removing/Removed,
Pulling/Pulled, Building/Built, Skipped, Error. A "working" status (…ing, Waiting) starts the clock of the
line; a final one stops it.
"""

from __future__ import annotations

from typing import Protocol

WORKING = frozenset(
    {
        "Creating",
        "Starting",
        "Waiting",
        "Recreate",
        "Stopping",
        "Removing",
        "Pulling",
        "Building",
        "Restarting",
        "Killing",
        "Pausing",
        "Unpausing",
    }
)
FINAL = frozenset(
    {
        "Created",
        "Started",
        "Healthy",
        "Exited",
        "Running",
        "Recreated",
        "Stopped",
        "Removed",
        "Pulled",
        "Built",
        "Skipped",
        "Error",
        "Killed",
        "Paused",
        "Unpaused",
        "Restarted",
        "Warning",
    }
)


class Events(Protocol):
    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        """`kind` `name` is now `status` (`detail`: an error message, an exit code, "port is allocated")."""
        ...

    def warning(self, message: str) -> None:
        """A line docker compose prints as `WARN[0000] message` (orphans found, unused build args...)."""
        ...

    def close(self) -> None:
        """The operation ended: draw the final state, release the terminal."""
        ...


class NullEvents:
    """Events nobody looks at (tests, `--progress quiet`)."""

    def resource(self, kind: str, name: str, status: str, detail: str = "") -> None:
        pass

    def warning(self, message: str) -> None:
        pass

    def close(self) -> None:
        pass
