"""Parsers for the Compose short syntaxes (ports, volumes, durations, sizes, commands...).

Each parser reproduces the library docker compose uses for the same job (compose-go `format` and
`types`, docker/go-connections `nat`, docker/go-units, xhit/go-str2duration, mattn/go-shellwords), so
that `pycompose config` accepts and prints exactly what `docker compose config` does. They raise
`InvalidProjectError` with a message only: the caller knows the key path and adds it.
"""

from __future__ import annotations

import re
import struct
from functools import lru_cache
from typing import Any

from compose.errors import InvalidProjectError

__all__ = [
    "format_duration",
    "go_string",
    "nano_cpus",
    "parse_bytes",
    "parse_device_spec",
    "parse_duration",
    "parse_extra_host",
    "parse_port_spec",
    "parse_ulimit",
    "parse_volume_spec",
    "shell_split",
]


# --------------------------------------------------------------------------------------------- values


def go_string(value: Any) -> str:
    """Render a scalar the way Go's fmt.Sprint does, since compose-go stringifies map values with it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "+Inf" if value > 0 else "-Inf"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if value is None:
        return "<nil>"
    return str(value)


def nano_cpus(value: Any) -> float:
    """A `cpus` value as compose-go keeps it: a float32, shown with its shortest round-trip digits."""
    if isinstance(value, bool):
        raise InvalidProjectError(f"unexpected value type bool for cpus: {value!r}")
    if isinstance(value, str):
        if not _GO_FLOAT_RE.match(value):
            raise InvalidProjectError(f'invalid cpus value "{value}"')
        number = float(value)
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise InvalidProjectError(f"unexpected value type {type(value).__name__} for cpus")
    try:
        single = struct.unpack("f", struct.pack("f", number))[0]
    except OverflowError as exc:
        raise InvalidProjectError(f'invalid cpus value "{value}"') from exc
    for digits in range(1, 10):
        text = f"{number:.{digits}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == single:
            return float(text)
    return single


# --------------------------------------------------------------------------------------------- ports

_PROTOCOLS = ("tcp", "udp", "sctp")


def _port_error(spec: str, reason: str) -> InvalidProjectError:
    return InvalidProjectError(f'invalid port specification "{spec}": {reason}')


def _parse_port_number(text: str) -> int:
    """strconv.ParseUint(text, 10, 16): plain decimal digits, at most 65535."""
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    number = int(text)
    if number > 65535:
        raise ValueError(text)
    return number


def _parse_port_range(text: str) -> tuple[int, int]:
    """go-connections ParsePortRange: `N` or `N-M` with N <= M."""
    if text == "":
        raise ValueError("empty string specified for ports")
    if "-" not in text:
        number = _parse_port_number(text)
        return number, number
    parts = text.split("-")
    start = _parse_port_number(parts[0])
    end = _parse_port_number(parts[1])
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def _split_port_parts(spec: str) -> tuple[str, str, str]:
    """Split `[ip:][host:]container`; anything before the last two colons is the host IP."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


@lru_cache(maxsize=1024)
def _valid_ip(text: str) -> bool:
    """net.ParseIP: dotted IPv4 (no leading zeros) or IPv6 without a zone."""
    import ipaddress

    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _host_ip(spec: str, raw: str) -> str:
    if raw.startswith("["):
        if not raw.endswith("]") or "]" in raw[:-1]:
            raise _port_error(spec, f"invalid IP address {raw}: missing ']' in address")
        raw = raw[1:-1]
    if raw and not _valid_ip(raw):
        raise _port_error(spec, f"invalid IP address: {raw}")
    return raw


def parse_port_spec(spec: str | int) -> list[dict]:
    """Expand one short port entry into canonical port dicts (one per container port).

    `[host_ip:][published[-range]:]target[-range][/protocol]`; output is sorted the way compose-go
    sorts it (by the string "target/protocol"), which is lexicographic, not numeric.
    """
    if isinstance(spec, int) and not isinstance(spec, bool):
        return [{"mode": "ingress", "target": spec, "protocol": "tcp"}]
    if not isinstance(spec, str):
        raise InvalidProjectError(f"invalid type {type(spec).__name__} for port")
    raw_ip, host_port, container = _split_port_parts(spec)
    container, _, proto = container.partition("/")
    if container == "":
        raise _port_error(spec, f"no port specified: {spec}<empty>")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise _port_error(spec, f"invalid proto: {proto}")
    ip = _host_ip(spec, raw_ip)
    try:
        start, end = _parse_port_range(container)
    except ValueError:
        raise _port_error(spec, f"invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host_port:
        try:
            host_start, host_end = _parse_port_range(host_port)
        except ValueError:
            raise _port_error(spec, f"invalid hostPort: {host_port}") from None
        if end - start != host_end - host_start and end != start:
            raise _port_error(
                spec, f"invalid ranges specified for container and host Ports: {container} and {host_port}"
            )
    count = end - start + 1
    entries = []
    for offset in range(count):
        entry: dict[str, Any] = {"mode": "ingress"}
        if ip:
            entry["host_ip"] = ip
        entry["target"] = start + offset
        if host_port:
            published = str(host_start + offset)
            if count == 1 and host_start != host_end:
                published += f"-{host_end}"
            entry["published"] = published
        entry["protocol"] = proto
        entries.append(entry)
    if count > 1:
        entries.sort(key=lambda e: str(e["target"]))
    return entries


# --------------------------------------------------------------------------------------------- volumes

_PROPAGATIONS = {"rprivate", "private", "rshared", "shared", "rslave", "slave"}
_SELINUX = {"z", "Z"}


def _is_windows_drive(buffer: list[str], char: str) -> bool:
    return char == ":" and len(buffer) == 1 and buffer[0].isalpha()


def _is_file_path(source: str) -> bool:
    """Sources that name a host path make a bind mount; anything else names a volume."""
    if not source:
        return False
    if source[0] in "./~" or source.startswith("\\\\"):
        return True
    return len(source) > 1 and _is_windows_drive([source[0]], source[1])


_DRIVE_RE = re.compile(r"(?:^|:)[^\W\d_]:")


def _split_volume_spec(spec: str) -> list[str]:
    """Split on colons, except a Windows drive letter's colon and colons inside `${...}`."""
    if "${" not in spec and not _DRIVE_RE.search(spec):
        return spec.split(":")
    sections: list[str] = []
    buffer: list[str] = []
    depth = 0
    for index, char in enumerate(spec):
        if char == "$" and spec[index + 1 : index + 2] == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        elif char == ":" and depth == 0 and not _is_windows_drive(buffer, char):
            sections.append("".join(buffer))
            buffer = []
            continue
        buffer.append(char)
    sections.append("".join(buffer))
    return sections


def _apply_volume_options(volume: dict, options: str) -> None:
    for option in options.split(","):
        if option == "ro":
            volume["read_only"] = True
        elif option == "rw":
            volume.pop("read_only", None)
        elif option == "nocopy":
            volume["volume"] = {"nocopy": True}
        elif option in _PROPAGATIONS:
            volume.setdefault("bind", {})["propagation"] = option
        elif option in _SELINUX:
            volume.setdefault("bind", {})["selinux"] = option
        # compose-go ignores unknown options (consistent, cached, delegated, ...)


def parse_volume_spec(spec: str) -> dict:
    """Parse `[source:]target[:options]` like compose-go format.ParseVolume, to the long syntax."""
    if spec == "":
        raise InvalidProjectError("invalid empty volume spec")
    if len(spec) <= 2:
        return {"type": "volume", "target": spec}
    sections = _split_volume_spec(spec)
    last = len(sections) - 1
    for index, section in enumerate(sections):
        if section == "":
            raise InvalidProjectError(f"invalid spec: {spec}: empty section between colons")
        if index >= 2 and index != last:
            raise InvalidProjectError(f"invalid spec: {spec}: too many colons")
    volume: dict[str, Any] = {}
    if len(sections) == 1:
        target, source = sections[0], ""
    else:
        source, target = sections[0], sections[1]
    if len(sections) == 3:
        _apply_volume_options(volume, sections[2])
    return _volume_with_type(source, target, volume)


def _volume_with_type(source: str, target: str, options: dict) -> dict:
    """Assemble the long form; bind sources get create_host_path like docker-compose v1 did."""
    volume: dict[str, Any] = {}
    if _is_file_path(source):
        volume["type"] = "bind"
        volume["source"] = source
        volume["target"] = target
        if options.get("read_only"):
            volume["read_only"] = True
        volume["bind"] = {"create_host_path": True, **options.get("bind", {})}
        if "volume" in options:
            volume["volume"] = options["volume"]
        return volume
    volume["type"] = "volume"
    if source:
        volume["source"] = source
    volume["target"] = target
    if options.get("read_only"):
        volume["read_only"] = True
    if "bind" in options:
        volume["bind"] = options["bind"]
    volume["volume"] = options.get("volume", {})
    return volume


# --------------------------------------------------------------------------------------------- durations

_NS = 1
_US = 1000
_MS = 1000 * _US
_SECOND = 1000 * _MS
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE
_DURATION_UNITS = {
    "ns": _NS,
    "us": _US,
    "\u00b5s": _US,
    "\u03bcs": _US,
    "ms": _MS,
    "s": _SECOND,
    "m": _MINUTE,
    "h": _HOUR,
    "d": 24 * _HOUR,
    "w": 168 * _HOUR,
}
_DURATION_PART_RE = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_INT64 = (1 << 63) - 1


def parse_duration(text: str | int | float) -> int:
    """Nanoseconds of a Go-style duration ("1h30m", "1.5s", "2d"), as go-str2duration parses it.

    A number is read through its text, so `30` is an error (missing unit) and `0` is zero, which is
    what compose-go does with `fmt.Sprint(value)`.
    """
    orig = go_string(text) if not isinstance(text, str) else text
    rest = orig
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if rest == "":
        raise InvalidProjectError(f'time: invalid duration "{orig}"')
    total = 0
    while rest:
        total += _duration_part(orig, rest)
        rest = rest[_DURATION_PART_RE.match(rest).end() :]  # type: ignore[union-attr]
        if total > _MAX_INT64:
            raise InvalidProjectError(f'time: invalid duration "{orig}"')
    return -total if negative else total


def _duration_part(orig: str, rest: str) -> int:
    """Value of the leading `number[.fraction]unit` of rest."""
    if not (rest[0] == "." or rest[0].isdigit()):
        raise InvalidProjectError(f'time: invalid duration "{orig}"')
    match = _DURATION_PART_RE.match(rest)
    assert match is not None
    whole, fraction, unit_name = match.group(1), match.group(2), match.group(3)
    if not whole and not fraction:
        raise InvalidProjectError(f'time: invalid duration "{orig}"')
    if not unit_name:
        raise InvalidProjectError(f'time: missing unit in duration "{orig}"')
    unit = _DURATION_UNITS.get(unit_name)
    if unit is None:
        raise InvalidProjectError(f'time: unknown unit "{unit_name}" in duration "{orig}"')
    value = int(whole or "0") * unit
    if fraction:
        digits = fraction[:18]
        value += int(int(digits) * (unit / 10 ** len(digits)))
    if value > _MAX_INT64:
        raise InvalidProjectError(f'time: invalid duration "{orig}"')
    return value


def _fraction(value: int, precision: int) -> str:
    """`value / 10**precision` written without trailing zeros, as Go's fmtFrac does."""
    whole, frac = divmod(value, 10**precision)
    if frac == 0:
        return str(whole)
    return f"{whole}.{str(frac).rjust(precision, '0').rstrip('0')}"


def format_duration(ns: int) -> str:
    """Render nanoseconds exactly like Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    value = abs(ns)
    if value < _SECOND:
        if value < _US:
            return f"{sign}{value}ns"
        if value < _MS:
            return f"{sign}{_fraction(value, 3)}\u00b5s"
        return f"{sign}{_fraction(value, 6)}ms"
    text = _fraction(value % _MINUTE, 9) + "s"
    minutes = value // _MINUTE
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


# --------------------------------------------------------------------------------------------- sizes

_GO_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_SIZE_LAST_DIGIT_RE = re.compile(r".*[0-9. ]", re.DOTALL)
_SIZE_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_bytes(value: str | int) -> int:
    """Bytes of a memory size like docker/go-units RAMInBytes ("512m", "1.5GiB", "100kb", 1024)."""
    if isinstance(value, bool):
        raise InvalidProjectError(f"invalid size: '{value}'")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    text = str(value)
    match = _SIZE_LAST_DIGIT_RE.match(text)
    if match is None:
        raise InvalidProjectError(f"invalid size: '{text}'")
    sep = match.end() - 1
    number, suffix = (text[:sep], text[sep + 1 :]) if text[sep] == " " else (text[: sep + 1], text[sep + 1 :])
    if not _GO_FLOAT_RE.match(number):
        raise InvalidProjectError(f"invalid size: '{text}'")
    size = float(number)
    if size < 0:
        raise InvalidProjectError(f"invalid size: '{text}'")
    return int(size * _size_multiplier(text, suffix))


def _size_multiplier(text: str, suffix: str) -> int:
    """b, k, kb, kib (any case) and so on up to p; anything else is an invalid suffix."""
    if suffix == "":
        return 1
    lowered = suffix.lower()
    if len(lowered) <= 3:
        if lowered == "b":
            return 1
        multiplier = _SIZE_UNITS.get(lowered[0])
        if multiplier and lowered[1:] in ("", "b", "ib"):
            return multiplier
    raise InvalidProjectError(f"invalid size: '{text}': invalid suffix: '{lowered}'")


# --------------------------------------------------------------------------------------------- commands


def shell_split(text: str) -> list[str]:
    """Split a command string like mattn/go-shellwords (no env or backtick expansion).

    Quotes group words, a backslash escapes the next character (`\\t` and `\\n` become tab and
    newline) except inside single quotes, and an unquoted `;`, `&`, `|`, `<` or `>` ends the
    command: what follows is dropped, exactly as compose-go does.
    """
    args: list[str] = []
    buf = ""
    have_arg = False
    escaped = single = double = backquote = dollar = False
    for char in text:
        if escaped:
            escaped = False
            if backquote or dollar:
                buf += "\\" + char
            else:
                buf += {"t": "\t", "n": "\n"}.get(char, char)
            have_arg = True
            continue
        if char == "\\":
            if single:
                buf += char
            else:
                escaped = True
            continue
        if char in " \t\r\n":
            if single or double or backquote or dollar:
                buf += char
            elif have_arg:
                args.append(buf)
                buf, have_arg = "", False
            continue
        quoted = single or double
        if char == "`" and not quoted and not dollar:
            backquote = not backquote
        elif char == ")" and not quoted and not backquote:
            if not dollar:
                raise InvalidProjectError(f"invalid command line string: {text}")
            dollar = False
        elif char == "(" and not quoted and not backquote:
            if dollar or not buf.endswith("$"):
                raise InvalidProjectError(f"invalid command line string: {text}")
            dollar = True
        elif char == '"' and not single and not dollar and not backquote:
            if double:
                have_arg = True
            double = not double
            continue
        elif char == "'" and not double and not dollar and not backquote:
            if single:
                have_arg = True
            single = not single
            continue
        elif char in ";&|<>" and not (quoted or backquote or dollar):
            if char == ">" and buf and buf.isdigit():
                have_arg = False
            break
        have_arg = True
        buf += char
    if have_arg:
        args.append(buf)
    if escaped or single or double or backquote or dollar:
        raise InvalidProjectError(f"invalid command line string: {text}")
    return args


# --------------------------------------------------------------------------------------------- misc


def parse_device_spec(spec: str) -> dict:
    """`source[:target[:permissions]]` -> {source, target, permissions} (permissions default rwm)."""
    parts = spec.split(":")
    if len(parts) > 3:
        raise InvalidProjectError(f"confusing device mapping, please use long syntax: {spec}")
    source = parts[0]
    target = parts[1] if len(parts) > 1 and parts[1] else source
    permissions = parts[2] if len(parts) > 2 else "rwm"
    return {"source": source, "target": target, "permissions": permissions}


def _check_host_name(host: str) -> None:
    if host == "" or ":" in host or "=" in host:
        raise InvalidProjectError(f"bad host name '{host}'")


def _strip_brackets(ip: str) -> str:
    if len(ip) > 2 and ip[0] == "[" and ip[-1] == "]":
        return ip[1:-1]
    return ip


def parse_extra_host(entry: str) -> tuple[str, str]:
    """`host=ip` or `host:ip` -> (host, ip); `=` is tried first so `host=::1` stays IPv6-safe.

    The ip part may be a comma list (compose-go splits it into several entries) and a bracketed
    IPv6 address loses its brackets.
    """
    for separator in ("=", ":"):
        host, found, ips = entry.partition(separator)
        if found:
            _check_host_name(host)
            return host, ",".join(_strip_brackets(ip) for ip in ips.split(","))
    raise InvalidProjectError(f"invalid additional host, missing IP: {entry}")


def parse_ulimit(value: Any) -> int | dict:
    """A ulimit as an int (soft = hard) or {soft, hard}; "soft:hard" strings are accepted too."""
    if isinstance(value, bool):
        raise InvalidProjectError(f"invalid type bool for ulimits: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {key: _ulimit_number(item) for key, item in value.items()}
    if isinstance(value, str):
        soft, found, hard = value.partition(":")
        if found:
            return {"soft": _ulimit_number(soft), "hard": _ulimit_number(hard)}
        return _ulimit_number(value)
    raise InvalidProjectError(f"invalid type {type(value).__name__} for ulimits")


def _ulimit_number(value: Any) -> Any:
    if isinstance(value, str):
        if re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise InvalidProjectError(f'invalid ulimit value "{value}"')
    return value
