"""`image bootstrap` planning: target names, host mirrors, cache keys, the mmdebstrap command, the image
config, and failures of a (fake) mmdebstrap that must leave no tar and no temp dir behind."""

from __future__ import annotations

import io
import tarfile
import textwrap
from pathlib import Path

import pytest

from engine.errors import BuildError
from engine.images import bootstrap as bs
from engine.images.changes import apply_changes


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("debian:bookworm-slim", ("bookworm", True)),
        ("debian:bookworm", ("bookworm", False)),
        ("docker.io/library/debian:trixie-slim", ("trixie", True)),
        ("debian:12-slim", ("bookworm", True)),
        ("debian:11", ("bullseye", False)),
        ("debian", ("stable", False)),
        ("debian:sid", ("sid", False)),
    ],
)
def test_parse_target(ref: str, expected: tuple[str, bool]) -> None:
    assert bs.parse_target(ref) == expected


@pytest.mark.parametrize("ref", ["ubuntu:22.04", "example.com/debian:bookworm", "myorg/debian:bookworm"])
def test_parse_target_refuses_other_images(ref: str) -> None:
    with pytest.raises(BuildError, match="only debian"):
        bs.parse_target(ref)


@pytest.fixture
def apt_dir(tmp_path: Path) -> Path:
    """A host apt config like this VM's: deb822 sources, a disabled stanza, a deb-src line."""
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# empty on purpose\ndeb-src http://src.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d/debian.sources").write_text(
        textwrap.dedent(
            """\
            Types: deb
            URIs: http://disabled.example/debian
            Suites: bookworm
            Components: main
            Enabled: no

            Types: deb
            # a comment inside the stanza
            URIs: http://mirror.example/debian/
            Suites: bookworm bookworm-updates
            Components: main

            Types: deb
            URIs: http://security.example/debian-security
            Suites: bookworm-security
            Components: main
            """
        )
    )
    (tmp_path / "sources.list.d/other.list.disabled").write_text("deb http://ignored.example/x stable main\n")
    return tmp_path


def test_host_mirrors_from_deb822(apt_dir: Path) -> None:
    assert bs.host_mirrors(apt_dir) == (
        "http://mirror.example/debian",
        "http://security.example/debian-security",
    )


def test_host_mirrors_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main  # trailing\n"
        "deb http://one.example/debian-security bookworm-security main\n"
    )
    assert bs.host_mirrors(tmp_path) == ("http://one.example/debian", "http://one.example/debian-security")


def test_host_mirrors_none_configured(tmp_path: Path) -> None:
    assert bs.host_mirrors(tmp_path) == (None, None)


def _plan(apt_dir: Path, **kw) -> bs.BootstrapPlan:  # type: ignore[no-untyped-def]
    return bs.plan(kw.pop("ref", "debian:bookworm-slim"), apt_dir=apt_dir, arch="amd64", **kw)


def test_plan_uses_the_host_mirrors_and_defaults(apt_dir: Path) -> None:
    plan = _plan(apt_dir)
    assert (plan.suite, plan.slim, plan.variant, plan.include) == ("bookworm", True, "minbase", ())
    assert plan.tag == "docker.io/library/debian:bookworm-slim"
    assert plan.sources() == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://security.example/debian-security bookworm-security main",
    ]


def test_explicit_mirror_derives_its_security_archive(apt_dir: Path) -> None:
    plan = _plan(apt_dir, mirror="http://m.example/debian/")
    assert plan.mirror == "http://m.example/debian"
    assert plan.security_mirror == "http://m.example/debian-security"
    assert _plan(apt_dir, mirror="http://m.example/pool").security_mirror is None


def test_unstable_has_no_updates_or_security(apt_dir: Path) -> None:
    assert _plan(apt_dir, ref="debian:sid").sources() == ["deb http://mirror.example/debian sid main"]


def test_cache_key_follows_content_not_order_or_tag(apt_dir: Path) -> None:
    base = _plan(apt_dir).key
    assert (
        _plan(apt_dir, include=["curl,ca-certificates"]).key
        == _plan(apt_dir, include=["ca-certificates curl", "curl"]).key
    )
    assert _plan(apt_dir, tag="mine/debian:1").key == base
    different = [
        _plan(apt_dir, include=["curl"]),
        _plan(apt_dir, ref="debian:bookworm"),
        _plan(apt_dir, ref="debian:trixie-slim"),
        _plan(apt_dir, variant="essential"),
        _plan(apt_dir, mirror="http://other.example/debian"),
        bs.plan("debian:bookworm-slim", apt_dir=apt_dir, arch="arm64"),
    ]
    keys = {p.key for p in different} | {base}
    assert len(keys) == len(different) + 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"variant": "tiny"}, "unknown variant"),
        ({"include": ["Bad_Name"]}, "package name"),
        ({"include": ["curl;rm -rf /"]}, "package name"),
        ({"tag": "x@sha256:" + "0" * 64}, "digest"),
    ],
)
def test_plan_refuses_bad_input(apt_dir: Path, kw: dict, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        _plan(apt_dir, **kw)


def test_command_slim_and_full(apt_dir: Path, tmp_path: Path) -> None:
    slim = bs.mmdebstrap_command(_plan(apt_dir, include=["curl"]), tmp_path / "out.tar", tmp_path)
    assert slim[:2] == [bs.MMDEBSTRAP, "--mode=unshare"]
    assert "--variant=minbase" in slim and "--include=curl" in slim and "--format=tar" in slim
    assert f"--dpkgopt={tmp_path / 'slim.cfg'}" in slim
    assert slim[-5:] == ["bookworm", str(tmp_path / "out.tar"), *_plan(apt_dir).sources()]
    full = bs.mmdebstrap_command(_plan(apt_dir, ref="debian:bookworm"), tmp_path / "out.tar", tmp_path)
    assert not any(arg.startswith("--dpkgopt") for arg in full)


def test_slim_config_is_dpkg_syntax() -> None:
    lines = bs.slim_config().splitlines()
    assert "path-exclude=/usr/share/doc/*" in lines and "path-include=/usr/share/doc/*/copyright" in lines
    assert all(line.startswith(("#", "path-exclude=/", "path-include=/")) for line in lines)


def test_write_config(tmp_path: Path) -> None:
    bs.write_config(tmp_path)
    assert (tmp_path / "policy-rc.d").read_text().endswith("exit 101\n")
    clean = tmp_path / "tree/etc/apt/apt.conf.d/pycompose-clean"
    assert "DPkg::Post-Invoke" in clean.read_text() and clean.stat().st_mode & 0o777 == 0o644


def test_image_changes_give_debians_config(apt_dir: Path) -> None:
    plan = _plan(apt_dir)
    config = apply_changes({}, bs.image_changes(plan))
    assert config["Cmd"] == ["bash"]
    assert config["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert config["Labels"] == {bs.KEY_LABEL: plan.key}
    assert plan.command_text().startswith("pycompose image bootstrap debian:bookworm-slim --mirror http")


def test_packages_in_tar(tmp_path: Path) -> None:
    status = (
        b"Package: dash\nStatus: install ok installed\nVersion: 0.5.12-2\n\n"
        b"Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n"
    )
    path = tmp_path / "r.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("./var/lib/dpkg/status")
        info.size = len(status)
        tar.addfile(info, io.BytesIO(status))
    assert bs.packages_in_tar(path) == ["bash=5.2.15-2+b7", "dash=0.5.12-2"]
    empty = tmp_path / "e.tar"
    tarfile.open(empty, "w").close()
    with pytest.raises(BuildError, match="no dpkg status"):
        bs.packages_in_tar(empty)


# -- a fake mmdebstrap: failures and success, with nothing left over ---------------------------------------


def _fake(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-mmdebstrap"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_failed_build_reports_the_tail_and_leaves_nothing(
    apt_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = 'echo "I: starting"\necho "E: no such suite" >&2\n: > "$TMPDIR/junk"\nexit 3\n'
    monkeypatch.setattr(bs, "MMDEBSTRAP", _fake(tmp_path, body))
    cache = tmp_path / "cache"
    lines: list[str] = []
    with pytest.raises(BuildError, match=r"mmdebstrap failed \(exit 3\)") as info:
        bs.build_tar(_plan(apt_dir), cache, log=lines.append, epoch=1700000000)
    assert "E: no such suite" in str(info.value) and "I: starting" in lines
    assert list(cache.iterdir()) == []


def test_successful_build_is_renamed_into_the_cache(
    apt_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the target is the 4th argument from the end; record the epoch the build ran with
    body = 'eval "out=\\${$(($# - 3))}"\necho "$SOURCE_DATE_EPOCH" > "$out"\n'
    monkeypatch.setattr(bs, "MMDEBSTRAP", _fake(tmp_path, body))
    cache = tmp_path / "cache"
    plan = _plan(apt_dir)
    path = bs.build_tar(plan, cache, epoch=1700000000)
    assert path == bs.cached_tar(plan, cache) and path.read_text() == "1700000000\n"
    assert [p.name for p in cache.iterdir()] == [path.name]
