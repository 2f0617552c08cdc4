"""The command line as a whole: ``-c`` in every place for every command, which file and
cache a command used, help texts, and the rough edges of the output."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tlspolicy.cache.entry import CacheEntry, DaneBranch
from tlspolicy.cache.factory import open_backend
from tlspolicy.cli.explain import print_explanation
from tlspolicy.cli.main import EXIT_BROKEN_PIPE, build_parser, main
from tlspolicy.config import load_config
from tlspolicy.dane.result import DaneLevel, DaneResult

CHECKED_AT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def leaf_commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command path (``("cache", "show")``) with its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from leaf_commands(child, (*prefix, name))


def minimal_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """Values for the required arguments of a command, whatever it is (new ones too)."""
    args: list[str] = []
    for action in parser._actions:
        if not action.option_strings and action.nargs in (None, 1, "+"):
            args.append(str(next(iter(action.choices))) if action.choices else "example.com")
        elif action.option_strings and action.required:
            args += [action.option_strings[-1], "1h"]
    return args


COMMANDS = [path for path, _ in leaf_commands(build_parser())]


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_config_option_is_accepted_in_all_three_places(path: tuple[str, ...]) -> None:
    parser = build_parser()
    leaf = dict(leaf_commands(parser))[path]
    rest = minimal_arguments(leaf)
    command, *action = path
    for argv in (
        ["-c", "F", *path, *rest],
        [command, "-c", "F", *action, *rest],
        [*path, *rest, "-c", "F"],
        [*path, *rest, "--config=F"],
    ):
        assert parser.parse_args(argv).config == "F", argv
    assert parser.parse_args([*path, *rest]).config is None


def test_every_option_and_argument_has_help() -> None:
    for path, parser in leaf_commands(build_parser()):
        for action in parser._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{' '.join(path)} {action.option_strings or action.dest}"


def write_config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "tlspolicy.yml"
    data = {"cache": {"backend": "sqlite", "path": str(tmp_path / "cache.sqlite3")}, **sections}
    path.write_text(yaml.safe_dump({**data, "postfix": {"postconf": ""}}))
    return path


def put_entry(config_path: Path, domain: str) -> None:
    async def put() -> None:
        backend = open_backend(load_config(str(config_path)).cache)
        await backend.open()
        result = DaneResult(DaneLevel.DANE_ONLY, "usable TLSA records", 300, True)
        await backend.put(
            CacheEntry(domain, DaneBranch(result, CHECKED_AT, time.time() + 300), None, CHECKED_AT)
        )
        await backend.aclose()

    asyncio.run(put())


def test_cache_show_names_the_file_and_cache_and_prints_utc_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    put_entry(config, "dane.example")
    assert main(["cache", "show", "dane.example", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    cache = f"{tmp_path}/cache.sqlite3"
    assert err == f"tlspolicy: configuration file {config} (-c); cache sqlite {cache}\n"
    shown = json.loads(out)
    assert shown["dane"]["checked_at"] == CHECKED_AT  # numbers stay, for scripts
    assert shown["dane"]["checked_at_utc"] == "2026-01-01T00:00:00Z"
    assert shown["used_at_utc"] == "2026-01-01T00:00:00Z"


def test_admin_command_without_any_file_says_it_uses_the_embedded_cache_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))  # the embedded cache path's directory
    assert main(["override", "list"]) == 0
    out, err = capsys.readouterr()
    assert out == "no overrides\n"
    assert "no configuration file (" in err and "does not exist): embedded defaults" in err
    assert err.rstrip().endswith(f"; cache sqlite {tmp_path}/cache.sqlite3")


def test_query_json_says_which_configuration_and_cache(tmp_path: Path) -> None:
    """Without DNS: an IP literal is answered without a lookup."""
    config = write_config(tmp_path, dns={"selfcheck": False})
    done = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "query", "[192.0.2.1]", "--json", "-c", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    used = json.loads(done.stdout)["configuration"]
    assert used["file"] == str(config) and used["origin"] == "-c"
    assert used["cache"] == f"sqlite {tmp_path}/cache.sqlite3"


def test_closed_stdout_ends_quietly_without_a_traceback(tmp_path: Path) -> None:
    """``tlspolicy cache show X | head``: the reader went away before the output."""
    config = write_config(tmp_path)
    put_entry(config, "dane.example")
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write fails with EPIPE, deterministically
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tlspolicy", "cache", "show", "dane.example", "-c", str(config)],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_tlsrpt_status_without_tlsrpt_says_it_is_not_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["tlsrpt", "status", "-c", str(config)]) == 0
    assert capsys.readouterr().out == "TLSRPT is not configured (no tlsrpt: section)\n"
    assert main(["tlsrpt", "status", "--json", "-c", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["configured"] is False


def test_query_output_has_no_none_and_no_dangling_colon(capsys: pytest.CaptureFixture[str]) -> None:
    print_explanation(
        {
            "key": "plain.example",
            "map": "QUERY",
            "domain": "plain.example",
            "reply": "NOTFOUND ",
            "verdict": "notfound",
            "reason": "no policy",
            "mta_sts": {"record_id": None},
            "lookups": [
                {"kind": "dns", "detail": "TXT", "name": "_mta-sts.plain.example"},
                {"kind": "dns", "detail": "MX", "name": "plain.example", "status": "NXDOMAIN"},
            ],
        }
    )
    out = capsys.readouterr().out
    assert "None" not in out
    assert not [line for line in out.splitlines() if line.endswith((": ", ":")) and line[0] == " "]
    assert "MTA-STS:  no policy (no MTA-STS TXT record)" in out
    assert "  dns   TXT   _mta-sts.plain.example\n" in out
    assert "  dns   MX    plain.example: NXDOMAIN\n" in out
