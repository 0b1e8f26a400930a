"""Dockerfile instruction semantics: stages and targets, ARG/ENV scoping, config instructions, history."""

from __future__ import annotations

import pytest

from engine.build import instructions as ins
from engine.build.dockerfile import DockerfileError, parse
from engine.errors import InvalidChange
from engine.images.changes import apply_changes
from engine.images.manifest import host_platform


def _plan(text: str, args: dict | None = None, target: str | None = None) -> ins.BuildPlan:
    return ins.plan(parse(text, "ctx/Dockerfile"), args or {}, target)


def _run(text: str, args: dict | None = None, base: dict | None = None) -> ins.StageState:
    """Plan, start the target stage on `base`, apply its instructions (RUN/COPY skipped)."""
    args = args or {}
    build = _plan(text, args)
    stage = next(s for s in build.stages if s.index == build.target)
    state = ins.start_stage(base, stage, build, args)
    for instruction in stage.instructions:
        ins.apply(state, instruction, args)
    return state


def _one(line: str, state: ins.StageState | None = None) -> ins.StageState:
    state = state or ins.StageState({})
    ins.apply(state, parse(line).instructions[0], {})
    return state


def _error(text: str, args: dict | None = None, target: str | None = None) -> DockerfileError:
    with pytest.raises(DockerfileError) as info:
        _run(text, args) if target is None else _plan(text, args, target)
    return info.value


# -- stages ------------------------------------------------------------------------------------------


def test_stages_names_bases_and_dependencies() -> None:
    build = _plan(
        "ARG BASE=debian:bookworm-slim\n"
        "FROM ${BASE} AS Build\n"
        "RUN make\n"
        "FROM scratch AS assets\n"
        "COPY a /a\n"
        "FROM build AS test\n"
        "RUN --mount=type=bind,from=ASSETS,target=/x true\n"
        "FROM alpine\n"
        "COPY --from=0 /out /out\n"
        "COPY --from=assets /a /a\n"
        "COPY --from=nginx:latest /etc/nginx /etc/nginx\n"
    )
    assert [(s.index, s.name, s.base, s.line) for s in build.stages] == [
        (0, "build", "debian:bookworm-slim", 2),
        (1, "assets", "scratch", 4),
        (3, None, "alpine", 8),
    ]
    assert [s.depends_on for s in build.stages] == [(), (), (0, 1)]
    assert build.target == 3
    assert build.global_args == (("BASE", "debian:bookworm-slim"),)
    assert [i.keyword for i in build.stages[2].instructions] == ["COPY", "COPY", "COPY"]


def test_target_prunes_to_the_stages_it_needs_case_insensitive() -> None:
    text = (
        "FROM debian AS base\nFROM base AS dev\nRUN --mount=from=tools,target=/t true\n"
        "FROM alpine AS tools\nFROM base AS prod\n"
    )
    dev = _plan(text, target="DEV")
    assert [s.index for s in dev.stages] == [0, 1, 2] and dev.target == 1
    assert dev.stages[1].base_stage == 0 and dev.stages[1].depends_on == (0, 2)
    assert [s.index for s in ins.ordered_stages(dev)] == [0, 2, 1]
    prod = _plan(text, target="prod")
    assert [s.index for s in prod.stages] == [0, 3] and prod.stages[1].base_stage == 0
    assert "could not be found" in str(_error(text, target="nope"))


def test_from_platform_and_platform_args() -> None:
    host = host_platform()
    text = (
        "ARG V=3\nFROM --platform=$BUILDPLATFORM alpine:$V AS a\n"
        "FROM --platform=${TARGETOS}/${TARGETARCH} debian:${V}x\n"
    )
    build = _plan(text, target="a")
    assert build.stages[0].platform == str(host) and build.stages[0].base == "alpine:3"
    build = _plan(text)
    assert [s.index for s in build.stages] == [1]
    assert build.stages[0].platform == f"linux/{host.architecture}"
    assert build.stages[0].base == "debian:3x"
    other = _plan("FROM --platform=$TARGETPLATFORM x\n", {"TARGETPLATFORM": "linux/arm64/v8"})
    assert other.stages[0].platform == "linux/arm64/v8"
    assert dict(other.platform_args)["TARGETVARIANT"] == "v8"


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("RUN true\nFROM a\n", "no build stage", 1),
        ("ARG A=1\n", "has no FROM", 1),
        ("FROM a b\n", "one or three arguments", 1),
        ("FROM a FOR b\n", "one or three arguments", 1),
        ("FROM a AS 1st\n", "invalid name for build stage", 1),
        ("FROM a AS x\nFROM b AS X\n", "duplicate stage name", 2),
        ("FROM $NOTHING\n", "should not be blank", 1),
        ("FROM a AS x\nCOPY --from=x /a /b\n", "circular dependency", 2),
        ("FROM a AS x\nCOPY --from=y /a /b\nFROM b AS y\nCOPY --from=x / /\n", "circular dependency", 3),
        ("FROM a\nCOPY --from=5 /a /b\n", "invalid stage index 5", 2),
        ("FROM --platfrom=x a\n", "unknown flag: platfrom", 1),
        ("FROM a\nCMD --verbose\n", "unknown flag: verbose", 2),
        ("FROM a\nCOPY --chmod=755 --form=x a b\n", "unknown flag: form", 2),
        ("FROM a\nRUN ${A:?must be set}\nENV B=${B:?}\n", "cannot parse ENV", 3),
        ("FROM a\nARG A=${X\n", "cannot parse ARG", 2),
    ],
)
def test_plan_and_apply_errors_name_file_and_line(text: str, message: str, line: int) -> None:
    error = _error(text)
    assert message in error.message
    assert error.subject == f"ctx/Dockerfile:{line}"


# -- ARG and ENV -------------------------------------------------------------------------------------


def test_global_args_only_in_from_unless_redeclared() -> None:
    text = "ARG A=global\nARG B=b\nARG C\nFROM x\n"
    text += "ENV SEEN_A=${A:-unset} SEEN_C=${C-unset}\nARG A\nENV AGAIN=$A\n"
    state = _run(text)
    env = dict(e.split("=", 1) for e in state.config["Env"])
    assert env == {"SEEN_A": "unset", "SEEN_C": "unset", "AGAIN": "global"}
    assert state.args == {"A": "global"}  # B never re-declared
    over = _run(text, {"A": "cli", "C": "c"})
    assert dict(e.split("=", 1) for e in over.config["Env"])["AGAIN"] == "cli"


def test_stage_arg_default_build_arg_and_expansion_order() -> None:
    text = (
        "FROM x\nARG A=1 B=${A}2\nENV E=$B\nARG A=changed\nENV F=$A\n"
        "ARG G=g\nENV G=env\nENV H=$G\nARG G=again\nENV I=$G\n"
    )
    env = dict(e.split("=", 1) for e in _run(text).config["Env"])
    assert env == {"E": "12", "F": "changed", "G": "env", "H": "env", "I": "env"}  # ENV wins over ARG
    env = dict(e.split("=", 1) for e in _run(text, {"A": "9", "G": "cli"}).config["Env"])
    assert env["E"] == "92" and env["F"] == "9" and env["I"] == "env"


def test_global_redeclared_with_own_default_and_undeclared_value() -> None:
    state = _run("ARG V=global\nFROM x\nARG V=stage\nARG NOVALUE\n")
    assert state.args == {"V": "stage"}
    assert "NOVALUE" not in state.environment()


def test_platform_args_need_declaring_inside_a_stage() -> None:
    state = _run("FROM x\nENV BEFORE=${TARGETARCH:-none}\nARG TARGETARCH\nENV AFTER=$TARGETARCH\n")
    env = dict(e.split("=", 1) for e in state.config["Env"])
    assert env == {"BEFORE": "none", "AFTER": host_platform().architecture}


def test_proxy_args_reach_run_but_not_the_image_or_unused_warning() -> None:
    args = {"http_proxy": "http://p:3128", "NO_PROXY": "local", "UNUSED": "1", "USED": "2", "TARGETOS": "x"}
    build = _plan("ARG G\nFROM x AS a\nARG USED\nFROM y\nARG OTHER\n", {**args, "G": "g"}, target="a")
    assert build.unused_args == ("UNUSED",)
    text = "FROM x\nARG USED\nRUN env\n"
    state = _run(text, args)
    assert state.environment() == {"http_proxy": "http://p:3128", "NO_PROXY": "local", "USED": "2"}
    assert "Env" not in state.config
    run = parse(text).instructions[2]
    assert ins.history_text(run, state) == "|1 USED=2 /bin/sh -c env"  # proxies never in history


def test_unused_counts_args_of_pruned_stages_as_unused() -> None:
    build = _plan("FROM x AS a\nFROM y AS b\nARG ONLY_B\n", {"ONLY_B": "1"}, target="a")
    assert build.unused_args == ("ONLY_B",)


def test_env_forms_quotes_legacy_in_place_and_same_line_expansion() -> None:
    state = ins.StageState({"Env": ["PATH=/bin", "A=old"]})
    for line in (
        "ENV A=1 B=\"two words\" C='$A' D=$A",
        "ENV PATH=/usr/local/bin:$PATH",
        "ENV LEGACY   a  b\t c",
        'ENV "Q K"=v E=a\\ b',
    ):
        _one(line, state)
    assert state.config["Env"] == [
        "PATH=/usr/local/bin:/bin",
        "A=1",
        "B=two words",
        "C=$A",
        "D=old",
        "LEGACY=a  b\t c",
        "Q K=v",
        "E=a b",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ENV ONLYKEY", "must have two arguments"),
        ("ENV A=1 B", "can't find ="),
        ("ENV =x", "names can not be blank"),
        ("LABEL =x", "expects key=value"),
        ("ARG =x", "ARG names can not be blank"),
        ('ENV A="open', "cannot parse ENV"),
    ],
)
def test_env_label_arg_errors(line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as info:
        _one(line)
    assert info.value.subject == "Dockerfile:1"


# -- config instructions -----------------------------------------------------------------------------


def test_cmd_entrypoint_forms_shell_and_reset() -> None:
    base = {"Cmd": ["bash"], "Entrypoint": None}
    state = _run('FROM x\nENTRYPOINT ["/init"]\n', base=base)
    assert state.config["Entrypoint"] == ["/init"] and "Cmd" not in state.config
    state = _run('FROM x\nCMD ["serve"]\nENTRYPOINT /init --x\n', base=base)
    assert state.config == {"Cmd": ["serve"], "Entrypoint": ["/bin/sh", "-c", "/init --x"]}
    state = _run('FROM x\nSHELL ["/bin/bash", "-eu", "-c"]\nCMD echo $HOME\n')
    assert state.config["Cmd"] == ["/bin/bash", "-eu", "-c", "echo $HOME"]  # not expanded
    assert state.config["Shell"] == ["/bin/bash", "-eu", "-c"]
    state = _run('FROM x\nCMD []\nENTRYPOINT ["e"]\n', base=base)
    assert "Cmd" not in state.config  # an empty CMD does not protect it


def test_shell_inherited_from_base_and_must_be_json() -> None:
    build = _plan("FROM x\nRUN a b\n")
    state = ins.start_stage({"Shell": ["pwsh", "-c"]}, build.stages[0], build, {})
    assert ins.run_command(state, build.stages[0].instructions[0]) == ("pwsh", "-c", "a b")
    assert "JSON form" in _error("FROM x\nSHELL /bin/bash -c\n").message
    assert "at least one" in _error("FROM x\nSHELL []\n").message


def test_run_exec_shell_and_heredoc_forms() -> None:
    state = ins.StageState({})
    df = parse(
        'RUN ["echo", "$HOME"]\nRUN echo \\\n  hi\n'
        "RUN <<EOF\napt-get update\nEOF\n"
        "RUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n"
        "RUN cat <<A >/f && cat <<-B\none\nA\n\ttwo\n\tB\n"
    ).instructions
    assert ins.run_command(state, df[0]) == ("echo", "$HOME")
    assert ins.run_command(state, df[1]) == ("/bin/sh", "-c", "echo   hi")
    assert ins.run_command(state, df[2]) == ("/bin/sh", "-c", "apt-get update\n")
    assert ins.run_command(state, df[3]) == (
        "/bin/sh",
        "-c",
        "/usr/bin/env python3 <<'EOF'\n#!/usr/bin/env python3\nprint(1)\nEOF\n",
    )
    assert ins.run_command(state, df[4]) == ("/bin/sh", "-c", "cat <<A >/f && cat <<-B\none\nA\ntwo\nB\n")
    assert ins.apply(state, df[0], {}) is False and state.config == {}


def test_label_expose_user_workdir_volume_stopsignal() -> None:
    state = ins.StageState({"Labels": {"keep": "1"}, "WorkingDir": "/"}, args={"P": "8080", "D": "data"})
    for line in (
        'LABEL a=b "c d"=e version=$P',
        "LABEL legacy value here",
        "EXPOSE 80 53/UDP 8000-8001/tcp $P/sctp",
        "USER ${D}:1000",
        "WORKDIR srv",
        "WORKDIR ../$D/./x/",
        "WORKDIR /abs/",
        'VOLUME ["/v1", "/$D"]',
        "VOLUME /cache $D/rel",
        "STOPSIGNAL SIGRTMIN+3",
    ):
        assert ins.apply(state, parse(line).instructions[0], {}) is True
    assert state.config == {
        "Labels": {"keep": "1", "a": "b", "c d": "e", "version": "8080", "legacy": "value here"},
        "WorkingDir": "/abs/",
        "ExposedPorts": {
            "80/tcp": {},
            "53/udp": {},
            "8000/tcp": {},
            "8001/tcp": {},
            "8080/sctp": {},
        },
        "User": "data:1000",
        "Volumes": {"/v1": {}, "/data": {}, "/cache": {}, "data/rel": {}},
        "StopSignal": "SIGRTMIN+3",
    }
    assert _one("WORKDIR a/../../b", ins.StageState({})).config["WorkingDir"] == "/b"
    state = _one("WORKDIR sub", ins.StageState({"WorkingDir": "/srv"}))
    assert (
        ins.history_text(parse("WORKDIR sub").instructions[0], state) == "/bin/sh -c #(nop)  WORKDIR /srv/sub"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("EXPOSE 70000", "invalid port range"),
        ("EXPOSE 0", "invalid port range"),
        ("EXPOSE 90-80", "invalid port range"),
        ("EXPOSE 80/icmp", "invalid port"),
        ("EXPOSE http", "invalid port"),
        ('EXPOSE ""', "invalid port"),
        ("STOPSIGNAL SIGNOPE", "invalid stop signal"),
        ("STOPSIGNAL 0", "invalid stop signal"),
        ('VOLUME ["/a", " "]', "can not be an empty string"),
        ('USER ""', "exactly one argument"),
        ("CMD", "at least one argument"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"),
        ("onbuild maintainer me", "isn't allowed as an ONBUILD trigger"),
        ("ONBUILD FETCH x", "unknown instruction"),
        ("HEALTHCHECK NONE --x", "takes no arguments"),
        ("HEALTHCHECK --interval=5s NONE", "takes no arguments"),
        ("HEALTHCHECK RUN x", "Unknown type 'RUN'"),
        ("HEALTHCHECK CMD", "Missing command"),
        ("HEALTHCHECK --interval=5 CMD x", "invalid duration"),
        ("HEALTHCHECK --timeout=1us CMD x", "cannot be less than 1ms"),
        ("HEALTHCHECK --retries=-1 CMD x", "cannot be negative"),
        ("HEALTHCHECK --retries=x CMD x", "invalid number"),
        ("HEALTHCHECK --tries=1 CMD x", "unknown flag"),
    ],
)
def test_config_instruction_errors(line: str, message: str) -> None:
    with pytest.raises(DockerfileError, match=message):
        _one(line)


def test_healthcheck_options_and_none() -> None:
    state = _one(
        "HEALTHCHECK --interval=1m30s --timeout=3s --start-period=0 --retries=3 CMD curl -f x || exit 1"
    )
    assert state.config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "curl -f x || exit 1"],
        "Interval": 90 * 10**9,
        "Timeout": 3 * 10**9,
        "Retries": 3,
    }
    assert state.history[1] == (
        '/bin/sh -c #(nop)  HEALTHCHECK &{["CMD-SHELL" "curl -f x || exit 1"] '
        '"1m30s" "3s" "0s" "0s" \'\\x03\'}'
    )
    _one('HEALTHCHECK --start-interval=500ms CMD ["pg_isready", "-U", "x"]', state)
    assert state.config["Healthcheck"] == {
        "Test": ["CMD", "pg_isready", "-U", "x"],
        "StartInterval": 5 * 10**8,
    }
    assert _one("HEALTHCHECK none", state).config["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize(
    ("text", "ns", "shown"),
    [
        ("0", 0, "0s"),
        ("300ms", 300_000_000, "300ms"),
        ("1.5h", 5400 * 10**9, "1h30m0s"),
        ("2m3.25s", 123_250_000_000, "2m3.25s"),
        ("1h1s", 3601 * 10**9, "1h0m1s"),
        ("10us", 10_000, "10µs"),
        ("7ns", 7, "7ns"),
    ],
)
def test_go_durations(text: str, ns: int, shown: str) -> None:
    assert ins.parse_duration(text) == ns
    assert ins.go_duration(ns) == shown


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1s2", ".s", "1.2.3s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        ins.parse_duration(text)


def test_onbuild_stored_then_run_once_by_the_child() -> None:
    state = _run("FROM x\nONBUILD COPY . /app\nONBUILD  run make \\\n  all\nMAINTAINER Jo <jo@x>\n")
    assert state.config["OnBuild"] == ["COPY . /app", "run make   all"]
    assert state.onbuild == ["COPY . /app", "run make   all"] and state.author == "Jo <jo@x>"
    assert ins.onbuild_triggers(state.config) == ("COPY . /app", "run make   all")
    assert ins.onbuild_triggers(None) == ()
    build = _plan("FROM parent\n")
    child = ins.start_stage(state.config, build.stages[0], build, {})
    assert "OnBuild" not in child.config and child.onbuild == []


def test_start_stage_copies_the_base_config() -> None:
    base = {"Env": ["A=1"], "Labels": {"x": "y"}}
    build = _plan("FROM x\nENV A=2\nLABEL x=z\n")
    state = ins.start_stage(base, build.stages[0], build, {})
    for instruction in build.stages[0].instructions:
        ins.apply(state, instruction, {})
    assert base == {"Env": ["A=1"], "Labels": {"x": "y"}}
    assert state.config == {"Env": ["A=2"], "Labels": {"x": "z"}}
    assert ins.start_stage(None, build.stages[0], build, {}).config == {}


# -- history -----------------------------------------------------------------------------------------


def test_history_texts_like_the_classic_builder() -> None:
    text = (
        "FROM x\nARG A=1 B\nARG C=3\nENV C=env\n"
        'CMD ["nginx", "-g", "daemon off;"]\nENTRYPOINT echo "hi"\n'
        'EXPOSE 443 80\nVOLUME /a /b\nSHELL ["/bin/bash", "-c"]\nLABEL k=v\nUSER u\n'
        "ONBUILD RUN x\nSTOPSIGNAL 9\nMAINTAINER me\n"
        "RUN make\nCOPY --chown=1:1 $C* /dst/\n"
    )
    args = {"B": "b"}
    build = _plan(text, args)
    state = ins.start_stage(None, build.stages[0], build, args)
    seen = []
    for instruction in build.stages[0].instructions:
        before = ins.history_text(instruction, state)  # the same text before and after applying
        ins.apply(state, instruction, args)
        after = ins.history_text(instruction, state)
        assert before == after
        seen.append(after)
    nop, bash = "/bin/sh -c #(nop)  ", "/bin/bash -c #(nop)  "
    assert seen == [
        nop + "ARG A=1 B=b",
        nop + "ARG C=3",
        nop + "ENV C=env",
        nop + 'CMD ["nginx" "-g" "daemon off;"]',
        nop + 'ENTRYPOINT ["/bin/sh" "-c" "echo \\"hi\\""]',
        nop + "EXPOSE 443/tcp 80/tcp",
        nop + "VOLUME [/a /b]",
        bash + "SHELL [/bin/bash -c]",
        bash + "LABEL k=v",
        bash + "USER u",
        bash + "ONBUILD RUN x",
        bash + "STOPSIGNAL 9",
        bash + "MAINTAINER me",
        "|2 A=1 B=b /bin/bash -c make",  # C is overridden by ENV
        "/bin/bash -c #(nop) COPY --chown=1:1 env* /dst/",
    ]


def test_history_changes_with_heredoc_content_and_args() -> None:
    state = ins.StageState({})
    one = parse("COPY <<EOF /f\na\nEOF\n").instructions[0]
    two = parse("COPY <<EOF /f\nb\nEOF\n").instructions[0]
    assert ins.history_text(one, state) != ins.history_text(two, state)
    run = parse("RUN make\n").instructions[0]
    assert ins.history_text(run, ins.StageState({}, args={"V": "1"})) != ins.history_text(
        run, ins.StageState({}, args={"V": "2"})
    )


# -- docker import --change through this module -------------------------------------------------------


def test_import_changes_share_the_rules() -> None:
    base = {"Env": ["PATH=/bin", "HOME=/root"], "Cmd": ["sh"]}
    config = apply_changes(
        base,
        [
            "ENV PATH=/opt:$PATH",
            "WORKDIR $HOME/app",
            "ENTRYPOINT /init",
            "HEALTHCHECK --interval=10s CMD true",
            "ONBUILD RUN make",
        ],
    )
    assert base["Env"] == ["PATH=/bin", "HOME=/root"]  # the caller's config is not touched
    assert config == {
        "Env": ["PATH=/opt:/bin", "HOME=/root"],
        "WorkingDir": "/root/app",
        "Entrypoint": ["/bin/sh", "-c", "/init"],  # and the old Cmd is dropped, as Docker
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 10 * 10**9},
        "OnBuild": ["RUN make"],
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("RUN true", "RUN is not a supported change"),
        ("MAINTAINER me", "MAINTAINER is not a supported change"),
        ('SHELL ["/bin/bash"]', "SHELL is not a supported change"),
        ("HEALTHCHECK FOO", "Unknown type"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD"),
        ("EXPOSE 1-0", "invalid port range"),
    ],
)
def test_import_change_errors_name_the_change(change: str, message: str) -> None:
    with pytest.raises(InvalidChange, match=message) as info:
        apply_changes({}, [change])
    assert info.value.subject == change
