# Copyright: chutes.miner developers
# MIT License
"""Value schemas for inventory variables: one generic type/range/format check.

Every inventory input has a ``Spec`` (``inventory_vars.VARIABLES``). ``Spec.parse`` takes any
value YAML or Jinja can produce (None, bool, int, float, str, date, bytes, lists, mappings,
nested or recursive structures, huge numbers) and returns either the normalised value or
findings that name the variable, what it got and what it must be, in English and Chinese. It
never raises: the rules that run afterwards only ever see values that passed their spec.

No Ansible imports; the filter plugin, the tests and the benchmark use it directly.
"""

from __future__ import annotations

import datetime
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

try:
    from jinja2 import Undefined
except ImportError:  # pragma: no cover - Ansible always brings Jinja
    Undefined = ()  # type: ignore[assignment,misc]

SHOW_MAX = 60
_DEPTH_MAX = 40


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one value: ``code`` is a key of ``inventory_messages``."""

    code: str
    path: str
    shown: str
    kind_en: str
    kind_zh: str
    expected_en: str
    expected_zh: str


@dataclass(frozen=True)
class Parsed:
    ok: bool
    value: Any = None
    findings: tuple[Finding, ...] = ()


_KINDS: tuple[tuple[type, str, str], ...] = (
    (bool, "a boolean", "布尔值"),
    (int, "a number", "整数"),
    (float, "a decimal number", "小数"),
    (str, "a string", "字符串"),
    (list, "a list", "列表"),
    (tuple, "a list", "列表"),
    (Mapping, "a mapping", "字典"),
    (datetime.date, "a date", "日期"),
    (bytes, "binary data", "二进制数据"),
)


def kind(value: Any) -> tuple[str, str]:
    """English and Chinese name of a value's YAML type."""
    if value is None:
        return "null (empty)", "空值（null）"
    for cls, en, zh in _KINDS:
        if isinstance(value, cls):
            return en, zh
    name = type(value).__name__
    return f"a {name}", name


class Untemplatable(ValueError):
    """A value (or a part of one) that Ansible could not template."""


# ansible-core wraps the error of a failed template in this; it says nothing to an operator.
MARKER_PREFIX = "A captured exception marker was tripped: "


def _undefined_message(value: Any) -> str:
    try:
        text = str(value._undefined_message)
    except Exception:  # noqa: BLE001 - only the text is wanted
        return type(value).__name__
    return text.removeprefix(MARKER_PREFIX)


def plain(value: Any, depth: int = 0) -> Any:
    """Ansible's tagged str/int/dict/list subclasses as plain builtins (for comparing and
    printing). Cycles and very deep nesting are cut off instead of recursing forever.

    ansible-core 2.19 hands a template that failed (an undefined name, an error in a filter
    or lookup) over as a Jinja ``Undefined`` marker instead of raising; anywhere in the value
    it raises ``Untemplatable`` with the marker's message, so the caller reports the variable
    as unresolvable instead of as a value of an odd type."""
    if isinstance(value, Undefined):
        raise Untemplatable(_undefined_message(value))
    if depth > _DEPTH_MAX:
        return "…"
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | datetime.date):
        return value
    if isinstance(value, Mapping):
        return {_key(k, depth): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    return value


def _key(key: Any, depth: int) -> Any:
    out = plain(key, depth + 1)
    return show(key) if isinstance(out, list | dict) else out


def show(value: Any) -> str:
    """A short, safe rendering of any value for a message (repr, cut to SHOW_MAX)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - huge ints, odd objects: show the type instead
        text = f"<{kind(value)[0]}>"
    text = " ".join(text.split())
    return text if len(text) <= SHOW_MAX else text[: SHOW_MAX - 1] + "…"


def _finding(code: str, path: str, value: Any, expected: tuple[str, str]) -> Finding:
    en, zh = kind(value)
    return Finding(code, path, show(value), en, zh, expected[0], expected[1])


class Spec:
    """What a value must be. ``ansible_type`` is the argument_specs type it implements."""

    ansible_type = "raw"

    def expected(self) -> tuple[str, str]:
        raise NotImplementedError

    def parse(self, value: Any, path: str) -> Parsed:
        try:
            return self._parse(value, path)
        except Exception:  # noqa: BLE001 - a value no check foresaw is a wrong value, not a crash
            return self.fail("wrong_type", path, value)

    def _parse(self, value: Any, path: str) -> Parsed:
        raise NotImplementedError

    def fail(self, code: str, path: str, value: Any) -> Parsed:
        return Parsed(False, None, (_finding(code, path, value, self.expected()),))


class Raw(Spec):
    """Anything (used only where a deeper rule checks the value itself)."""

    def __init__(self, en: str, zh: str) -> None:
        self._text = (en, zh)

    def expected(self) -> tuple[str, str]:
        return self._text

    def _parse(self, value: Any, path: str) -> Parsed:
        return Parsed(True, value)


class Bool(Spec):
    ansible_type = "bool"

    def expected(self) -> tuple[str, str]:
        return (
            "true or false (a YAML boolean, unquoted; with -e use JSON: -e '{\"var\": true}')",
            "true 或 false（不加引号的 YAML 布尔值；-e 传参请用 JSON：-e '{\"var\": true}'）",
        )

    def _parse(self, value: Any, path: str) -> Parsed:
        if isinstance(value, bool):
            return Parsed(True, value)
        return self.fail("wrong_type", path, value)


_INT_STR = re.compile(r"^\s*[+-]?[0-9]{1,18}\s*$")


class Int(Spec):
    """A whole number from ``low`` to ``high``; a decimal string (``-e port=30500``) counts."""

    ansible_type = "int"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def expected(self) -> tuple[str, str]:
        return (
            f"a whole number from {self.low} to {self.high}",
            f"{self.low} 到 {self.high} 之间的整数",
        )

    def _parse(self, value: Any, path: str) -> Parsed:
        if isinstance(value, bool):
            return self.fail("wrong_type", path, value)
        if isinstance(value, str) and _INT_STR.match(value):
            number = int(value.strip())
        elif isinstance(value, int):
            number = int(value)
        else:
            return self.fail("wrong_type", path, value)
        if not self.low <= number <= self.high:
            return self.fail("out_of_range", path, value)
        return Parsed(True, number)


class Float(Spec):
    ansible_type = "float"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def expected(self) -> tuple[str, str]:
        return (f"a number from {self.low} to {self.high}", f"{self.low} 到 {self.high} 之间的数")

    def _parse(self, value: Any, path: str) -> Parsed:
        if isinstance(value, bool):
            return self.fail("wrong_type", path, value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                return self.fail("wrong_type", path, value)
        elif isinstance(value, int | float):
            number = float(value)
        else:
            return self.fail("wrong_type", path, value)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            return self.fail("out_of_range", path, value)
        return Parsed(True, number)


class Str(Spec):
    """A string; optionally one of ``choices``, matching ``pattern`` (whole string), at most
    ``max_len`` characters, or satisfying ``test``. Empty only with ``allow_empty``."""

    ansible_type = "str"

    def __init__(
        self,
        en: str = "a string",
        zh: str = "字符串",
        *,
        pattern: str | None = None,
        choices: tuple[str, ...] = (),
        max_len: int = 4096,
        allow_empty: bool = False,
        test: Callable[[str], bool] | None = None,
        convert: Callable[[str], Any] | None = None,
        ansible_type: str = "str",
    ) -> None:
        if choices:
            en = "one of: " + ", ".join(choices)
            zh = "以下之一：" + "、".join(choices)
        self._text = (en, zh)
        self.pattern = re.compile(pattern) if pattern else None
        self.choices = choices
        self.max_len = max_len
        self.allow_empty = allow_empty
        self.test = test
        self.convert = convert
        self.ansible_type = ansible_type

    def expected(self) -> tuple[str, str]:
        return self._text

    def _parse(self, value: Any, path: str) -> Parsed:
        if not isinstance(value, str):
            return self.fail("wrong_type", path, value)
        if value == "":
            return Parsed(True, "") if self.allow_empty else self.fail("empty", path, value)
        if len(value) > self.max_len:
            return self.fail("bad_format", path, value)
        if self.choices and value not in self.choices:
            return self.fail("not_a_choice", path, value)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            return self.fail("bad_format", path, value)
        if self.test is not None and not self.test(value):
            return self.fail("bad_format", path, value)
        return Parsed(True, self.convert(value) if self.convert else str(value))


class Either(Spec):
    """The first of several specs that accepts the value."""

    def __init__(self, *specs: Spec, ansible_type: str = "raw") -> None:
        self.specs = specs
        self.ansible_type = ansible_type

    def expected(self) -> tuple[str, str]:
        texts = [s.expected() for s in self.specs]
        return " or ".join(t[0] for t in texts), "或".join(t[1] for t in texts)

    def _parse(self, value: Any, path: str) -> Parsed:
        for spec in self.specs:
            parsed = spec.parse(value, path)
            if parsed.ok:
                return parsed
        return self.fail("wrong_type", path, value)


class ListOf(Spec):
    """A list whose every item passes ``item``; every bad item is reported (at most 5)."""

    ansible_type = "list"

    def __init__(self, item: Spec, *, min_len: int = 0, max_len: int = 10_000) -> None:
        self.item = item
        self.min_len, self.max_len = min_len, max_len

    def expected(self) -> tuple[str, str]:
        en, zh = self.item.expected()
        if self.min_len:
            return (
                f"a list of at least {self.min_len} item(s), each {en}",
                f"至少含 {self.min_len} 项的列表，每项为{zh}",
            )
        return f"a list, each item {en}", f"列表，每项为{zh}"

    def _parse(self, value: Any, path: str) -> Parsed:
        if not isinstance(value, list):
            return self.fail("wrong_type", path, value)
        if not self.min_len <= len(value) <= self.max_len:
            return self.fail("empty" if not value else "out_of_range", path, value)
        out: list[Any] = []
        findings: list[Finding] = []
        for index, item in enumerate(value):
            parsed = self.item.parse(item, f"{path}[{index}]")
            out.append(parsed.value)
            findings.extend(parsed.findings)
        if findings:
            return Parsed(False, None, tuple(findings[:5]))
        return Parsed(True, out)


class MapOf(Spec):
    """A mapping with string keys passing ``key`` and values passing ``value``."""

    ansible_type = "dict"

    def __init__(self, key: Spec, value: Spec, en: str = "", zh: str = "") -> None:
        self.key, self.value = key, value
        self._text = (en, zh)

    def expected(self) -> tuple[str, str]:
        if self._text[0]:
            return self._text
        ken, kzh = self.key.expected()
        ven, vzh = self.value.expected()
        return f"a mapping of {ken} to {ven}", f"字典：键为{kzh}，值为{vzh}"

    def _parse(self, value: Any, path: str) -> Parsed:
        if not isinstance(value, Mapping):
            return self.fail("wrong_type", path, value)
        out: dict[str, Any] = {}
        findings: list[Finding] = []
        for key, item in value.items():
            key_parsed = self.key.parse(key, f"{path} key {show(key)}")
            item_parsed = self.value.parse(item, f"{path}.{key}")
            findings.extend(key_parsed.findings + item_parsed.findings)
            if key_parsed.ok and item_parsed.ok:
                out[str(key_parsed.value)] = item_parsed.value
        if findings:
            return Parsed(False, None, tuple(findings[:5]))
        return Parsed(True, out)


class Record(Spec):
    """A mapping with named fields (each its own spec); unknown keys are refused."""

    ansible_type = "dict"

    def __init__(
        self,
        fields: dict[str, Spec],
        required: tuple[str, ...] = (),
        text: tuple[str, str] = ("", ""),
    ) -> None:
        self.fields, self.required, self.text = fields, required, text

    def expected(self) -> tuple[str, str]:
        if self.text[0]:
            return self.text
        names = ", ".join(self.fields)
        return f"a mapping with keys {names}", f"字典，键为 {names}"

    def _parse(self, value: Any, path: str) -> Parsed:
        if not isinstance(value, Mapping):
            return self.fail("wrong_type", path, value)
        out: dict[str, Any] = {}
        findings: list[Finding] = []
        for key in value:
            if key not in self.fields:
                findings.append(
                    _finding("unknown_key", f"{path}.{show(key)}", key, self.expected())
                )
        for name, spec in self.fields.items():
            if name not in value:
                if name in self.required:
                    findings.append(_finding("missing", f"{path}.{name}", None, spec.expected()))
                continue
            parsed = spec.parse(value[name], f"{path}.{name}")
            findings.extend(parsed.findings)
            out[name] = parsed.value
        if findings:
            return Parsed(False, None, tuple(findings[:5]))
        return Parsed(True, out)


# --- formats ----------------------------------------------------------------------------

_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_ANY_CASE_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9_]{0,61}[A-Za-z0-9])?"
HOST_NAME = re.compile(rf"^{_ANY_CASE_LABEL}(\.{_ANY_CASE_LABEL})*\.?$")


def ipv4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


def is_ipv4(text: str) -> bool:
    try:
        ipv4(text)
    except ValueError:
        return False
    return True


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def is_host(text: str) -> bool:
    """An IP address or a DNS name (letters, digits, '-', '_' and dots)."""
    return is_ip(text) or (len(text) <= 253 and bool(HOST_NAME.fullmatch(text)))


def is_host_port(text: str) -> bool:
    """``host`` or ``host:port`` without a scheme or a path (a registry name)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return is_host(text)
    return port.isdigit() and 1 <= int(port) <= 65535 and is_host(host)


def is_registry(text: str) -> bool:
    """A validator's registry: ``host[:port]`` (HTTPS) or ``http(s)://host[:port]``, no path
    (what the registry proxy's nginx.conf accepts)."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return is_host_port(text)
    return scheme in ("http", "https") and is_host_port(rest)


def url_test(schemes: tuple[str, ...]) -> Callable[[str], bool]:
    def test(text: str) -> bool:
        if any(c.isspace() for c in text):
            return False
        parts = urlsplit(text)
        if parts.scheme not in schemes or not parts.hostname or parts.username:
            return False
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return False
        return is_host(parts.hostname)

    return test


def network_test(low: int, high: int) -> Callable[[str], bool]:
    def test(text: str) -> bool:
        if "/" not in text:
            return False
        try:
            net = ipaddress.IPv4Network(text, strict=True)
        except ValueError:
            return False
        return low <= net.prefixlen <= high

    return test


def Url(schemes: tuple[str, ...], example: str) -> Str:  # noqa: N802 - reads like a type
    names = "/".join(schemes)
    return Str(
        f"a {names} URL with a host name, e.g. {example}",
        f"带主机名的 {names} URL，例如 {example}",
        test=url_test(schemes),
    )


def Network(low: int, high: int, example: str) -> Str:  # noqa: N802
    return Str(
        f"an IPv4 network in CIDR form (network address, prefix /{low}-/{high}), e.g. {example}",
        f"CIDR 形式的 IPv4 网段（网络地址，前缀 /{low}-/{high}），例如 {example}",
        test=network_test(low, high),
        convert=ipaddress.IPv4Network,
    )


def IPv4(example: str = "") -> Str:  # noqa: N802
    return Str(
        "a plain IPv4 address (no prefix length)" + (f", e.g. {example}" if example else ""),
        "纯 IPv4 地址（不带前缀长度）" + (f"，例如 {example}" if example else ""),
        test=is_ipv4,
        convert=ipv4,
    )


def AbsPath(allow_empty: bool = False, ansible_type: str = "path") -> Str:  # noqa: N802
    return Str(
        "an absolute path" + (" or an empty string" if allow_empty else "") + ", e.g. /data/snap",
        "绝对路径" + ("或空字符串" if allow_empty else "") + "，例如 /data/snap",
        pattern=r"/[^\x00\n\r]*",
        allow_empty=allow_empty,
        ansible_type=ansible_type,
    )
