"""Credentials from the Docker config, the WWW-Authenticate parser and the token / basic flows.

Flows run against the small 127.0.0.1 registry of test_registry_client (bearer realm on the same server).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_registry_client import FakeRegistry, FakeStore, local_image, make_image, registry  # noqa: F401

from engine.errors import AuthenticationError
from engine.images import manifest as mf
from engine.images.auth import (
    Challenge,
    Credentials,
    RegistryAuth,
    docker_config_path,
    load_docker_config,
    normalize_registry,
    parse_docker_config,
    parse_www_authenticate,
    pick_challenge,
)
from engine.images.registry import RegistryClient

# --- WWW-Authenticate ------------------------------------------------------------------------------


def test_docker_hub_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull,push",
            },
        )
    ]


def test_several_challenges_in_one_header_with_spaces() -> None:
    header = 'Basic realm="Registry Realm", Bearer realm="https://ghcr.io/token", service="ghcr.io"'
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": "Registry Realm"}),
        Challenge("bearer", {"realm": "https://ghcr.io/token", "service": "ghcr.io"}),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('BEARER Realm="https://a/token"', Challenge("bearer", {"realm": "https://a/token"})),
        (
            "Bearer realm=https://a/token,service=reg",
            Challenge("bearer", {"realm": "https://a/token", "service": "reg"}),
        ),
        (r'Basic realm="say \"hi\", then go"', Challenge("basic", {"realm": 'say "hi", then go'})),
        ('Bearer  realm = "r" ,  service="s"', Challenge("bearer", {"realm": "r", "service": "s"})),
        (
            'Bearer realm="r",error="insufficient_scope",scope="a:b:pull"',
            Challenge("bearer", {"realm": "r", "error": "insufficient_scope", "scope": "a:b:pull"}),
        ),
    ],
)
def test_challenge_variants(header: str, expected: Challenge) -> None:
    assert parse_www_authenticate(header) == [expected]


def test_token68_and_garbage_do_not_crash() -> None:
    assert parse_www_authenticate("Negotiate abc123==") == [Challenge("negotiate", {})]
    assert parse_www_authenticate("") == []
    assert parse_www_authenticate('=,, Bearer realm="x') == [Challenge("bearer", {"realm": "x"})]


def test_bearer_preferred_over_basic() -> None:
    challenges = parse_www_authenticate('Basic realm="b"') + parse_www_authenticate('Bearer realm="t"')
    assert pick_challenge(challenges) == Challenge("bearer", {"realm": "t"})
    assert pick_challenge(parse_www_authenticate('Negotiate x="y"')) is None


def test_unsupported_challenge_is_a_clear_error() -> None:
    with pytest.raises(AuthenticationError, match=r"unsupported authentication challenge \(negotiate\)"):
        RegistryAuth({}).record_challenge("reg.lan", ["Negotiate"])


# --- docker config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://localhost:5000/v2/", "localhost:5000"),
        ("Registry.Example.com:443", "registry.example.com:443"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_registry_keys_are_normalised(key: str, host: str) -> None:
    assert normalize_registry(key) == host


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_config_auths_in_both_forms() -> None:
    creds = parse_docker_config(
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hubuser:hub:pass")},
                "localhost:5000": {"username": "local", "password": "secret"},
                "helper.lan": {},  # a credential helper would supply these: ignored
            },
            "credsStore": "desktop",
            "credHelpers": {"gcr.io": "gcloud"},
        }
    )
    assert creds == {
        "docker.io": Credentials("hubuser", "hub:pass"),  # only the first ':' separates
        "localhost:5000": Credentials("local", "secret"),
    }


def test_config_location_follows_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/etc/dc"}) == Path("/etc/dc/config.json")
    assert docker_config_path({"HOME": "/home/u"}) == Path("/home/u/.docker/config.json")
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"reg.lan": {"auth": b64("a:b")}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert load_docker_config() == {"reg.lan": Credentials("a", "b")}
    assert RegistryAuth().credentials_for("reg.lan") == Credentials("a", "b")


def test_missing_config_means_anonymous_and_broken_config_is_an_error(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "absent.json") == {}
    broken = tmp_path / "config.json"
    broken.write_text('{"auths": ')
    with pytest.raises(AuthenticationError, match="not valid JSON") as info:
        load_docker_config(broken)
    assert info.value.subject == str(broken)
    broken.write_text(json.dumps({"auths": {"reg.lan": {"auth": b64("no-separator")}}}))
    with pytest.raises(AuthenticationError, match="no ':'"):
        load_docker_config(broken)


def test_password_never_in_repr() -> None:
    assert "hunter2" not in repr(Credentials("me", "hunter2"))


# --- bearer tokens ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer_client(reg: FakeRegistry, creds: dict[str, Credentials] | None = None, clock: Clock | None = None):
    auth = RegistryAuth(creds or {}, clock=clock or Clock())
    return RegistryClient(auth=auth, backoff=0.01, timeout=5), auth


def publish(reg: FakeRegistry, repo: str, tag: str = "v1") -> None:
    data, _ = make_image(reg, repo, "amd64")
    reg.add_manifest(repo, tag, data, mf.OCI_MANIFEST)


def test_anonymous_401_token_retry(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth = "bearer"
    publish(registry, "team/app")
    rc, _ = bearer_client(registry)
    with rc:
        rc.fetch_manifest(f"{registry.host}/team/app:v1")
    (token,) = registry.tokens_issued
    assert token["query"] == {"service": ["fake-registry"], "scope": ["repository:team/app:pull"]}
    assert token["user"] is None
    statuses = [s.headers.get("Authorization") for s in registry.requests("GET", "manifests/v1$")]
    assert statuses == [None, "Bearer tok0"]  # challenged once, then retried with the token


def test_token_cached_per_scope_until_expiry(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.expires_in = "bearer", 300
    publish(registry, "a")
    publish(registry, "b")
    clock = Clock()
    rc, auth = bearer_client(registry, clock=clock)
    with rc:
        rc.fetch_manifest(f"{registry.host}/a:v1")
        rc.fetch_manifest(f"{registry.host}/a:v1")
        assert len(registry.tokens_issued) == 1  # same scope: cached
        rc.fetch_manifest(f"{registry.host}/b:v1")
        assert len(registry.tokens_issued) == 2  # another repository, another scope
        clock.now += 296  # 4 s before expiry: inside the margin, so refreshed ahead of time
        rc.fetch_manifest(f"{registry.host}/a:v1")
        assert len(registry.tokens_issued) == 3
        assert auth.token_requests == 3
    # a request with a cached token is sent with it straight away: no second 401
    assert len(registry.requests("GET", "/a/manifests/v1$")) == 4


def test_short_or_missing_expiry_counts_as_sixty_seconds(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.expires_in = "bearer", None
    publish(registry, "a")
    clock = Clock()
    rc, _ = bearer_client(registry, clock=clock)
    with rc:
        rc.fetch_manifest(f"{registry.host}/a:v1")
        clock.now += 50
        rc.fetch_manifest(f"{registry.host}/a:v1")
        assert len(registry.tokens_issued) == 1
        clock.now += 10
        rc.fetch_manifest(f"{registry.host}/a:v1")
        assert len(registry.tokens_issued) == 2


def test_access_token_field_accepted(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.token_field = "bearer", "access_token"
    publish(registry, "a")
    rc, _ = bearer_client(registry)
    with rc:
        assert rc.fetch_manifest(f"{registry.host}/a:v1").data


def test_credentials_go_to_the_token_server(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.users = "bearer", {"alice": "s3cret"}
    publish(registry, "a")
    rc, _ = bearer_client(registry, {registry.host: Credentials("alice", "s3cret")})
    with rc:
        rc.fetch_manifest(f"{registry.host}/a:v1")
    (token,) = registry.tokens_issued
    assert token["user"] == "alice" and token["query"]["account"] == ["alice"]
    token_request = registry.requests("GET", "^/token$")[0]
    assert token_request.headers["Authorization"] == "Basic " + b64("alice:s3cret")


def test_bad_credentials_for_token_server(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.users = "bearer", {"alice": "s3cret"}
    publish(registry, "a")
    rc, _ = bearer_client(registry, {registry.host: Credentials("alice", "wrong")})
    with rc, pytest.raises(AuthenticationError) as info:
        rc.fetch_manifest(f"{registry.host}/a:v1")
    assert str(info.value) == f"{registry.host}: unauthorized: incorrect username or password"


def test_token_without_access_is_not_called_a_wrong_password(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.users, registry.grant = "bearer", {"alice": "s3cret"}, False
    rc, _ = bearer_client(registry, {registry.host: Credentials("alice", "s3cret")})
    with rc, pytest.raises(AuthenticationError) as info:
        rc.fetch_manifest(f"{registry.host}/private/a:v1")
    message = str(info.value)
    assert message.startswith(f"{registry.host}: unauthorized: ")
    assert "no access to private/a for alice" in message and "incorrect username" not in message


def test_push_with_mount_asks_for_source_scope(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth = "bearer"
    store = FakeStore()
    source, target = f"{registry.host}/base/os", f"{registry.host}/team/app:1"
    _, layers = local_image(store, f"{source}:1", target, repo_digests=(f"{source}@sha256:{'c' * 64}",))
    registry.repo_blobs.setdefault("base/os", set()).update(layers)
    registry.blobs.update({d: store.blobs[d] for d in layers})
    rc, _ = bearer_client(registry)
    with rc:
        rc.push(store, target)
    scopes = [sorted(t["query"]["scope"]) for t in registry.tokens_issued]
    assert ["repository:team/app:pull,push"] in scopes
    assert ["repository:base/os:pull", "repository:team/app:pull,push"] in scopes
    assert len([m for m in registry.requests("POST", "uploads") if "mount" in m.query]) == 2


def test_401_without_challenge(registry: FakeRegistry) -> None:  # noqa: F811
    registry.fail = [401]
    rc, _ = bearer_client(registry)
    with rc, pytest.raises(AuthenticationError, match="401 without a challenge"):
        rc.fetch_manifest(f"{registry.host}/a:v1")


# --- basic auth ------------------------------------------------------------------------------------


def test_basic_auth_challenge(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.users = "basic", {"bob": "pw"}
    publish(registry, "a")
    rc, _ = bearer_client(registry, {f"http://{registry.host}/v2/": Credentials("bob", "pw")})
    with rc:
        rc.fetch_manifest(f"{registry.host}/a:v1")
        rc.fetch_manifest(f"{registry.host}/a:v1")
    sent = [s.headers.get("Authorization") for s in registry.requests("GET", "manifests")]
    assert sent == [None, "Basic " + b64("bob:pw"), "Basic " + b64("bob:pw")]  # then sent up front
    assert registry.tokens_issued == []


def test_basic_auth_wrong_password(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth, registry.users = "basic", {"bob": "pw"}
    publish(registry, "a")
    rc, _ = bearer_client(registry, {registry.host: Credentials("bob", "nope")})
    with rc, pytest.raises(AuthenticationError) as info:
        rc.pull(FakeStore(), f"{registry.host}/a:v1")
    assert str(info.value) == f"{registry.host}: unauthorized: incorrect username or password"


def test_basic_auth_without_credentials(registry: FakeRegistry) -> None:  # noqa: F811
    registry.auth = "basic"
    rc, _ = bearer_client(registry)
    with rc, pytest.raises(AuthenticationError, match="no credentials for this registry") as info:
        rc.fetch_manifest(f"{registry.host}/a:v1")
    assert info.value.subject == registry.host
