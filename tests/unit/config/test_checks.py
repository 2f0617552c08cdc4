"""The shared configuration checks: one section read key by key, values named by key."""

from __future__ import annotations

import pytest

from tlspolicy.config.checks import (
    Section,
    boolean,
    domain_name,
    file_mode,
    fraction,
    list_of,
    non_negative,
    positive_int,
)
from tlspolicy.errors import ConfigError


def test_section_reads_defaults_and_names_unknown_keys() -> None:
    section = Section({"a": True, "typo": 1}, "top")
    assert section.get("a", False, boolean) is True
    assert section.get("b", 7, positive_int) == 7
    with pytest.raises(ConfigError, match=r"^top\.typo: unknown key$"):
        section.finish()
    with pytest.raises(ConfigError, match=r"^top: must be a mapping$"):
        Section([1], "top")


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (boolean, "yes", "k: must be true or false"),
        (positive_int, True, "k: must be a positive integer"),
        (fraction, 1.5, "k: must be a number between 0 and 1"),
        (non_negative, -1, "k: must be a number of seconds, 0 or more"),
        (file_mode, "0999", 'k: must be an octal permission string such as "0660"'),
        (domain_name, "a..b", "k: must be a domain name"),
    ],
)
def test_checks_name_the_key(check: object, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        check(("k"), value)  # type: ignore[operator]
    assert str(info.value) == message


def test_values_that_pass() -> None:
    assert file_mode("k", "0660") == 0o660
    assert domain_name("k", "Example.COM.") == "example.com"
    assert list_of("k", "one", lambda k, v: v) == ("one",)
