"""Resolve a container's `user` / `group_add` against the container's own /etc/passwd and /etc/group.

Pure over file contents, so it is unit-tested without a container; `spawn` calls `read_and_resolve`
after `pivot_root`, so the files read are the container's (a symlinked /etc/passwd in a hostile image
cannot point at the host's). Behaviour follows what Docker/runc do:

- no user: root (0:0), HOME "/" unless passwd says otherwise;
- a name must exist in passwd; a numeric uid need not (then gid 0, HOME "/");
- `user:group`: the group by name must exist in /etc/group, a numeric gid need not;
- without an explicit group, the user's supplementary groups are the /etc/group entries listing it;
- `group_add` entries (names or numbers) are added to the supplementary groups;
- HOME comes from passwd (or "/") unless the environment already sets it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from engine.errors import UnknownUser
from engine.frozen import frozen

MAX_ID = 2**31 - 1
DEFAULT_HOME = "/"


@frozen
class PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@frozen
class GroupEntry:
    name: str
    gid: int
    members: tuple[str, ...]


@frozen
class ExecUser:
    """Who the container's process runs as."""

    uid: int
    gid: int
    sgids: tuple[int, ...]
    home: str
    name: str | None = None


def _as_id(text: str) -> int | None:
    """A decimal id, or None for a name; a number out of range is an error, not a name."""
    if not text.isdecimal():
        return None
    value = int(text)
    if value > MAX_ID:
        raise UnknownUser(f"id {value} is out of range (0..{MAX_ID})", subject=text)
    return value


def parse_passwd(text: str) -> list[PasswdEntry]:
    """Entries of a passwd file; malformed lines (comments, too few fields, bad ids) are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 4 or not fields[0] or line.startswith("#"):
            continue
        if not (fields[2].isdecimal() and fields[3].isdecimal()):
            continue
        home = fields[5] if len(fields) > 5 and fields[5] else DEFAULT_HOME
        entries.append(PasswdEntry(fields[0], int(fields[2]), int(fields[3]), home))
    return entries


def parse_group(text: str) -> list[GroupEntry]:
    """Entries of a group file; malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) < 3 or not fields[0] or line.startswith("#") or not fields[2].isdecimal():
            continue
        members = tuple(m for m in fields[3].split(",") if m) if len(fields) > 3 else ()
        entries.append(GroupEntry(fields[0], int(fields[2]), members))
    return entries


def _find_user(spec: str, users: Sequence[PasswdEntry]) -> PasswdEntry | None:
    """The first passwd entry for a name or uid; a missing name is an error, a missing uid is not."""
    uid = _as_id(spec)
    for entry in users:
        if (uid is None and entry.name == spec) or (uid is not None and entry.uid == uid):
            return entry
    if uid is None:
        raise UnknownUser("no matching entries in passwd file", subject=f"user {spec}")
    return None


def _find_gid(spec: str, groups: Sequence[GroupEntry]) -> int:
    """A gid for a group name (must exist) or number (need not)."""
    gid = _as_id(spec)
    if gid is not None:
        return gid
    for entry in groups:
        if entry.name == spec:
            return entry.gid
    raise UnknownUser("no matching entries in group file", subject=f"group {spec}")


def _member_gids(name: str, groups: Iterable[GroupEntry]) -> list[int]:
    return [g.gid for g in groups if name in g.members]


def _dedup(values: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(values))


def resolve_user(
    user: str | None,
    passwd_text: str | None,
    group_text: str | None,
    group_add: Sequence[str] = (),
) -> ExecUser:
    """The uid, gid, supplementary gids and home for `user` ("name", "uid", "uid:gid", "name:group")."""
    users = parse_passwd(passwd_text or "")
    groups = parse_group(group_text or "")
    user_part, _, group_part = (user or "").partition(":")
    if user and not user_part:
        raise UnknownUser("empty user name", subject=f"user {user}")
    entry = _find_user(user_part or "0", users)
    uid = entry.uid if entry else _as_id(user_part) or 0
    gid = entry.gid if entry else 0
    sgids: list[int] = []
    if group_part:
        gid = _find_gid(group_part, groups)
    elif entry is not None:
        sgids = _member_gids(entry.name, groups)
    sgids += [_find_gid(g, groups) for g in group_add]
    home = entry.home if entry else DEFAULT_HOME
    return ExecUser(uid, gid, _dedup(sgids), home, entry.name if entry else None)


def _read_optional(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None


def read_and_resolve(user: str | None, group_add: Sequence[str] = (), root: str = "/") -> ExecUser:
    """resolve_user over `<root>/etc/passwd` and `<root>/etc/group` (missing files count as empty)."""
    base = Path(root)
    passwd = _read_optional(base / "etc/passwd")
    return resolve_user(user, passwd, _read_optional(base / "etc/group"), group_add)


def with_home(env: Sequence[tuple[str, str]], home: str) -> list[tuple[str, str]]:
    """The environment with HOME added from passwd when the image and service did not set it."""
    pairs = list(env)
    if not any(key == "HOME" for key, _ in pairs):
        pairs.append(("HOME", home))
    return pairs
