"""The WordPress sample over real HTTP: Apache + mod_php + WordPress -> MariaDB, brought up with the real CLI.

The installation is completed through the installer's own form (POST wp-admin/install.php?step=2, as a
browser sends it), a post is published through XML-RPC with the admin's credentials, and the front page
shows both. Then the stack goes down and up (the named volumes keep the site) and `down -v` (the installer
is back). One stack for the module; the tests run in file order.
"""

from __future__ import annotations

import html
import time
import urllib.parse
import uuid
import xmlrpc.client
from collections.abc import Iterator

import pytest
from e2e_stacks import Stack, brought_up

pytestmark = [pytest.mark.root, pytest.mark.e2e]

TITLE = f"pyct Site {uuid.uuid4().hex[:8]}"
ADMIN, PASSWORD = "pyctadmin", "pyct-Secret-" + uuid.uuid4().hex[:12]
POST_TITLE = f"pyct post {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def wordpress(e2e_root) -> Iterator[Stack]:  # type: ignore[no-untyped-def]
    with brought_up(Stack("wordpress", "WORDPRESS_PORT")) as stack:
        yield stack


def front_page(stack: Stack, needle: str, timeout: float = 60.0) -> str:
    """The front page once it holds `needle` (entities decoded: WordPress escapes titles)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = stack.request("/")
        text = html.unescape(body)
        if status == 200 and needle in text:
            return text
        assert time.monotonic() < deadline, f"front page never showed {needle!r}: HTTP {status} {body[:800]}"
        time.sleep(1)


def test_the_installer_answers(wordpress: Stack) -> None:
    body = wordpress.wait_for("/", "install.php?step=2", timeout=90)
    assert 'name="weblog_title"' in body


def test_ps_shows_both_running_db_healthy(wordpress: Stack) -> None:
    by_service = {row["Service"]: row for row in wordpress.ps()}
    assert sorted(by_service) == ["db", "wordpress"]
    assert {row["State"] for row in by_service.values()} == {"running"}
    assert by_service["db"]["Health"] == "healthy"
    assert f"127.0.0.1:{wordpress.port}->80/tcp" in by_service["wordpress"]["Ports"]


def test_install_through_the_form_then_the_front_page_shows_the_title(wordpress: Stack) -> None:
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
    status, body = wordpress.request("/wp-admin/install.php?step=2", urllib.parse.urlencode(form).encode())
    assert status == 200 and "Success!" in body, body[:2000]
    front_page(wordpress, TITLE)


def test_a_published_post_appears_on_the_front_page(wordpress: Stack) -> None:
    api = xmlrpc.client.ServerProxy(wordpress.url("/xmlrpc.php"))
    content = {"post_title": POST_TITLE, "post_content": "written by the e2e test", "post_status": "publish"}
    post_id = api.wp.newPost(1, ADMIN, PASSWORD, content)
    assert int(post_id) > 0
    front_page(wordpress, POST_TITLE)


def test_logs_hold_apache_access_lines(wordpress: Stack) -> None:
    out = wordpress.cli("logs", "wordpress").stdout
    assert '"POST /wp-admin/install.php?step=2 HTTP/1.1" 200' in out, out[-2000:]


def test_the_site_survives_down_and_up_and_is_gone_after_down_v(wordpress: Stack) -> None:
    wordpress.cli("down")
    assert wordpress.ps() == []
    wordpress.cli("up", "-d", "--wait")
    page = front_page(wordpress, POST_TITLE, timeout=90)
    assert TITLE in page

    wordpress.cli("down", "-v")
    volumes = wordpress.cli("volume", "ls", "-q").stdout.split()
    assert not {"wordpress_db", "wordpress_wordpress"} & set(volumes)
    wordpress.cli("up", "-d", "--wait")
    wordpress.wait_for("/", "install.php?step=2", timeout=90)
