"""compose/build.py: a service's `build:` -> the engine's BuildRequest, image names, which services build
and in what order; projects are loaded by the real loader from files in a temporary directory."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from compose import __version__
from compose.build import (
    BuildOptions,
    build_order,
    build_request,
    image_name,
    is_remote_context,
    needs_build,
    parse_build_args,
)
from compose.errors import InvalidProjectError, UsageError
from compose.loader.pipeline import ProjectOptions, load_project


def load(tmp_path, text: str, name: str = "pyct-app"):
    (tmp_path / "compose.yaml").write_text(textwrap.dedent(text))
    return load_project(ProjectOptions(files=(str(tmp_path / "compose.yaml"),), project_name=name))


FULL = """
services:
  web:
    build:
      context: ./web
      dockerfile: Dockerfile.dev
      target: prod
      args:
        A: "1"
        FROM_ENV:
        UNSET:
      labels: [com.example.team=core]
      tags: ["registry.local/web:1", "pyct-app-web"]
      network: host
      extra_hosts: ["db.local=10.0.0.5", "v6.local=::1"]
      shm_size: 64m
      no_cache: true
      platforms: [linux/amd64]
"""


def test_full_build_section_maps_field_by_field(tmp_path, monkeypatch):
    monkeypatch.setenv("FROM_ENV", "from-env")
    monkeypatch.delenv("UNSET", raising=False)
    loaded = load(tmp_path, FULL)
    request = build_request(loaded, loaded.model.services["web"])
    assert request.context == str(tmp_path / "web")
    assert request.dockerfile == "Dockerfile.dev"
    assert request.dockerfile_inline is None
    assert request.target == "prod"
    assert dict(request.args) == {"A": "1", "FROM_ENV": "from-env"}
    assert dict(request.labels) == {
        "com.example.team": "core",
        "com.docker.compose.project": "pyct-app",
        "com.docker.compose.service": "web",
        "com.docker.compose.version": __version__,
    }
    assert request.tags == ("pyct-app-web", "registry.local/web:1")  # image name first, no repeats
    assert request.network == "host"
    assert request.extra_hosts == (("db.local", "10.0.0.5"), ("v6.local", "::1"))
    assert request.shm_size == 64 * 1024 * 1024
    assert request.no_cache is True
    assert request.pull is False
    assert request.platform == "linux/amd64"


def test_defaults_and_string_form(tmp_path):
    loaded = load(tmp_path, "services:\n  api:\n    build: .\n")
    request = build_request(loaded, loaded.model.services["api"])
    assert request.context == str(tmp_path)
    assert request.dockerfile == "Dockerfile"
    assert request.network == "default"
    assert request.tags == ("pyct-app-api",)
    assert request.args == () and request.extra_hosts == ()
    assert request.shm_size is None and request.platform is None
    assert request.no_cache is False and request.pull is False


def test_image_key_names_the_build(tmp_path):
    loaded = load(tmp_path, "services:\n  api:\n    image: example/api:2\n    build: .\n")
    service = loaded.model.services["api"]
    assert image_name(loaded.name, service) == "example/api:2"
    assert build_request(loaded, service).tags == ("example/api:2",)


def test_dockerfile_inline(tmp_path):
    loaded = load(
        tmp_path,
        "services:\n  a:\n    build:\n      context: .\n"
        '      dockerfile_inline: "FROM busybox\\nRUN true\\n"\n',
    )
    request = build_request(loaded, loaded.model.services["a"])
    assert request.dockerfile_inline == "FROM busybox\nRUN true\n"


def test_cli_options_override_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCT_TOKEN", "t0k")
    monkeypatch.delenv("PYCT_MISSING", raising=False)
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      args: {A: file, B: keep}\n")
    options = BuildOptions(
        no_cache=True,
        pull=True,
        args=parse_build_args(["A=cli", "PYCT_TOKEN", "B", "PYCT_MISSING", "EMPTY="]),
    )
    request = build_request(loaded, loaded.model.services["a"], options)
    # B has no value on the command line and none in the environment: the file's value stays
    assert dict(request.args) == {"A": "cli", "B": "keep", "EMPTY": "", "PYCT_TOKEN": "t0k"}
    assert request.no_cache is True and request.pull is True


def test_args_from_dotenv_file(tmp_path, monkeypatch):
    monkeypatch.delenv("PYCT_DOTENV", raising=False)
    (tmp_path / ".env").write_text("PYCT_DOTENV=from-dotenv\n")
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      args: [PYCT_DOTENV]\n")
    options = BuildOptions(args=parse_build_args(["PYCT_DOTENV"]))
    assert dict(build_request(loaded, loaded.model.services["a"], options).args) == {
        "PYCT_DOTENV": "from-dotenv"
    }


def test_bad_build_arg_flag():
    with pytest.raises(UsageError):
        parse_build_args(["=x"])


@pytest.mark.parametrize(
    "context",
    [
        "https://github.com/docker/rootfs.git#container:docker",
        "git@github.com:docker/rootfs.git",
        "github.com/docker/rootfs",
        "git://example.com/repo.git",
        "http://example.com/context.tar.gz",
    ],
)
def test_remote_contexts_are_refused_clearly(tmp_path, context):
    assert is_remote_context(context)
    loaded = load(tmp_path, f"services:\n  a:\n    build: {context!r}\n")
    with pytest.raises(InvalidProjectError) as info:
        build_request(loaded, loaded.model.services["a"])
    assert "not supported" in str(info.value)
    assert "services.a.build.context" in str(info.value)


def test_local_contexts_are_not_remote():
    for context in (".", "./git", "/srv/github.com/x", "http"):
        assert not is_remote_context(context)


@pytest.mark.parametrize(
    "network,expected", [("bridge", "default"), ("default", "default"), ("none", "none")]
)
def test_build_networks(tmp_path, network, expected):
    loaded = load(tmp_path, f"services:\n  a:\n    build:\n      context: .\n      network: {network}\n")
    assert build_request(loaded, loaded.model.services["a"]).network == expected


def test_custom_build_network_is_an_error(tmp_path):
    loaded = load(tmp_path, "services:\n  a:\n    build:\n      context: .\n      network: backnet\n")
    with pytest.raises(InvalidProjectError, match="backnet"):
        build_request(loaded, loaded.model.services["a"])


def test_platform_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_DEFAULT_PLATFORM", raising=False)
    text = (
        "services:\n"
        "  a:\n    platform: linux/arm64\n"
        "    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
        "  b:\n    build:\n      context: .\n      platforms: [linux/arm64]\n"
        "  c:\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
    )
    loaded = load(tmp_path, text)
    services = loaded.model.services
    assert build_request(loaded, services["a"]).platform == "linux/arm64"
    assert build_request(loaded, services["b"]).platform == "linux/arm64"
    with pytest.raises(InvalidProjectError, match="multi-platform"):
        build_request(loaded, services["c"])
    monkeypatch.setenv("DOCKER_DEFAULT_PLATFORM", "linux/amd64")
    loaded = load(tmp_path, text)
    assert build_request(loaded, loaded.model.services["c"]).platform == "linux/amd64"
    with pytest.raises(InvalidProjectError, match="DOCKER_DEFAULT_PLATFORM"):
        build_request(loaded, loaded.model.services["b"])


ORDERED = """
services:
  front:
    build: ./front
    depends_on: [api, cache]
  api:
    build: ./api
    depends_on: [db]
  cache:
    image: busybox
  db:
    build: ./db
  worker:
    build: ./worker
  twin:
    image: pyct-app-worker
    build: ./worker
"""


def test_build_order_generations(tmp_path):
    loaded = load(tmp_path, ORDERED)
    assert build_order(loaded) == [["db", "twin"], ["api"], ["front"]]  # worker: twin's image


def test_build_order_named_services(tmp_path):
    loaded = load(tmp_path, ORDERED)
    assert build_order(loaded, ["front"]) == [["front"]]
    assert build_order(loaded, ["front"], with_dependencies=True) == [["db"], ["api"], ["front"]]
    assert build_order(loaded, ["cache"]) == []  # nothing to build
    with pytest.raises(Exception, match="no such service"):
        build_order(loaded, ["nope"])


def test_needs_build(tmp_path):
    loaded = load(
        tmp_path,
        "services:\n  a:\n    build: .\n  b:\n    build: .\n    pull_policy: build\n"
        "  c:\n    image: busybox\n",
    )
    a, b, c = (loaded.model.services[n] for n in "abc")
    assert needs_build(a, present=False) and not needs_build(a, present=True)
    assert needs_build(a, present=True, build=True)
    assert needs_build(b, present=True)  # pull_policy: build always builds
    assert not needs_build(b, present=False, no_build=True)
    assert not needs_build(c, present=False, build=True)


# -- the progress display ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_display_is_buildkit_like():
    import io

    from compose.cli.buildprogress import BuildDisplay

    out, clock = io.StringIO(), Clock()
    display = BuildDisplay(out, clock)
    web = display.for_service("web")
    web.step("stage-0", 1, 3, "FROM docker.io/library/busybox:latest")
    web.done("stage-0", 1, cached=False, seconds=0.02)
    web.step("", 2, 3, "COPY app /app")
    web.done("", 2, cached=True, seconds=0.0)
    web.step("builder", 3, 3, "RUN echo hi")
    clock.now += 0.25
    web.output("builder", 3, b"hel")
    web.output("builder", 3, b"lo\nwor")  # lines arrive split anywhere
    clock.now += 0.5
    web.done("builder", 3, cached=False, seconds=0.8)
    web.warning("FromAsCasing: 'as' and 'FROM' keywords' casing do not match")
    display.built("web", "sha256:abc", ("docker.io/library/pyct-app-web:latest",))
    display.close()
    assert out.getvalue() == (
        "\n#1 [web 1/3] FROM docker.io/library/busybox:latest\n#1 DONE 0.0s\n"
        "\n#2 [web 2/3] COPY app /app\n#2 CACHED\n"
        "\n#3 [web builder 3/3] RUN echo hi\n#3 0.250 hello\n#3 0.750 wor\n#3 DONE 0.8s\n"
        "\n#4 exporting to image\n#4 writing image sha256:abc done\n"
        "#4 naming to docker.io/library/pyct-app-web:latest done\n#4 DONE 0.0s\n"
        "\n 1 warning found:\n - web: FromAsCasing: 'as' and 'FROM' keywords' casing do not match\n"
    )


def test_plain_display_marks_the_failed_step():
    import io

    from compose.cli.buildprogress import BuildDisplay

    out = io.StringIO()
    display = BuildDisplay(out, Clock())
    display.for_service("api").step("", 2, 2, "RUN exit 3")
    display.for_service("api").output("", 2, b"boom")
    display.failed("api", "RUN exit 3: exit code 3\nboom")
    assert out.getvalue().endswith("#1 0.000 boom\n#1 ERROR: RUN exit 3: exit code 3\n")


def test_json_display_one_object_per_event():
    import io
    import json

    from compose.cli.buildprogress import make_display

    out = io.StringIO()
    display = make_display("json", out)
    progress = display.for_service("web")
    progress.step("", 1, 1, "RUN true")
    progress.output("", 1, b"x\n")
    progress.done("", 1, cached=False, seconds=0.1)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [event.get("status") for event in events] == ["started", None, "done"]
    assert events[1]["log"] == "x" and events[0]["name"] == "[web 1/1] RUN true"
    assert make_display("quiet", out) is None and make_display("plain", out, quiet=True) is None


def test_tty_display_renders_running_steps_and_their_tail():
    import io

    from compose.cli.buildprogress import TtyBuildDisplay

    out = io.StringIO()
    display = TtyBuildDisplay(out, Clock(), color=False)
    try:
        progress = display.for_service("web")
        progress.step("", 1, 2, "FROM busybox")
        progress.done("", 1, cached=True, seconds=0)
        progress.step("", 2, 2, "RUN make")
        progress.output("", 2, b"".join(b"line %d\n" % i for i in range(10)))
        frame = display.render().plain
    finally:
        display.close()
    assert frame.startswith("[+] Building 0.0s (1/2)\n")
    assert " => CACHED [web 1/2] FROM busybox\n" in frame
    assert re.search(r"^ => \[web 2/2\] RUN make +0\.0s$", frame, re.M)  # time flush right
    assert " => => # line 9\n" in frame and "line 3" not in frame  # only the last lines
    assert max(len(line) for line in frame.splitlines()) <= display.console.width


def test_fit_cuts_long_lines_and_aligns_the_time():
    from compose.cli.buildprogress import fit

    assert fit(" => RUN a", "1.0s", 20) == " => RUN a       1.0s"
    assert fit(" => RUN " + "x" * 40, "1.0s", 20) == " => RUN xxxxxx… 1.0s"
    assert fit(" => RUN a\\\n b", "", 20) == " => RUN a\\  b"


# -- the command, on a fake engine ------------------------------------------------------------------------


class FakeEngine:
    """Stands in for engine.api.Engine: records each request as a JSON line in a file (parallel builds
    run in forked children), drives the progress like the builder, fails the services in `fail`."""

    def __init__(self, log: Path, fail: set[str]) -> None:
        self.log, self.fail = log, fail

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return None

    def build_image(self, request, progress=None):
        from engine.errors import BuildError

        service = request.tags[0].rsplit("-", 1)[-1]
        record = {"tag": request.tags[0], "no_cache": request.no_cache, "args": dict(request.args)}
        with self.log.open("a") as log:
            log.write(json.dumps(record) + "\n")
        if progress is not None:
            progress.step("", 1, 2, "FROM docker.io/library/busybox:latest")
            progress.done("", 1, cached=True, seconds=0)
            progress.step("", 2, 2, f"RUN echo {service}")
            progress.output("", 2, f"{service}\n".encode())
        if service in self.fail and service == "worker":
            os._exit(3)  # a build process that dies without a word
        if service in self.fail:
            raise BuildError(
                f'process "/bin/sh -c exit 3" did not complete successfully: exit code: 3 ({service})'
            )
        if progress is not None:
            progress.done("", 2, cached=False, seconds=0.1)

        class Image:
            id = "sha256:" + service * 3

        return Image()


def write_build_sources(tmp_path) -> None:
    """Each service's context directory and Dockerfile (the CLI checks they exist before building)."""
    import yaml

    for service in yaml.safe_load((tmp_path / "compose.yaml").read_text())["services"].values():
        build = service.get("build")
        if build is None:
            continue
        build = {"context": build} if isinstance(build, str) else build
        context = tmp_path / build.get("context", ".")
        context.mkdir(parents=True, exist_ok=True)
        if "dockerfile_inline" not in build:
            (context / build.get("dockerfile", "Dockerfile")).write_text("FROM scratch\n")


def test_missing_build_context_or_dockerfile_names_the_key(tmp_path):
    from compose.build import check_sources

    loaded = load(tmp_path, "services:\n  api:\n    build: ./api\n")
    requests = {"api": build_request(loaded, loaded.model.services["api"])}
    with pytest.raises(InvalidProjectError) as info:
        check_sources(requests)
    assert "services.api.build.context" in str(info.value) and str(tmp_path / "api") in str(info.value)
    (tmp_path / "api").mkdir()
    with pytest.raises(InvalidProjectError) as info:
        check_sources(requests)
    assert "services.api.build.dockerfile" in str(info.value)
    (tmp_path / "api" / "Dockerfile").write_text("FROM scratch\n")
    check_sources(requests)


def run_cli(tmp_path, monkeypatch, argv, *, fail=()):
    from compose.cli import main as cli_main
    from compose.cli.commands import image as image_cmd

    write_build_sources(tmp_path)
    log = tmp_path / "builds.jsonl"
    log.unlink(missing_ok=True)
    monkeypatch.setattr(image_cmd, "open_engine", lambda args: FakeEngine(log, set(fail)))
    code = cli_main.main(["-f", str(tmp_path / "compose.yaml"), "-p", "pyct-app", *argv])
    return code, [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_cli_builds_in_dependency_order_with_flags(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, log = run_cli(
        tmp_path,
        monkeypatch,
        ["--progress", "plain", "--parallel", "1", "build", "--no-cache", "--build-arg", "V=1"],
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [request["tag"] for request in log] == [
        "pyct-app-db", "pyct-app-worker", "pyct-app-api", "pyct-app-front"
    ]  # fmt: skip
    assert all(request["no_cache"] and request["args"] == {"V": "1"} for request in log)
    assert captured.out == ""  # progress goes to stderr
    assert "\n#1 [db 1/2] FROM docker.io/library/busybox:latest\n#1 CACHED\n" in captured.err
    assert "naming to docker.io/library/pyct-app-front:latest done" in captured.err


def test_cli_named_service_and_quiet(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, log = run_cli(tmp_path, monkeypatch, ["build", "-q", "--with-dependencies", "api"])
    captured = capsys.readouterr()
    assert code == 0
    assert [request["tag"] for request in log] == ["pyct-app-db", "pyct-app-api"]
    assert captured.err == "" and captured.out == ""


def test_cli_failed_build_exits_17_and_stops_later_generations(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, log = run_cli(tmp_path, monkeypatch, ["--progress", "plain", "build"], fail={"db"})
    captured = capsys.readouterr()
    assert code == 17
    assert {request["tag"] for request in log} == {"pyct-app-db", "pyct-app-worker"}  # not api/front
    assert 'ERROR: process "/bin/sh -c exit 3" did not complete successfully' in captured.err
    assert "services.db.build: failed to solve: process" in captured.err.splitlines()[-1]
    # twin (worker's image) built beside db in its own process: its progress was relayed
    assert "[twin 2/2] RUN echo worker\n" in captured.err
    assert re.search(r"^#(\d+) [\d.]+ worker\n#\1 DONE 0\.1s$", captured.err, re.M)
    assert "naming to docker.io/library/pyct-app-worker:latest done" in captured.err


def test_cli_build_process_dying_is_a_failure(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, _ = run_cli(tmp_path, monkeypatch, ["--progress", "plain", "build"], fail={"worker"})
    captured = capsys.readouterr()
    assert code == 17
    assert "services.twin.build: failed to solve: the build process ended without a result" in captured.err


def test_cli_unknown_service_and_bad_context(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, log = run_cli(tmp_path, monkeypatch, ["build", "nope"])
    assert code == 1 and log == [] and "no such service" in capsys.readouterr().err
    load(tmp_path, "services:\n  a:\n    build: https://github.com/docker/rootfs.git\n")
    code, log = run_cli(tmp_path, monkeypatch, ["build"])
    assert code == 1 and log == [] and "not supported" in capsys.readouterr().err


def test_parallel_limit():
    from compose.cli.commands.build import parallel_limit

    assert parallel_limit(2, {"COMPOSE_PARALLEL_LIMIT": "5"}) == 2
    assert parallel_limit(-1, {"COMPOSE_PARALLEL_LIMIT": "5"}) == 5
    assert parallel_limit(-1, {}) > 100


def test_cli_dry_run_builds_nothing(tmp_path, monkeypatch, capsys):
    load(tmp_path, ORDERED)
    code, log = run_cli(tmp_path, monkeypatch, ["--dry-run", "build", "api"])
    assert code == 0 and log == []
    assert capsys.readouterr().err == "DRY-RUN MODE -  build service api -> pyct-app-api\n"
