"""COPY/ADD semantics against real directories: Docker's cases, tar auto-extract, URL downloads."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.build.context import BuildContext
from engine.build.copy import cache_key, copy_into, download, parse_chmod, resolve_chown, url_filename
from engine.errors import BuildError

MTIME = 1_600_000_000


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (MTIME, MTIME))


@pytest.fixture
def ctx(tmp_path: Path) -> BuildContext:
    root = tmp_path / "ctx"
    make_tree(
        root,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "*.tmp\nsrc/skip\n",
            "a.txt": "A",
            "b.txt": "B",
            "junk.tmp": "junk",
            "src/main.c": "main",
            "src/lib/util.c": "util",
            "src/skip": "skipped",
        },
    )
    os.chmod(root / "src/main.c", 0o750)
    os.symlink("main.c", root / "src/link")
    os.utime(root / "src", (MTIME, MTIME))
    return BuildContext.open(root)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "existing").mkdir()
    os.chmod(root / "existing", 0o711)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    return root


def tree(root: Path) -> dict[str, str]:
    """rel path -> content ("<dir>" / "-> target") of everything under root."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            out[rel] = "<dir>"
        else:
            out[rel] = path.read_text()
    return out


def test_file_to_new_path(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["a.txt"], "/opt/renamed", context=ctx)
    assert (image / "opt/renamed").read_text() == "A"
    assert stat.S_IMODE((image / "opt").stat().st_mode) == 0o755


def test_file_to_dir_by_trailing_slash_or_existing_dir(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["a.txt"], "/new/", context=ctx)
    copy_into(str(image), ["a.txt"], "/existing", context=ctx)
    copy_into(str(image), ["b.txt"], ".", context=ctx, workdir="/work")
    assert (image / "new/a.txt").read_text() == "A"
    assert (image / "existing/a.txt").read_text() == "A"
    assert (image / "work/b.txt").read_text() == "B"
    assert stat.S_IMODE((image / "existing").stat().st_mode) == 0o711  # kept its own mode


def test_relative_dest_uses_workdir(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["a.txt"], "sub/x", context=ctx, workdir="/app")
    assert (image / "app/sub/x").read_text() == "A"


def test_dir_contents_not_the_dir(ctx: BuildContext, image: Path) -> None:
    result = copy_into(str(image), ["src"], "/app", context=ctx)
    assert tree(image / "app") == {
        "lib": "<dir>",
        "lib/util.c": "util",
        "link": "-> main.c",
        "main.c": "main",
    }
    assert result.files == 2
    copy_into(str(image), ["src/"], "/app2/", context=ctx)
    assert tree(image / "app2") == tree(image / "app")


def test_dir_into_existing_dir_keeps_its_metadata(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["src"], "/tmp", context=ctx)
    assert stat.S_IMODE((image / "tmp").stat().st_mode) == 0o1777
    assert (image / "tmp/main.c").exists()
    copy_into(str(image), ["src"], "/fresh", context=ctx)
    assert int((image / "fresh").stat().st_mtime) == MTIME  # a new dir takes the source's metadata


def test_modes_and_mtimes_are_kept(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["src"], "/app", context=ctx)
    st = (image / "app/main.c").stat()
    assert stat.S_IMODE(st.st_mode) == 0o750
    assert int(st.st_mtime) == MTIME
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()) or (st.st_uid, st.st_gid) == (0, 0)
    assert os.path.islink(image / "app/link")


def test_root_symlink_source_is_followed(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["src/link"], "/bin/", context=ctx)
    target = image / "bin/link"
    assert not target.is_symlink()
    assert target.read_text() == "main"


def test_globs(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["*.txt"], "/g/", context=ctx)
    assert tree(image / "g") == {"a.txt": "A", "b.txt": "B"}
    copy_into(str(image), ["*.tmp"], "/none/", context=ctx)  # matches only an excluded file: nothing
    assert not (image / "none").exists() or tree(image / "none") == {}
    copy_into(str(image), ["a.*"], "/single", context=ctx)  # one match: a plain file destination
    assert (image / "single").read_text() == "A"
    copy_into(str(image), ["s?c"], "/flat/", context=ctx)  # a matched directory: its contents
    assert set(tree(image / "flat")) == {"lib", "lib/util.c", "link", "main.c"}


def test_several_sources_need_a_directory(ctx: BuildContext, image: Path) -> None:
    with pytest.raises(BuildError, match="must be a directory and end with a /"):
        copy_into(str(image), ["a.txt", "b.txt"], "/file", context=ctx)
    with pytest.raises(BuildError, match="must be a directory"):
        copy_into(str(image), ["*.txt"], "/file", context=ctx)
    copy_into(str(image), ["a.txt", "b.txt"], "/existing", context=ctx)  # an existing dir will do
    assert sorted(os.listdir(image / "existing")) == ["a.txt", "b.txt"]


def test_missing_excluded_and_outside_sources(ctx: BuildContext, image: Path) -> None:
    for source in ("missing.txt", "junk.tmp", "src/skip"):
        with pytest.raises(BuildError, match="not found"):
            copy_into(str(image), [source], "/x/", context=ctx)
    with pytest.raises(BuildError, match="forbidden path outside the build context"):
        copy_into(str(image), ["../x"], "/x/", context=ctx)
    assert not (image / "x").exists()


def test_ignored_dockerfile_is_readable_but_not_copied(tmp_path: Path, image: Path) -> None:
    root = tmp_path / "self"
    make_tree(root, {"Dockerfile": "FROM x\n", ".dockerignore": "Dockerfile\n.dockerignore\n", "app": "a"})
    context = BuildContext.open(root)
    assert context.dockerfile_text() == "FROM x\n"
    with pytest.raises(BuildError, match="not found"):
        copy_into(str(image), ["Dockerfile"], "/x/", context=context)
    copy_into(str(image), ["."], "/all", context=context)
    assert tree(image / "all") == {"app": "a"}


def test_excluded_files_are_left_out_of_a_dir_copy(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["."], "/all", context=ctx)
    assert set(tree(image / "all")) == {"Dockerfile", ".dockerignore", "a.txt", "b.txt"} | {
        "src",
        "src/lib",
        "src/lib/util.c",
        "src/link",
        "src/main.c",
    }


def test_image_symlinks_cannot_escape(ctx: BuildContext, image: Path, tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    os.symlink(str(outside), image / "evil")  # absolute: means <image>/<host path>
    os.symlink("../../../../../..", image / "up")
    copy_into(str(image), ["a.txt"], "/evil/", context=ctx)
    copy_into(str(image), ["b.txt"], "/up/b.txt", context=ctx)
    assert list(outside.iterdir()) == []
    assert (image / str(outside).lstrip("/") / "a.txt").read_text() == "A"
    assert (image / "b.txt").read_text() == "B"


def test_final_symlink_is_replaced_not_followed(ctx: BuildContext, image: Path) -> None:
    (image / "target").write_text("keep")
    os.symlink("target", image / "alias")
    copy_into(str(image), ["a.txt"], "/alias", context=ctx)
    assert (image / "target").read_text() == "keep"
    assert not (image / "alias").is_symlink()
    assert (image / "alias").read_text() == "A"


def test_file_over_directory_is_an_error(ctx: BuildContext, image: Path) -> None:
    (image / "d/a.txt").mkdir(parents=True)
    with pytest.raises(BuildError, match="cannot replace a directory"):
        copy_into(str(image), ["a.txt"], "/d/", context=ctx)
    (image / "file").write_text("x")
    with pytest.raises(BuildError, match="non-directory"):
        copy_into(str(image), ["a.txt"], "/file/sub/", context=ctx)


def test_hard_links_stay_linked(tmp_path: Path, image: Path) -> None:
    root = tmp_path / "hl"
    make_tree(root, {"d/one": "same"})
    os.link(root / "d/one", root / "d/two")
    copy_into(str(image), ["d"], "/hl", context=BuildContext.open(root))
    assert (image / "hl/one").stat().st_ino == (image / "hl/two").stat().st_ino


def test_chmod_octal_and_symbolic(ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), ["src"], "/m", context=ctx, chmod="640")
    assert stat.S_IMODE((image / "m/main.c").stat().st_mode) == 0o640
    assert stat.S_IMODE((image / "m/lib").stat().st_mode) == 0o640  # directories too, as BuildKit
    copy_into(str(image), ["a.txt"], "/s", context=ctx, chmod="u+x,go-r")
    assert stat.S_IMODE((image / "s").stat().st_mode) == 0o744 & ~0o044 | 0o100
    fn = parse_chmod("a=rX")
    assert (fn(0o600, False), fn(0o600, True), fn(0o700, False)) == (0o444, 0o555, 0o555)
    assert parse_chmod("+x")(0o644, False) == 0o755
    assert parse_chmod("0755")(0, False) == 0o755
    for bad in ("9", "u*x", "rw"):
        with pytest.raises(BuildError, match="invalid --chmod"):
            parse_chmod(bad)


def test_resolve_chown(image: Path) -> None:
    (image / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n")
    (image / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    assert resolve_chown("www", str(image)) == (33, 33)  # no group: the uid is the gid, as Docker
    assert resolve_chown("www:staff", str(image)) == (33, 50)
    assert resolve_chown("1000:2000", str(image)) == (1000, 2000)
    assert resolve_chown("1000", None) == (1000, 1000)
    with pytest.raises(BuildError, match="passwd"):
        resolve_chown("nobody", str(image))
    with pytest.raises(BuildError, match="group"):
        resolve_chown("www:nogroup", str(image))
    os.unlink(image / "etc/group")
    with pytest.raises(BuildError, match="no /etc/group"):
        resolve_chown("0:staff", str(image))


def test_url_to_copy_is_refused(ctx: BuildContext, image: Path) -> None:
    with pytest.raises(BuildError, match="URL for COPY"):
        copy_into(str(image), ["http://127.0.0.1:1/x"], "/x", context=ctx)


# --------------------------------------------------------------------------------------------------
# ADD: archives


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("top.txt", b"top"), ("pkg/inner.txt", b"inner")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o640
            info.mtime = MTIME
            info.uid, info.gid = 123, 456
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zstd(data: bytes) -> bytes:
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("plain.tar", lambda b: b),
        ("g.tar.gz", gzip.compress),
        ("b.tbz", bz2.compress),
        ("x.txz", lzma.compress),
        ("no-extension", gzip.compress),  # detected by content, not by name
        pytest.param(
            "z.tar.zst", _zstd, marks=pytest.mark.skipif(not shutil.which("zstd"), reason="no zstd")
        ),
    ],
)
def test_add_extracts_local_archives(tmp_path: Path, image: Path, name: str, pack) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "arch"
    root.mkdir()
    (root / name).write_bytes(pack(_tar_bytes()))
    context = BuildContext.open(root)
    copy_into(str(image), [name], "/dest", context=context, add=True)
    assert tree(image / "dest") == {"pkg": "<dir>", "pkg/inner.txt": "inner", "top.txt": "top"}
    st = (image / "dest/top.txt").stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and int(st.st_mtime) == MTIME
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (123, 456)  # the archive's owners, not 0:0
    assert not [p for p in os.listdir(image) if p.startswith(".pyc-")]  # staging removed
    copy_into(str(image), [name], "/copied/", context=context)  # COPY never extracts
    assert (image / "copied" / name).read_bytes() == pack(_tar_bytes())


def test_add_non_archive_is_a_plain_copy(ctx: BuildContext, image: Path, tmp_path: Path) -> None:
    root = tmp_path / "fake"
    root.mkdir()
    (root / "fake.tar.gz").write_bytes(b"\x1f\x8bnot really gzip")
    (root / "empty.tar").write_bytes(b"\0" * 1024)
    context = BuildContext.open(root)
    copy_into(str(image), ["fake.tar.gz", "empty.tar"], "/f/", context=context, add=True)
    assert (image / "f/fake.tar.gz").read_bytes() == b"\x1f\x8bnot really gzip"
    assert (image / "f/empty.tar").stat().st_size == 1024


# --------------------------------------------------------------------------------------------------
# ADD: URLs, from a server on 127.0.0.1

LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
LAST_MODIFIED_TS = 1445412480


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/files/tool.sh")
            self.end_headers()
            return
        if not self.path.startswith("/files/"):
            self.send_error(404)
            return
        body = (
            b"#!/bin/sh\necho hi\n" if self.path != "/files/archive.tar.gz" else gzip.compress(_tar_bytes())
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_add_url(server: str, ctx: BuildContext, image: Path) -> None:
    copy_into(str(image), [f"{server}/files/tool.sh"], "/usr/local/bin/", context=ctx, add=True)
    target = image / "usr/local/bin/tool.sh"
    st = target.stat()
    assert target.read_text() == "#!/bin/sh\necho hi\n"
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert int(st.st_mtime) == LAST_MODIFIED_TS
    copy_into(str(image), [f"{server}/redirect"], "/named", context=ctx, add=True, chmod="755")
    assert stat.S_IMODE((image / "named").stat().st_mode) == 0o755
    copy_into(str(image), [f"{server}/files/archive.tar.gz"], "/dl/", context=ctx, add=True)
    assert (image / "dl/archive.tar.gz").read_bytes()[:2] == b"\x1f\x8b"  # a download is never extracted
    assert not [p for p in os.listdir(image) if p.startswith(".pyc-")]


def test_add_url_errors(server: str, ctx: BuildContext, image: Path, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="404"):
        copy_into(str(image), [f"{server}/missing"], "/x", context=ctx, add=True)
    with pytest.raises(BuildError, match="checksum mismatch"):
        download(f"{server}/files/tool.sh", str(tmp_path), checksum="sha256:" + "0" * 64)
    assert [p for p in os.listdir(tmp_path) if p.startswith(".download")] == []
    with pytest.raises(BuildError, match="download failed"):
        download("http://127.0.0.1:9/x", str(tmp_path), timeout=2)


def test_url_filename() -> None:
    assert url_filename("https://h/a/b/tool.tgz?x=1") == "tool.tgz"
    assert url_filename("https://h/") == "__unnamed__"
    assert url_filename("https://h") == "__unnamed__"


# --------------------------------------------------------------------------------------------------
# Cache key


def test_cache_key(ctx: BuildContext, tmp_path: Path) -> None:
    base = cache_key(ctx, ["src", "a.txt"])
    assert cache_key(ctx, ["src", "a.txt"]) == base
    assert cache_key(ctx, ["src", "a.txt"], owner=(1, 1)) != base
    assert cache_key(ctx, ["src", "a.txt"], chmod="755") != base
    assert cache_key(ctx, ["src"]) != base
    (Path(ctx.root) / "junk.tmp").write_text("changed")  # excluded: no effect
    assert cache_key(BuildContext.open(ctx.root), ["src", "a.txt"]) == base
    (Path(ctx.root) / "src/lib/util.c").write_text("changed")
    assert cache_key(BuildContext.open(ctx.root), ["src", "a.txt"]) != base
    with pytest.raises(BuildError, match="not found"):
        cache_key(ctx, ["missing"])
