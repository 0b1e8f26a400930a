"""The LNMP sample over real HTTP (issue 8's scenario): web (nginx) -> php (php-fpm) -> mysql (MariaDB).

One stack for the module (`up -d --build --wait` once, on a free port through LNMP_HTTP_PORT); the tests run
in file order and follow the issue: ps, the page, a row written and read back through PHP, nginx's access line
for that request, scale php=3 with 30 requests, stop (every server exits 0) and start, the row across
down/up and gone after down -v. Then mariadbd is killed (SIGKILL from the host) and `restart: always` must
bring it back; last, the shared MariaDB image alone (its MYSQL_*/MARIADB_* variables).
"""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest
from e2e_stacks import REPO, Stack, brought_up

pytestmark = [pytest.mark.root, pytest.mark.e2e]

OK_LINE = re.compile(r"LNMP OK: PHP 8\.2\.\d+, MariaDB 10\.11\.\d+")
TOKEN = f"pyct-{uuid.uuid4().hex[:12]}"  # the row this module writes and then follows


@pytest.fixture(scope="module")
def lnmp(e2e_root) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    with brought_up(Stack("lnmp", "LNMP_HTTP_PORT")) as stack:
        yield stack


def rows(stack: Stack, add: str | None = None) -> list[str]:
    """GET rows.php (storing `add` first when given): the table's values, one a line."""
    query = "?" + urllib.parse.urlencode({"add": add}) if add else ""
    status, body = stack.request(f"/rows.php{query}")
    assert status == 200, f"rows.php answered {status}: {body[:500]}"
    return body.split()


def by_service(stack: Stack) -> dict[str, dict]:
    return {row["Service"]: row for row in stack.ps()}


def test_ps_shows_three_running_containers_with_the_published_port(lnmp: Stack) -> None:
    services = by_service(lnmp)
    assert sorted(services) == ["mysql", "php", "web"]
    assert {row["State"] for row in services.values()} == {"running"}
    assert services["mysql"]["Health"] == "healthy"
    assert f":{lnmp.port}->80/tcp" in services["web"]["Ports"], services["web"]["Ports"]


def test_the_php_page_reports_a_database_connection(lnmp: Stack) -> None:
    body = lnmp.wait_for("/", "LNMP OK")
    assert OK_LINE.search(body), body


def test_a_row_written_through_php_is_read_back(lnmp: Stack) -> None:
    assert TOKEN in rows(lnmp, add=TOKEN)
    assert rows(lnmp).count(TOKEN) == 1


def test_logs_web_shows_the_access_line_of_that_request(lnmp: Stack) -> None:
    wanted = f'"GET /rows.php?add={TOKEN} HTTP/1.1" 200'
    deadline = time.monotonic() + 10
    while wanted not in (out := lnmp.cli("logs", "web").stdout):
        assert time.monotonic() < deadline, f"no access line {wanted!r} in:\n{out[-2000:]}"
        time.sleep(0.5)
    assert re.search(rf"^web-1\s+\|.*{re.escape(wanted)}", out, re.M), out[-2000:]


def test_scale_php_to_three_and_thirty_requests_succeed(lnmp: Stack) -> None:
    lnmp.cli("scale", "php=3")
    try:
        php = sorted(r["Name"] for r in lnmp.ps() if r["Service"] == "php" and r["State"] == "running")
        assert php == ["lnmp-php-1", "lnmp-php-2", "lnmp-php-3"]
        answers = [lnmp.request("/") for _ in range(30)]
        assert [status for status, _ in answers] == [200] * 30, answers
        assert all(OK_LINE.search(body) for _, body in answers)
    finally:
        lnmp.cli("scale", "php=1")


def test_stop_shuts_every_server_down_cleanly_and_start_brings_the_page_back(lnmp: Stack) -> None:
    lnmp.cli("stop")
    assert {(r["Service"], r["State"], r["ExitCode"]) for r in lnmp.ps()} == {
        ("mysql", "exited", 0),
        ("php", "exited", 0),
        ("web", "exited", 0),
    }
    logs = lnmp.cli("logs", "mysql")
    assert "mariadbd: Shutdown complete" in logs.stdout + logs.stderr
    lnmp.cli("start")
    body = lnmp.wait_for("/", "LNMP OK", timeout=30)
    assert OK_LINE.search(body), body
    assert TOKEN in rows(lnmp)


def test_the_row_survives_down_and_up_and_is_gone_after_down_v(lnmp: Stack) -> None:
    lnmp.cli("down")
    assert lnmp.ps() == []
    assert "lnmp_dbdata" in lnmp.cli("volume", "ls", "-q").stdout.split()
    lnmp.cli("up", "-d")
    lnmp.wait_for("/", "LNMP OK")
    assert TOKEN in rows(lnmp), "the named volume lost the row across down/up"

    lnmp.cli("down", "-v")
    assert "lnmp_dbdata" not in lnmp.cli("volume", "ls", "-q").stdout.split()
    lnmp.cli("up", "-d")
    lnmp.wait_for("/", "LNMP OK")
    assert TOKEN not in rows(lnmp), "down -v kept the database"


def test_restart_always_brings_mysql_back_after_mariadbd_is_killed(lnmp: Stack) -> None:
    before = lnmp.inspect("lnmp-mysql-1")
    assert before["State"]["Running"] and before["State"]["Pid"] > 0
    os.kill(before["State"]["Pid"], signal.SIGKILL)  # mariadbd is PID 1 of the container: a real crash
    deadline = time.monotonic() + 30
    while True:
        after = lnmp.inspect("lnmp-mysql-1")
        if after["State"]["Running"] and after["State"]["Pid"] not in (0, before["State"]["Pid"]):
            break
        assert time.monotonic() < deadline, f"mysql not restarted in 30 s: {after['State']}"
        time.sleep(0.2)
    assert after["RestartCount"] > before["RestartCount"]
    body = lnmp.wait_for("/", "LNMP OK", timeout=30)
    assert OK_LINE.search(body), body
    marker = f"pyct-{uuid.uuid4().hex[:12]}"
    assert marker in rows(lnmp, add=marker), "the restarted database takes no write"


MARIADB_COMPOSE = """\
services:
  db:
    build: {context}
    image: pycompose-samples/lnmp-mysql:latest
    environment:
      MARIADB_ROOT_PASSWORD: "r0'ot\\\\pw"
      MARIADB_DATABASE: "my db"
      MARIADB_USER: app
      MYSQL_USER: not-this-one
      MYSQL_PASSWORD: "p'w"
    healthcheck:
      test: ["CMD", "healthcheck.sh"]
      start_period: 30s
      start_interval: 100ms
  nopassword:
    image: pycompose-samples/lnmp-mysql:latest
    profiles: [broken]
"""


@pytest.fixture
def mariadb_only(e2e_root, tmp_path) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    """The shared MariaDB image alone, in a `pyct...` project of a temp directory."""
    project = f"pyct-mdb-{uuid.uuid4().hex[:8]}"
    directory = tmp_path / project
    directory.mkdir()
    context = REPO / "samples" / "shared" / "mariadb"
    (directory / "compose.yaml").write_text(MARIADB_COMPOSE.format(context=context))
    with brought_up(Stack(project, "PYCT_UNUSED_PORT", samples=tmp_path, project=project)) as stack:
        yield stack


def test_the_shared_mariadb_image_takes_mariadb_names_over_mysql_ones(mariadb_only: Stack) -> None:
    def sql(*login: str) -> str:
        query = "SELECT CURRENT_USER(); SHOW DATABASES"
        args = ("exec", "-T", "db", "mariadb", "-h127.0.0.1", *login, "-N", "-e", query)
        return mariadb_only.cli(*args).stdout

    as_app = sql("-uapp", "-pp'w")
    assert "app@%" in as_app and "my db" in as_app.splitlines()
    assert "root@%" in sql("-uroot", "-pr0'ot\\pw")  # quote and backslash reach the server intact
    denied = mariadb_only.cli("exec", "-T", "db", "mariadb", "-h127.0.0.1", "-unot-this-one", check=False)
    assert denied.returncode != 0 and "Access denied" in denied.stderr


def test_the_shared_mariadb_image_refuses_to_start_without_a_root_password(mariadb_only: Stack) -> None:
    # --profile: our `run` does not yet enable a profiled service named on the command line as Docker does
    result = mariadb_only.cli("--profile", "broken", "run", "--rm", "-T", "nopassword", check=False)
    assert result.returncode == 1, result
    assert "set MYSQL_ROOT_PASSWORD" in result.stderr + result.stdout
