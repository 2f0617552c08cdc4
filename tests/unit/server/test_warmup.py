"""Preloading before the privilege drop, and the checks after it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from tlspolicy.config import parse_config
from tlspolicy.errors import ConfigError
from tlspolicy.server.warmup import (
    METRICS_MODULES,
    REPORTER_MODULES,
    LateImportWatch,
    check_access,
    modules_for,
    preload,
    reload_problem,
    unreadable,
    verify_after_drop,
)


def test_preload_loads_lazy_modules_and_returns_import_dirs() -> None:
    dirs = preload(parse_config({"cache": {"backend": "memory"}}))
    assert "idna.uts46data" in sys.modules and "tlspolicy.mtasts.http_client" in sys.modules
    assert dirs and all(Path(d).is_dir() for d in dirs)


def test_check_access_names_missing_ca_file_and_cache_dir(tmp_path: Path) -> None:
    (tmp_path / "nope.pem").write_text("x")
    config = parse_config(
        {
            "mta_sts": {"ca_file": str(tmp_path / "nope.pem")},
            "cache": {"backend": "sqlite", "path": str(tmp_path / "missing" / "c.sqlite3")},
        }
    )
    (tmp_path / "nope.pem").unlink()  # gone (or unreadable) after the configuration was read
    problems = check_access(config)
    assert problems == [
        f"mta_sts.ca_file {tmp_path / 'nope.pem'} is not readable",
        f"cache directory {tmp_path / 'missing'} is not writable",
    ]
    with pytest.raises(ConfigError, match="cannot use what the server needs"):
        verify_after_drop(config, [])


def test_check_access_accepts_usable_setup(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    config = parse_config(
        {"mta_sts": {"ca_file": str(ca)}, "cache": {"path": str(tmp_path / "c.sqlite3")}}
    )
    assert check_access(config) == []
    assert reload_problem(config) is None
    assert unreadable([str(tmp_path)]) == []


def test_reload_problem_for_unreadable_config(tmp_path: Path) -> None:
    config = parse_config({}, source=str(tmp_path / "gone.yml"))
    assert reload_problem(config) == (
        f"configuration file {tmp_path / 'gone.yml'} is not readable: "
        "SIGHUP reloads will be refused"
    )


def test_late_import_watch_logs_found_module_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "late_module_for_watch.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    watch = LateImportWatch([str(tmp_path)])
    watch.install()
    try:
        with caplog.at_level(logging.WARNING, logger="tlspolicy.warmup"):
            import late_module_for_watch  # type: ignore[import-not-found]  # noqa: PLC0415

            assert late_module_for_watch.VALUE == 1
            with pytest.raises(ImportError):
                import no_such_module_anywhere  # type: ignore[import-not-found]  # noqa: F401, PLC0415
    finally:
        sys.meta_path.remove(watch)
        sys.modules.pop("late_module_for_watch", None)
    assert [r.getMessage() for r in caplog.records] == [
        "module late_module_for_watch imported after the privilege drop"
    ]


def test_preload_takes_metrics_and_backend_modules_only_when_configured() -> None:
    default = modules_for(parse_config({}))
    assert not set(METRICS_MODULES) & set(default) and "redis.asyncio" not in default
    served = modules_for(
        parse_config(
            {
                "server": {"metrics_listen": "127.0.0.1:9100"},
                "cache": {"backend": "redis", "url": "redis://127.0.0.1"},
            }
        )
    )
    assert set(METRICS_MODULES) <= set(served) and "redis.asyncio" in served
    assert not set(REPORTER_MODULES) & set(default)  # the policy fetch needs no aiohttp
    reporting = modules_for(parse_config({"tlsrpt": {"reporter": True, "submitter": "mx.test"}}))
    assert set(REPORTER_MODULES) <= set(reporting)
