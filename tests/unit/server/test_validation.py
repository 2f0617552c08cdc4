"""dns.on_validation_failure: the guard in front of the service, and its configuration."""

from __future__ import annotations

import logging
import re

import pytest

from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError
from tlspolicy.metrics.registry import Metrics
from tlspolicy.server.validation import NOT_VALIDATING_REPLY, ValidationGuard


class Switch:
    def __init__(self, mode: str, broken: bool) -> None:
        self.mode, self.broken = mode, broken


def guard(switch: Switch, metrics: Metrics | None = None) -> ValidationGuard:
    return ValidationGuard(
        mode=lambda: switch.mode,
        not_validating=lambda: switch.broken,
        has_profile=lambda name: name == "QUERY",
        metrics=metrics or Metrics(),
    )


def test_guard_temp_mode_defers_lookups_while_not_validating() -> None:
    metrics = Metrics()
    g = guard(Switch("temp", True), metrics)
    assert NOT_VALIDATING_REPLY == "TEMP resolver not validating"
    assert g.check("QUERY", "dane.example") == NOT_VALIDATING_REPLY
    assert g.check("QUERY", "[mx.example]:25") == NOT_VALIDATING_REPLY
    value = metrics.registry.get_sample_value(
        "tlspolicy_queries_total", {"map": "QUERY", "answer": "temp"}
    )
    assert value == 2


@pytest.mark.parametrize(
    ("name", "key"),
    [
        pytest.param("QUERY", "[192.0.2.1]", id="address-literal"),
        pytest.param("QUERY", ".example.com", id="parent-probe"),
        pytest.param("QUERY", "a" * 64 + ".example", id="cannot-exist"),
        pytest.param("NOSUCH", "example.com", id="unknown-map"),
    ],
)
def test_guard_temp_mode_lets_keys_without_lookup_through(name: str, key: str) -> None:
    assert guard(Switch("temp", True)).check(name, key) is None


@pytest.mark.parametrize(
    ("mode", "broken"),
    [
        pytest.param("continue", True, id="continue-not-validating"),
        pytest.param("temp", False, id="temp-validating"),
        pytest.param("continue", False, id="continue-validating"),
    ],
)
def test_guard_answers_as_usual(mode: str, broken: bool) -> None:
    assert guard(Switch(mode, broken)).check("QUERY", "dane.example") is None


def test_guard_logs_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    switch = Switch("temp", True)
    g = guard(switch)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.server"):
        for _ in range(3):
            g.check("QUERY", "a.example")
        switch.broken = False
        for _ in range(3):
            assert g.check("QUERY", "a.example") is None
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]


def test_config_on_validation_failure_default_and_choices() -> None:
    assert parse_config({}).dns.on_validation_failure == "continue"
    cfg = parse_config({"dns": {"on_validation_failure": "temp"}})
    assert cfg.dns.on_validation_failure == "temp"
    with pytest.raises(ConfigError, match=re.escape("dns.on_validation_failure: must be one of")):
        parse_config({"dns": {"on_validation_failure": "defer"}})
    with pytest.raises(ConfigError, match=re.escape("needs dns.selfcheck: true")):
        parse_config({"dns": {"on_validation_failure": "temp", "selfcheck": False}})
