"""Registry credentials and the `WWW-Authenticate` challenge flow, as Docker does it.

Credentials come from the Docker CLI's `config.json` (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`), `auths` section only: credential helpers (`credsStore`, `credHelpers`) and
`identitytoken` (OAuth refresh tokens) are not supported; such entries are ignored, so the registry is
tried anonymously.

The flow (distribution's token spec): a request answered 401 carries one or more challenges. For
`Bearer realm=...,service=...,scope=...` we GET the realm with `service` and one `scope` parameter per
scope we need (`repository:<name>:pull[,push]`, plus `repository:<source>:pull` for a cross-repository
mount), with basic auth when we have credentials, and read `token` (or OAuth's `access_token`). Tokens are
cached per (registry, scopes) until `expires_in` (default and minimum 60 s) runs out. For `Basic` we send
the credentials themselves. httpx is only imported by callers: this module takes a client as a parameter.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import AuthenticationError, RegistryError, RegistryUnreachable
from engine.frozen import frozen

if TYPE_CHECKING:
    import httpx

DOCKER_HUB_KEYS = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
"""Host names under which Docker Hub credentials may be stored or asked for."""

MIN_TOKEN_TTL = 60.0
"""Seconds a token lives when the server does not say (and the least it may say), per the token spec."""

EXPIRY_MARGIN = 5.0
"""Refresh a token this many seconds before it expires, so a request never leaves with a stale one."""


@frozen
class Credentials:
    """A username and password (or personal access token) for one registry."""

    username: str
    password: str

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:  # never print a password in a traceback
        return f"Credentials(username={self.username!r}, password=***)"


def normalize_registry(key: str) -> str:
    """Registry host[:port] a config key or reference domain stands for (Docker's ConvertToHostname).

    `https://index.docker.io/v1/` -> `docker.io`; `http://localhost:5000/v2/` -> `localhost:5000`.
    """
    text = key.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
            break
    host = text.split("/", 1)[0].lower()
    return "docker.io" if host in DOCKER_HUB_KEYS else host


def docker_config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the Docker CLI keeps its config: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`."""
    env = os.environ if env is None else env
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    return Path(env.get("HOME") or Path.home()) / ".docker" / "config.json"


def _decode_entry(key: str, entry: Any) -> Credentials | None:
    """Credentials from one `auths` entry: base64 `auth` ("user:pass") or `username`/`password`."""
    if not isinstance(entry, dict):
        return None
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            text = base64.b64decode(encoded, validate=False).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise AuthenticationError(f"invalid base64 'auth' in docker config: {exc}", subject=key) from exc
        username, sep, password = text.partition(":")
        if not sep:
            raise AuthenticationError("invalid 'auth' in docker config: no ':' separator", subject=key)
        return Credentials(username, password)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password)
    return None


def parse_docker_config(data: Mapping[str, Any]) -> dict[str, Credentials]:
    """Map registry host -> credentials from a parsed `config.json`."""
    auths = data.get("auths") or {}
    if not isinstance(auths, dict):
        return {}
    found: dict[str, Credentials] = {}
    for key, entry in auths.items():
        creds = _decode_entry(key, entry)
        if creds is not None:
            found.setdefault(normalize_registry(key), creds)
    return found


def load_docker_config(path: Path | None = None) -> dict[str, Credentials]:
    """Credentials from the Docker CLI config; a missing file means none, a broken one is an error."""
    path = path or docker_config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuthenticationError(f"cannot read docker config: {exc.strerror}", subject=str(path)) from exc
    try:
        data = json.loads(raw or b"{}")
    except ValueError as exc:
        raise AuthenticationError(f"docker config is not valid JSON: {exc}", subject=str(path)) from exc
    return parse_docker_config(data) if isinstance(data, dict) else {}


# --- challenges ------------------------------------------------------------------------------------


@frozen
class Challenge:
    """One auth challenge: scheme in lower case (`bearer`, `basic`) and its parameters (names lowered)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


_TOKEN_STOP = " \t,="


def _skip(value: str, i: int, chars: str) -> int:
    while i < len(value) and value[i] in chars:
        i += 1
    return i


def _read_token(value: str, i: int) -> tuple[str, int]:
    start = i
    while i < len(value) and value[i] not in _TOKEN_STOP:
        i += 1
    return value[start:i], i


def _read_quoted(value: str, i: int) -> tuple[str, int]:
    """A quoted-string starting at value[i] == '"', with backslash escapes (RFC 9110)."""
    out: list[str] = []
    i += 1
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return "".join(out), i  # unterminated: take what is there, as lenient clients do


def parse_www_authenticate(value: str) -> list[Challenge]:
    """Parse a `WWW-Authenticate` value into challenges, in order.

    Handles several challenges in one header, several parameters each, and quoted values with commas
    (`scope="repository:a:pull,push"`). A bare token after a scheme (token68) is ignored.
    """
    challenges: list[Challenge] = []
    current: Challenge | None = None
    i = 0
    while i < len(value):
        i = _skip(value, i, " \t,")
        name, i = _read_token(value, i)
        if not name:
            i += 1  # a stray '=': skip it
            continue
        j = _skip(value, i, " \t")
        if value[j : j + 2] == "==" or value[j:].rstrip() == "=":  # token68 (`abc123==`): no parameters
            i = _skip(value, j, "=")
            continue
        if j < len(value) and value[j] == "=" and current is not None:
            j = _skip(value, j + 1, " \t")
            if j < len(value) and value[j] == '"':
                param, i = _read_quoted(value, j)
            else:
                param, i = _read_token(value, j)
            current.params[name.lower()] = param
            continue
        if j < len(value) and value[j] == "=":  # token68 without a scheme: nothing to learn
            i = _skip(value, j, "=")
            continue
        current = Challenge(name.lower(), {})
        challenges.append(current)
        i = j
    return challenges


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """Bearer is preferred over Basic, as Docker does; other schemes are not spoken."""
    by_scheme = {c.scheme: c for c in challenges}
    return by_scheme.get("bearer") or by_scheme.get("basic")


# --- tokens ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Token:
    header: str
    expires_at: float


def repository_scope(repository: str, actions: Sequence[str]) -> str:
    """`repository:<name>:pull,push` — the resource scope grammar of the token spec."""
    return f"repository:{repository}:{','.join(actions)}"


def error_detail(response: httpx.Response) -> str:
    """The most useful sentence a registry or token server put in its error body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().splitlines()
        return text[0][:200] if text else ""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("message") or errors[0].get("code") or "")
        for key in ("details", "detail", "error_description", "error", "message"):
            if body.get(key):
                return str(body[key])
    return ""


class RegistryAuth:
    """Answers registry challenges: remembers each registry's challenge, fetches and caches tokens.

    Thread-safe: parallel blob downloads share one instance. `credentials` maps a registry host[:port]
    (normalised as in `normalize_registry`) to `Credentials`; by default the Docker CLI config is read
    lazily on first need.
    """

    def __init__(
        self,
        credentials: Mapping[str, Credentials] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = (
            None if credentials is None else {normalize_registry(k): v for k, v in credentials.items()}
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self.token_requests = 0  # how many times a token server was asked (tests and diagnostics)

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials stored for a registry host (Docker Hub's several names all map to docker.io)."""
        if self._credentials is None:
            self._credentials = load_docker_config()
        return self._credentials.get(normalize_registry(registry))

    def record_challenge(self, registry: str, header_values: Sequence[str]) -> Challenge:
        """Remember how a registry wants to be authenticated (from a 401's headers)."""
        challenges = [c for value in header_values for c in parse_www_authenticate(value)]
        chosen = pick_challenge(challenges)
        if chosen is None:
            schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none"
            raise AuthenticationError(
                f"unauthorized: unsupported authentication challenge ({schemes})", subject=registry
            )
        with self._lock:
            self._challenges[registry] = chosen
        return chosen

    def scheme(self, registry: str) -> str | None:
        """The scheme a registry challenged us with (`bearer`, `basic`), None before any challenge."""
        with self._lock:
            challenge = self._challenges.get(registry)
        return challenge.scheme if challenge else None

    def invalidate(self, registry: str, scopes: Sequence[str]) -> None:
        """Forget a cached token the registry refused (it may have been revoked early)."""
        with self._lock:
            self._tokens.pop((registry, tuple(sorted(scopes))), None)

    def authorization(self, client: httpx.Client, registry: str, scopes: Sequence[str]) -> str | None:
        """The `Authorization` header for a request needing `scopes`, or None before any challenge."""
        with self._lock:
            challenge = self._challenges.get(registry)
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            creds = self.credentials_for(registry)
            if creds is None:
                raise AuthenticationError(
                    "unauthorized: authentication required (no credentials for this registry; "
                    "add them to ~/.docker/config.json)",
                    subject=registry,
                )
            return creds.basic_header()
        key = (registry, tuple(sorted(scopes)))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at > self._clock():
                return cached.header
        token = self._fetch_token(client, registry, challenge, key[1])
        with self._lock:
            self._tokens[key] = token
        return token.header

    def _fetch_token(
        self, client: httpx.Client, registry: str, challenge: Challenge, scopes: tuple[str, ...]
    ) -> _Token:
        """GET the realm for a bearer token covering `scopes` (plus the challenge's own scope)."""
        import httpx

        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError("unauthorized: bearer challenge without a realm", subject=registry)
        params: list[tuple[str, str]] = []
        if challenge.params.get("service"):
            params.append(("service", challenge.params["service"]))
        wanted = list(scopes)
        if challenge.params.get("scope") and challenge.params["scope"] not in wanted:
            wanted.append(challenge.params["scope"])
        params.extend(("scope", s) for s in wanted)
        creds = self.credentials_for(registry)
        headers = {}
        if creds is not None:
            params.append(("account", creds.username))
            headers["Authorization"] = creds.basic_header()
        started = self._clock()
        self.token_requests += 1
        try:
            response = client.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            host = httpx.URL(realm).host
            raise RegistryUnreachable(
                f"token server {host} unreachable: {exc or type(exc).__name__}", subject=registry
            ) from exc
        if response.status_code in (401, 403):
            detail = error_detail(response)
            if creds is not None:
                reason = detail or "incorrect username or password"
                raise AuthenticationError(f"unauthorized: {reason}", subject=registry)
            raise AuthenticationError(
                f"unauthorized: {detail or 'authentication required'} (no credentials for this registry)",
                subject=registry,
            )
        if response.status_code != 200:
            reason = error_detail(response) or response.reason_phrase
            raise RegistryError(f"token server answered {response.status_code}: {reason}", subject=registry)
        return self._parse_token(registry, response, started)

    def _parse_token(self, registry: str, response: httpx.Response, started: float) -> _Token:
        try:
            body = response.json()
        except ValueError as exc:
            raise RegistryError(
                "token server answered with something that is not JSON", subject=registry
            ) from exc
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError("token server answered without a token", subject=registry)
        try:
            ttl = float(body.get("expires_in") or 0)
        except (TypeError, ValueError):
            ttl = 0.0
        ttl = max(ttl, MIN_TOKEN_TTL)
        # Expiry counts from when we asked (local clock): a server's issued_at may be skewed from ours.
        return _Token(header=f"Bearer {token}", expires_at=started + ttl - EXPIRY_MARGIN)
