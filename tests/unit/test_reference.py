"""Image references: Docker's normalisation rules (docker/distribution `reference`) as a table of facts."""

from __future__ import annotations

import dataclasses

import pytest

from engine.errors import InvalidReference
from engine.images.reference import Reference, looks_like_image_id, parse_reference

D1 = "sha256:" + "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
D2 = "sha256:" + "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
HEX64 = D2.removeprefix("sha256:")

# text -> (domain, path, tag, digest, canonical, familiar)
VALID = [
    ("nginx", "docker.io", "library/nginx", "latest", None, "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:1.25-alpine", "docker.io", "library/nginx", "1.25-alpine", None,
     "docker.io/library/nginx:1.25-alpine", "nginx:1.25-alpine"),
    ("user/app", "docker.io", "user/app", "latest", None, "docker.io/user/app:latest", "user/app:latest"),
    ("user/app:1", "docker.io", "user/app", "1", None, "docker.io/user/app:1", "user/app:1"),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None,
     "docker.io/library/nginx:latest", "nginx:latest"),
    ("docker.io/library/nginx:stable", "docker.io", "library/nginx", "stable", None,
     "docker.io/library/nginx:stable", "nginx:stable"),
    ("index.docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", None,
     "docker.io/fooo/bar:latest", "fooo/bar:latest"),
    ("index.docker.io/debian", "docker.io", "library/debian", "latest", None,
     "docker.io/library/debian:latest", "debian:latest"),
    # library/ is only dropped for single-level official names
    ("library/foo/bar", "docker.io", "library/foo/bar", "latest", None,
     "docker.io/library/foo/bar:latest", "library/foo/bar:latest"),
    ("other/library", "docker.io", "other/library", "latest", None,
     "docker.io/other/library:latest", "other/library:latest"),
    ("localhost/app", "localhost", "app", "latest", None, "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app:1", "localhost:5000", "app", "1", None,
     "localhost:5000/app:1", "localhost:5000/app:1"),
    (f"127.0.0.1:5000/a/b@{D1}", "127.0.0.1:5000", "a/b", None, D1,
     f"127.0.0.1:5000/a/b@{D1}", f"127.0.0.1:5000/a/b@{D1}"),
    (f"busybox:latest@{D1}", "docker.io", "library/busybox", "latest", D1,
     f"docker.io/library/busybox:latest@{D1}", f"busybox:latest@{D1}"),
    (f"redis@{D2}", "docker.io", "library/redis", None, D2, f"docker.io/library/redis@{D2}", f"redis@{D2}"),
    ("example.com/private/moonbase", "example.com", "private/moonbase", "latest", None,
     "example.com/private/moonbase:latest", "example.com/private/moonbase:latest"),
    ("example.com:8000/privatebase", "example.com:8000", "privatebase", "latest", None,
     "example.com:8000/privatebase:latest", "example.com:8000/privatebase:latest"),
    ("test-com:8080/foo", "test-com:8080", "foo", "latest", None, "test-com:8080/foo:latest",
     "test-com:8080/foo:latest"),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", None, "xn--n3h.com:18080/foo:latest",
     "xn--n3h.com:18080/foo:latest"),
    # underscore in the first component: not a host, a Hub namespace
    ("test_com/foo", "docker.io", "test_com/foo", "latest", None, "docker.io/test_com/foo:latest",
     "test_com/foo:latest"),
    # upper case first component: a domain (path components are lower case)
    ("Foo/bar", "Foo", "bar", "latest", None, "Foo/bar:latest", "Foo/bar:latest"),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", "latest", None,
     "[fc00::1]:5000/docker/docker:latest", "[fc00::1]:5000/docker/docker:latest"),
    # no slash: the whole thing is a Hub name, ':80' is a tag
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None,
     "docker.io/library/192.168.0.1:80", "192.168.0.1:80"),
    ("dock__er/doc---ker", "docker.io", "dock__er/doc---ker", "latest", None,
     "docker.io/dock__er/doc---ker:latest", "dock__er/doc---ker:latest"),
    ("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", None,
     "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"),
    ("a/b:Tag_With.CAPS-1", "docker.io", "a/b", "Tag_With.CAPS-1", None,
     "docker.io/a/b:Tag_With.CAPS-1", "a/b:Tag_With.CAPS-1"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", None,
     "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest",
     "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
    # a 64-hex name is fine once a domain makes it unambiguous
    (f"docker.io/{HEX64}", "docker.io", f"library/{HEX64}", "latest", None,
     f"docker.io/library/{HEX64}:latest", f"{HEX64}:latest"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "canonical", "familiar"), VALID)
def test_valid_references(text, domain, path, tag, digest, canonical, familiar):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.canonical == canonical == str(ref)
    assert ref.familiar == familiar
    assert ref.name == f"{domain}/{path}"
    assert ref.repository == path
    assert ref.is_digest is (digest is not None)


@pytest.mark.parametrize(("text", "domain", "path", "tag", "digest", "canonical", "familiar"), VALID)
def test_canonical_and_familiar_forms_parse_back_to_the_same_reference(
    text, domain, path, tag, digest, canonical, familiar
):
    ref = parse_reference(text)
    assert parse_reference(canonical) == ref
    assert parse_reference(familiar) == ref


# text -> a fragment the error message must contain
INVALID = [
    ("", "empty reference"),
    ("Nginx", "must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("docker.io/docker/Docker", "must be lowercase"),
    ("a:b:c", "invalid tag 'b:c'"),
    ("nginx:", "empty tag"),
    ("nginx@", "empty digest"),
    (":latest", "at least one component"),
    ("docker/", "at least one component"),
    ("-docker", "invalid repository name"),
    ("-docker/docker", "invalid repository name"),
    ("docker-/docker", "invalid repository name"),
    ("____/____", "invalid repository name"),
    ("_docker/_docker", "invalid repository name"),
    # a '.' makes the first component a host, which then fails the host grammar
    ("dock..er/docker", "invalid registry host"),
    ("dock_.er/docker", "invalid registry host"),
    ("dock-.er/docker", "invalid registry host"),
    ("docker/dock..er", "invalid repository name"),
    ("docker/dock_.er", "invalid repository name"),
    ("docker///docker", "invalid repository name"),
    ("docker.io/docker///docker", "invalid repository name"),
    ("-docker.io/docker/docker", "invalid registry host"),
    ("https://github.com/docker/docker", "invalid registry host"),
    ("fc00::1:5000/debian", "invalid registry host"),
    ("[fe80::1%eth0]:5000/debian", "invalid registry host"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "invalid registry host"),
    ("[fc00::1]", "invalid repository name"),
    ("[fc00::1]:5000", "invalid repository name"),
    ("nginx:-tag", "invalid tag"),
    ("nginx:.tag", "invalid tag"),
    ("nginx:" + "a" * 129, "invalid tag"),
    ("nginx@sha256:abc", "invalid digest"),
    ("nginx@" + D1.upper(), "unsupported digest algorithm 'SHA256'"),
    ("nginx@sha256:" + "A" * 64, "64 lowercase hex"),
    ("nginx@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
    ("nginx@sha256:" + "a" * 63, "64 lowercase hex"),
    (HEX64, "image id"),
    ("nginx latest", "invalid repository name"),
    ("nginx:la test", "invalid tag"),
    ("a/" + "b" * 254, "not be more than 255"),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_references_name_the_reason(text, reason):
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert reason in info.value.message
    assert info.value.subject is not None
    assert "\n" not in str(info.value)


def test_path_of_exactly_255_characters_is_allowed():
    path = "a/" + "b" * 253
    assert parse_reference(path).path == path


def test_default_tag_is_only_added_without_tag_or_digest():
    assert parse_reference("nginx", default_tag=None).tag is None
    assert parse_reference("nginx", default_tag="stable").tag == "stable"
    assert parse_reference(f"nginx@{D1}", default_tag="stable").tag is None
    assert parse_reference("nginx:1", default_tag="stable").tag == "1"


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("nginx", "registry-1.docker.io"),
        ("index.docker.io/a/b", "registry-1.docker.io"),
        ("localhost:5000/a", "localhost:5000"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000"),
        ("ghcr.io/owner/app", "ghcr.io"),
    ],
)
def test_registry_host(text, host):
    assert parse_reference(text).registry_host == host


def test_with_tag_and_with_digest_replace_the_other_half():
    ref = parse_reference(f"localhost:5000/app:1@{D1}")
    assert ref.with_tag("2").canonical == "localhost:5000/app:2"
    assert ref.with_digest(D2).canonical == f"localhost:5000/app@{D2}"
    assert ref.with_digest(D2).is_digest
    assert not ref.with_tag("2").is_digest


@pytest.mark.parametrize("bad", ["", "-x", "a" * 129, "with space"])
def test_with_tag_rejects_bad_tags(bad):
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse_reference("nginx").with_tag(bad)


@pytest.mark.parametrize("bad", ["sha256:xyz", "latest", "sha1:" + "a" * 40])
def test_with_digest_rejects_bad_digests(bad):
    with pytest.raises(InvalidReference):
        parse_reference("nginx").with_digest(bad)


def test_reference_is_frozen_and_hashable():
    ref = parse_reference("nginx")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]
    assert {ref, parse_reference("docker.io/library/nginx:latest")} == {ref}
    assert Reference("docker.io", "library/nginx", "latest") == ref


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX64, True),
        (D2, True),
        (HEX64[:12], True),
        ("sha256:" + HEX64[:12], True),
        (HEX64[:11], False),
        (HEX64 + "0", False),
        ("nginx", False),
        ("deadbeefcafez", False),
        (HEX64.upper(), False),
        ("sha512:" + "a" * 64, False),
    ],
)
def test_looks_like_image_id(text, expected):
    assert looks_like_image_id(text) is expected
