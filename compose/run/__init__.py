"""The executor: carries out the planner's decisions (compose/plan) through engine.api.

- `events`    — what the executor reports (networks, volumes, images, containers and their states) so the
                CLI can draw docker compose's `[+] Running 3/3` view; one protocol, renderers elsewhere.
- `observe`   — the project's containers as the engine lists them (by Compose's labels), as records and as
                the planner's `Observed`.
- `executor`  — `ProjectRunner`: up (networks, volumes, images: pull/build per pull_policy, then the
                plan's generations with bounded parallelism and depends_on conditions), create, down,
                scale. Engine calls run in worker threads (parallel.py); builds run before, single-threaded.
- `lifecycle` — start, stop, restart, pause, unpause, kill and rm of existing containers, in dependency
                order (reverse for stop), with the same events.
Errors are compose.errors / engine.errors; the CLI turns them into messages and exit codes.
"""
