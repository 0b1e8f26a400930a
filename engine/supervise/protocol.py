"""What the supervisor and its clients share: file names under the state root and how an error reply
becomes an engine error. Kept free of the daemon's imports (asyncio, the runtime) so a CLI that only
talks to the supervisor loads little."""

from __future__ import annotations

from typing import Any

from engine import errors
from engine.errors import EngineError

SOCKET_NAME = "supervisor.sock"  # under <root>/run
SUPERVISOR_LOCK = "supervisor.lock"  # under <root>/locks: held by the serving daemon
KEEPER_LOCK = "keeper.lock"  # under <root>/locks: held by the living keeper
UNKNOWN_EXIT = 255  # Docker's code for a container whose exit status was lost
LOG_NAME = "supervisor.log"  # under <root>/run: the keeper's and daemon's own output
CGROUP_PARENT_ENV = "PYCOMPOSE_CGROUP_PARENT"  # the keeper's default cgroup parent, and the CLI's
LAUNCH_TIMEOUT = 10.0  # seconds a keeper's start may take


def error_body(exc: BaseException) -> dict[str, Any]:
    """An exception as an error reply (`error_from` turns it back); any non-engine error is a start error."""
    if isinstance(exc, EngineError):
        return {"type": type(exc).__name__, "error": exc.message, "subject": exc.subject}
    return {"type": "ContainerStartError", "error": f"{type(exc).__name__}: {exc}"}


def error_from(body: dict[str, Any]) -> EngineError:
    """An error reply as the engine error class it names (unknown names: SupervisorError)."""
    cls = getattr(errors, str(body.get("type")), errors.SupervisorError)
    if not (isinstance(cls, type) and issubclass(cls, EngineError)):
        cls = errors.SupervisorError
    return cls(str(body.get("error")), subject=body.get("subject"))
