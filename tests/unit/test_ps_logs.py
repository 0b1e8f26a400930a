"""ps/ls/logs/events/wait: the pure parts (printer, columns, formats, filters, event diffs)."""

from __future__ import annotations

import io
import json
import time

import pytest

from compose.cli.commands import logs as logs_cmd
from compose.cli.commands import ps as ps_cmd
from compose.cli.logprinter import LogPrinter, format_timestamp, short_name, use_color
from compose.errors import UsageError

NOW = 1_700_000_000.0
T0 = "2023-11-14T22:13:20Z"  # == NOW


def iso(seconds_before: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_before))


# -- LogPrinter ----------------------------------------------------------------------------------------


def test_prefixes_padded_to_longest_name_plus_one() -> None:
    out = io.StringIO()
    printer = LogPrinter(out, ["web-1", "db-1"])
    printer.line("db-1", "stdout", "ready\n")
    printer.line("web-1", "stdout", "listening\n")
    assert out.getvalue() == "db-1   | ready\nweb-1  | listening\n"


def test_a_longer_name_repads_every_prefix() -> None:
    out = io.StringIO()
    printer = LogPrinter(out, ["db-1"])
    printer.line("db-1", "stdout", "a\n")
    printer.line("frontend-1", "stdout", "b\n")
    printer.line("db-1", "stdout", "c\n")
    assert out.getvalue().splitlines() == ["db-1  | a", "frontend-1  | b", "db-1        | c"]


def test_colours_follow_docker_compose_cycle_and_wrap_the_prefix() -> None:
    out = io.StringIO()
    names = [f"s{i}-1" for i in range(11)]
    printer = LogPrinter(out, names, color=True)
    for name in names:
        printer.line(name, "stdout", "x\n")
    lines = out.getvalue().splitlines()
    assert lines[0] == "\033[36ms0-1   | \033[0mx"
    assert lines[1].startswith("\033[33m")
    assert [line[2:4] for line in lines[:5]] == ["36", "33", "32", "35", "34"]
    assert lines[5].startswith("\033[36;1ms5-1")
    assert lines[10].startswith("\033[36ms10-1  | ")  # the cycle wraps after ten


def test_stderr_goes_to_the_error_stream_and_multiline_text_is_split() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = LogPrinter(out, ["a-1"], err=err)
    printer.line("a-1", "stderr", "one\ntwo\n")
    printer.line("a-1", "stdout", "partial")
    assert err.getvalue() == "a-1  | one\na-1  | two\n"
    assert out.getvalue() == "a-1  | partial\n"


def test_no_prefix_and_timestamps() -> None:
    out = io.StringIO()
    printer = LogPrinter(out, ["a-1"], prefix=False, timestamps=True)
    printer.line("a-1", "stdout", "hi\n", 1_700_000_000_000_000_123)
    assert out.getvalue() == "2023-11-14T22:13:20.000000123Z hi\n"
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000000Z"


def test_status_line_and_short_names() -> None:
    out = io.StringIO()
    LogPrinter(out).status("web-1", "exited with code 0")
    assert out.getvalue() == "web-1 exited with code 0\n"
    assert short_name("shop-web-1", "shop") == "web-1"
    assert short_name("other-web-1", "shop") == "other-web-1"


def test_use_color_rules() -> None:
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    assert use_color(tty, environ={}) is True
    assert use_color(tty, environ={"NO_COLOR": "1"}) is False
    assert use_color(tty, no_color=True, environ={}) is False
    assert use_color(io.StringIO(), environ={}) is False
    assert use_color(io.StringIO(), ansi="always", environ={}) is True
    assert use_color(io.StringIO(), ansi="always", environ={"NO_COLOR": "1"}) is False  # NO_COLOR wins
    assert use_color(tty, ansi="never", environ={}) is False


# -- ps columns --------------------------------------------------------------------------------------------


def record(name: str, state: str = "running", **extra) -> dict:  # type: ignore[no-untyped-def]
    project, _, rest = name.partition("-")
    service = rest.rpartition("-")[0]
    base = {
        "id": (name.encode().hex() * 8)[:64],
        "name": name,
        "image_id": "sha256:" + "a" * 64,
        "labels": {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": rest.rpartition("-")[2],
            "com.docker.compose.oneoff": "False",
            "com.example.tier": "front",
        },
        "created": iso(120),
        "state": state,
        "started_at": iso(125) if state != "created" else None,
        "finished_at": iso(3) if state in ("exited", "dead") else None,
        "exit_code": 1 if state == "exited" else None,
        "health": None,
        "restart_count": 0,
    }
    base.update(extra)
    return base


def document(args: list[str], ports: dict | None = None, health: str | None = None) -> dict:
    state: dict = {"ExitCode": 1}
    if health:
        state["Health"] = {"Status": health}
    return {
        "Path": args[0],
        "Args": args[1:],
        "State": state,
        "Config": {"Image": "nginx:1.25"},
        "NetworkSettings": {"Ports": ports or {}, "Networks": {"shop_default": {}}},
        "Mounts": [{"Type": "volume", "Name": "shop_data"}],
    }


def test_ps_table_matches_docker_compose_columns() -> None:
    web = record("shop-web-1", health=json.dumps({"Status": "healthy"}))
    ports = {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]}
    db = record("shop-db-1", state="exited")
    items = [
        ps_cmd.summary(db, document(["docker-entrypoint.sh", "postgres"])),
        ps_cmd.summary(web, document(["nginx", "-g", "daemon off;"], ports, "healthy")),
    ]
    rows = [ps_cmd.fields(i, now=NOW) for i in items]
    assert ps_cmd.ps_table(rows).splitlines() == [
        "NAME         IMAGE        COMMAND                  SERVICE   CREATED         STATUS"
        "                     PORTS",
        'shop-db-1    nginx:1.25   "docker-entrypoint.s…"   db        2 minutes ago   '
        "Exited (1) 3 seconds ago",
        'shop-web-1   nginx:1.25   "nginx -g daemon off;"   web       2 minutes ago   Up 2 minutes (healthy)'
        "     0.0.0.0:8080->80/tcp, :::8080->80/tcp",
    ]


def test_ps_json_has_docker_compose_keys() -> None:
    item = ps_cmd.summary(
        record("shop-web-1"), document(["sh"], {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]})
    )
    line = ps_cmd.format_ps([item], "json").splitlines()[0]
    data = json.loads(line)
    assert list(data) == sorted(data)
    assert {"ID", "Name", "Image", "Command", "Service", "Project", "State", "Status", "Health", "ExitCode",
            "Ports", "Publishers", "Labels", "RunningFor", "CreatedAt"} <= set(data)  # fmt: skip
    assert data["Publishers"] == [
        {"URL": "0.0.0.0", "TargetPort": 80, "PublishedPort": 80, "Protocol": "tcp"}
    ]
    assert data["Ports"] == "0.0.0.0:80->80/tcp"
    assert data["State"] == "running" and data["Service"] == "web" and data["Project"] == "shop"
    assert data["Command"] == '"sh"'
    assert len(data["ID"]) == 12
    assert "com.example.tier=front" in data["Labels"]


def test_templates() -> None:
    item = ps_cmd.summary(record("shop-web-1"), document(["sh", "-c", "x"]))
    assert ps_cmd.format_ps([item], "{{.Name}} {{.Service}}:{{.State}}") == "shop-web-1 web:running\n"
    assert ps_cmd.format_ps([item], '{{.Label "com.example.tier"}}') == "front\n"
    assert ps_cmd.format_ps([item], "{{json .Names}}") == '"shop-web-1"\n'
    table = ps_cmd.format_ps([item], "table {{.Name}}\\t{{.Status}}", trunc=True)
    assert table.splitlines() == [
        "NAME         STATUS",
        "shop-web-1   Up 2 minutes"[:13] + table.splitlines()[1][13:],
    ]
    assert table.splitlines()[1].startswith("shop-web-1   Up ")
    with pytest.raises(UsageError, match="can't evaluate field Nope"):
        ps_cmd.format_ps([item], "{{.Nope}}")
    whole = json.loads(ps_cmd.format_ps([item], "{{json .}}"))
    assert whole["Name"] == "shop-web-1"


def test_no_trunc_keeps_command_and_id() -> None:
    item = ps_cmd.summary(record("shop-web-1"), document(["a" * 30]))
    fields = ps_cmd.fields(item, trunc=False, now=NOW)
    assert fields["Command"] == '"' + "a" * 30 + '"' and len(fields["ID"]) == 64


@pytest.mark.parametrize(
    ("ports", "text"),
    [
        ([], ""),
        ([(80, "", 0, "tcp")], "80/tcp"),
        ([(8000, "0.0.0.0", 8000, "tcp"), (8001, "0.0.0.0", 8001, "tcp")],
         "0.0.0.0:8000-8001->8000-8001/tcp"),
        ([(80, "0.0.0.0", 8080, "tcp"), (53, "", 0, "udp")], "53/udp, 0.0.0.0:8080->80/tcp"),
        ([(80, "127.0.0.1", 8080, "tcp"), (80, "0.0.0.0", 9090, "tcp")],
         "0.0.0.0:9090->80/tcp, 127.0.0.1:8080->80/tcp"),
        ([(1, "", 0, "tcp"), (2, "", 0, "tcp"), (4, "", 0, "tcp")], "1-2/tcp, 4/tcp"),
    ],
)  # fmt: skip
def test_display_ports(ports: list[tuple[int, str, int, str]], text: str) -> None:
    publishers = [
        {"TargetPort": t, "URL": u, "PublishedPort": p, "Protocol": proto} for t, u, p, proto in ports
    ]
    assert ps_cmd.display_ports(publishers) == text


def test_filters_and_selection() -> None:
    assert ps_cmd.parse_filters(["status=exited", "service=web"], ["running"]) == (
        {"exited", "running"},
        {"web"},
    )
    with pytest.raises(UsageError):
        ps_cmd.parse_filters(["name=x"], [])
    with pytest.raises(UsageError):
        ps_cmd.parse_filters(["status=sleeping"], [])
    records = [record("p-web-1"), record("p-db-1", state="exited"), record("p-old-1")]
    pick = ps_cmd.select
    assert [
        r["name"] for r in pick(records, states={"exited"}, services=set(), known_services=None, orphans=True)
    ] == ["p-db-1"]
    assert [
        r["name"]
        for r in pick(records, states=set(), services=set(), known_services={"web", "db"}, orphans=False)
    ] == ["p-web-1", "p-db-1"]
    assert len(pick(records, states=set(), services={"web"}, known_services=None, orphans=True)) == 1


def test_ls_rows() -> None:
    projects = {
        "shop": [record("shop-web-1"), record("shop-web-2"), record("shop-db-1", state="exited")],
        "blog": [record("blog-app-1", state="paused")],
    }
    for r in projects["shop"]:
        r["labels"]["com.docker.compose.project.config_files"] = "/srv/shop/compose.yaml"
    assert ps_cmd.ls_rows(projects) == [
        {"Name": "blog", "Status": "paused(1)", "ConfigFiles": ""},
        {"Name": "shop", "Status": "exited(1), running(2)", "ConfigFiles": "/srv/shop/compose.yaml"},
    ]
    assert [r["Name"] for r in ps_cmd.ls_rows(projects, ["^sh"])] == ["shop"]


# -- logs options ------------------------------------------------------------------------------------------


def test_tail_and_instants() -> None:
    assert logs_cmd.parse_tail("all") is None
    assert logs_cmd.parse_tail("5") == 5
    assert logs_cmd.parse_tail("-1") is None
    with pytest.raises(UsageError):
        logs_cmd.parse_tail("many")
    assert logs_cmd.parse_instant(None) is None
    assert logs_cmd.parse_instant("10m", now=NOW) == NOW - 600
    assert logs_cmd.parse_instant("1h30m", now=NOW) == NOW - 5400
    assert logs_cmd.parse_instant("1700000000") == NOW
    assert logs_cmd.parse_instant(T0) == NOW
    assert logs_cmd.parse_instant("2023-11-14T23:13:20+01:00") == NOW
    with pytest.raises(UsageError):
        logs_cmd.parse_instant("yesterday-ish")


# -- events ---------------------------------------------------------------------------------------------


def test_event_diff() -> None:
    created = record("p-web-1", state="created")
    running = {**created, "state": "running", "started_at": iso(1)}
    before = logs_cmd.snapshot([created])
    actions = [a for a, _ in logs_cmd.diff({}, before)]
    assert actions == ["create"]
    after = logs_cmd.snapshot([running])
    assert [a for a, _ in logs_cmd.diff(before, after)] == ["start"]
    healthy = {**running, "health": json.dumps({"Status": "healthy"})}
    assert [a for a, _ in logs_cmd.diff(after, logs_cmd.snapshot([healthy]))] == ["health_status: healthy"]
    restarted = {**healthy, "started_at": iso(0), "restart_count": 1}
    assert [a for a, _ in logs_cmd.diff(logs_cmd.snapshot([healthy]), logs_cmd.snapshot([restarted]))] == [
        "die",
        "start",
    ]
    paused = {**running, "state": "paused"}
    assert [a for a, _ in logs_cmd.diff(after, logs_cmd.snapshot([paused]))] == ["pause"]
    assert [a for a, _ in logs_cmd.diff(logs_cmd.snapshot([paused]), after)] == ["unpause"]
    exited = {**running, "state": "exited", "exit_code": 3}
    (action, shot), = logs_cmd.diff(after, logs_cmd.snapshot([exited]))  # fmt: skip
    assert action == "die" and logs_cmd.event_attributes(shot, action)["exitCode"] == "3"
    assert [a for a, _ in logs_cmd.diff(after, {})] == ["destroy"]
    quick = {**exited, "started_at": iso(0)}  # created, then ran and ended between two polls
    assert [a for a, _ in logs_cmd.diff(before, logs_cmd.snapshot([quick]))] == ["start", "die"]
    # a container first seen already running: created, then started
    assert [a for a, _ in logs_cmd.diff({}, after)] == ["create", "start"]


def test_event_lines() -> None:
    shot = logs_cmd.snapshot([record("p-web-1")])
    (cid, one), = shot.items()  # fmt: skip
    attributes = logs_cmd.event_attributes(one, "start")
    assert attributes == {"com.example.tier": "front", "image": "sha256:" + "a" * 64, "name": "p-web-1"}
    text = logs_cmd.event_text(NOW + 0.25, cid, "start", attributes)
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW))
    attrs = f"com.example.tier=front, image=sha256:{'a' * 64}, name=p-web-1"
    assert text == f"{local}.250000 container start {cid} ({attrs})"
    data = json.loads(logs_cmd.event_json(NOW, one, cid, "start", attributes))
    assert list(data) == ["action", "attributes", "id", "service", "time", "type"]
    assert (data["action"], data["id"], data["service"], data["type"]) == ("start", cid, "web", "container")


# -- wait -----------------------------------------------------------------------------------------------


class StoppingEngine:
    """Each container is running for `polls` looks, then exited with its code."""

    def __init__(self, plan: dict[str, tuple[int, int | None]]) -> None:
        self.plan = plan
        self.looks: dict[str, int] = {}

    def get_container(self, cid: str) -> dict:
        from engine.errors import ContainerNotFound

        polls, code = self.plan[cid]
        if code is None:
            raise ContainerNotFound("no such container", subject=cid)
        self.looks[cid] = self.looks.get(cid, 0) + 1
        state = "running" if self.looks[cid] <= polls else "exited"
        return {"id": cid, "state": state, "exit_code": code if state == "exited" else None}


def test_wait_reports_each_exit_and_returns_the_last_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs_cmd, "POLL", 0.0)
    engine = StoppingEngine({"a": (1, 0), "b": (3, 7)})
    seen: list[str] = []
    code = logs_cmd.wait_exits(engine, [{"id": "a"}, {"id": "b"}], lambda r: seen.append(r["id"]))
    assert (seen, code) == (["a", "b"], 7)
    gone = StoppingEngine({"a": (0, None)})
    assert logs_cmd.wait_exits(gone, [{"id": "a"}], seen.append) is None


def test_a_reader_whose_engine_closes_once_the_follower_stopped_ends_quietly() -> None:
    """Attached `up` ends with readers still following the containers it leaves running; the engine is
    then closed under them. After stop() that ends a reader quietly; before it, the error is the
    caller's (a reader must not hide a real failure)."""
    import sqlite3

    class ClosedEngine:
        def container_logs(self, cid: str, follow: bool, **options: object) -> None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")

    printer = LogPrinter(io.StringIO(), color=False, prefix=True)
    follower = logs_cmd.Follower(ClosedEngine(), "shop", [], 0, printer, {})
    record = {"id": "c1", "name": "shop-web-1"}
    with pytest.raises(sqlite3.ProgrammingError):
        follower._read(record, {})
    follower.stop()
    follower._read(record, {})  # no exception: the command is ending
    assert follower.errors == []
