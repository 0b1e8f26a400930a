"""RegistryClient against a small HTTP server on 127.0.0.1 started by each test.

The server speaks just enough of the distribution API (manifests, blobs, uploads, mounts, token and
basic auth, injected failures) to check URL building, Accept negotiation, retries, digest checks,
platform selection and cancellation. The proof against a real registry is in tests/integration.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from engine.errors import Cancelled, DigestMismatch, ImageNotFound, RegistryError, RegistryUnreachable
from engine.images import manifest as mf
from engine.images.auth import RegistryAuth
from engine.images.progress import PlainProgress, ProgressReporter, RichProgress, human_size, short_id
from engine.images.registry import RegistryClient, insecure_from_env, is_plain_http
from engine.images.types import Image, Layer, Platform

# --- a fake registry -------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class FakeRegistry:
    """State and behaviour of the test server; tests set fields, then read `seen`."""

    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    repo_blobs: dict[str, set[str]] = field(default_factory=dict)
    auth: str = "none"  # "none", "basic", "bearer"
    users: dict[str, str] = field(default_factory=dict)
    token_field: str = "token"
    grant: bool = True  # False: tokens are issued but give no access (a repository the user may not see)
    expires_in: int | None = 300
    fail: list[int] = field(default_factory=list)  # statuses to answer before serving normally
    retry_after: str | None = None
    corrupt: set[str] = field(default_factory=set)  # blob digests served with a flipped byte
    slow_blob: str | None = None  # this blob is sent in small pieces, slowly
    cut_once: set[str] = field(default_factory=set)  # these blobs break off half-way, the first time
    seen: list[Seen] = field(default_factory=list)
    tokens_issued: list[dict[str, Any]] = field(default_factory=list)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    port: int = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha(data)
        self.blobs[digest] = data
        self.repo_blobs.setdefault(repo, set()).add(digest)
        return digest

    def add_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> str:
        digest = sha(data)
        self.manifests[(repo, ref)] = (data, media_type)
        self.manifests[(repo, digest)] = (data, media_type)
        return digest

    def requests(self, method: str, pattern: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.search(pattern, s.path)]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    registry: FakeRegistry

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _handle(self) -> None:
        reg = self.registry
        url = urlsplit(self.path)
        body = self._body()
        reg.seen.append(Seen(self.command, url.path, parse_qs(url.query), dict(self.headers.items()), body))
        if url.path == "/token":
            return self._token(parse_qs(url.query))
        if reg.fail:
            status = reg.fail.pop(0)
            headers = {"Retry-After": reg.retry_after} if reg.retry_after else {}
            return self._error(status, "UNAVAILABLE", "try again later", headers)
        if not self._authorized():
            return
        match = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/(uploads/?[^/]*|[^/]+)", url.path)
        if match is None:
            return self._send(200, b"{}") if url.path == "/v2/" else self._error(404, "NOT_FOUND", "no route")
        repo, kind, rest = match.groups()
        if kind == "manifests":
            return self._manifest(repo, rest, body)
        if rest.startswith("uploads"):
            return self._upload(repo, rest.partition("/")[2], parse_qs(url.query), body)
        return self._blob(repo, rest)

    def _authorized(self) -> bool:
        reg = self.registry
        given = self.headers.get("Authorization", "")
        if reg.auth == "basic":
            wanted = {"Basic " + base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in reg.users.items()}
            if given in wanted:
                return True
            self._error(
                401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": 'Basic realm="fake"'}
            )
            return False
        if reg.auth == "bearer":
            issued = {t["token"] for t in reg.tokens_issued}
            if given.startswith("Bearer ") and given[7:] in issued and reg.grant:
                return True
            challenge = f'Bearer realm="http://{reg.host}/token",service="fake-registry"'
            self._error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
            return False
        return True

    def _token(self, query: dict[str, list[str]]) -> None:
        reg = self.registry
        given = self.headers.get("Authorization", "")
        user = None
        if given.startswith("Basic "):
            name, _, password = base64.b64decode(given[6:]).decode().partition(":")
            if reg.users.get(name) != password:
                return self._send(401, json.dumps({"details": "incorrect username or password"}).encode())
            user = name
        token = f"tok{len(reg.tokens_issued)}"
        reg.tokens_issued.append({"token": token, "user": user, "query": query})
        answer: dict[str, Any] = {reg.token_field: token}
        if reg.expires_in is not None:
            answer["expires_in"] = reg.expires_in
        self._send(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})

    def _manifest(self, repo: str, ref: str, body: bytes) -> None:
        reg = self.registry
        if self.command == "PUT":
            digest = reg.add_manifest(repo, ref, body, self.headers.get("Content-Type", ""))
            return self._send(
                201, b"", {"Docker-Content-Digest": digest, "Location": f"/v2/{repo}/manifests/{digest}"}
            )
        found = reg.manifests.get((repo, ref))
        if found is None:
            return self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        data, media_type = found
        accept = self.headers.get("Accept", "")
        if media_type not in accept:
            return self._error(404, "MANIFEST_UNKNOWN", "no acceptable manifest type")
        self._send(200, data, {"Content-Type": media_type, "Docker-Content-Digest": sha(data)})

    def _blob(self, repo: str, digest: str) -> None:
        reg = self.registry
        if digest not in reg.repo_blobs.get(repo, set()):
            return self._error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        data = reg.blobs[digest]
        if self.command == "HEAD":
            return self._send(200, data, {"Docker-Content-Digest": digest})
        if digest in reg.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        if digest in reg.cut_once:
            reg.cut_once.discard(digest)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        if digest == reg.slow_blob:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 1024):
                self.wfile.write(data[i : i + 1024])
                self.wfile.flush()
                time.sleep(0.01)
            return None
        return self._send(200, data, {"Docker-Content-Digest": digest})

    def _upload(self, repo: str, session: str, query: dict[str, list[str]], body: bytes) -> None:
        reg = self.registry
        if self.command == "POST":
            if "mount" in query:
                digest, source = query["mount"][0], query.get("from", [""])[0]
                if digest in reg.repo_blobs.get(source, set()):
                    reg.repo_blobs.setdefault(repo, set()).add(digest)
                    return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}"})
            uid = f"u{len(reg.uploads)}"
            reg.uploads[uid] = bytearray()
            return self._send(
                202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state=x", "Range": "0-0"}
            )
        data = reg.uploads[session]
        if self.command == "PATCH":
            content_range = self.headers.get("Content-Range")  # absent: a streamed upload
            if content_range is not None and int(content_range.split("-")[0]) != len(data):
                return self._error(416, "BLOB_UPLOAD_INVALID", "bad range")
            data += body
            return self._send(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/{session}?_state=y"})
        if self.command == "PUT":
            data += body
            digest = query["digest"][0]
            if sha(bytes(data)) != digest:
                return self._error(400, "DIGEST_INVALID", "digest did not match")
            reg.add_blob(repo, bytes(data))
            return self._send(201, b"", {"Location": f"/v2/{repo}/blobs/{digest}"})
        return self._error(405, "UNSUPPORTED", "method")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _handle


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    handler = type("Handler", (_Handler,), {"registry": reg})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    reg.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield reg
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(auth=RegistryAuth({}), backoff=0.01, timeout=5) as rc:
        yield rc


# --- a fake store (the real one is engineer D's ImageStore; this keeps unit tests to the client) ----


class FakeStore:
    """What the client needs of ImageStore: verified writes that keep nothing on failure."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.registered: list[dict[str, Any]] = []
        self.images: dict[str, Image] = {}
        self.writes_started = 0
        self.removed: list[str] = []

    @contextmanager
    def lease(self) -> Iterator[None]:
        yield

    def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    def write_blob(
        self,
        content: Iterable[bytes],
        *,
        expected_digest: str | None = None,
        expected_size: int | None = None,
        media_type: str | None = None,
    ) -> None:
        self.writes_started += 1
        data = b"".join(content)  # an exception here (cancel, transport) keeps nothing
        if expected_size is not None and len(data) != expected_size:
            raise DigestMismatch(f"size {len(data)} != {expected_size}", subject=expected_digest)
        if expected_digest is not None and sha(data) != expected_digest:
            raise DigestMismatch(f"content hashes to {sha(data)}", subject=expected_digest)
        self.blobs[sha(data)] = data

    def read_blob(self, digest: str) -> bytes:
        return self.blobs[digest]

    def remove_blob(self, digest: str) -> bool:
        self.removed.append(digest)
        return self.blobs.pop(digest, None) is not None

    def open_blob(self, digest: str) -> io.BytesIO:
        return io.BytesIO(self.blobs[digest])

    def register_image(self, manifest_bytes: bytes, media_type: str | None, **names: Any) -> Image:
        manifest = mf.parse_manifest(manifest_bytes, media_type)
        assert isinstance(manifest, mf.Manifest)
        for desc in (manifest.config, *manifest.layers):
            assert desc.digest in self.blobs, f"{desc.digest} registered before it was stored"
        self.blobs[sha(manifest_bytes)] = manifest_bytes
        self.registered.append({"manifest": manifest_bytes, "media_type": media_type, **names})
        repo_digests = (names["repo_digest"],) if names.get("repo_digest") else ()
        tags = tuple(names.get("tags", ()))
        return self.add_image(manifest_bytes, media_type or manifest.media_type, tags, repo_digests)

    def add_image(
        self,
        manifest_bytes: bytes,
        media_type: str,
        tags: tuple[str, ...],
        repo_digests: tuple[str, ...] = (),
    ) -> Image:
        manifest = mf.parse_manifest(manifest_bytes, media_type)
        layers = tuple(Layer(d.digest, d.digest, d.digest, "/nowhere", d.size) for d in manifest.layers)
        image = Image(
            id=manifest.config.digest,
            manifest_digest=sha(manifest_bytes),
            manifest_media_type=media_type,
            created=None,
            size=0,
            platform=Platform(),
            config={},
            layers=layers,
            repo_tags=tags,
            repo_digests=repo_digests,
        )
        self.images[image.id] = image
        return image

    def resolve(self, ref: str) -> Image:
        for image in self.images.values():
            if ref in image.repo_tags:
                return image
        raise ImageNotFound("no such image", subject=ref)

    def list_images(self) -> list[Image]:
        return list(self.images.values())


# --- image fixtures --------------------------------------------------------------------------------


def make_image(
    reg: FakeRegistry, repo: str, arch: str, *, layers: int = 2, layer_size: int = 5000
) -> tuple[bytes, str]:
    """Config and layers stored on the fake registry; returns (manifest bytes, manifest digest)."""
    layer_descs = []
    for i in range(layers):
        data = (f"{arch}-layer-{i}-".encode() * (layer_size // 10 + 1))[:layer_size]
        layer_descs.append(
            {"mediaType": mf.OCI_LAYER_GZIP, "digest": reg.add_blob(repo, data), "size": len(data)}
        )
    config = json.dumps(
        {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": reg.add_blob(repo, config), "size": len(config)},
        "layers": layer_descs,
    }
    data = json.dumps(manifest).encode()
    return data, sha(data)


def publish_index(reg: FakeRegistry, repo: str, tag: str) -> dict[str, str]:
    """An OCI index with amd64 and arm64 images under `tag`; returns digests by arch and of the index."""
    digests = {}
    entries = []
    for arch in ("amd64", "arm64"):
        data, digest = make_image(reg, repo, arch)
        reg.add_manifest(repo, digest, data, mf.OCI_MANIFEST)
        digests[arch] = digest
        platform = {"architecture": arch, "os": "linux", **({"variant": "v8"} if arch == "arm64" else {})}
        entries.append(
            {"mediaType": mf.OCI_MANIFEST, "digest": digest, "size": len(data), "platform": platform}
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": entries}).encode()
    digests["index"] = reg.add_manifest(repo, tag, index, mf.OCI_INDEX)
    return digests


# --- scheme and hosts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "insecure", "plain"),
    [
        ("localhost:5000", (), True),
        ("localhost", (), True),
        ("127.0.0.1:5000", (), True),
        ("127.0.0.5:80", (), True),
        ("[::1]:5000", (), True),
        ("registry-1.docker.io", (), False),
        ("ghcr.io", (), False),
        ("myreg.lan:5000", ("myreg.lan:5000",), True),
        ("myreg.lan:5000", ("myreg.lan",), True),
        ("myreg.lan:5001", ("myreg.lan:5000",), False),
        ("10.1.2.3:5000", ("10.0.0.0/8",), True),
        ("192.168.1.2:5000", ("10.0.0.0/8",), False),
        ("myreg.lan", ("http://myreg.lan/",), True),
    ],
)
def test_plain_http_only_for_loopback_and_insecure_registries(
    host: str, insecure: tuple[str, ...], plain: bool
) -> None:
    assert is_plain_http(host, insecure) is plain


def test_insecure_registries_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert insecure_from_env({"PYCOMPOSE_INSECURE_REGISTRIES": " a.lan:5000, ,b.lan "}) == (
        "a.lan:5000",
        "b.lan",
    )
    monkeypatch.setenv("PYCOMPOSE_INSECURE_REGISTRIES", "reg.corp:443")
    with RegistryClient(auth=RegistryAuth({})) as rc:
        assert rc.origin("reg.corp:443") == "http://reg.corp:443"
        assert rc.origin("reg.corp") == "https://reg.corp"
        assert rc.origin("localhost:5000") == "http://localhost:5000"


# --- manifests: negotiation, digests ---------------------------------------------------------------


def test_manifest_request_accepts_every_oci_and_docker_type(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    data, digest = make_image(registry, "team/app", "amd64")
    registry.add_manifest("team/app", "1.0", data, mf.DOCKER_MANIFEST)
    fetched = client.fetch_manifest(f"{registry.host}/team/app:1.0")
    assert (fetched.data, fetched.digest, fetched.media_type) == (data, digest, mf.DOCKER_MANIFEST)
    (request,) = registry.requests("GET", r"/v2/team/app/manifests/1.0$")
    accept = [part.strip() for part in request.headers["Accept"].split(",")]
    assert set(accept) == {mf.OCI_INDEX, mf.OCI_MANIFEST, mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST_LIST}
    assert "application/vnd.docker.distribution.manifest.v1+prettyjws" not in accept


def test_manifest_by_digest_is_verified(registry: FakeRegistry, client: RegistryClient) -> None:
    data, digest = make_image(registry, "app", "amd64")
    registry.manifests[("app", digest)] = (data.replace(b'"size": ', b'"size":', 1), mf.OCI_MANIFEST)
    with pytest.raises(DigestMismatch, match=f"manifest {digest}"):
        client.fetch_manifest(f"{registry.host}/app@{digest}")


def test_resolve_digest_uses_head(registry: FakeRegistry, client: RegistryClient) -> None:
    data, digest = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    assert client.resolve_digest(f"{registry.host}/app:v1") == digest
    assert registry.requests("HEAD", "manifests/v1$") and not registry.requests("GET", "manifests")


def test_unknown_tag_is_image_not_found(registry: FakeRegistry, client: RegistryClient) -> None:
    with pytest.raises(ImageNotFound, match="nope not found") as info:
        client.fetch_manifest(f"{registry.host}/app:nope")
    assert info.value.subject == f"{registry.host}/app:nope"


# --- retries and reachability ----------------------------------------------------------------------


def test_retries_on_503_then_succeeds(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    registry.fail = [503, 503]
    assert client.fetch_manifest(f"{registry.host}/app:v1").data == data
    assert len(registry.requests("GET", "manifests/v1$")) == 3


def test_429_honours_retry_after(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    registry.fail, registry.retry_after = [429], "1"
    started = time.monotonic()
    client.fetch_manifest(f"{registry.host}/app:v1")
    assert time.monotonic() - started >= 0.9  # waited what the server asked, not the 10 ms backoff


def test_gives_up_after_retries(registry: FakeRegistry, client: RegistryClient) -> None:
    registry.fail = [502] * 10
    with pytest.raises(RegistryError, match="502"):
        client.fetch_manifest(f"{registry.host}/app:v1")
    assert len(registry.seen) == client.retries + 1


def test_unreachable_registry_names_host_and_cause(registry: FakeRegistry) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with (
            RegistryClient(auth=RegistryAuth({}), retries=1, backoff=0.01) as rc,
            pytest.raises(RegistryUnreachable) as info,
        ):
            rc.pull(FakeStore(), f"127.0.0.1:{port}/app:v1")
    message = str(info.value)
    assert f"registry 127.0.0.1:{port} unreachable" in message
    assert "refused" in message.lower()


# --- pull ------------------------------------------------------------------------------------------


def test_pull_selects_host_platform_from_index(registry: FakeRegistry, client: RegistryClient) -> None:
    digests = publish_index(registry, "lib/multi", "latest")
    store = FakeStore()
    image = client.pull(store, f"{registry.host}/lib/multi", platform="linux/amd64")
    (record,) = store.registered
    assert sha(record["manifest"]) == digests["amd64"]
    assert record["tags"] == (f"{registry.host}/lib/multi:latest",)
    assert record["index_digest"] == digests["index"]
    assert record["repo_digest"] == f"{registry.host}/lib/multi@{digests['index']}"
    assert digests["index"] in store.blobs  # the index is kept for a later push
    assert image.manifest_digest == digests["amd64"]


def test_pull_explicit_other_platform(registry: FakeRegistry, client: RegistryClient) -> None:
    digests = publish_index(registry, "lib/multi", "latest")
    store = FakeStore()
    client.pull(store, f"{registry.host}/lib/multi:latest", platform=Platform("linux", "arm64", "v8"))
    assert sha(store.registered[0]["manifest"]) == digests["arm64"]
    manifest = json.loads(store.registered[0]["manifest"])
    assert all(layer["digest"] in store.blobs for layer in manifest["layers"])


def test_pull_missing_platform_lists_available(registry: FakeRegistry, client: RegistryClient) -> None:
    publish_index(registry, "lib/multi", "latest")
    store = FakeStore()
    with pytest.raises(ImageNotFound, match=r"linux/s390x.*available"):
        client.pull(store, f"{registry.host}/lib/multi", platform="linux/s390x")
    assert store.blobs == {} and store.registered == []


def test_pull_by_digest_does_not_tag(registry: FakeRegistry, client: RegistryClient) -> None:
    data, digest = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    store = FakeStore()
    client.pull(store, f"{registry.host}/app@{digest}")
    assert store.registered[0]["tags"] == ()
    assert store.registered[0]["repo_digest"] == f"{registry.host}/app@{digest}"


def test_pull_skips_blobs_already_stored(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64", layers=3)
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    layers = [d["digest"] for d in json.loads(data)["layers"]]
    store = FakeStore()
    store.blobs[layers[0]] = registry.blobs[layers[0]]
    lines = io.StringIO()
    client.pull(store, f"{registry.host}/app:v1", progress=PlainProgress(lines))
    fetched = {s.path.rsplit("/", 1)[1] for s in registry.requests("GET", "/blobs/")}
    assert layers[0] not in fetched and {layers[1], layers[2]} <= fetched
    text = lines.getvalue()
    assert f"{short_id(layers[0])}: Already exists" in text
    assert f"{short_id(layers[1])}: Pull complete" in text
    assert "v1: Pulling from " in text and "Status: Downloaded newer image for" in text


def test_corrupt_layer_is_detected_and_not_kept(registry: FakeRegistry) -> None:
    data, _ = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    good, bad = (d["digest"] for d in json.loads(data)["layers"])
    registry.corrupt.add(bad)
    store = FakeStore()
    with (
        RegistryClient(auth=RegistryAuth({}), max_parallel=1) as rc,  # one at a time: good, then bad
        pytest.raises(DigestMismatch) as info,
    ):
        rc.pull(store, f"{registry.host}/app:v1")
    assert f"blob {bad}" in str(info.value) and "corrupt" in str(info.value)
    assert store.blobs == {} and store.registered == []
    assert store.removed == [good]  # the sound layer fetched before was taken back


def test_failed_pull_keeps_blobs_that_were_there_before(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    data, _ = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    good, bad = (d["digest"] for d in json.loads(data)["layers"])
    registry.corrupt.add(bad)
    store = FakeStore()
    store.blobs[good] = registry.blobs[good]
    with pytest.raises(DigestMismatch):
        client.pull(store, f"{registry.host}/app:v1")
    assert set(store.blobs) == {good} and good not in store.removed


def test_blob_cut_off_midway_is_fetched_again_whole(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64", layers=1, layer_size=100_000)
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    layer = json.loads(data)["layers"][0]["digest"]
    registry.cut_once.add(layer)
    store = FakeStore()
    client.pull(store, f"{registry.host}/app:v1")
    assert store.blobs[layer] == registry.blobs[layer]
    assert len(registry.requests("GET", f"blobs/{layer}$")) == 2  # no Range: the second GET starts over


def test_parallel_downloads_are_bounded(registry: FakeRegistry) -> None:
    data, _ = make_image(registry, "app", "amd64", layers=6)
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    active, peak, lock = 0, 0, threading.Lock()

    class Watching(ProgressReporter):
        def layer_started(self, layer_id: str, action: str, total: int | None = None) -> None:
            nonlocal active, peak
            if action == "Downloading":
                with lock:
                    active += 1
                    peak = max(peak, active)
                time.sleep(0.05)

        def layer_done(self, layer_id: str, message: str) -> None:
            nonlocal active
            if message == "Download complete":
                with lock:
                    active -= 1

    with RegistryClient(auth=RegistryAuth({}), max_parallel=2) as rc:
        rc.pull(FakeStore(), f"{registry.host}/app:v1", progress=Watching())
    assert peak == 2


def test_cancel_mid_download_keeps_no_partial_blob(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64", layers=1, layer_size=200_000)
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)
    layer = json.loads(data)["layers"][0]["digest"]
    registry.slow_blob = layer
    cancel = threading.Event()

    class CancelAfterFirstBytes(ProgressReporter):
        def layer_advanced(self, layer_id: str, nbytes: int) -> None:
            cancel.set()  # as a Ctrl-C handler or an anyio cancel scope would

    store = FakeStore()
    with pytest.raises(Cancelled) as info:
        client.pull(store, f"{registry.host}/app:v1", progress=CancelAfterFirstBytes(), cancel=cancel)
    assert info.value.exit_code == 130
    assert layer not in store.blobs and store.registered == []


def test_keyboard_interrupt_becomes_cancelled(registry: FakeRegistry, client: RegistryClient) -> None:
    data, _ = make_image(registry, "app", "amd64")
    registry.add_manifest("app", "v1", data, mf.OCI_MANIFEST)

    class Interrupting(ProgressReporter):
        def status(self, line: str) -> None:
            if "Pulling from" in line:
                raise KeyboardInterrupt

    with pytest.raises(Cancelled):
        client.pull(FakeStore(), f"{registry.host}/app:v1", progress=Interrupting())


# --- push ------------------------------------------------------------------------------------------


def local_image(
    store: FakeStore, *tags: str, layers: int = 2, size: int = 3000, repo_digests: tuple[str, ...] = ()
) -> tuple[bytes, list[str]]:
    """An image in the fake store under `tags` (Docker schema2, pretty-printed: pushed byte for byte)."""
    ref = tags[0]
    digests = []
    for i in range(layers):
        data = (f"local-{ref}-{i}".encode() * size)[:size]
        store.blobs[sha(data)] = data
        digests.append(sha(data))
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    store.blobs[sha(config)] = config
    manifest = {
        "schemaVersion": 2,
        "mediaType": mf.DOCKER_MANIFEST,
        "config": {"mediaType": mf.DOCKER_CONFIG, "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": mf.DOCKER_LAYER_GZIP, "digest": d, "size": size} for d in digests],
    }
    data = json.dumps(manifest, indent=3).encode()
    store.blobs[sha(data)] = data
    store.add_image(data, mf.DOCKER_MANIFEST, tags, repo_digests)
    return data, digests


def test_push_uploads_blobs_then_manifest(registry: FakeRegistry) -> None:
    store = FakeStore()
    ref = f"{registry.host}/team/app:2"
    data, layers = local_image(store, ref, size=2500)
    lines = io.StringIO()
    with RegistryClient(auth=RegistryAuth({}), upload_chunk_size=1000) as rc:
        digest = rc.push(store, ref, progress=PlainProgress(lines))
    assert digest == sha(data)
    stored, media_type = registry.manifests[("team/app", "2")]
    assert stored == data and media_type == mf.DOCKER_MANIFEST  # bytes unchanged: same digest
    assert all(registry.blobs[d] == store.blobs[d] for d in layers)
    by_session: dict[str, list[str]] = {}
    for seen in registry.requests("PATCH", "/uploads/"):
        by_session.setdefault(seen.path, []).append(seen.headers["Content-Range"])
    assert len(by_session) == 2  # two layers chunked; the small config went up in one PUT
    assert all(r == ["0-999", "1000-1999", "2000-2499"] for r in by_session.values())  # 2.5 kB in 1 kB
    text = lines.getvalue()
    assert f"The push refers to repository [{registry.host}/team/app]" in text
    assert f"2: digest: {digest} size: {len(data)}" in text
    assert f"{short_id(layers[0])}: Pushed" in text


def test_push_streams_large_blobs_in_one_patch(registry: FakeRegistry, client: RegistryClient) -> None:
    store = FakeStore()
    ref = f"{registry.host}/team/big:1"
    _, layers = local_image(store, ref, layers=1, size=5 * 1024 * 1024)  # above the single-PUT limit
    client.push(store, ref)
    (patch,) = registry.requests("PATCH", "/uploads/")
    assert "Content-Range" not in patch.headers and len(patch.body) == 5 * 1024 * 1024
    commits = [s for s in registry.requests("PUT", "/uploads/") if s.query["digest"] == [layers[0]]]
    assert len(commits) == 1 and commits[0].body == b""
    assert registry.blobs[layers[0]] == store.blobs[layers[0]]


def test_push_skips_existing_and_mounts_from_other_repo(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    store = FakeStore()
    source, target = f"{registry.host}/base/os", f"{registry.host}/team/app:1"
    _, layers = local_image(store, f"{source}:1", target, repo_digests=(f"{source}@sha256:{'a' * 64}",))
    registry.repo_blobs.setdefault("base/os", set()).update(layers)
    registry.blobs.update({d: store.blobs[d] for d in layers})
    registry.repo_blobs.setdefault("team/app", set()).add(layers[0])
    lines = io.StringIO()
    client.push(store, target, progress=PlainProgress(lines))
    mounts = registry.requests("POST", "team/app/blobs/uploads")
    mounted = [m for m in mounts if "mount" in m.query]
    assert [m.query["mount"][0] for m in mounted] == [layers[1]]
    assert mounted[0].query["from"] == ["base/os"]
    text = lines.getvalue()
    assert f"{short_id(layers[0])}: Layer already exists" in text
    assert f"{short_id(layers[1])}: Mounted from base/os" in text
    assert (
        not registry.requests("PATCH", "") and len(registry.requests("PUT", "/uploads/")) == 1
    )  # the config


def test_push_needs_a_tag(registry: FakeRegistry, client: RegistryClient) -> None:
    with pytest.raises(Exception, match="tag"):
        client.push(FakeStore(), f"{registry.host}/app@sha256:{'b' * 64}")


def test_push_leaves_foreign_layers_out(registry: FakeRegistry, client: RegistryClient) -> None:
    store = FakeStore()
    ref = f"{registry.host}/win/app:1"
    data, layers = local_image(store, ref, layers=2)
    manifest = json.loads(data)
    manifest["layers"][0]["mediaType"] = mf.DOCKER_FOREIGN_LAYER_GZIP
    data = json.dumps(manifest).encode()
    store.blobs[sha(data)] = data
    store.images.clear()
    store.add_image(data, mf.DOCKER_MANIFEST, (ref,))
    client.push(store, ref)
    assert layers[0] not in registry.blobs and layers[1] in registry.blobs
    assert not [s for s in registry.seen if layers[0] in s.path]


# --- progress --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1kB"), (12_345_678, "12.3MB"), (40_000_000, "40MB"), (1.5e9, "1.5GB")],
)
def test_sizes_shown_like_docker(size: float, text: str) -> None:
    assert human_size(size) == text


def test_plain_progress_is_one_line_per_event() -> None:
    out = io.StringIO()
    progress = PlainProgress(out)
    progress.status("v1: Pulling from team/app")
    progress.layer_started("a1b2c3d4e5f6", "Downloading", 40_000_000)
    progress.layer_advanced("a1b2c3d4e5f6", 1_000_000)  # bytes are not logged line by line
    progress.layer_done("a1b2c3d4e5f6", "Pull complete")
    assert out.getvalue().splitlines() == [
        "v1: Pulling from team/app",
        "a1b2c3d4e5f6: Downloading 40MB",
        "a1b2c3d4e5f6: Pull complete",
    ]


def test_rich_progress_draws_one_line_per_layer() -> None:
    from rich.console import Console

    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=True, width=120, color_system=None))
    progress.status("latest: Pulling from library/nginx")
    progress.layer_done("aaaaaaaaaaaa", "Already exists")
    progress.layer_started("bbbbbbbbbbbb", "Downloading", 40_000_000)
    progress.layer_advanced("bbbbbbbbbbbb", 12_300_000)
    progress.layer_started("bbbbbbbbbbbb", "Downloading", 40_000_000)  # a retry starts the count again
    progress.layer_advanced("bbbbbbbbbbbb", 12_300_000)
    progress.layer_done("aaaaaaaaaaaa", "Already exists")
    progress.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "latest: Pulling from library/nginx" in text
    assert "bbbbbbbbbbbb: Downloading [" in text and "]  12.3MB/40MB" in text
    final = text.replace("\r", "\n").splitlines()[-2:]
    assert final == [
        "aaaaaaaaaaaa: Already exists",
        "bbbbbbbbbbbb: Downloading [" + "=" * 15 + ">" + " " * 34 + "]  12.3MB/40MB",
    ]


def test_push_whole_index_when_every_platform_is_stored(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    digests = publish_index(registry, "lib/multi", "latest")
    store = FakeStore()
    source = f"{registry.host}/lib/multi"
    client.pull(store, source, platform="linux/amd64")
    client.pull(store, source, platform="linux/arm64")
    target = f"{registry.host}/copy/multi:2"
    store.images[store.resolve(f"{source}:latest").id] = _with_tags(store.resolve(f"{source}:latest"), target)
    assert client.push(store, target) == digests["index"]
    assert registry.manifests[("copy/multi", "2")][0] == registry.manifests[("lib/multi", "latest")][0]
    for arch in ("amd64", "arm64"):
        assert ("copy/multi", digests[arch]) in registry.manifests


def test_push_one_platform_when_the_index_is_incomplete(
    registry: FakeRegistry, client: RegistryClient
) -> None:
    digests = publish_index(registry, "lib/multi", "latest")
    store = FakeStore()
    source = f"{registry.host}/lib/multi"
    image = client.pull(store, source, platform="linux/arm64")
    target = f"{registry.host}/copy/one:1"
    store.images[image.id] = _with_tags(store.resolve(f"{source}:latest"), target)
    assert client.push(store, target) == digests["arm64"]
    assert sha(registry.manifests[("copy/one", "1")][0]) == digests["arm64"]


def _with_tags(image: Image, *tags: str) -> Image:
    from dataclasses import replace

    return replace(image, repo_tags=(*image.repo_tags, *tags))
