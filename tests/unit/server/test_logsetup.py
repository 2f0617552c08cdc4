"""Logging set-up: plain text or one JSON object per line, the chosen level on the root."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from tlspolicy.decision.outcome import Source
from tlspolicy.decision.verdict import Verdict
from tlspolicy.server.logsetup import JsonFormatter, setup_logging
from tlspolicy.service.service import log_fields


def test_json_lines_carry_level_logger_message_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "tlspolicy.x", logging.ERROR, __file__, 1, "bücher %s", ("ok",), sys.exc_info()
        )
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "error" and data["logger"] == "tlspolicy.x"
    assert data["message"] == "bücher ok"
    assert data["time"].endswith("Z") and "ValueError: boom" in data["exception"]


@pytest.mark.parametrize(("fmt", "kind"), [("json", JsonFormatter), ("text", logging.Formatter)])
def test_setup_replaces_root_handlers_and_sets_levels(fmt: str, kind: type) -> None:
    setup_logging("warning", fmt)  # the autouse fixture in tests/conftest.py restores it
    root = logging.getLogger()
    (handler,) = root.handlers
    assert isinstance(handler.formatter, kind)
    assert root.level == logging.WARNING
    assert logging.getLogger("asyncpg.pool").level == logging.ERROR


def test_text_lines_keep_their_format_without_caller_details(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("info", "text")
    logging.getLogger("tlspolicy.service").info("%s: %s", "example.com", "dane-only")
    line = capsys.readouterr().err.strip()
    assert line.endswith(" INFO tlspolicy.service: example.com: dane-only")
    assert logging._srcfile is None  # no stack walk per record (see setup_logging)


def test_json_lines_carry_lookup_fields_separately(capsys: pytest.CaptureFixture[str]) -> None:
    """What Loki and Elasticsearch users query by: the lookup's fields as their own keys."""
    setup_logging("info", "json")
    fields = log_fields(
        "example.com", "QUERY", Verdict.DANE_ONLY, Source.LIVE, duration_ms=12.345, reason="TLSA"
    )
    logging.getLogger("tlspolicy.service").info("example.com: dane-only", extra=fields)
    data = json.loads(capsys.readouterr().err)
    assert {k: data[k] for k in ("domain", "map", "answer", "source", "duration_ms")} == {
        "domain": "example.com",
        "map": "QUERY",
        "answer": "dane-only",
        "source": "live",
        "duration_ms": 12.3,
    }
    assert data["reason"] == "TLSA" and data["message"] == "example.com: dane-only"
