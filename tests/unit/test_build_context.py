"""The build context: .dockerignore parsing and matching as Docker does, source lookup, digests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.build.context import BuildContext, PatternMatcher, go_clean, read_ignore
from engine.errors import BuildError


def make_tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("path", "cleaned"),
    [
        ("", "."),
        ("./a", "a"),
        ("a/", "a"),
        ("a//b/./c/..", "a/b"),
        ("//a", "/a"),
        ("/..", "/"),
        ("a/../..", ".."),
    ],
)
def test_go_clean(path: str, cleaned: str) -> None:
    assert go_clean(path) == cleaned


def test_read_ignore_normalises_lines() -> None:
    text = "\ufeff# comment\n  \n/abs/path\n./rel/\n ! keep.txt \n  #not-a-comment\n!/x\nsub/**/*.o\n"
    assert read_ignore(text) == ["abs/path", "rel", "!keep.txt", "#not-a-comment", "!x", "sub/**/*.o"]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.log"], "a.log", True),
        (["*.log"], "dir/a.log", False),  # `*` stays in the top directory
        (["**/*.log"], "dir/sub/a.log", True),
        (["**/*.log"], "a.log", True),  # `**` matches zero directories too
        (["dir"], "dir/sub/file", True),  # a matching parent excludes what is under it
        (["dir/**"], "dir/x/y", True),
        (["dir/**"], "dir", False),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["[a-c]x"], "bx", True),
        (["[^a-c]x"], "bx", False),
        (["[^a-c]x"], "dx", True),
        (["*.log", "!keep.log"], "keep.log", False),
        (["*.log", "!keep.log", "*.log"], "keep.log", True),  # the last match wins
        (["dir", "!dir/keep"], "dir/keep", False),
        (["dir", "!dir/keep"], "dir/other", True),
        (["*", "!src"], "src/deep/file", False),
        (["**"], "anything/at/all", True),
        (["a.b"], "axb", False),  # regex metacharacters are literal
        (["\\*x"], "*x", True),
    ],
)
def test_pattern_matcher(patterns: list[str], path: str, excluded: bool) -> None:
    assert PatternMatcher(patterns).excluded(path) is excluded


def test_bad_patterns_are_errors() -> None:
    with pytest.raises(BuildError, match="illegal exclusion"):
        PatternMatcher(["!"])
    with pytest.raises(BuildError, match="syntax error"):
        PatternMatcher(["[abc"])


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    make_tree(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "Dockerfile\n.dockerignore\n*.log\nbuild\n!build/keep.txt\nsecret/\n",
            "app.py": "print(1)\n",
            "debug.log": "x",
            "src/main.c": "int main;",
            "src/util.c": "int util;",
            "src/sub/deep.c": "deep",
            "src/notes.log": "n",  # not excluded: *.log is for the top directory
            "build/out.o": "o",
            "build/keep.txt": "k",
            "secret/key": "k",
        },
    )
    return tmp_path


def test_walk_applies_ignore_rules(ctx: Path) -> None:
    context = BuildContext.open(ctx)
    names = [e.rel for e in context.walk()]
    assert names == [
        "app.py",
        "build",
        "build/keep.txt",
        "src",
        "src/main.c",
        "src/notes.log",
        "src/sub",
        "src/sub/deep.c",
        "src/util.c",
    ]
    assert context.files(["src/**/*.c"]) == ["src/main.c", "src/sub/deep.c", "src/util.c"]


def test_dockerfile_ignored_yet_readable(ctx: Path) -> None:
    context = BuildContext.open(ctx)
    assert context.dockerfile_text() == "FROM scratch\n"
    with pytest.raises(BuildError, match="not found"):
        context.lookup("Dockerfile")
    with pytest.raises(BuildError, match="not found"):
        context.lookup(".dockerignore")


def test_dockerfile_specific_ignore_file_wins(ctx: Path) -> None:
    make_tree(ctx, {"docker/app.Dockerfile": "FROM x\n", "docker/app.Dockerfile.dockerignore": "src\n"})
    context = BuildContext.open(ctx, "docker/app.Dockerfile")
    assert context.ignore_file == str(ctx / "docker/app.Dockerfile.dockerignore")
    assert context.dockerfile_text() == "FROM x\n"
    assert context.excluded("src/main.c")
    assert not context.excluded("debug.log")  # the context's .dockerignore is not read at all


def test_no_ignore_file(tmp_path: Path) -> None:
    make_tree(tmp_path, {"Dockerfile": "FROM x\n", "a": "a"})
    context = BuildContext.open(tmp_path)
    assert context.ignore_file is None
    assert context.files() == ["Dockerfile", "a"]


def test_lookup_rules(ctx: Path) -> None:
    context = BuildContext.open(ctx)
    assert context.lookup("./app.py").rel == "app.py"
    assert context.lookup("/src/../app.py").rel == "app.py"  # absolute means the context root
    assert context.lookup("build").is_dir  # excluded, but an exception keeps something inside
    assert context.lookup("build/keep.txt").rel == "build/keep.txt"
    for missing in ("nope", "debug.log", "build/out.o", "secret", "secret/key"):
        with pytest.raises(BuildError, match="not found"):
            context.lookup(missing)
    for outside in ("../x", "src/../../x", ".."):
        with pytest.raises(BuildError, match="forbidden path outside the build context"):
            context.lookup(outside)


def test_symlink_source_is_followed_inside_the_context(
    ctx: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "app.py").write_text("host file")
    os.symlink("src/main.c", ctx / "link.c")
    os.symlink(str(outside / "app.py"), ctx / "escape")  # absolute: means <context>/<outside>/app.py
    os.symlink("../../../../../../app.py", ctx / "up")  # climbs to the context root, no further
    context = BuildContext.open(ctx)
    entry = context.lookup("link.c")
    assert (entry.rel, entry.name) == ("src/main.c", "link.c")
    with pytest.raises(BuildError, match="not found"):
        context.lookup("escape")
    assert Path(context.lookup("up").path).read_text() == "print(1)\n"


def test_glob_matches_like_go(ctx: Path) -> None:
    context = BuildContext.open(ctx)
    assert [e.rel for e in context.glob("src/*.c")] == ["src/main.c", "src/util.c"]
    assert [e.rel for e in context.glob("*.py")] == ["app.py"]
    assert [e.rel for e in context.glob("*.log")] == []  # excluded
    assert [e.rel for e in context.glob("s*")] == ["src"]  # secret/ is excluded
    assert [e.rel for e in context.glob("src/*/d??p.c")] == ["src/sub/deep.c"]
    assert context.glob("nothing*") == []


def test_digest_changes_with_content_and_mode_only(ctx: Path, tmp_path: Path) -> None:
    context = BuildContext.open(ctx)
    first = context.digest(["src", "app.py"])
    assert first == BuildContext.open(ctx).digest(["src", "app.py"])
    os.utime(ctx / "src/main.c", (1, 1))
    assert BuildContext.open(ctx).digest(["src", "app.py"]) == first  # mtime is not content
    (ctx / "src/main.c").write_text("int main2;")
    second = BuildContext.open(ctx).digest(["src", "app.py"])
    assert second != first
    os.chmod(ctx / "src/util.c", 0o755)
    assert BuildContext.open(ctx).digest(["src", "app.py"]) != second
    (ctx / "src/new.c").write_text("")
    assert BuildContext.open(ctx).digest(["src/*.c"]) != BuildContext.open(ctx).digest(["src/main.c"])
    (ctx / "build/out.o").write_text("changed")  # excluded: no effect
    assert BuildContext.open(ctx).digest(["build"]) == BuildContext.open(ctx).digest(["build"])


def test_digest_memo_skips_rereading(ctx: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    memo = str(tmp_path_factory.mktemp("memo") / "memo.json")
    first = BuildContext.open(ctx, memo_path=memo).digest(["src"])
    assert os.path.exists(memo)
    reopened = BuildContext.open(ctx, memo_path=memo)
    assert str(ctx / "src/main.c") in reopened._memo
    # a stale memo entry (same stat stamp, different recorded hash) is trusted: proves the memo is used
    entry = reopened._memo[str(ctx / "src/main.c")]
    entry[4] = "0" * 64
    assert reopened.digest(["src"]) != first
    (ctx / "src/main.c").write_text("new content, new size")
    assert BuildContext.open(ctx, memo_path=memo).digest(["src"]) != first
