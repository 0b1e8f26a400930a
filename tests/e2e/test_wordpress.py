"""The WordPress sample over real HTTP (issue 8's scenario): Apache + mod_php + WordPress -> MariaDB.

One stack for the module (`up -d --build --wait` once, on a free port through WORDPRESS_PORT); the tests run
in file order and follow the issue: the installer answers; the installation is completed by POSTing its form
as a browser does; the front page shows the site title; a post is created through the REST API as the
admin's scripts do it (log in through wp-login.php with a cookie jar, read wpApiSettings' root and nonce
from the dashboard, POST wp/v2/posts with X-WP-Nonce) and appears on the front page; `stop` ends both
servers cleanly (SIGTERM to their PID 1) and `start` serves it again; `down` / `up -d` keeps it (named
volumes); mariadbd, PID 1 of the db container, is SIGKILLed from the host and `restart: always` brings it
back with the site answering again within 30 s. Last, `down -v` brings the installer back.
"""

from __future__ import annotations

import html
import http.cookiejar
import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from e2e_stacks import Stack, brought_up

pytestmark = [pytest.mark.root, pytest.mark.e2e]

TITLE = f"pyct Site {uuid.uuid4().hex[:8]}"
ADMIN, PASSWORD = "pyctadmin", "pyct-Secret-" + uuid.uuid4().hex[:12]
POST_TITLE = f"pyct post {uuid.uuid4().hex[:8]}"
SEEN: dict[str, str] = {}  # what a test found for a later one: "rest access line"
INSTALLER = "install.php?step=2"  # the installer form's action: only a not-yet-installed site shows it
# What an admin page hands its scripts for the REST API: {"root": base URL, "nonce": ..., "versionString"}.
API_SETTINGS = re.compile(r"wpApiSettings\s*=\s*(\{.*?\});")


class Browser:
    """urllib with a cookie jar: what WordPress needs to keep a login across requests."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def send(
        self, path: str, form: dict[str, str] | None = None, body: bytes | None = None, **headers: str
    ) -> tuple[int, str]:
        """GET, or POST a form (urlencoded) or a raw body; redirects followed, an error status returned."""
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        request = urllib.request.Request(self.stack.url(path), data=body)
        for name, value in headers.items():
            request.add_header(name.replace("_", "-"), value)
        try:
            with self.opener.open(request, timeout=30) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def wordpress(e2e_root) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    with brought_up(Stack("wordpress", "WORDPRESS_PORT")) as stack:
        yield stack


def front_page(stack: Stack, needle: str, timeout: float = 60.0) -> str:
    """The front page once it holds `needle` (entities decoded: WordPress escapes titles)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            status, body = stack.request("/")
            text = html.unescape(body)
            if status == 200 and needle in text:
                return text
            last = f"HTTP {status} {body[:800]}"
        except OSError as exc:  # the server restarting: refused or reset for a moment
            last = repr(exc)
        assert time.monotonic() < deadline, f"front page never showed {needle!r} in {timeout:.0f} s: {last}"
        time.sleep(0.5)


def test_config_has_the_issues_shape() -> None:
    """`config -q` passes and the resolved file is issue 8's: the .env defaults, the port overridable."""
    stack = Stack("wordpress", "WORDPRESS_PORT")
    assert stack.cli("config", "-q").stdout == ""
    config = json.loads(stack.cli("config", "--format", "json").stdout)
    db, wp = config["services"]["db"], config["services"]["wordpress"]
    assert db["restart"] == wp["restart"] == "always"
    assert set(db["environment"]) >= {"MYSQL_ROOT_PASSWORD", "MYSQL_DATABASE", "MYSQL_USER", "MYSQL_PASSWORD"}
    assert db["environment"]["MYSQL_DATABASE"] == "wordpress"
    assert [(v["type"], v["source"], v["target"]) for v in db["volumes"]] == [
        ("volume", "db", "/var/lib/mysql")
    ]
    assert db["healthcheck"]["start_interval"] and db["healthcheck"]["start_period"]
    assert wp["depends_on"]["db"]["condition"] == "service_healthy"
    assert [(p["published"], p["target"]) for p in wp["ports"]] == [(str(stack.port), 80)]
    env = wp["environment"]
    assert (
        env["WORDPRESS_DB_HOST"] == "db:3306"
        and env["WORDPRESS_DB_NAME"] == db["environment"]["MYSQL_DATABASE"]
    )
    assert (env["WORDPRESS_DB_USER"], env["WORDPRESS_DB_PASSWORD"]) == (
        db["environment"]["MYSQL_USER"],
        db["environment"]["MYSQL_PASSWORD"],
    )
    assert [(v["type"], v["source"]) for v in wp["volumes"]] == [("volume", "wordpress")]


def test_the_installer_answers(wordpress: Stack) -> None:
    body = wordpress.wait_for("/", INSTALLER, timeout=90)
    assert 'name="weblog_title"' in body and 'name="admin_password"' in body


def test_ps_shows_both_running_db_healthy(wordpress: Stack) -> None:
    by_service = {row["Service"]: row for row in wordpress.ps()}
    assert sorted(by_service) == ["db", "wordpress"]
    assert {row["State"] for row in by_service.values()} == {"running"}
    assert by_service["db"]["Health"] == "healthy"
    assert f":{wordpress.port}->80/tcp" in by_service["wordpress"]["Ports"], by_service["wordpress"]["Ports"]


def test_install_through_the_form_then_the_front_page_shows_the_title(wordpress: Stack) -> None:
    browser = Browser(wordpress)
    status, page = browser.send("/wp-admin/install.php?step=1")  # a browser first loads the form
    assert status == 200 and INSTALLER in page, page[:2000]
    form = {
        "weblog_title": TITLE,
        "user_name": ADMIN,
        "admin_password": PASSWORD,
        "admin_password2": PASSWORD,
        "pw_weak": "1",
        "admin_email": "pyct@example.com",
        "blog_public": "0",
        "language": "",
        "Submit": "Install WordPress",
    }
    status, body = browser.send("/wp-admin/install.php?step=2", form=form)
    assert status == 200 and "Success!" in body, body[:2000]
    front_page(wordpress, TITLE)


def test_a_post_created_through_the_rest_api_appears_on_the_front_page(wordpress: Stack) -> None:
    browser, dashboard = logged_in(wordpress)
    found = API_SETTINGS.search(dashboard)
    assert found, f"no wpApiSettings in the dashboard: {dashboard[:2000]}"
    settings = json.loads(found.group(1))
    # The base the admin's scripts use: ".../index.php?rest_route=/" under plain permalinks (the installer's
    # choice here: its loopback probe for pretty ones cannot reach the host's port from inside the container).
    root = urllib.parse.urlsplit(settings["root"])
    assert root.port == wordpress.port, settings
    path = f"{root.path}?{root.query}wp/v2/posts" if root.query else f"{root.path}wp/v2/posts"
    post = {"title": POST_TITLE, "content": "written by the e2e test", "status": "publish"}
    status, answer = browser.send(
        path,
        body=json.dumps(post).encode(),
        Content_Type="application/json",
        X_WP_Nonce=settings["nonce"],
    )
    assert status == 201, f"POST {path}: HTTP {status}: {answer[:2000]}"
    created = json.loads(answer)
    assert created["status"] == "publish" and created["title"]["raw"] == POST_TITLE
    SEEN["rest access line"] = f'"POST {path} HTTP/1.1" 201'
    front_page(wordpress, POST_TITLE)


def logged_in(stack: Stack) -> tuple[Browser, str]:
    """A browser logged in through wp-login.php (its test cookie first, as a real one has it), and the
    dashboard the login redirected to."""
    browser = Browser(stack)
    status, _ = browser.send("/wp-login.php")
    assert status == 200
    form = {
        "log": ADMIN,
        "pwd": PASSWORD,
        "wp-submit": "Log In",
        "redirect_to": stack.url("/wp-admin/"),
        "testcookie": "1",
    }
    status, dashboard = browser.send("/wp-login.php", form=form)
    assert status == 200 and "wp-admin-bar" in dashboard, f"login failed: HTTP {status} {dashboard[:2000]}"
    return browser, dashboard


def test_logs_hold_apache_access_lines(wordpress: Stack) -> None:
    out = wordpress.cli("logs", "wordpress").stdout
    install = r'^wordpress-1\s+\|.*"POST /wp-admin/install\.php\?step=2 HTTP/1\.1" 200'
    assert re.search(install, out, re.M), out[-2000:]
    rest = SEEN.get("rest access line", "the REST test did not run")
    assert rest in out, (rest, out[-2000:])


def test_stop_ends_apache_and_mariadbd_cleanly_then_start_serves_the_post(wordpress: Stack) -> None:
    """Both servers are PID 1 of their containers and handle SIGTERM: exit 0 long before the 10 s timeout."""
    started = time.monotonic()
    wordpress.cli("stop")
    assert time.monotonic() - started < 8, "a server ignored SIGTERM and waited out the stop timeout"
    states = {row["Service"]: (row["State"], row["ExitCode"]) for row in wordpress.ps()}
    assert states == {"db": ("exited", 0), "wordpress": ("exited", 0)}, states
    apache = wordpress.cli("logs", "wordpress").stderr  # a container's stderr lines, as docker compose does
    assert re.search(r"\[pid 1\b.*AH00169: caught SIGTERM, shutting down", apache), apache[-2000:]
    assert "mariadbd: Shutdown complete" in wordpress.cli("logs", "db").stderr
    wordpress.cli("start")
    front_page(wordpress, POST_TITLE)


def test_the_post_survives_down_and_up(wordpress: Stack) -> None:
    wordpress.cli("down")
    assert wordpress.ps() == []
    volumes = set(wordpress.cli("volume", "ls", "-q").stdout.split())
    assert {"wordpress_db", "wordpress_wordpress"} <= volumes
    wordpress.cli("up", "-d")
    page = front_page(wordpress, POST_TITLE, timeout=60)
    assert TITLE in page


def test_restart_always_brings_the_database_back_after_mariadbd_is_killed(wordpress: Stack) -> None:
    before = wordpress.inspect("wordpress-db-1")
    pid = before["State"]["Pid"]
    assert before["State"]["Running"] and pid > 0
    assert main_process_inside(pid) == ("mariadbd", 1), "mariadbd is not the db container's PID 1"
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)  # a crash of the container's main process, seen from the host
    while True:
        after = wordpress.inspect("wordpress-db-1")
        if after["State"]["Running"] and after["State"]["Pid"] not in (0, pid):
            break
        assert time.monotonic() - killed < 30, f"db not restarted in 30 s: {after['State']}"
        time.sleep(0.2)
    assert after["RestartCount"] > before["RestartCount"]
    page = front_page(wordpress, POST_TITLE, timeout=max(1.0, 30 - (time.monotonic() - killed)))
    assert TITLE in page


def main_process_inside(pid: int) -> tuple[str, int]:
    """(name, pid inside its namespace) of a host pid: NSpid's last field is the innermost pid."""
    with open(f"/proc/{pid}/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return fields["Name"].strip(), int(fields["NSpid"].split()[-1])


def test_down_v_brings_the_installer_back(wordpress: Stack) -> None:
    wordpress.cli("down", "-v")
    volumes = set(wordpress.cli("volume", "ls", "-q").stdout.split())
    assert not {"wordpress_db", "wordpress_wordpress"} & volumes
    wordpress.cli("up", "-d", "--wait")
    wordpress.wait_for("/", INSTALLER, timeout=90)
