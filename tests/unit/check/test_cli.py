"""``tlspolicy check`` argument handling (the command itself runs against the lab, e2e)."""

from __future__ import annotations

import pytest

from tlspolicy.cli.main import build_parser, main


def test_cli_check_options_parse() -> None:
    args = build_parser().parse_args(
        ["check", "example.com", "--json", "-v", "--port", "2525", "-6", "--no-smtp"]
    )
    assert (args.command, args.domain, args.port, args.ipv6, args.no_smtp) == (
        "check",
        "example.com",
        2525,
        True,
        True,
    )
    assert args.json and args.verbose and not args.monitoring


def test_cli_check_json_and_monitoring_exclude_each_other(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["check", "example.com", "--json", "--monitoring"])
    assert "not allowed with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["check", "[192.0.2.1]"], "is not a mail domain"),
        (["check", ".example.com"], "is not a mail domain"),
        (["check", "example.com", "--port", "0"], "--port 1..65535"),
        (["check", "example.com", "--timeout", "0"], "--timeout must be positive"),
    ],
)
def test_cli_check_usage_errors_exit_2(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert words in capsys.readouterr().err
