"""``tlspolicy``: serve, query, cache administration.

Exit status of ``query``: 0 a policy was found (``OK``), 1 no policy (``NOTFOUND``),
75 (EX_TEMPFAIL) a temporary failure (``TEMP``), 78 (EX_CONFIG) a permanent error
(``PERM``). Every command exits 2 for a usage error and 78 (EX_CONFIG) for a configuration
error: systemd's ``Restart=on-failure`` must not loop on what only an edit can fix
(``RestartPreventExitStatus=78`` in contrib/tlspolicy.service).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from tlspolicy import __version__
from tlspolicy.cli import admin
from tlspolicy.cli import check as check_cli
from tlspolicy.cli import overrides as overrides_cli
from tlspolicy.cli import tlsrpt as tlsrpt_cli
from tlspolicy.cli.explain import cached_view, explain_domain, print_explanation
from tlspolicy.config import Config, load_config
from tlspolicy.decision.verdict import OK_VERDICTS, Verdict
from tlspolicy.errors import ConfigError, TlsPolicyError
from tlspolicy.postfix.advice import Severity, advise, read_postfix
from tlspolicy.server.app import build_app, memory_cache
from tlspolicy.server.lifecycle import serve
from tlspolicy.server.logsetup import setup_logging

EXIT_FOUND = 0
EXIT_NOTFOUND = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlspolicy",
        description="Postfix TLS policy socketmap server: DANE first, then MTA-STS.",
    )
    parser.add_argument("--version", action="version", version=f"tlspolicy {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the socketmap server in the foreground")
    serve.add_argument("-c", "--config", metavar="FILE", help="YAML configuration file")

    query = sub.add_parser("query", help="resolve one domain now and explain the answer")
    query.add_argument("domain", metavar="DOMAIN", help="domain or Postfix next-hop key")
    query.add_argument("-c", "--config", metavar="FILE", help="YAML configuration file")
    query.add_argument("--map", default=None, help="socketmap name (profile); default: first map")
    query.add_argument("--json", action="store_true", help="machine-readable output")

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("-c", "--config", metavar="FILE", help="YAML configuration file")

    check_cli.add_parser(sub)
    admin.add_parsers(sub)
    overrides_cli.add_parsers(sub)
    tlsrpt_cli.add_parsers(sub)
    return parser


def run() -> None:
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tlspolicy: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.command == "serve":
            return _run(serve(config, args.config))
        if args.command == "check-config":
            return check_config(config)
        if args.command == "check":
            setup_logging("error", "text")  # the findings say it; no lookup log lines
            return _run(check_cli.run(config, args))
        if args.command == "query":
            setup_logging("warning", "text")
            return _run(query(config, args.domain, args.map, as_json=args.json))
        if args.command == "tlsrpt":
            if args.action != "collect":
                setup_logging("warning", "text")
            return _run(tlsrpt_cli.run(config, args))
        setup_logging("warning", "text")
        if args.command == "override":
            return _run(overrides_cli.run(config, args))
        return _run(admin.run(config, args))
    except ConfigError as exc:
        print(f"tlspolicy: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TlsPolicyError as exc:
        print(f"tlspolicy: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    except KeyboardInterrupt:
        return 130


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def query(config: Config, key: str, map_name: str | None, *, as_json: bool) -> int:
    name = map_name or next(iter(config.maps))
    app = await build_app(config, cache_config=memory_cache(config))
    try:
        explanation = await explain_domain(app, name, key)
    finally:
        await app.aclose()
    if "domain" in explanation:
        explanation["cache"] = await cached_view(config, name, explanation["domain"])
    if as_json:
        print(json.dumps(explanation, indent=2, ensure_ascii=False))
    else:
        print_explanation(explanation)
    verdict = explanation["verdict"]
    if verdict in OK_VERDICTS:
        return EXIT_FOUND
    if verdict == Verdict.NOTFOUND:
        return EXIT_NOTFOUND
    if verdict == Verdict.PERM:
        return EXIT_CONFIG
    return EXIT_TEMPFAIL


def check_config(config: Config) -> int:
    """Print that the file is valid, then what the Postfix beside us needs of its maps.

    Exit 1 when a map Postfix uses would make it defer mail (an ERROR piece of advice).
    """
    print(f"{config.source}: OK")
    if (unsigned := config.tlsrpt.unsigned_mail) is not None:
        print(f"WARNING: {unsigned}")
    facts = (
        read_postfix(config.postfix.postconf, config.postfix.config_directory)
        if config.postfix.postconf
        else None
    )
    if facts is None:
        return 0
    advice = advise(facts, config.maps)
    for item in advice:
        print(f"{item.severity.value}: {item.text}")
    return 1 if any(a.severity is Severity.ERROR for a in advice) else 0
