"""The LNMP sample over real HTTP: nginx -> php-fpm -> MariaDB, brought up with the real CLI.

One stack for the module (`up -d --build --wait` once); the tests run in file order and the last one takes
the stack down and up again to prove what the named volume keeps and what `down -v` forgets.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from e2e_stacks import Stack, brought_up

pytestmark = [pytest.mark.root, pytest.mark.e2e]

OK_LINE = re.compile(r"LNMP OK: PHP 8\.2\.\d+, MariaDB 10\.11\.\d+")
TABLE = "pyct_rows"


@pytest.fixture(scope="module")
def lnmp(e2e_root) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    with brought_up(Stack("lnmp", "HTTP_PORT")) as stack:
        yield stack


def php(stack: Stack, code: str) -> str:
    """Run PHP in the php service with the page's own DB_* settings: mysqli to host `mariadb` by name."""
    prelude = (
        "mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);"
        '$db = new mysqli(getenv("DB_HOST"), getenv("DB_USER"), getenv("DB_PASSWORD"), getenv("DB_NAME"));'
        f'$db->query("CREATE TABLE IF NOT EXISTS {TABLE} (v VARCHAR(64) NOT NULL)");'
    )
    return php_raw(stack, prelude + code)


def php_raw(stack: Stack, code: str) -> str:
    return stack.cli("exec", "-T", "php", "php", "-r", code).stdout


def rows(stack: Stack) -> list[str]:
    out = php(stack, f'foreach ($db->query("SELECT v FROM {TABLE}")->fetch_all() as $r) echo $r[0], "\\n";')
    return out.split()


def insert(stack: Stack, value: str) -> None:
    php(stack, f"$db->query(\"INSERT INTO {TABLE} VALUES ('{value}')\");")


def test_the_page_reports_php_reaching_mariadb(lnmp: Stack) -> None:
    body = lnmp.wait_for("/", "LNMP OK")
    assert OK_LINE.search(body), body


def test_ps_shows_three_running_containers_mariadb_healthy(lnmp: Stack) -> None:
    by_service = {row["Service"]: row for row in lnmp.ps()}
    assert sorted(by_service) == ["mariadb", "nginx", "php"]
    assert {row["State"] for row in by_service.values()} == {"running"}
    assert by_service["mariadb"]["Health"] == "healthy"
    assert f"127.0.0.1:{lnmp.port}->80/tcp" in by_service["nginx"]["Ports"]


def test_php_writes_a_row_and_reads_it_back(lnmp: Stack) -> None:
    token = f"pyct-{uuid.uuid4().hex[:12]}"
    insert(lnmp, token)
    assert token in rows(lnmp)


def test_logs_hold_the_nginx_access_line(lnmp: Stack) -> None:
    token = uuid.uuid4().hex[:12]
    status, _ = lnmp.request(f"/?pyct={token}")
    assert status == 200
    wanted = f'"GET /?pyct={token} HTTP/1.1" 200'
    deadline = time.monotonic() + 10
    while wanted not in (out := lnmp.cli("logs", "nginx").stdout):
        assert time.monotonic() < deadline, f"no access line {wanted!r} in:\n{out[-2000:]}"
        time.sleep(0.5)
    assert re.search(rf"^nginx-1\s+\|.*{re.escape(wanted)}", out, re.M), out[-2000:]


def test_scale_php_to_three_and_every_request_succeeds(lnmp: Stack) -> None:
    lnmp.cli("scale", "php=3")
    try:
        assert sorted(r["Name"] for r in lnmp.ps() if r["Service"] == "php") == [
            "lnmp-php-1",
            "lnmp-php-2",
            "lnmp-php-3",
        ]
        answers = [lnmp.request("/") for _ in range(30)]
        assert [status for status, _ in answers] == [200] * 30
        assert all(OK_LINE.search(body) for _, body in answers)
    finally:
        lnmp.cli("scale", "php=1")


def test_a_row_survives_down_and_up_and_is_gone_after_down_v(lnmp: Stack) -> None:
    token = f"pyct-{uuid.uuid4().hex[:12]}"
    insert(lnmp, token)
    lnmp.cli("down")
    assert lnmp.ps() == []
    lnmp.cli("up", "-d", "--wait")
    lnmp.wait_for("/", "LNMP OK")
    assert token in rows(lnmp), "the named volume lost the row across down/up"

    lnmp.cli("down", "-v")
    volumes = lnmp.cli("volume", "ls", "-q").stdout.split()
    assert "lnmp_db-data" not in volumes
    lnmp.cli("up", "-d", "--wait")
    lnmp.wait_for("/", "LNMP OK")
    assert token not in rows(lnmp), "down -v kept the database"
