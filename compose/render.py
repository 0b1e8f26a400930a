"""Print a canonical project the way `docker compose config` does (YAML and JSON).

docker compose marshals Go structs, so the bytes it prints follow rules we must reproduce by hand:

- Keys of struct-typed objects come in Go struct-field order (compose-go `types/*.go`); keys of
  map-typed values (service names, environment, labels, ...) come sorted. `_TYPES` below is the
  table of struct orders and of which child is which type; keys a struct does not know go after the
  known ones, sorted, and `x-*` extensions always last (yaml.v3 writes inline maps after fields).
- YAML (gopkg.in/yaml.v3 with indent 2): sequences indented under their key, plain scalars when a
  string would read back as a string, double quotes when it would read as another type (numbers,
  bools, null, YAML 1.1 bools like `yes`, sexagesimal `1:30`, dates), single quotes when the string
  is a string but starts or contains an indicator (`*x`, `a: b`, ` x`), literal blocks for
  multi-line text. Map keys are sorted with yaml.v3's "natural" order (`web2` before `web10`).
- JSON (`json.MarshalIndent(project, "", "  ")`): the top level is a Go map, so its keys come out
  sorted; nested objects keep struct order; map keys are sorted bytewise; `x-*` keys below the top
  level are dropped (compose-go tags them `json:"-"`, docker/compose#11528); `command` and
  `entrypoint` are always present (`null` when unset); struct-valued fields without a pointer
  (`ipam`, `deploy.resources`, `deploy.placement`) print `{}`; `<`, `>`, `&` are escaped like Go.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

__all__ = ["go_float_json", "go_float_yaml", "json_compact", "to_json", "to_yaml", "yaml_key_sort"]

# --------------------------------------------------------------------------------------------------
# Type tables: struct name -> (field order, {field: child type}). A child type is a struct name, or
# ("map", T) for a map whose values are T, or ("list", T) for a list of T. Anything else (labels,
# environment, options, extension payloads) is a plain map: sorted keys, untyped children.
# --------------------------------------------------------------------------------------------------

_SERVICE_FIELDS = (
    "name profiles annotations attach build develop blkio_config cap_add cap_drop cgroup_parent cgroup "
    "cpu_count cpu_percent cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpus cpuset cpu_shares "
    "command configs container_name credential_spec depends_on deploy device_cgroup_rules devices dns "
    "dns_opt dns_search dockerfile domainname entrypoint provider environment env_file expose extends "
    "external_links extra_hosts group_add gpus hostname healthcheck image init ipc isolation labels "
    "label_file links logging log_driver log_opt mem_limit mem_reservation memswap_limit mem_swappiness "
    "mac_address models net network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform "
    "ports privileged pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open "
    "stop_grace_period stop_signal storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode "
    "uts volume_driver volumes volumes_from working_dir pre_start post_start pre_stop post_stop"
)

_TYPES: dict[str, tuple[str, dict[str, Any]]] = {
    "project": (
        "name services networks volumes secrets configs models",
        {
            "services": ("map", "service"),
            "networks": ("map", "network"),
            "volumes": ("map", "volume"),
            "secrets": ("map", "fileobj"),
            "configs": ("map", "fileobj"),
            "models": ("map", "model"),
        },
    ),
    "service": (
        _SERVICE_FIELDS,
        {
            "build": "build",
            "develop": "develop",
            "blkio_config": "blkio",
            "configs": ("list", "fileref"),
            "secrets": ("list", "fileref"),
            "credential_spec": "credspec",
            "depends_on": ("map", "dependency"),
            "deploy": "deploy",
            "devices": ("list", "devicemap"),
            "provider": "provider",
            "env_file": ("list", "envfile"),
            "extends": "extends",
            "gpus": ("list", "devicereq"),
            "healthcheck": "healthcheck",
            "logging": "logging",
            "models": ("map", "svcmodel"),
            "networks": ("map", "svcnet"),
            "ports": ("list", "port"),
            "ulimits": ("map", "ulimit"),
            "volumes": ("list", "svcvol"),
            "pre_start": ("list", "hook"),
            "post_start": ("list", "hook"),
            "pre_stop": ("list", "hook"),
            "post_stop": ("list", "hook"),
        },
    ),
    "build": (
        "context dockerfile dockerfile_inline entitlements args provenance sbom ssh labels cache_from "
        "cache_to no_cache no_cache_filter additional_contexts pull extra_hosts isolation network target "
        "secrets shm_size tags ulimits platforms privileged",
        {"secrets": ("list", "fileref"), "ulimits": ("map", "ulimit")},
    ),
    "blkio": (
        "weight weight_device device_read_bps device_read_iops device_write_bps device_write_iops",
        {
            "weight_device": ("list", "weightdev"),
            "device_read_bps": ("list", "throttledev"),
            "device_read_iops": ("list", "throttledev"),
            "device_write_bps": ("list", "throttledev"),
            "device_write_iops": ("list", "throttledev"),
        },
    ),
    "weightdev": ("path weight", {}),
    "throttledev": ("path rate", {}),
    "credspec": ("config file registry", {}),
    "dependency": ("condition restart required", {}),
    "deploy": (
        "mode replicas labels update_config rollback_config resources restart_policy placement endpoint_mode",
        {
            "update_config": "update",
            "rollback_config": "update",
            "resources": "resources",
            "restart_policy": "restartpolicy",
            "placement": "placement",
        },
    ),
    "update": ("parallelism delay failure_action monitor max_failure_ratio order", {}),
    "resources": ("limits reservations", {"limits": "resource", "reservations": "resource"}),
    "resource": (
        "cpus memory pids devices generic_resources",
        {"devices": ("list", "devicereq"), "generic_resources": ("list", "genres")},
    ),
    "genres": ("discrete_resource_spec", {"discrete_resource_spec": "discrete"}),
    "discrete": ("kind value", {}),
    "restartpolicy": ("condition delay max_attempts window", {}),
    "placement": ("constraints preferences max_replicas_per_node", {"preferences": ("list", "pref")}),
    "pref": ("spread", {}),
    "develop": ("watch", {"watch": ("list", "trigger")}),
    "trigger": ("path action target exec include ignore initial_sync", {"exec": "hook"}),
    "hook": ("command user privileged working_dir environment", {}),
    "devicemap": ("source target permissions", {}),
    "devicereq": ("capabilities driver count device_ids options", {}),
    "provider": ("type options", {}),
    "envfile": ("path required format", {}),
    "extends": ("file service", {}),
    "healthcheck": ("test timeout interval retries start_period start_interval disable", {}),
    "logging": ("driver options", {}),
    "svcmodel": ("endpoint_var model_var", {}),
    "svcnet": (
        "priority gw_priority aliases ipv4_address ipv6_address link_local_ips mac_address driver_opts "
        "interface_name",
        {},
    ),
    "port": ("name mode host_ip target published protocol app_protocol", {}),
    "svcvol": (
        "type source target read_only consistency bind volume tmpfs image",
        {"bind": "volbind", "volume": "volvolume", "tmpfs": "voltmpfs", "image": "volimage"},
    ),
    "volbind": ("selinux propagation create_host_path recursive", {}),
    "volvolume": ("nocopy subpath labels", {}),
    "voltmpfs": ("size mode", {}),
    "volimage": ("subpath", {}),
    "fileref": ("source target uid gid mode", {}),
    "ulimit": ("single soft hard", {}),
    "network": (
        "name driver driver_opts ipam external internal attachable labels enable_ipv4 enable_ipv6",
        {"ipam": "ipam"},
    ),
    "ipam": ("driver config options", {"config": ("list", "ipampool")}),
    "ipampool": ("subnet gateway ip_range aux_addresses", {}),
    "volume": ("name driver driver_opts external labels", {}),
    "fileobj": ("name file environment content external labels driver driver_opts template_driver", {}),
    "model": ("name model context_size runtime_flags", {}),
}

_ORDER: dict[str, dict[str, int]] = {
    name: {key: index for index, key in enumerate(fields.split())} for name, (fields, _) in _TYPES.items()
}
_CHILDREN: dict[str, dict[str, Any]] = {name: children for name, (_, children) in _TYPES.items()}

# Fields Go's encoding/json prints even when unset (no omitempty, or a non-pointer struct).
_JSON_ALWAYS: dict[str, tuple[tuple[str, Any], ...]] = {
    "service": (("command", None), ("entrypoint", None)),
    "hook": (("command", None),),
    "network": (("ipam", {}),),
    "deploy": (("resources", {}), ("placement", {})),
    "trigger": (("exec", {}),),
}


def _struct_keys(kind: str, data: dict[str, Any], sort: Callable[[Iterable[str]], list[str]]) -> list[str]:
    """Known fields in struct order, then unknown keys sorted, then x-* extensions sorted."""
    order = _ORDER[kind]
    known = sorted((k for k in data if k in order), key=order.__getitem__)
    if len(known) == len(data):
        return known
    rest = [k for k in data if k not in order]
    other = sort(k for k in rest if not k.startswith("x-"))
    ext = sort(k for k in rest if k.startswith("x-"))
    return known + other + ext


# --------------------------------------------------------------------------------------------------
# yaml.v3 map key order
# --------------------------------------------------------------------------------------------------


def _natural_less(a: str, b: str) -> bool:
    """yaml.v3 `keyList.Less` for two strings: letters by code point, digit runs by value."""
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = ca.isdigit()
            continue
        al, bl = ca.isalpha(), cb.isalpha()
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and a[j].isdigit():
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and a[ai].isdigit():
            an = an * 10 + int(a[ai])
            ai += 1
        bi = i
        while bi < len(b) and b[bi].isdigit():
            bn = bn * 10 + int(b[bi])
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


class _NaturalKey:
    __slots__ = ("s",)

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _NaturalKey) -> bool:
        return _natural_less(self.s, other.s)


_SIMPLE_KEY = re.compile(r"[A-Za-z_.\-/]*\Z")


def yaml_key_sort(keys: Iterable[str]) -> list[str]:
    """Sort map keys like yaml.v3; plain byte order is the same when no key holds a digit."""
    keys = list(keys)
    if all(_SIMPLE_KEY.match(k) and k.isascii() for k in keys):
        # without digits yaml.v3 compares letters by code point and puts a non-letter before a letter
        return sorted(keys, key=lambda k: [(1, c) if c.isalpha() else (0, c) for c in k])
    return sorted(keys, key=_NaturalKey)


def _json_key_sort(keys: Iterable[str]) -> list[str]:
    """encoding/json sorts map keys by their UTF-8 bytes, which is code point order."""
    return sorted(keys)


# --------------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------------


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits of a finite non-zero float and the decimal point position."""
    _sign, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    return text, len(text) + int(exponent)


def go_float_yaml(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64) plus yaml.v3's spelling of infinities and NaN."""
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits, point = _shortest_digits(value)
    sign = "-" if value < 0 else ""
    exp = point - 1
    if exp < -4 or exp >= 6:  # strconv uses precision 6 for this choice when formatting shortest
        return sign + _fmt_e(digits, exp)
    return sign + _fmt_f(digits, point)


def _fmt_e(digits: str, exp: int) -> str:
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mantissa}e{sign}{abs(exp):02d}"


def _fmt_f(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * (-point) + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def go_float_json(value: float) -> str:
    """encoding/json's float format: 'f' shortest, 'e' below 1e-6 or from 1e21 (exponent unpadded)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"json: unsupported value: {value!r}")
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    digits, point = _shortest_digits(value)
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        text = _fmt_e(digits, point - 1)
        return sign + re.sub(r"e([-+])0(\d)$", r"e\1\2", text)
    return sign + _fmt_f(digits, point)


# --- YAML string styles (yaml.v3 encoder.stringv + libyaml emitter analysis) ---------------------

_RESOLVE_MAP = frozenset(
    ["", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "<<"]
    + [sign + dot for sign in ("", "+", "-") for dot in (".inf", ".Inf", ".INF")]
    + [".nan", ".NaN", ".NAN"]
)
_OLD_BOOL = frozenset(
    ("y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF")
)
_BASE60 = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT = re.compile(r"\.[0-9]+([eE][-+]?[0-9]+)?\Z")
_GO_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:([Tt])|[ ])(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.\d+)?(Z|[-+]\d{1,2}(?::\d{2})?)?)?\Z"
)


def _is_timestamp(text: str) -> bool:
    """What yaml.v3's parseTimestamp accepts: 2006-1-2, with optional time (and zone after T)."""
    m = _TIMESTAMP.match(text)
    if not m:
        return False
    try:
        date(int(m[1]), int(m[2]), int(m[3]))
        if m[5] is not None:
            if m[8] is not None and m[4] is None:
                return False  # the space-separated layout has no zone
            datetime(2000, 1, 1, int(m[5]), int(m[6]), int(m[7]))
    except ValueError:
        return False
    return True


def _go_int_fits(text: str) -> bool:
    """strconv.ParseInt(text, 0, 64) or ParseUint succeeds (Go literal syntax, 64-bit range)."""
    if not _GO_INT.match(text):
        return False
    sign = -1 if text[0] == "-" else 1
    body = text.lstrip("+-").lower()
    if body.startswith(("0x", "0o", "0b")):
        value = int(body, 0)
    elif len(body) > 1 and body[0] == "0":
        value = int(body, 8)
    else:
        value = int(body)
    value *= sign
    if text[0] == "+" or sign < 0:
        return -(2**63) <= value < 2**63
    return value < 2**64


def _resolves_to_non_string(text: str) -> bool:
    """True when yaml.v3 would read the unquoted text back as null, bool, number, date or merge key."""
    if text in _RESOLVE_MAP:
        return True
    first = text[0]
    if first == ".":
        return bool(_DOT_FLOAT.match(text))
    if first.isdigit() or first in "+-":
        if first.isdigit() and _is_timestamp(text):
            return True
        plain = text.replace("_", "")
        if not plain:
            return False
        return _go_int_fits(plain) or bool(_YAML_FLOAT.match(plain))
    return False


def _printable(ch: str) -> bool:
    """libyaml's IS_PRINTABLE (tab, DEL, C1 controls and characters beyond the BMP are not)."""
    o = ord(ch)
    return o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF or (0xE000 <= o <= 0xFFFD and o != 0xFEFF)


_BREAKS = "\r\n\x85\u2028\u2029"
_FIRST_INDICATORS = frozenset("#,[]{}&*!|>'\"%@`")


def _analyze(text: str) -> tuple[bool, bool, bool]:
    """(block plain allowed, single quotes allowed, literal block allowed), as libyaml decides."""
    block_indicators = text.startswith(("---", "...")) and True
    leading = text[0] in " " + _BREAKS
    trailing = text[-1] in " " + _BREAKS
    trailing_space = text[-1] == " "
    special = line_breaks = space_break = break_space = False
    preceded_ws = True
    previous_space = previous_break = False
    last = len(text) - 1
    for i, ch in enumerate(text):
        followed_ws = i == last or text[i + 1] in " \t" + _BREAKS
        if i == 0:
            if ch in _FIRST_INDICATORS or (ch in "?:" and followed_ws) or (ch == "-" and followed_ws):
                block_indicators = True
        elif (ch == ":" and followed_ws) or (ch == "#" and preceded_ws):
            block_indicators = True
        if not _printable(ch) or ch in "\u2028\u2029":
            special = True
        if ch in _BREAKS:
            line_breaks = True
            if previous_space:
                space_break = True
            previous_break, previous_space = True, False
        elif ch == " ":
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        else:
            previous_space = previous_break = False
        preceded_ws = ch in " \t" + _BREAKS
    plain = not (
        leading or trailing or break_space or space_break or special or line_breaks or block_indicators
    )
    single = not (break_space or space_break or special)
    block = not (trailing_space or space_break or special)
    return plain, single, block


_ESCAPES = {
    "\0": "\\0",
    "\a": "\\a",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\v": "\\v",
    "\f": "\\f",
    "\r": "\\r",
    "\x1b": "\\e",
    '"': '\\"',
    "\\": "\\\\",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
}


def _double_quoted(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif _printable(ch):
            out.append(ch)
        else:
            o = ord(ch)
            out.append(f"\\x{o:02X}" if o <= 0xFF else f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
    out.append('"')
    return "".join(out)


_PLAIN_SAFE = re.compile(r"[A-Za-z_/][A-Za-z0-9_./=@+-]*\Z")


def _yaml_string(text: str, is_key: bool) -> tuple[str, bool]:
    """The scalar text and whether it is a literal block (text then holds the header `|-` etc.)."""
    if _PLAIN_SAFE.match(text) and text not in _RESOLVE_MAP and text not in _OLD_BOOL:
        return text, False  # fast path: nothing in it could be an indicator or another type
    can_plain = not (_resolves_to_non_string(text) or text in _OLD_BOOL or _BASE60.match(text))
    if "\n" in text:
        _, _, block = _analyze(text)
        if block and not is_key:
            return _literal_header(text), True
        return _double_quoted(text), False
    if not can_plain:
        return _double_quoted(text), False
    plain, single, _ = _analyze(text)
    if plain:
        return text, False
    if single:
        return "'" + text.replace("'", "''") + "'", False
    return _double_quoted(text), False


def _literal_header(text: str) -> str:
    indent = "2" if text[0] in " " + _BREAKS else ""
    if not text.endswith("\n"):
        chomp = "-"
    elif len(text) == 1 or text[-2] in _BREAKS:
        chomp = "+"
    else:
        chomp = ""
    return "|" + indent + chomp


def _literal_body(text: str, indent: int) -> str:
    """Lines of a literal block; blank lines carry no indentation, like libyaml writes them."""
    body = text[:-1] if text.endswith("\n") else text
    pad = " " * indent
    return "".join((pad + line if line else "") + "\n" for line in body.split("\n"))


def _plain_scalar(value: Any, float_text: Callable[[float], str], language: str) -> str:
    """null, booleans and numbers: spelled alike in YAML and JSON except for floats."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_text(value)
    raise TypeError(f"cannot render {type(value).__name__} as {language}")


def _yaml_scalar(value: Any) -> str:
    return _plain_scalar(value, go_float_yaml, "YAML")


# --------------------------------------------------------------------------------------------------
# YAML emitter
# --------------------------------------------------------------------------------------------------


class _YamlWriter:
    """Block-style emitter; one instance per document, string styles cached across the document."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.cache: dict[str, tuple[str, bool]] = {}
        self.key_cache: dict[str, str] = {}

    def key(self, key: str) -> str:
        hit = self.key_cache.get(key)
        if hit is None:
            hit = _yaml_string(str(key), True)[0]
            self.key_cache[key] = hit
        return hit

    def value(self, value: Any, indent: int) -> None:
        """Write ` value\\n` after a `key:` or `-`; nested collections start on the next line."""
        out = self.out
        if isinstance(value, str):
            hit = self.cache.get(value)
            if hit is None:
                hit = _yaml_string(value, False)
                self.cache[value] = hit
            text, literal = hit
            out.append(" " + text + "\n")
            if literal:
                out.append(_literal_body(value, indent + 2))
        elif isinstance(value, dict):
            if not value:
                out.append(" {}\n")
            else:
                out.append("\n")
                self.mapping(value, indent + 2, None, first_inline=False)
        elif isinstance(value, list | tuple):
            if not value:
                out.append(" []\n")
            else:
                out.append("\n")
                self.sequence(value, indent + 2, None, first_inline=False)
        else:
            out.append(" " + _yaml_scalar(value) + "\n")

    def mapping(self, data: dict[str, Any], indent: int, kind: Any, first_inline: bool) -> None:
        out = self.out
        pad = " " * indent
        if isinstance(kind, str):
            keys = _struct_keys(kind, data, yaml_key_sort)
            children = _CHILDREN[kind]
        else:
            keys = yaml_key_sort(data)
            children = None
            if not (isinstance(kind, tuple) and kind[0] == "map"):
                kind = None
        for i, key in enumerate(keys):
            out.append(("" if first_inline and i == 0 else pad) + self.key(key) + ":")
            if children is not None:
                self.typed(data[key], indent, children.get(key))
            elif kind is not None:
                self.typed(data[key], indent, kind[1])
            else:
                self.value(data[key], indent)

    def typed(self, value: Any, indent: int, kind: Any) -> None:
        """A value with a known type: only non-empty dicts and lists need the type."""
        if kind is None or not value or not isinstance(value, dict | list | tuple):
            self.value(value, indent)
            return
        self.out.append("\n")
        if isinstance(value, dict):
            if isinstance(kind, tuple) and kind[0] == "list":
                kind = None
            self.mapping(value, indent + 2, kind, first_inline=False)
        else:
            item = kind[1] if isinstance(kind, tuple) and kind[0] == "list" else None
            self.sequence(value, indent + 2, item, first_inline=False)

    def sequence(self, items: Iterable[Any], indent: int, kind: Any, first_inline: bool) -> None:
        out = self.out
        pad = " " * indent
        for i, item in enumerate(items):
            out.append(("" if first_inline and i == 0 else pad) + "-")
            if isinstance(item, dict) and item:
                out.append(" ")
                self.mapping(item, indent + 2, kind, first_inline=True)
            elif isinstance(item, list | tuple) and item:
                out.append(" ")
                self.sequence(item, indent + 2, None, first_inline=True)
            else:
                self.value(item, indent)


def to_yaml(data: dict[str, Any]) -> str:
    """The project as `docker compose config` prints it (yaml.v3, indent 2), ending in a newline."""
    if not data:
        return "{}\n"
    writer = _YamlWriter()
    writer.mapping(data, 0, "project", first_inline=False)
    return "".join(writer.out)


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------

_HTML = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def _json_string(text: str) -> str:
    """Go's encoder: JSON escapes plus HTML-safe <, >, & and the JS line separators."""
    return encode_basestring(text).translate(_HTML)


def _json_scalar(value: Any) -> str:
    if isinstance(value, str):
        return _json_string(value)
    return _plain_scalar(value, go_float_json, "JSON")


def _json_items(data: dict[str, Any], kind: Any) -> list[tuple[str, Any, Any]]:
    """(key, value, child type) in Go's JSON order; struct extensions dropped, always-on fields added."""
    if isinstance(kind, str):
        always = _JSON_ALWAYS.get(kind)
        if always:
            data = {**{k: v for k, v in always if k not in data}, **data}
        keys = [k for k in _struct_keys(kind, data, _json_key_sort) if not k.startswith("x-")]
        children = _CHILDREN[kind]
        return [(k, data[k], children.get(k)) for k in keys]
    child = kind[1] if isinstance(kind, tuple) and kind[0] == "map" else None
    return [(k, data[k], child) for k in _json_key_sort(data)]


def _json_write(value: Any, kind: Any, indent: str | None, depth: int, out: list[str]) -> None:
    if isinstance(value, dict):
        items = _json_items(value, kind)
        if not items:
            out.append("{}")
            return
        sep, inner, outer = _json_layout(indent, depth)
        out.append("{")
        for i, (key, child, child_kind) in enumerate(items):
            out.append((sep if i else "") + inner + _json_string(key) + (": " if indent is not None else ":"))
            _json_write(child, child_kind, indent, depth + 1, out)
        out.append(outer + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        item_kind = kind[1] if isinstance(kind, tuple) and kind[0] == "list" else None
        sep, inner, outer = _json_layout(indent, depth)
        out.append("[")
        for i, item in enumerate(value):
            out.append((sep if i else "") + inner)
            _json_write(item, item_kind, indent, depth + 1, out)
        out.append(outer + "]")
    else:
        out.append(_json_scalar(value))


def _json_layout(indent: str | None, depth: int) -> tuple[str, str, str]:
    if indent is None:
        return ",", "", ""
    return ",", "\n" + indent * (depth + 1), "\n" + indent * depth


def to_json(data: dict[str, Any]) -> str:
    """The project as `docker compose config --format json` prints it (no trailing newline).

    The top level is a Go map (sorted keys, top-level `x-*` kept); below it Go structs.
    """
    top: dict[str, Any] = {"name": data.get("name", ""), "services": data.get("services", {})}
    for key, value in data.items():
        if key in ("name", "services"):
            continue
        if key.startswith("x-") or value:
            top[key] = value
    project_children = _CHILDREN["project"]
    out: list[str] = ["{"]
    for i, key in enumerate(_json_key_sort(top)):
        out.append(("," if i else "") + "\n  " + _json_string(key) + ": ")
        _json_write(top[key], project_children.get(key), "  ", 1, out)
    out.append("\n}")
    return "".join(out)


def json_compact(value: dict[str, Any], kind: str) -> str:
    """`json.Marshal` of one typed object (e.g. kind "service"), no whitespace; used for hashing."""
    out: list[str] = []
    _json_write(value, kind, None, 0, out)
    return "".join(out)
