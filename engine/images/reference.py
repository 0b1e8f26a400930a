"""Image references: parse and normalise them exactly as Docker does.

Grammar (docker/distribution `reference`): ``name[:tag][@digest]`` where ``name`` is
``[domain/]path``. The first path component is a domain only when it contains a ``.`` or a ``:``,
is ``localhost``, or has upper-case letters (path components are lower case); otherwise the name
lives on Docker Hub, and a single-component Hub name gets the ``library/`` namespace. That is why
``nginx`` means ``docker.io/library/nginx:latest`` and ``user/app`` means ``docker.io/user/app``.
"""

from __future__ import annotations

import re

from engine.errors import InvalidReference
from engine.frozen import frozen

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
OFFICIAL_NAMESPACE = "library/"
DEFAULT_TAG = "latest"
MAX_PATH_LENGTH = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?",
)
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST_SHAPE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
# Algorithms go-digest knows, with the hex length each one must have (lower case only).
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_IMAGE_ID_RE = re.compile(r"(?:sha256:)?[a-f0-9]{12,64}")


@frozen
class Reference:
    """A normalised image reference; `tag` and `digest` may both be set (`name:tag@digest`)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        return self.canonical

    @property
    def name(self) -> str:
        """`domain/path`: the repository, fully qualified."""
        return f"{self.domain}/{self.path}"

    @property
    def repository(self) -> str:
        """The path the registry API uses (`library/nginx`)."""
        return self.path

    @property
    def canonical(self) -> str:
        """The full form stored in the database (`docker.io/library/nginx:latest`)."""
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """The short form docker prints (`nginx:latest`, `user/app:1`, `localhost:5000/app:1`)."""
        return familiar_name(self.domain, self.path) + self._suffix()

    @property
    def familiar_name(self) -> str:
        """The short repository name without tag or digest (`nginx`), for the REPOSITORY column."""
        return familiar_name(self.domain, self.path)

    @property
    def registry_host(self) -> str:
        """Host[:port] to talk to: Docker Hub's API does not answer on `docker.io` itself."""
        return DOCKER_HUB_REGISTRY if self.domain == DEFAULT_DOMAIN else self.domain

    @property
    def is_digest(self) -> bool:
        """True when the reference pins content (`@sha256:...`)."""
        return self.digest is not None

    def with_tag(self, tag: str) -> Reference:
        """Same repository, this tag and no digest (a repo tag, as `docker tag` records it)."""
        _check_tag(tag, subject=f"{self.name}:{tag}")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        """Same repository, this digest and no tag (a repo digest, as docker records after a pull)."""
        _check_digest(digest, subject=f"{self.name}@{digest}")
        return Reference(self.domain, self.path, None, digest)

    def _suffix(self) -> str:
        text = f":{self.tag}" if self.tag is not None else ""
        return f"{text}@{self.digest}" if self.digest is not None else text


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse a familiar or full reference; `default_tag` is added when neither tag nor digest is given.

    Pass `default_tag=None` to parse a bare repository name (`image ls nginx`, `push` of all tags).
    """
    if not text:
        raise InvalidReference("invalid reference format: empty reference", subject=repr(text))
    if _IDENTIFIER_RE.fullmatch(text):
        raise _invalid(text, "a 64-character hexadecimal string is an image id, not a repository name")
    domain, remainder = _split_domain(text)
    remainder, digest = _split_digest(remainder, text)
    path, tag = _split_tag(remainder, text)
    _check_domain(domain, text)
    _check_path(domain, path, text)
    if tag is not None:
        _check_tag(tag, subject=text)
    if digest is not None:
        _check_digest(digest, subject=text)
    if tag is None and digest is None and default_tag is not None:
        tag = default_tag
    return Reference(domain, path, tag, digest)


def looks_like_image_id(text: str) -> bool:
    """True for a full image id (`sha256:<64 hex>` or `<64 hex>`) or a prefix of at least 12 hex digits.

    A 12-hex string is also a valid repository name: the store decides which one it is.
    """
    return bool(_IMAGE_ID_RE.fullmatch(text))


def familiar_name(domain: str, path: str) -> str:
    """Drop `docker.io/` and, for single-level official images, `library/` (what docker shows)."""
    if domain != DEFAULT_DOMAIN:
        return f"{domain}/{path}"
    short = path.removeprefix(OFFICIAL_NAMESPACE)
    return short if short != path and "/" not in short else path


def _split_domain(text: str) -> tuple[str, str]:
    """Decide whether the first component names a registry, as docker's splitDockerDomain does."""
    first, slash, rest = text.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_NAMESPACE + text
    if first == LEGACY_DEFAULT_DOMAIN:
        domain, remainder = DEFAULT_DOMAIN, rest
    elif first == "localhost" or "." in first or ":" in first or first.lower() != first:
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, text
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_NAMESPACE + remainder
    return domain, remainder


def _split_digest(remainder: str, text: str) -> tuple[str, str | None]:
    name, at, digest = remainder.partition("@")
    if not at:
        return remainder, None
    if not digest:
        raise _invalid(text, "empty digest after '@'")
    return name, digest


def _split_tag(remainder: str, text: str) -> tuple[str, str | None]:
    """Split `path:tag`; the domain is gone already, so a `:` can only start the tag."""
    path, colon, tag = remainder.partition(":")
    if not colon:
        return remainder, None
    if not tag:
        raise _invalid(text, "empty tag after ':'")
    return path, tag


def _check_domain(domain: str, text: str) -> None:
    if not _DOMAIN_RE.fullmatch(domain):
        raise _invalid(text, f"invalid registry host {domain!r}")


def _check_path(domain: str, path: str, text: str) -> None:
    if not path or path.endswith("/"):
        raise _invalid(text, "repository name must have at least one component")
    if not _PATH_RE.fullmatch(path):
        shown = familiar_name(domain, path)
        if _PATH_RE.fullmatch(path.lower()):
            raise _invalid(text, f"repository name {shown!r} must be lowercase")
        raise _invalid(
            text,
            f"invalid repository name {shown!r} (lowercase letters, digits and single '.', '_', '__' "
            "or '-' runs between them, components separated by '/')",
        )
    if len(path) > MAX_PATH_LENGTH:
        raise _invalid(text, f"repository name must not be more than {MAX_PATH_LENGTH} characters")


def _check_tag(tag: str, *, subject: str) -> None:
    if not _TAG_RE.fullmatch(tag):
        raise InvalidReference(
            f"invalid tag {tag!r} (letters, digits, '_', '.' and '-', not starting with '.' or '-', "
            "at most 128 characters)",
            subject=subject,
        )


def _check_digest(digest: str, *, subject: str) -> None:
    if not _DIGEST_SHAPE_RE.fullmatch(digest):
        raise InvalidReference(f"invalid digest {digest!r} (expected sha256:<64 hex>)", subject=subject)
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise InvalidReference(f"unsupported digest algorithm {algorithm!r}", subject=subject)
    if len(encoded) != length or encoded.lower() != encoded:
        raise InvalidReference(
            f"invalid {algorithm} digest: expected {length} lowercase hex digits", subject=subject
        )


def _invalid(text: str, reason: str) -> InvalidReference:
    return InvalidReference(f"invalid reference format: {reason}", subject=text)
