"""``tlspolicy tlsrpt ...``: its arguments. The commands are in ``tlsrpt_commands``,
imported when one runs: every other command (``serve`` first) starts without them."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from tlspolicy.config import Config


def add_parsers(sub: Any) -> None:
    tlsrpt = sub.add_parser("tlsrpt", help="TLSRPT collector and daily reports (RFC 8460)")
    tlsrpt.add_argument("-c", "--config", metavar="FILE", help="YAML configuration file")
    actions = tlsrpt.add_subparsers(dest="action", metavar="ACTION", required=True)
    collect = actions.add_parser("collect", help="run only the collector, in the foreground")
    status = actions.add_parser("status", help="counts and deliveries of today and yesterday")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="print the report of one domain for one day")
    show.add_argument("domain", metavar="DOMAIN", help="the policy domain reported on")
    show.add_argument("--day", type=_day, help="UTC day YYYY-MM-DD (default: yesterday)")
    show.add_argument("--json", action="store_true", help="only the report JSON")
    send = actions.add_parser("send", help="send due reports now, ignoring the spread delay")
    send.add_argument("--day", type=_day, help="only this UTC day (YYYY-MM-DD)")
    send.add_argument("--domain", help="only this report domain")
    send.add_argument("--dry-run", action="store_true", help="look up and print, send nothing")
    receive = actions.add_parser(
        "receive",
        help="store the report in one mail on stdin (a Postfix pipe or alias; DKIM-checked)",
    )
    import_ = actions.add_parser("import", help="store received reports from files")
    import_.add_argument("files", nargs="+", metavar="FILE", help=".json, .json.gz or .eml")
    received = actions.add_parser(
        "received", help="what the reports others sent say about our domains"
    )
    received.add_argument("domain", nargs="?", metavar="DOMAIN", help="only this policy domain")
    received.add_argument(
        "--since", type=_days, default=7, metavar="Nd", help="this many days back (default 7d)"
    )
    received.add_argument("--json", action="store_true", help="machine-readable output")
    for parser in (collect, status, show, send, receive, import_, received):
        parser.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS)


async def run(config: Config, args: argparse.Namespace) -> int:
    from tlspolicy.cli import tlsrpt_commands  # noqa: PLC0415 - see the module docstring

    return await tlsrpt_commands.run(config, args)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a day (YYYY-MM-DD)") from None


def _days(text: str) -> int:
    """``7d`` or ``7``: a number of days, 1 or more."""
    number = text.strip().lower().removesuffix("d")
    if not number.isdigit() or int(number) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days such as 7d")
    return int(number)
