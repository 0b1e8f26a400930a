"""docker cp's placement rules (engine/containers/copy pack/unpack) on plain host directories."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.containers.copy import pack, top_name, unpack


def roundtrip(src: str, dest: str, *, archive: bool = False) -> None:
    buffer = io.BytesIO()
    pack(src, buffer)
    buffer.seek(0)
    unpack(buffer, dest, archive=archive)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    os.symlink("/etc/passwd", src / "link")
    return src


def test_top_names() -> None:
    assert top_name("/etc/hosts") == "hosts"
    assert top_name("/srv/www/") == "www"
    assert top_name("/srv/www/.") == "."
    assert top_name("/") == "."


def test_file_to_new_name_and_into_directory(tree: Path, tmp_path: Path) -> None:
    roundtrip(str(tree / "a.txt"), str(tmp_path / "renamed.txt"))
    assert (tmp_path / "renamed.txt").read_text() == "A"
    (tmp_path / "into").mkdir()
    roundtrip(str(tree / "a.txt"), str(tmp_path / "into"))
    assert (tmp_path / "into" / "a.txt").read_text() == "A"


def test_file_overwrites_a_file(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "old").write_text("old")
    roundtrip(str(tree / "a.txt"), str(tmp_path / "old"))
    assert (tmp_path / "old").read_text() == "A"


def test_directory_new_existing_and_contents(tree: Path, tmp_path: Path) -> None:
    roundtrip(str(tree), str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "sub" / "b.txt").read_text() == "B"
    assert os.readlink(tmp_path / "copy" / "link") == "/etc/passwd"  # links stay links
    (tmp_path / "existing").mkdir()
    roundtrip(str(tree), str(tmp_path / "existing"))
    assert (tmp_path / "existing" / "src" / "a.txt").read_text() == "A"
    (tmp_path / "contents").mkdir()
    roundtrip(str(tree) + "/.", str(tmp_path / "contents"))
    assert (tmp_path / "contents" / "a.txt").read_text() == "A"
    assert not (tmp_path / "contents" / "src").exists()


def test_missing_parent_and_missing_source(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        roundtrip(str(tree / "a.txt"), str(tmp_path / "no" / "such" / "x"))
    with pytest.raises(FileNotFoundError):
        pack(str(tree / "nothing"), io.BytesIO())


def test_a_hostile_archive_cannot_escape(tmp_path: Path) -> None:
    """A container's tar may hold a link out and a file through it: nothing lands outside the target."""
    buffer = io.BytesIO()
    outside = tmp_path / "outside"
    outside.mkdir()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        link = tarfile.TarInfo("evil/out")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside)
        directory = tarfile.TarInfo("evil")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        tar.addfile(link)
        payload = tarfile.TarInfo("evil/out/pwned")
        payload.size = 1
        tar.addfile(payload, io.BytesIO(b"x"))
    buffer.seek(0)
    (tmp_path / "dest").mkdir()
    with pytest.raises(tarfile.TarError):
        unpack(buffer, str(tmp_path / "dest"))
    assert not (outside / "pwned").exists()
