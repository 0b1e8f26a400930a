"""Real registry servers for the image tests: Debian's `docker-registry` on 127.0.0.1, in a temp dir.

Three flavours, each a fresh process per test so a test may corrupt storage freely:
- `registry`        no auth, plain HTTP (what `localhost:5000` registries look like);
- `auth_registry`   htpasswd basic auth (`user` / `pass`), as a private registry is usually set up;
- `token_registry`  bearer-token auth: a token server in this process issues RS256 JWTs that the registry
                    verifies against our self-signed certificate (`auth.token.rootcertbundle`), so the
                    401 -> WWW-Authenticate -> token -> retry flow Docker Hub uses is exercised for real.

Teardown stops every process and thread even when the test fails. The servers need neither root nor
namespaces; tests that do, mark themselves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"
USERNAME = "user"
PASSWORD = "pass"
TOKEN_SERVICE = "pycompose-test-registry"
TOKEN_ISSUER = "pycompose-test-issuer"
START_TIMEOUT = 15.0


def _require(binary: str, package: str) -> None:
    """A missing tool is a broken test machine, not a reason to skip: say which package to install."""
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} not found: apt-get install -y {package}", pytrace=False)


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def closed_port() -> int:
    """A port that refuses connections: bound then released, nothing listens there."""
    return free_port()


@dataclass
class RegistryServer:
    """A running docker-registry: where it listens, where it stores, and how to talk to it raw."""

    host: str  # "127.0.0.1:<port>", the registry part of image references
    storage: Path
    process: subprocess.Popen
    log_path: Path
    username: str | None = None
    password: str | None = None
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        return f"{self.host}/{repository}:{tag}"

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (shared by every repository)."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # -- raw HTTP, independent of the client under test ---------------------------------------------

    def _headers(self, repository: str, actions: str = "pull,push") -> dict[str, str]:
        if self.token_server is not None:
            token = self.token_server.issue(f"repository:{repository}:{actions}", subject=USERNAME)
            return {"Authorization": f"Bearer {token}"}
        if self.username is not None:
            raw = f"{self.username}:{self.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        return {}

    def put_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT ?digest=); returns the digest."""
        import httpx

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        headers = self._headers(repository)
        with httpx.Client(base_url=self.url, headers=headers, timeout=10) as client:
            started = client.post(f"/v2/{repository}/blobs/uploads/")
            started.raise_for_status()
            location = urllib.parse.urljoin(self.url, started.headers["Location"])
            separator = "&" if "?" in location else "?"
            done = client.put(
                f"{location}{separator}digest={digest}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            done.raise_for_status()
        return digest

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        """PUT a manifest or index under a tag; returns its digest."""
        import httpx

        headers = {**self._headers(repository), "Content-Type": media_type}
        url = f"{self.url}/v2/{repository}/manifests/{reference}"
        response = httpx.put(url, content=data, headers=headers)
        response.raise_for_status()
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def get_manifest(self, repository: str, reference: str, accept: str) -> tuple[bytes, str]:
        """(bytes, media type) of a manifest as the registry serves it."""
        import httpx

        headers = {**self._headers(repository, "pull"), "Accept": accept}
        response = httpx.get(f"{self.url}/v2/{repository}/manifests/{reference}", headers=headers)
        response.raise_for_status()
        return response.content, response.headers["Content-Type"]

    def tags(self, repository: str) -> list[str]:
        import httpx

        headers = self._headers(repository, "pull")
        response = httpx.get(f"{self.url}/v2/{repository}/tags/list", headers=headers)
        response.raise_for_status()
        return sorted(response.json().get("tags") or [])


# -- token server -------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues registry JWTs like auth.docker.io: basic credentials optional, anonymous gets pull only."""

    key_path: Path
    cert_path: Path
    port: int = 0
    requests: list[dict] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _cert_der_b64(self) -> str:
        pem = self.cert_path.read_text()
        body = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0]
        return "".join(body.split())  # PEM body is already standard base64 of the DER

    def _sign(self, signing_input: bytes) -> bytes:
        """RS256 = RSASSA-PKCS1-v1_5 over SHA-256, which is what `openssl dgst -sign` produces."""
        try:
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
        except ImportError:
            result = subprocess.run(
                ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
                input=signing_input,
                capture_output=True,
                check=True,
            )
            return result.stdout
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]

    def issue(self, *scopes: str, subject: str = "") -> str:
        """A token granting exactly `scopes` ("repository:<name>:<actions>")."""
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._cert_der_b64()]}
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._sign(signing_input.encode())
        return f"{signing_input}.{_b64url(signature)}"

    def _handle(self, handler: BaseHTTPRequestHandler) -> tuple[int, dict]:
        url = urllib.parse.urlsplit(handler.path)
        query = urllib.parse.parse_qs(url.query)
        scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
        authorization = handler.headers.get("Authorization", "")
        self.requests.append({"path": url.path, "query": query, "authorization": authorization})
        if url.path != "/token" or query.get("service") != [TOKEN_SERVICE]:
            return 400, {"errors": [{"code": "BAD_REQUEST", "message": "unknown service"}]}
        subject = ""
        if authorization:
            expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            if authorization != expected:
                error = {"code": "UNAUTHORIZED", "message": "incorrect username or password"}
                return 401, {"errors": [error]}
            subject = USERNAME
        else:  # anonymous, like Docker Hub: pull only
            scopes = [self._pull_only(scope) for scope in scopes]
        token = self.issue(*scopes, subject=subject)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return 200, {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued}

    @staticmethod
    def _pull_only(scope: str) -> str:
        head, _, actions = scope.rpartition(":")
        return f"{head}:{'pull' if 'pull' in actions.split(',') else ''}"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = owner._handle(self)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def make_token_keys(directory: Path) -> tuple[Path, Path]:
    """A self-signed RSA certificate and key (the registry trusts the certificate as its root)."""
    _require("openssl", "openssl")
    key, cert = directory / "token.key", directory / "token.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=pycompose-test-token", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return key, cert


# -- registry process ---------------------------------------------------------------------------------


def _config(storage: Path, port: int, auth: str) -> str:
    """docker-registry YAML: filesystem storage in the temp dir, deletes enabled, no health polling."""
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {os.urandom(16).hex()}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
        f"{auth}"
    )


def _wait_until_serving(server: RegistryServer) -> None:
    """Poll /v2/ until the registry answers (200 or 401: both mean it is up)."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/v2/", timeout=1).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    message = f"docker-registry did not answer on {server.host} within {START_TIMEOUT}s"
    raise RuntimeError(f"{message}:\n{server.log()}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_registry(directory: Path, auth: str = "", **extra) -> RegistryServer:
    """Start docker-registry with `auth` YAML on a free port; retried if the port was taken meanwhile."""
    _require("docker-registry", "docker-registry")
    storage = directory / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):
        port = free_port()
        config = directory / "config.yml"
        config.write_text(_config(storage, port, auth))
        log_path = directory / "registry.log"
        with log_path.open("wb") as log:
            command = [REGISTRY_BIN, "serve", str(config)]
            process = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        server = RegistryServer(f"127.0.0.1:{port}", storage, process, log_path, **extra)
        try:
            _wait_until_serving(server)
            return server
        except BaseException:
            _stop(process)
            if "address already in use" not in server.log():
                raise
    raise RuntimeError("docker-registry: no free port after 3 attempts")


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = start_registry(tmp_path_factory.mktemp("registry"))
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    _require("htpasswd", "apache2-utils")
    directory = tmp_path_factory.mktemp("auth-registry")
    line = subprocess.run(
        ["htpasswd", "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True, text=True
    ).stdout.strip()
    htpasswd = directory / "htpasswd"
    htpasswd.write_text(line + "\n")
    auth = f"auth:\n  htpasswd:\n    realm: pycompose-test\n    path: {htpasswd}\n"
    server = start_registry(directory, auth, username=USERNAME, password=PASSWORD)
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    directory = tmp_path_factory.mktemp("token-registry")
    key, cert = make_token_keys(directory)
    tokens = TokenServer(key, cert)
    tokens.start()
    try:
        auth = (
            "auth:\n  token:\n"
            f"    realm: {tokens.realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n"
            f"    rootcertbundle: {cert}\n"
        )
        server = start_registry(directory, auth, username=USERNAME, password=PASSWORD, token_server=tokens)
        try:
            yield server
        finally:
            _stop(server.process)
    finally:
        tokens.stop()


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point DOCKER_CONFIG at a temp dir; returns a function writing `auths` for a registry host."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))

    def write(host: str, username: str, password: str) -> Path:
        auth = base64.b64encode(f"{username}:{password}".encode()).decode()
        path = directory / "config.json"
        path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
        return path

    return write


@pytest.fixture(scope="session")
def rootfs_tar() -> bytes:
    """The busybox test root filesystem as a tar (rootfs_fixture.py), for import_rootfs in fixtures."""
    from rootfs_fixture import busybox_tar

    return busybox_tar()
