"""The checks every configuration section uses: one mapping read key by key, and value
checkers that name the key in their ``ConfigError`` ("dns.timeout: must be a positive
number"). Shared by ``config`` and ``tlsrpt.settings``, so both speak the same messages.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from tlspolicy.errors import ConfigError
from tlspolicy.names import MAX_HOST_CHARS, MAX_LABEL_OCTETS

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


def needs_extra(key: str, why: str, extra: str, *modules: str) -> None:
    """Refuse, at load time, a setting whose optional dependency is not installed.

    The Redis, PostgreSQL and mail dependencies are extras (``pyproject.toml``): a plain
    install stays small, and the first thing an operator who configures one of them without
    it sees is this message, from ``check-config`` as from ``serve``, not an ImportError.
    """
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"{key}: {why} needs the Python package {', '.join(missing)}, which is not"
            f" installed: install the [{extra}] extra (pip install 'postfix-tlspolicy[{extra}]')"
            " or Debian's python3- package of the same name"
        )


def non_negative(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{key}: must be a number of seconds, 0 or more")
    return float(value)


class Section:
    """Reads one mapping, remembering which keys were used, to report unknown ones."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'configuration'}: must be a mapping")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: T, check: Callable[[str, Any], T]) -> T:
        self.used.add(name)
        if name not in self.data or (self.data[name] is None and default is None):
            return default
        return check(self.key(name), self.data[name])

    def finish(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: must be true or false")


def positive(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{key}: must be a positive number")
    return float(value)


def fraction(key: str, value: Any) -> float:
    number = positive(key, value)
    if number >= 1:
        raise ConfigError(f"{key}: must be a number between 0 and 1")
    return number


def positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key}: must be a positive integer")
    return value


def string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: must be a non-empty string")
    return value


def optional_string(key: str, value: Any) -> str | None:
    return None if value is None else string(key, value)


def choice(*choices: str) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(choices)}")
        return str(value)

    return check


def enum_of(cls: type[E]) -> Callable[[str, Any], E]:
    def check(key: str, value: Any) -> E:
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"{key}: must be one of {', '.join(cls)}") from None

    return check


def file_mode(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        text = oct(value)[2:] if value > 0o777 or value < 0 else format(value, "o")
        # YAML 1.1 reads 0666 as octal already; 666 written bare means the digits 6,6,6.
        value = str(value) if value > 0o777 else text
    if isinstance(value, str) and value and all(c in "01234567" for c in value):
        mode = int(value, 8)
        if mode <= 0o777:
            return mode
    raise ConfigError(f'{key}: must be an octal permission string such as "0660"')


def domain_name(key: str, value: Any) -> str:
    text = string(key, value).lower().removesuffix(".")
    labels = text.split(".")
    if (
        not all(0 < len(label) <= MAX_LABEL_OCTETS for label in labels)
        or len(text) > MAX_HOST_CHARS
    ):
        raise ConfigError(f"{key}: must be a domain name")
    return text


def list_of(key: str, value: Any, item: Callable[[str, Any], T]) -> tuple[T, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key}: must be a non-empty list")
    return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))
