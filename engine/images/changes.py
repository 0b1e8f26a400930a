"""`--change` lines of `image import`: Dockerfile-style instructions applied to an image config.

Kept apart from the store because it is pure text handling: `CMD ["nginx"]`, `ENV A=1 B=2`, `EXPOSE 80/udp`
and the rest, in their JSON and shell forms, exactly as `docker import --change` takes them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from engine.build.dockerfile import json_array
from engine.errors import InvalidChange

_CHANGE_KEYS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR", "VOLUME", "STOPSIGNAL")


def apply_changes(config: dict[str, Any], changes: Sequence[str]) -> dict[str, Any]:
    """Apply `--change` Dockerfile instructions to a container config (OCI `config` object) copy."""
    result = json.loads(json.dumps(config))
    for change in changes:
        keyword, _, rest = change.strip().partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in _CHANGE_KEYS:
            raise InvalidChange(
                f"{keyword or 'empty'} is not a supported change (allowed: {', '.join(_CHANGE_KEYS)})",
                subject=change,
            )
        if not rest:
            raise InvalidChange(f"{keyword} needs an argument", subject=change)
        _APPLY[keyword](result, rest, change)
    return result


def _command(rest: str) -> list[str]:
    exec_form = json_array(rest)
    return list(exec_form) if exec_form is not None else ["/bin/sh", "-c", rest]


def _words(rest: str, change: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as exc:
        raise InvalidChange(f"cannot parse arguments: {exc}", subject=change) from exc


def _pairs(rest: str, change: str, keyword: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` pairs, or the legacy single `key value` form."""
    words = _words(rest, change)
    if "=" not in words[0]:
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidChange(f"{keyword} needs key=value (or 'key value')", subject=change)
        return [(key, " ".join(_words(value, change)))]
    pairs = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise InvalidChange(f"{keyword} expects key=value, got {word!r}", subject=change)
        pairs.append((key, value))
    return pairs


def _set_cmd(config: dict, rest: str, change: str) -> None:
    config["Cmd"] = _command(rest)


def _set_entrypoint(config: dict, rest: str, change: str) -> None:
    config["Entrypoint"] = _command(rest)


def _set_env(config: dict, rest: str, change: str) -> None:
    env = list(config.get("Env") or [])
    for key, value in _pairs(rest, change, "ENV"):
        env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
    config["Env"] = env


def _set_label(config: dict, rest: str, change: str) -> None:
    labels = dict(config.get("Labels") or {})
    labels.update(_pairs(rest, change, "LABEL"))
    config["Labels"] = labels


def _set_expose(config: dict, rest: str, change: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for word in _words(rest, change):
        number, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        low, _, high = number.partition("-")
        if proto not in ("tcp", "udp", "sctp") or not low.isdigit() or (high and not high.isdigit()):
            raise InvalidChange(f"invalid port {word!r}", subject=change)
        first, last = int(low), int(high or low)
        if not 0 < first <= last <= 65535:
            raise InvalidChange(f"invalid port range {word!r}", subject=change)
        for port in range(first, last + 1):
            ports[f"{port}/{proto}"] = {}
    config["ExposedPorts"] = ports


def _set_user(config: dict, rest: str, change: str) -> None:
    config["User"] = rest


def _set_workdir(config: dict, rest: str, change: str) -> None:
    base = PurePosixPath(config.get("WorkingDir") or "/")
    config["WorkingDir"] = os.path.normpath(str(base / rest))


def _set_volume(config: dict, rest: str, change: str) -> None:
    paths = json_array(rest)
    volumes = dict(config.get("Volumes") or {})
    for path in paths if paths is not None else _words(rest, change):
        if not path:
            raise InvalidChange("VOLUME needs a path", subject=change)
        volumes[path] = {}
    config["Volumes"] = volumes


def _set_stopsignal(config: dict, rest: str, change: str) -> None:
    if not _valid_signal(rest):
        raise InvalidChange(f"invalid stop signal {rest!r}", subject=change)
    config["StopSignal"] = rest


def _valid_signal(text: str) -> bool:
    if text.isdigit():
        return 0 < int(text) < signal.NSIG
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return name in signal.Signals.__members__


_APPLY: dict[str, Callable[[dict, str, str], None]] = {
    "CMD": _set_cmd,
    "ENTRYPOINT": _set_entrypoint,
    "ENV": _set_env,
    "EXPOSE": _set_expose,
    "LABEL": _set_label,
    "USER": _set_user,
    "WORKDIR": _set_workdir,
    "VOLUME": _set_volume,
    "STOPSIGNAL": _set_stopsignal,
}
