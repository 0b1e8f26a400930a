"""Starting a state root's keeper (which starts the supervisor daemon): the one module a CLI imports to
do it. keeper.py itself brings the database and the cgroup code: in a CLI that already has the container
code loaded, importing it took 8.6 ms against 3.3 ms for this module (`python -X importtime`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.supervise.protocol import CGROUP_PARENT_ENV, LAUNCH_TIMEOUT, LOG_NAME


def launch(
    root: Path, cgroup_parent: str | None, handover_fd: int | None = None, *, wait: bool = True
) -> subprocess.Popen[bytes]:
    """Run `keeper --detach` in a new session (stdio /dev/null and run/supervisor.log, cwd /); it forks
    and its parent exits, so init (or our nearest subreaper) adopts it, never the caller.

    `wait=False` returns at once: the caller polls the socket for the daemon (client.ensure_supervisor)
    and reaps the returned process later. A keeper that finds another one's lock taken exits at once."""
    import engine

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(engine.__file__).resolve().parent.parent)
    if cgroup_parent:
        env[CGROUP_PARENT_ENV] = cgroup_parent
    argv = [sys.executable, "-m", "engine.supervise.keeper", "--root", str(root), "--detach"]
    if handover_fd is not None:
        argv += ["--handover-fd", str(handover_fd)]
    run = root / "run"
    run.mkdir(mode=0o700, exist_ok=True)
    with open(run / LOG_NAME, "ab") as log:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd="/", env=env,
            start_new_session=True, close_fds=True, pass_fds=() if handover_fd is None else (handover_fd,),
        )  # fmt: skip
    if wait:
        proc.wait(timeout=LAUNCH_TIMEOUT)
    return proc
