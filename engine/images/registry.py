"""OCI Distribution client: pull images into the store and push them out, over HTTP(S) with httpx.

Endpoints used (OCI distribution-spec v1.1 / Docker registry API v2): `GET|HEAD /v2/<name>/manifests/<ref>`
with the full Accept list, `GET|HEAD /v2/<name>/blobs/<digest>` (redirects followed: registries hand blobs
to a CDN), `POST /v2/<name>/blobs/uploads/` (optionally `?mount=<digest>&from=<repo>`), then a single `PUT
<location>?digest=` for small blobs, or one streamed `PATCH` (Docker's way; `Content-Range` chunks if
`upload_chunk_size` is set) and an empty `PUT ?digest=`; last `PUT /v2/<name>/manifests/<tag>`. An image
pulled through an index is pushed back as that index when the store holds every platform it names.

Guarantees: every manifest and blob is checked against its digest (blobs by `ImageStore.write_blob`, which
keeps nothing that does not match); transient failures (connection errors, 5xx, 429) are retried whole,
with backoff; Ctrl-C or a set `cancel` event stops the workers and raises `Cancelled`, with no partial blob
visible in the store. Scheme: HTTPS, except plain HTTP for loopback hosts and configured insecure
registries (constructor argument or `PYCOMPOSE_INSECURE_REGISTRIES`, comma separated, host[:port] or CIDR).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any, BinaryIO

from engine.errors import (
    AuthenticationError,
    Cancelled,
    DigestMismatch,
    EngineError,
    ImageNotFound,
    InvalidReference,
    RegistryError,
    RegistryUnreachable,
)
from engine.frozen import frozen
from engine.images.auth import RegistryAuth, error_detail, repository_scope
from engine.images.progress import ProgressReporter, short_id
from engine.images.types import Descriptor, Image, Platform

if TYPE_CHECKING:
    import httpx

    from engine.images.reference import Reference

INSECURE_ENV = "PYCOMPOSE_INSECURE_REGISTRIES"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # containerd's limit: a bigger "manifest" is not one
READ_CHUNK = 1024 * 1024
MONOLITHIC_LIMIT = 4 * 1024 * 1024  # blobs up to this size go up in a single PUT (one round trip less)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 10.0
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


class _Stop(Exception):
    """Raised inside a worker to abandon its blob (Ctrl-C, cancel event, or a sibling failed)."""


# --- where to connect ------------------------------------------------------------------------------


def split_host(host: str) -> tuple[str, int | None]:
    """`registry:5000` -> (`registry`, 5000); `[::1]:5000` -> (`::1`, 5000)."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port = host.partition(":") if host.count(":") == 1 else (host, "", "")
    return name.lower(), int(port) if port.isdigit() else None


def insecure_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Insecure registries listed in `PYCOMPOSE_INSECURE_REGISTRIES`."""
    value = (os.environ if env is None else env).get(INSECURE_ENV, "")
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _entry_matches(entry: str, host: str, name: str, ip: ipaddress._BaseAddress | None) -> bool:
    entry = entry.lower().removeprefix("http://").removeprefix("https://").rstrip("/")
    if entry in (host.lower(), name):
        return True
    if "/" in entry and ip is not None:
        try:
            return ip in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    return False


def is_plain_http(host: str, insecure: Iterable[str] = ()) -> bool:
    """True for loopback registries and configured insecure ones (host, host:port or CIDR)."""
    name, _ = split_host(host)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if name in _LOOPBACK_NAMES or (ip is not None and ip.is_loopback):
        return True
    return any(_entry_matches(entry, host, name, ip) for entry in insecure)


@frozen
class _Repo:
    """One repository on one registry, and the scopes requests for it need."""

    host: str
    origin: str
    repository: str
    subject: str
    scopes: tuple[str, ...]

    def url(self, tail: str) -> str:
        return f"{self.origin}/v2/{self.repository}/{tail}"


@frozen
class FetchedManifest:
    """A manifest (or index) as the registry served it, already checked against its digest."""

    data: bytes
    media_type: str | None
    digest: str


def _digest_of(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise RegistryError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _to_reference(ref: Reference | str) -> Reference:
    from engine.images.reference import parse_reference

    return parse_reference(ref) if isinstance(ref, str) else ref


def _to_platform(platform: Platform | str | None) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    from engine.images.manifest import parse_platform

    return parse_platform(platform)


def _is_index(parsed: Any) -> bool:
    return hasattr(parsed, "manifests")


# --- the client ------------------------------------------------------------------------------------


class RegistryClient:
    """Talks the OCI Distribution API to any number of registries, sharing one connection pool.

    Thread-safe for the blob workers it starts itself; use one client per command.
    """

    def __init__(
        self,
        *,
        insecure_registries: Sequence[str] = (),
        auth: RegistryAuth | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        max_parallel: int = 3,
        backoff: float = 0.5,
        upload_chunk_size: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import httpx

        self.insecure_registries = tuple(insecure_registries) + insecure_from_env()
        self.auth = auth or RegistryAuth()
        self.retries = max(0, retries)
        self.max_parallel = max(1, max_parallel)
        self.backoff = backoff
        self.upload_chunk_size = None if upload_chunk_size is None else max(1, upload_chunk_size)
        limits = httpx.Limits(
            max_connections=self.max_parallel + 4, max_keepalive_connections=self.max_parallel + 2
        )
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=limits,
            headers={"User-Agent": "pycompose/0.1 (+oci-distribution)"},
            transport=transport,
            trust_env=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------------

    def origin(self, host: str) -> str:
        """`http://host` or `https://host` for a registry host[:port]."""
        scheme = "http" if is_plain_http(host, self.insecure_registries) else "https"
        return f"{scheme}://{host}"

    def _repo(self, ref: Reference, actions: Sequence[str]) -> _Repo:
        scopes = (repository_scope(ref.repository, actions),)
        host = ref.registry_host
        return _Repo(host, self.origin(host), ref.repository, ref.canonical, scopes)

    def _sleep_before_retry(self, attempt: int, response: httpx.Response | None = None) -> None:
        """Exponential backoff with jitter; a 429's Retry-After (seconds) wins, capped."""
        delay = self.backoff * (2 ** (attempt - 1)) * (1 + random.random() / 4)
        if response is not None:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.isdigit():
                delay = min(float(retry_after), MAX_RETRY_AFTER)
        time.sleep(delay)

    def _unreachable(self, repo: _Repo, exc: Exception) -> RegistryUnreachable:
        cause = str(exc) or type(exc).__name__
        return RegistryUnreachable(f"registry {repo.host} unreachable: {cause}", subject=repo.subject)

    def _send(
        self,
        repo: _Repo,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterable[bytes] | Callable[[], Iterable[bytes] | bytes] | None = None,
        scopes: Sequence[str] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retry: bool = True,
        stop: threading.Event | None = None,
    ) -> httpx.Response:
        """One request with auth challenges answered and transient failures retried.

        `content` may be a factory so a retried request sends its body again from the start (a plain
        iterator can only go once: pass `retry=False`). The caller owns the response.
        """
        import httpx

        scopes = tuple(scopes or repo.scopes)
        attempts = self.retries + 1 if retry else 1
        attempt = 0
        answered_challenge = False
        while True:
            if stop is not None and stop.is_set():
                raise _Stop
            request_headers = dict(headers or {})
            authorization = self.auth.authorization(self._http, repo.host, scopes)
            if authorization:
                request_headers["Authorization"] = authorization
            body = content() if callable(content) else content
            try:
                request = self._http.build_request(method, url, headers=request_headers, content=body)
                response = self._http.send(request, stream=stream, follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                attempt += 1
                if attempt >= attempts:
                    raise self._unreachable(repo, exc) from exc
                self._sleep_before_retry(attempt)
                continue
            if response.status_code == 401 and not answered_challenge:
                answered_challenge = True
                challenges = response.headers.get_list("www-authenticate")
                response.close()
                if not challenges:
                    raise AuthenticationError("unauthorized: 401 without a challenge", subject=repo.host)
                if authorization and authorization.startswith("Bearer "):
                    self.auth.invalidate(repo.host, scopes)
                self.auth.record_challenge(repo.host, challenges)
                continue
            if response.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                attempt += 1
                response.close()
                self._sleep_before_retry(attempt, response)
                continue
            return response

    def _fail(self, repo: _Repo, response: httpx.Response, what: str) -> RegistryError:
        """The error for an unexpected answer (the body is read for the registry's own words)."""
        if not response.is_closed:
            response.read()
        status = response.status_code
        detail = error_detail(response)
        if status == 401:
            creds = self.auth.credentials_for(repo.host)
            if creds is None:
                hint = f"{detail or 'authentication required'} (no credentials for {repo.host})"
                return AuthenticationError(f"unauthorized: {hint}", subject=repo.host)
            if self.auth.scheme(repo.host) == "bearer":  # the token server took the password: no access
                access = f"no access to {repo.repository} for {creds.username}"
                reason = f"{detail or 'authentication required'} ({access})"
            else:
                reason = "incorrect username or password"
            return AuthenticationError(f"unauthorized: {reason}", subject=repo.host)
        if status == 403:
            return AuthenticationError(
                f"denied: {detail or 'requested access to the resource is denied'} ({what})",
                subject=repo.host,
            )
        reason = detail or response.reason_phrase
        return RegistryError(f"{what}: registry answered {status} {reason}", subject=repo.subject)

    # -- manifests -----------------------------------------------------------------------------------

    def fetch_manifest(self, ref: Reference | str, reference: str | None = None) -> FetchedManifest:
        """GET a manifest or index by tag or digest, verified against the digest it is named by."""
        ref = _to_reference(ref)
        repo = self._repo(ref, ("pull",))
        return self._fetch_manifest(repo, reference or ref.digest or ref.tag or "latest")

    def _fetch_manifest(self, repo: _Repo, reference: str) -> FetchedManifest:
        response = self._send(repo, "GET", repo.url(f"manifests/{reference}"), headers=_accept_headers())
        with closing(response):
            if response.status_code == 404:
                raise ImageNotFound(
                    f"manifest unknown: {reference} not found on {repo.host}", subject=repo.subject
                )
            if response.status_code != 200:
                raise self._fail(repo, response, f"manifest {reference}")
            declared = int(response.headers.get("content-length") or 0)
            if declared > MAX_MANIFEST_BYTES or len(response.content) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"manifest {reference} is larger than 4 MiB", subject=repo.subject)
            data = response.content
            media_type = _media_type(response.headers.get("content-type"))
            announced = response.headers.get("docker-content-digest")
        digest = _digest_of(data)
        if ":" in reference and _digest_of(data, reference.partition(":")[0]) != reference:
            raise DigestMismatch(
                f"manifest {reference} from {repo.host} does not match its digest", subject=repo.subject
            )
        if announced and announced.startswith("sha256:") and announced != digest:
            raise DigestMismatch(
                f"manifest {reference} from {repo.host} hashes to {digest}, registry announced {announced}",
                subject=repo.subject,
            )
        return FetchedManifest(data, media_type, digest)

    def resolve_digest(self, ref: Reference | str) -> str:
        """The digest a tag points at now (HEAD, falling back to GET when the header is missing)."""
        ref = _to_reference(ref)
        if ref.digest:
            return ref.digest
        repo = self._repo(ref, ("pull",))
        url = repo.url(f"manifests/{ref.tag or 'latest'}")
        with closing(self._send(repo, "HEAD", url, headers=_accept_headers())) as response:
            if response.status_code == 404:
                raise ImageNotFound(
                    f"manifest unknown: {ref.tag} not found on {repo.host}", subject=repo.subject
                )
            if response.status_code != 200:
                raise self._fail(repo, response, f"manifest {ref.tag}")
            announced = response.headers.get("docker-content-digest")
        return announced or self._fetch_manifest(repo, ref.tag or "latest").digest

    # -- pull ----------------------------------------------------------------------------------------

    def pull(
        self,
        store: Any,
        ref: Reference | str,
        *,
        platform: Platform | str | None = None,
        progress: ProgressReporter | None = None,
        cancel: threading.Event | None = None,
    ) -> Image:
        """Pull `ref` into `store`: manifest (index -> this platform), config and layers, then register.

        `store` is an `ImageStore` (has_blob, write_blob, register_image).
        """
        ref = _to_reference(ref)
        progress = progress or ProgressReporter()
        repo = self._repo(ref, ("pull",))
        added = _AddedBlobs(store)
        try:
            try:
                with store.lease():  # blobs fetched but not yet registered must survive a concurrent prune
                    return self._pull(added, ref, repo, _to_platform(platform), progress, cancel)
            except BaseException:
                added.undo()  # a failed pull leaves the store as it found it
                raise
        except (KeyboardInterrupt, _Stop) as exc:
            raise Cancelled("pull cancelled; no partial blob was kept", subject=ref.canonical) from exc

    def _pull(
        self,
        store: Any,
        ref: Reference,
        repo: _Repo,
        platform: Platform | None,
        progress: ProgressReporter,
        cancel: threading.Event | None,
    ) -> Image:
        from engine.images.manifest import host_platform, parse_manifest, select_platform

        progress.status(f"{ref.digest or ref.tag}: Pulling from {ref.familiar_name}")
        top = self._fetch_manifest(repo, ref.digest or ref.tag or "latest")
        fetched, parsed = top, parse_manifest(top.data, top.media_type, subject=repo.subject)
        index_digest, index_type = None, None
        if _is_index(parsed):
            index_type = parsed.media_type
            chosen = select_platform(parsed, platform or host_platform(), subject=repo.subject)
            index_digest = top.digest
            fetched = self._fetch_manifest(repo, chosen.digest)
            parsed = parse_manifest(
                fetched.data, fetched.media_type or chosen.media_type, subject=repo.subject
            )
            if _is_index(parsed):
                raise RegistryError(f"index {chosen.digest} points at another index", subject=repo.subject)
        fetched_any, downloaded = self._fetch_blobs(store, repo, parsed, progress, cancel)
        if platform is not None and index_digest is None:
            _check_single_platform(store, parsed.config.digest, platform, repo.subject)
        if index_digest is not None:  # kept so the image can be pushed back as it came
            store.write_blob([top.data], expected_digest=top.digest, media_type=index_type)
        media_type = getattr(parsed, "media_type", None) or fetched.media_type
        image = store.register_image(
            fetched.data,
            media_type,
            tags=() if ref.digest else (ref.canonical,),
            index_digest=index_digest,
            repo_digest=f"{ref.name}@{top.digest}",
        )
        for layer_id in downloaded:
            progress.layer_done(layer_id, "Pull complete")
        progress.status(f"Digest: {top.digest}")
        verdict = "Downloaded newer image for" if fetched_any else "Image is up to date for"
        progress.status(f"Status: {verdict} {ref.familiar}")
        return image

    def _fetch_blobs(
        self,
        store: Any,
        repo: _Repo,
        manifest: Any,
        progress: ProgressReporter,
        cancel: threading.Event | None,
    ) -> tuple[bool, list[str]]:
        """Download what the store lacks, in parallel: (anything fetched, ids of the layers fetched)."""
        config: Descriptor = manifest.config
        jobs: dict[str, tuple[Descriptor, bool]] = {}
        for layer in manifest.layers:
            layer_id = short_id(layer.digest)
            if layer.digest in jobs:
                continue
            if store.has_blob(layer.digest):
                progress.layer_done(layer_id, "Already exists")
                continue
            jobs[layer.digest] = (layer, True)
            progress.layer_started(layer_id, "Waiting", layer.size)
        if not store.has_blob(config.digest):
            jobs.setdefault(config.digest, (config, False))
        self._run_parallel(
            [self._download_job(store, repo, desc, shown, progress) for desc, shown in jobs.values()], cancel
        )
        return bool(jobs), [short_id(desc.digest) for desc, shown in jobs.values() if shown]

    def _download_job(
        self, store: Any, repo: _Repo, desc: Descriptor, shown: bool, progress: ProgressReporter
    ) -> Callable[[threading.Event], None]:
        def job(stop: threading.Event) -> None:
            self._download_blob(store, repo, desc, progress if shown else ProgressReporter(), stop)

        return job

    def _download_blob(
        self, store: Any, repo: _Repo, desc: Descriptor, progress: ProgressReporter, stop: threading.Event
    ) -> None:
        """GET one blob into the store, retried whole on transient failures; the store verifies it."""
        import httpx

        layer_id = short_id(desc.digest)
        attempt = 0
        while True:
            progress.layer_started(layer_id, "Downloading", desc.size)
            response = self._send(
                repo, "GET", repo.url(f"blobs/{desc.digest}"), stream=True, follow_redirects=True, stop=stop
            )
            try:
                if response.status_code != 200:
                    raise self._fail(repo, response, f"blob {desc.digest}")
                chunks = _counted(response.iter_bytes(), layer_id, progress, stop)  # as it arrives
                store.write_blob(
                    chunks, expected_digest=desc.digest, expected_size=desc.size, media_type=desc.media_type
                )
            except DigestMismatch as exc:
                raise DigestMismatch(
                    f"blob {desc.digest} from {repo.host}/{repo.repository} is corrupt: {exc.message}",
                    subject=repo.subject,
                ) from exc
            except httpx.TransportError as exc:
                attempt += 1
                if attempt > self.retries:
                    raise self._unreachable(repo, exc) from exc
                self._sleep_before_retry(attempt)
                continue
            finally:
                response.close()
            progress.layer_done(layer_id, "Download complete")
            return

    def _run_parallel(
        self, jobs: list[Callable[[threading.Event], None]], cancel: threading.Event | None
    ) -> None:
        """Run jobs on at most `max_parallel` threads; the first failure (or Ctrl-C) stops the rest."""
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        if not jobs:
            return
        stop = threading.Event()
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_parallel, len(jobs)), thread_name_prefix="pycompose-blob"
        )
        futures = [pool.submit(job, stop) for job in jobs]
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                failed = next((f for f in done if f.exception() is not None), None)
                if failed is not None:
                    raise failed.exception()  # type: ignore[misc]
                if cancel is not None and cancel.is_set():
                    raise _Stop
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)

    # -- push ----------------------------------------------------------------------------------------

    def push(
        self,
        store: Any,
        ref: Reference | str,
        *,
        progress: ProgressReporter | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Push the image tagged `ref` (layers, config, then the manifest); returns the manifest digest.

        `store` is an `ImageStore` (resolve, read_blob, open_blob, list_images).
        """
        ref = _to_reference(ref)
        if ref.digest or not ref.tag:
            raise InvalidReference("push needs a tag, not a digest", subject=ref.canonical)
        progress = progress or ProgressReporter()
        try:
            return self._push(store, ref, progress, cancel)
        except (KeyboardInterrupt, _Stop) as exc:
            raise Cancelled(
                "push cancelled; the registry tag was not changed", subject=ref.canonical
            ) from exc

    def _push(
        self, store: Any, ref: Reference, progress: ProgressReporter, cancel: threading.Event | None
    ) -> str:
        from engine.images.manifest import parse_manifest

        image = store.resolve(ref.canonical)
        manifest_bytes = store.read_blob(image.manifest_digest)
        own = (image.manifest_digest, manifest_bytes, image.manifest_media_type)
        index = _complete_index(store, image)
        targets = index.children if index else [own]
        repo = self._repo(ref, ("pull", "push"))
        progress.status(f"The push refers to repository [{ref.name}]")
        sources = _mount_sources(store, ref)
        manifests = [parse_manifest(data, media_type) for _, data, media_type in targets]
        config_jobs = [self._upload_job(store, repo, m.config, (), ProgressReporter()) for m in manifests]
        layers = [d for m in manifests for d in _pushable_layers(m)]
        layer_jobs = [
            self._upload_job(store, repo, desc, sources.get(desc.digest, ()), progress)
            for desc in _unique(layers)
        ]
        self._run_parallel(layer_jobs + config_jobs, cancel)
        if index is None:
            digest = self._put_manifest(repo, ref.tag or "latest", manifest_bytes, image.manifest_media_type)
            progress.status(f"{ref.tag}: digest: {digest} size: {len(manifest_bytes)}")
            return digest
        for child_digest, data, media_type in index.children:  # by digest: the index names them so
            self._put_manifest(repo, child_digest, data, media_type)
        digest = self._put_manifest(repo, ref.tag or "latest", index.data, index.media_type)
        progress.status(
            f"{ref.tag}: digest: {digest} size: {len(index.data)} ({len(index.children)} platforms)"
        )
        return digest

    def _upload_job(
        self, store: Any, repo: _Repo, desc: Descriptor, sources: Sequence[str], progress: ProgressReporter
    ) -> Callable[[threading.Event], None]:
        def job(stop: threading.Event) -> None:
            layer_id = short_id(desc.digest)
            progress.layer_started(layer_id, "Preparing")
            if self.blob_exists(repo, desc.digest, stop=stop):
                progress.layer_done(layer_id, "Layer already exists")
                return
            location = None
            for source in sources:
                mounted, location = self._try_mount(repo, desc.digest, source, stop)
                if mounted:
                    progress.layer_done(layer_id, f"Mounted from {source}")
                    return
                if location:
                    break
            self._upload_blob(store, repo, desc, location, progress, stop)
            progress.layer_done(layer_id, "Pushed")

        return job

    def blob_exists(self, repo: _Repo, digest: str, *, stop: threading.Event | None = None) -> bool:
        """HEAD a blob: present (200) or not (404) in this repository."""
        with closing(
            self._send(repo, "HEAD", repo.url(f"blobs/{digest}"), follow_redirects=True, stop=stop)
        ) as response:
            if response.status_code == 200:
                return True
            if response.status_code == 404:
                return False
            raise self._fail(repo, response, f"blob {digest}")

    def _try_mount(
        self, repo: _Repo, digest: str, source: str, stop: threading.Event
    ) -> tuple[bool, str | None]:
        """Cross-repository mount: 201 = mounted; 202 = not mounted, an upload session to use instead."""
        scopes = (*repo.scopes, repository_scope(source, ("pull",)))
        url = repo.url("blobs/uploads/")
        response = self._send(
            repo, "POST", f"{url}?mount={digest}&from={source}", scopes=scopes, content=b"", stop=stop
        )
        with closing(response):
            if response.status_code == 201:
                return True, None
            if response.status_code == 202 and response.headers.get("location"):
                return False, self._absolute(repo, response.headers["location"])
            if response.status_code in (401, 403, 404):
                return False, None  # no access to the source: a plain upload still works
            raise self._fail(repo, response, f"mount of {digest} from {source}")

    def _absolute(self, repo: _Repo, location: str) -> str:
        import httpx

        return str(httpx.URL(repo.origin + "/").join(location))

    def _start_upload(self, repo: _Repo, stop: threading.Event) -> str:
        with closing(
            self._send(repo, "POST", repo.url("blobs/uploads/"), content=b"", stop=stop)
        ) as response:
            if response.status_code != 202 or not response.headers.get("location"):
                raise self._fail(repo, response, "starting an upload")
            return self._absolute(repo, response.headers["location"])

    def _upload_blob(
        self,
        store: Any,
        repo: _Repo,
        desc: Descriptor,
        location: str | None,
        progress: ProgressReporter,
        stop: threading.Event,
    ) -> None:
        """Upload one blob; a transport failure restarts it from a fresh session (no resume)."""
        layer_id = short_id(desc.digest)
        attempt = 0
        while True:
            try:
                session = location or self._start_upload(repo, stop)
                location = None
                progress.layer_started(layer_id, "Pushing", desc.size)
                if desc.size <= min(MONOLITHIC_LIMIT, self.upload_chunk_size or MONOLITHIC_LIMIT):
                    self._put_monolithic(store, repo, desc, session, layer_id, progress, stop)
                elif self.upload_chunk_size is None:
                    self._put_streamed(store, repo, desc, session, layer_id, progress, stop)
                else:
                    self._put_chunked(store, repo, desc, session, layer_id, progress, stop)
                return
            except RegistryUnreachable:
                attempt += 1
                if attempt > self.retries:
                    raise
                self._sleep_before_retry(attempt)

    def _put_monolithic(
        self,
        store: Any,
        repo: _Repo,
        desc: Descriptor,
        session: str,
        layer_id: str,
        progress: ProgressReporter,
        stop: threading.Event,
    ) -> None:
        def body() -> Iterator[bytes]:
            return _counted(_read_file(store.open_blob(desc.digest)), layer_id, progress, stop)

        url = _with_digest(session, desc.digest)
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)}
        with closing(
            self._send(repo, "PUT", url, headers=headers, content=body, retry=False, stop=stop)
        ) as response:
            if response.status_code not in (201, 204):
                raise self._fail(repo, response, f"upload of {desc.digest}")

    def _put_streamed(
        self,
        store: Any,
        repo: _Repo,
        desc: Descriptor,
        session: str,
        layer_id: str,
        progress: ProgressReporter,
        stop: threading.Event,
    ) -> None:
        """Docker's way: the whole blob in one streamed PATCH, then PUT ?digest= to commit it.

        Measured on docker-registry 2.8 with a 268 MB layer: about 3x the throughput of 32 MiB chunks.
        """
        with store.open_blob(desc.digest) as blob:
            pieces = _counted(_read_file(blob), layer_id, progress, stop)
            session = self._patch(repo, desc, session, pieces, {"Content-Length": str(desc.size)}, stop)
        self._commit_upload(repo, desc, session, stop)

    def _put_chunked(
        self,
        store: Any,
        repo: _Repo,
        desc: Descriptor,
        session: str,
        layer_id: str,
        progress: ProgressReporter,
        stop: threading.Event,
    ) -> None:
        """PATCH fixed-size chunks with Content-Range (following each new Location), then PUT ?digest=.

        For registries or proxies that cap request bodies; slower than one streamed PATCH.
        """
        assert self.upload_chunk_size is not None
        offset = 0
        with store.open_blob(desc.digest) as blob:
            while chunk := blob.read(self.upload_chunk_size):
                if stop.is_set():
                    raise _Stop
                content_range = {"Content-Range": f"{offset}-{offset + len(chunk) - 1}"}
                session = self._patch(repo, desc, session, chunk, content_range, stop)
                offset += len(chunk)
                progress.layer_advanced(layer_id, len(chunk))
        self._commit_upload(repo, desc, session, stop)

    def _patch(
        self,
        repo: _Repo,
        desc: Descriptor,
        session: str,
        content: bytes | Iterable[bytes],
        headers: Mapping[str, str],
        stop: threading.Event,
    ) -> str:
        """Send data to an upload session; returns the session's next location."""
        headers = {"Content-Type": "application/octet-stream", **headers}
        response = self._send(
            repo, "PATCH", session, headers=headers, content=content, retry=False, stop=stop
        )
        with closing(response):
            if response.status_code != 202:
                raise self._fail(repo, response, f"upload of {desc.digest}")
            return self._absolute(repo, response.headers.get("location") or session)

    def _commit_upload(self, repo: _Repo, desc: Descriptor, session: str, stop: threading.Event) -> None:
        url = _with_digest(session, desc.digest)
        with closing(self._send(repo, "PUT", url, content=b"", retry=False, stop=stop)) as response:
            if response.status_code not in (201, 204):
                raise self._fail(repo, response, f"upload of {desc.digest}")

    def _put_manifest(self, repo: _Repo, tag: str, data: bytes, media_type: str) -> str:
        """PUT the manifest under its tag; the registry's digest must be ours."""
        digest = _digest_of(data)
        headers = {"Content-Type": media_type}
        with closing(
            self._send(repo, "PUT", repo.url(f"manifests/{tag}"), headers=headers, content=data)
        ) as response:
            if response.status_code not in (201, 202):
                raise self._fail(repo, response, f"manifest {tag}")
            announced = response.headers.get("docker-content-digest")
        if announced and announced != digest:
            raise DigestMismatch(
                f"registry stored manifest {tag} as {announced}, we sent {digest}", subject=repo.subject
            )
        return digest


# --- helpers ---------------------------------------------------------------------------------------


class _AddedBlobs:
    """The store, seen through one pull: remembers the blobs it added so a failure can take them back.

    Everything but `write_blob` goes straight to the store; `undo` calls `ImageStore.remove_blob`, which
    keeps any blob an image has come to use meanwhile.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._lock = threading.Lock()
        self.added: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_blob(self, content: Any, *, expected_digest: str | None = None, **options: Any) -> Any:
        existed = expected_digest is not None and self._store.has_blob(expected_digest)
        desc = self._store.write_blob(content, expected_digest=expected_digest, **options)
        digest = getattr(desc, "digest", None) or expected_digest
        if not existed and digest:
            with self._lock:
                self.added.append(digest)
        return desc

    def undo(self) -> None:
        for digest in reversed(self.added):
            try:
                self._store.remove_blob(digest)
            except EngineError:
                pass  # best effort: an orphan blob is swept by `image prune`, never used half-written


def _accept_headers() -> dict[str, str]:
    """Every manifest kind we can use (OCI and Docker, index and image); schema1 is deliberately absent."""
    from engine.images.manifest import ACCEPT_MANIFEST_TYPES

    return {"Accept": ", ".join(ACCEPT_MANIFEST_TYPES)}


def _media_type(content_type: str | None) -> str | None:
    """The media type of a response, None when the server gave a generic one (detect from the body)."""
    value = (content_type or "").split(";", 1)[0].strip().lower()
    return None if value in ("", "application/json", "text/plain", "application/octet-stream") else value


def _with_digest(location: str, digest: str) -> str:
    import httpx

    return str(httpx.URL(location).copy_merge_params({"digest": digest}))


def _counted(
    chunks: Iterable[bytes], layer_id: str, progress: ProgressReporter, stop: threading.Event
) -> Iterator[bytes]:
    """Pass chunks through, reporting bytes and stopping when asked (the consumer discards its work)."""
    for chunk in chunks:
        if stop.is_set():
            raise _Stop
        progress.layer_advanced(layer_id, len(chunk))
        yield chunk


def _read_file(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(READ_CHUNK):
            yield chunk


def _unique(descs: Iterable[Descriptor]) -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}
    for desc in descs:
        seen.setdefault(desc.digest, desc)
    return list(seen.values())


@frozen
class _StoredIndex:
    """An index kept in the store with every manifest it names: (digest, bytes, media type) each."""

    data: bytes
    media_type: str
    children: list[tuple[str, bytes, str]]


def _complete_index(store: Any, image: Image) -> _StoredIndex | None:
    """The index this image was pulled through, if the store holds all of it (every platform's
    manifest, config and layers); else None and only the image's own manifest is pushed, as docker does.
    """
    from engine.images.manifest import parse_manifest

    for repo_digest in image.repo_digests:
        digest = repo_digest.rpartition("@")[2]
        if digest == image.manifest_digest or not store.has_blob(digest):
            continue
        try:
            parsed = parse_manifest(store.read_blob(digest), None)
        except EngineError:
            continue
        if not _is_index(parsed) or image.manifest_digest not in {d.digest for d in parsed.manifests}:
            continue
        children = []
        for desc in parsed.manifests:
            if not store.has_blob(desc.digest):
                return None
            data = store.read_blob(desc.digest)
            child = parse_manifest(data, desc.media_type)
            if _is_index(child):
                return None
            if not all(store.has_blob(d.digest) for d in (child.config, *_pushable_layers(child))):
                return None
            children.append((desc.digest, data, child.media_type))
        return _StoredIndex(store.read_blob(digest), parsed.media_type, children)
    return None


def _pushable_layers(manifest: Any) -> list[Descriptor]:
    """Top layer first, as docker lists them; foreign/nondistributable layers are never pushed (OCI)."""
    from engine.images.manifest import is_foreign_layer

    return [d for d in reversed(tuple(manifest.layers)) if not is_foreign_layer(d.media_type)]


def _mount_sources(store: Any, target: Reference) -> dict[str, tuple[str, ...]]:
    """Blob digest -> other repositories on the same registry it was pulled from (by repo digests)."""
    from engine.images.reference import parse_reference

    sources: dict[str, list[str]] = {}
    for image in store.list_images():
        repos = set()
        for repo_digest in image.repo_digests:
            try:
                origin = parse_reference(repo_digest, default_tag=None)
            except InvalidReference:
                continue
            if origin.domain == target.domain and origin.repository != target.repository:
                repos.add(origin.repository)
        for layer in image.layers:
            if layer.blob_digest:
                bucket = sources.setdefault(layer.blob_digest, [])
                bucket.extend(r for r in sorted(repos) if r not in bucket)
    return {digest: tuple(repos) for digest, repos in sources.items() if repos}


def _check_single_platform(store: Any, config_digest: str, wanted: Platform, subject: str) -> None:
    """A plain manifest pulled with an explicit platform must be for that platform (as docker checks)."""
    import json

    config = json.loads(store.read_blob(config_digest))
    actual = Platform(config.get("os", ""), config.get("architecture", ""), config.get("variant"))
    if (actual.os, actual.architecture) != (wanted.os, wanted.architecture) or (
        wanted.variant and actual.variant and wanted.variant != actual.variant
    ):
        raise ImageNotFound(
            f"image found but it is for {actual}, not the requested {wanted}", subject=subject
        )
