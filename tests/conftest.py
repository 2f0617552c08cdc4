"""Shared pytest configuration. Lab fixtures live in tests/lab/ and are registered here."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator

import pytest
from hypothesis import settings

pytest_plugins = ["tests.lab.services", "tests.integration.server"]

# CI (``.ci/run`` sets HYPOTHESIS_PROFILE=ci) replays the same examples on every run, so a
# landing does not hang on a case that one random draw found; elsewhere every run draws new
# examples, and ``bench/fuzz.py`` explores the parsers at length.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Loggers whose level ``tlspolicy.server.logsetup.setup_logging`` sets (besides the root), and
# the ``logging`` module settings it turns off.
_TUNED_LOGGERS = ("asyncio", "asyncpg.pool")
_TUNED_SETTINGS = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing")


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    """A test that runs a command in-process (``cli.main.main``) calls ``setup_logging``,
    which replaces the root handlers and level for the whole process; restore them, so the
    next test's ``caplog`` sees what it expects whatever ran before it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in _TUNED_LOGGERS}
    settings = {name: getattr(logging, name) for name in _TUNED_SETTINGS}
    yield
    for name, value in settings.items():
        setattr(logging, name, value)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


@pytest.fixture(autouse=True)
def _no_default_config_file(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands run in-process find no configuration file unless a test names one: the
    default path points into a temporary directory (never the host's /etc), and
    ``TLSPOLICY_CONFIG`` is unset."""
    absent = tmp_path_factory.getbasetemp() / "no-etc" / "tlspolicy.yml"
    monkeypatch.setattr("tlspolicy.config.load.DEFAULT_CONFIG_PATH", str(absent))
    monkeypatch.delenv("TLSPOLICY_CONFIG", raising=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close the socketpair sys4's tlsrpt-reporter opens when it is imported (a module
    global for its signal handling, never closed): left to the interpreter's exit, it
    prints a ResourceWarning that is not ours."""
    module = sys.modules.get("tlsrpt_reporter.tlsrpt")
    for name in ("interrupt_read", "interrupt_write"):
        sock = getattr(module, name, None)
        if sock is not None:
            sock.close()
