"""`--change` lines of `image import`: Dockerfile-style instructions applied to an image config.

Kept apart from the store because it is pure text handling: `CMD ["nginx"]`, `ENV A=1 B=2`, `EXPOSE 80/udp`
and the rest, in their JSON and shell forms, exactly as `docker import --change` takes them. The meaning of
each instruction lives once, in engine.build.instructions; this module only picks the ones Docker allows
here and reports errors against the change line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.build import instructions
from engine.build.dockerfile import DockerfileError, parse
from engine.errors import InvalidChange

# the instructions `docker import/commit --change` accept (moby's validCommitCommands)
_CHANGE_KEYS = (
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "USER",
    "WORKDIR",
    "VOLUME",
    "STOPSIGNAL",
)


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Apply `--change` Dockerfile instructions to a container config (OCI `config` object) copy."""
    state = instructions.StageState(json.loads(json.dumps(config)), path="--change")
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword = keyword.upper()
        if keyword not in _CHANGE_KEYS:
            raise InvalidChange(
                f"{keyword or 'empty'} is not a supported change (allowed: {', '.join(_CHANGE_KEYS)})",
                subject=change,
            )
        if not rest.strip():
            raise InvalidChange(f"{keyword} needs an argument", subject=change)
        try:
            parsed = parse(change.strip(), "--change").instructions
            if len(parsed) != 1:
                raise InvalidChange("one instruction per change", subject=change)
            instructions.apply(state, parsed[0], {})
        except DockerfileError as exc:
            raise InvalidChange(exc.message, subject=change) from None
    return state.config
