"""`user` / `group_add` resolution against a container's passwd and group files."""

from __future__ import annotations

import pytest

from engine.containers.userdb import (
    ExecUser,
    parse_passwd,
    read_and_resolve,
    resolve_user,
    with_home,
)
from engine.errors import UnknownUser

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::
"""
GROUP = """\
root:x:0:
wheel:x:10:root,app
app:x:1000:
audio:x:29:app
staff:x:50:
"""


def test_default_is_root():
    assert resolve_user(None, PASSWD, GROUP) == ExecUser(0, 0, (10,), "/root", "root")
    assert resolve_user(None, None, None) == ExecUser(0, 0, (), "/", None)


def test_name_gets_primary_and_member_groups():
    assert resolve_user("app", PASSWD, GROUP) == ExecUser(1000, 1000, (10, 29), "/home/app", "app")


def test_numeric_uid_known_and_unknown():
    assert resolve_user("1000", PASSWD, GROUP).home == "/home/app"
    assert resolve_user("4242", PASSWD, GROUP) == ExecUser(4242, 0, (), "/", None)


def test_explicit_group_replaces_membership():
    assert resolve_user("app:staff", PASSWD, GROUP) == ExecUser(1000, 50, (), "/home/app", "app")
    assert resolve_user("1000:777", PASSWD, GROUP) == ExecUser(1000, 777, (), "/home/app", "app")
    assert resolve_user("4242:4343", None, None) == ExecUser(4242, 4343, (), "/", None)


def test_group_add_by_name_and_number():
    user = resolve_user("app", PASSWD, GROUP, ["staff", "9999", "wheel"])
    assert user.sgids == (10, 29, 50, 9999)


@pytest.mark.parametrize(
    ("user", "group_add", "subject"),
    [
        ("nobody", (), "user nobody"),
        ("app:nogroup", (), "group nogroup"),
        ("app", ("missing",), "group missing"),
        (":50", (), "user :50"),
    ],
)
def test_unknown_names_are_clear_errors(user, group_add, subject):
    with pytest.raises(UnknownUser) as info:
        resolve_user(user, PASSWD, GROUP, group_add)
    assert info.value.subject == subject


def test_out_of_range_id():
    with pytest.raises(UnknownUser, match="out of range"):
        resolve_user("99999999999", PASSWD, GROUP)


def test_empty_home_field_defaults_to_slash():
    assert [e.home for e in parse_passwd(PASSWD) if e.name == "nohome"] == ["/"]


def test_with_home_keeps_an_explicit_home():
    assert with_home([("A", "1")], "/root") == [("A", "1"), ("HOME", "/root")]
    assert with_home([("HOME", "/x")], "/root") == [("HOME", "/x")]


def test_read_and_resolve_from_a_root_directory(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    assert read_and_resolve("app", ("staff",), root=str(tmp_path)).sgids == (10, 29, 50)
    assert read_and_resolve("12", root=str(tmp_path / "missing")) == ExecUser(12, 0, (), "/", None)
