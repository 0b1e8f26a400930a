"""The service config hash: `config --hash svc` and the label `com.docker.compose.config-hash`.

docker compose (`pkg/compose/hash.go` `ServiceHash`) blanks the fields that must not force a
container to be recreated, then takes the sha256 (hex) of `json.Marshal(service)`:

- `build` (building is not running), `pull_policy`, `scale` and `deploy.replicas` (scaling adds or
  removes containers, it does not change them), `depends_on` and `profiles` (start order and
  selection, not container configuration).
- Extensions (`x-*`) never reach the hash: compose-go tags them `json:"-"`.

We apply the same rules to the canonical service dict and serialize it the way Go's encoder does
(struct field order, sorted map keys, `command`/`entrypoint` as null when unset, compact, HTML-safe
escapes) with `compose.render.json_compact`. The rules about what changes the hash are the same as
docker compose's; byte-identical hashes are a goal, not a promise (Go types we do not model exactly,
such as float32 rounding, can still differ).
"""

from __future__ import annotations

import hashlib
from typing import Any

from compose.render import json_compact

__all__ = ["IGNORED_FIELDS", "hashable_service", "service_config_hash"]

IGNORED_FIELDS = ("build", "pull_policy", "scale", "depends_on", "profiles")
"""Service keys removed before hashing (plus `deploy.replicas`)."""


def hashable_service(service: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy of the service without the fields the hash ignores; the input is untouched."""
    data = {key: value for key, value in service.items() if key not in IGNORED_FIELDS and key != "name"}
    deploy = data.get("deploy")
    if isinstance(deploy, dict) and "replicas" in deploy:
        data["deploy"] = {key: value for key, value in deploy.items() if key != "replicas"}
    return data


def service_config_hash(service: dict[str, Any]) -> str:
    """sha256 hex of the service's Go-style compact JSON after blanking the ignored fields."""
    payload = json_compact(hashable_service(service), "service")
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
