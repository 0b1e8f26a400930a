"""The planner: what `up`, `down`, `scale` and `run` must do, decided without touching anything.

ARCHITECTURE.md's "decide, then act": given the loaded project and what exists (containers found by
Compose's labels, with their config hash, image id and state), these pure functions return plans the
executor (compose/run, issue 7) carries out through engine.api. Unit-tested without root.

- `specs`    — a service (+ container number, image, networks, volumes) -> the engine's ContainerSpec,
               NetworkSpec and volume requests; the names Compose gives things.
- `converge` — observed containers + the project -> per-container actions (create, recreate, start,
               stop, remove, noop) in dependency generations; orphans; scale up and down.
"""
