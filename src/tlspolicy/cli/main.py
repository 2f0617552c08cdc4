"""``tlspolicy``: serve, query, cache administration.

Exit status of ``query``: 0 a policy was found (``OK``), 1 no policy (``NOTFOUND``),
75 (EX_TEMPFAIL) a temporary failure (``TEMP``), 78 (EX_CONFIG) a permanent error
(``PERM``). Every command exits 2 for a usage error and 78 (EX_CONFIG) for a configuration
error: systemd's ``Restart=on-failure`` must not loop on what only an edit can fix
(``RestartPreventExitStatus=78`` in contrib/tlspolicy.service). A command whose output
pipe closes early (``tlspolicy cache list | head``) exits 141, as if killed by SIGPIPE,
without a traceback.

The configuration file is ``-c FILE``, else ``$TLSPOLICY_CONFIG``, else
``/etc/tlspolicy/tlspolicy.yml`` (``config.load_config``); ``-c`` is accepted before the
command, after it and after its action, for every command (``_config_everywhere``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from tlspolicy import __version__
from tlspolicy.cli import admin
from tlspolicy.cli import check as check_cli
from tlspolicy.cli import overrides as overrides_cli
from tlspolicy.cli import tlsrpt as tlsrpt_cli
from tlspolicy.cli.check import resolver_problem
from tlspolicy.cli.explain import cached_view, explain_domain, print_explanation
from tlspolicy.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    Config,
    ConfigOrigin,
    describe_origin,
    load_config,
)
from tlspolicy.decision.verdict import OK_VERDICTS, Verdict
from tlspolicy.dnsstub.client import trust_warnings
from tlspolicy.errors import ConfigError, TlsPolicyError
from tlspolicy.postfix.advice import Severity, advise, read_postfix
from tlspolicy.server.app import build_app, memory_cache
from tlspolicy.server.lifecycle import serve
from tlspolicy.server.logsetup import setup_logging
from tlspolicy.server.privileges import databases, state_identity, state_problems

EXIT_FOUND = 0
EXIT_NOTFOUND = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a process killed by SIGPIPE

CONFIG_HELP = f"configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})"
# Commands that read or write the cache or the TLSRPT store: they name the configuration
# file and the storage they used on stderr, so nobody edits another cache than the server's.
SHELLS = ("bash", "zsh")
_STORAGE_COMMANDS = frozenset({"cache", "override", "query", "tlsrpt"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tlspolicy",
        description="Postfix TLS policy socketmap server: DANE first, then MTA-STS.",
    )
    parser.add_argument("--version", action="version", version=f"tlspolicy {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE", default=None, help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("serve", help="run the socketmap server in the foreground")

    query = sub.add_parser("query", help="resolve one domain now and explain the answer")
    query.add_argument("domain", metavar="DOMAIN", help="domain or Postfix next-hop key")
    query.add_argument("--map", default=None, help="socketmap name (profile); default: first map")
    query.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("check-config", help="validate the configuration and exit")
    completion = sub.add_parser(
        "completion", help="print the shell completion script (needs the shtab package)"
    )
    completion.add_argument("shell", choices=SHELLS, help="bash or zsh")

    check_cli.add_parser(sub)
    admin.add_parsers(sub)
    overrides_cli.add_parsers(sub)
    tlsrpt_cli.add_parsers(sub)
    _config_everywhere(parser)
    return parser


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell``, generated from the parser by shtab (an optional
    dependency: only this command and ``scripts/generate-docs`` need it)."""
    import shtab  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    script: str = shtab.complete(parser, shell=shell)
    return script


def print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    try:
        print(completion_script(parser, shell), end="")
    except ImportError:
        print(
            "tlspolicy: completion needs the shtab package (Debian: python3-shtab; pip"
            " install shtab); prepared scripts are in contrib/completion/",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return 0


def _config_everywhere(parser: argparse.ArgumentParser) -> None:
    """Give every command and action ``-c/--config``, also those added later.

    Below the top the option defaults to ``SUPPRESS``: argparse copies a subcommand's
    namespace over its parent's, and a default there would erase a ``-c`` given earlier
    (``tlspolicy -c F cache show X``). An option a subcommand declared itself is adjusted,
    not duplicated.
    """
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        children = {id(p): p for p in action.choices.values()}  # aliases share a parser
        for child in children.values():
            existing = child._option_string_actions.get("--config")
            if existing is None:
                child.add_argument(
                    "-c", "--config", metavar="FILE", default=argparse.SUPPRESS, help=CONFIG_HELP
                )
            else:
                existing.default = argparse.SUPPRESS
                existing.help = CONFIG_HELP
            _config_everywhere(child)


def run() -> None:
    """The console script. A closed stdout (``| head``) ends the command quietly: stdout is
    pointed at /dev/null so that the interpreter's final flush does not fail again (the
    recipe of the Python documentation's note on SIGPIPE)."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = EXIT_BROKEN_PIPE
    sys.exit(status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "completion":
        return print_completion(parser, args.shell)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"tlspolicy: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    _say_where(config, args)
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


def where_used(config: Config) -> dict[str, str]:
    """The configuration file and the storage a command acts on (for ``--json`` output)."""
    tlsrpt = config.tlsrpt
    store = tlsrpt.store_url if tlsrpt.store_backend == "postgres" else tlsrpt.store_path
    return {
        "file": config.source,
        "origin": config.origin.value,
        "cache": _cache_location(config),
        "tlsrpt_store": f"{tlsrpt.store_backend} {_redacted(store or '')}",
    }


def _cache_location(config: Config) -> str:
    cache = config.cache
    if cache.backend == "sqlite":
        return f"sqlite {cache.path}"
    if cache.backend == "memory":
        return "memory (private to each process)"
    return f"{cache.backend} {_redacted(cache.url or '')}"


def _redacted(url: str) -> str:
    """A database URL without its password (stderr may end up in a ticket)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def _say_where(config: Config, args: argparse.Namespace) -> None:
    """Name the configuration file (or its absence) and the storage used, on stderr."""
    command = args.command
    if command not in _STORAGE_COMMANDS:
        if config.origin is ConfigOrigin.EMBEDDED:
            print(f"tlspolicy: {describe_origin(config)}", file=sys.stderr)
        return
    used = where_used(config)
    storage = used["tlsrpt_store"] if command == "tlsrpt" else used["cache"]
    noun = "TLSRPT store" if command == "tlsrpt" else "cache"
    print(f"tlspolicy: {describe_origin(config)}; {noun} {storage}", file=sys.stderr)


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
        problem = await resolver_problem(app.dns, config)
        if problem is not None:  # said first: the answer below is not to be trusted
            print(f"✗ resolver self-check failed: {problem}", file=sys.stderr)
        explanation = await explain_domain(app, name, key)
    finally:
        await app.aclose()
    if problem is not None:
        explanation["resolver_problem"] = problem
    if "domain" in explanation:
        explanation["cache"] = await cached_view(config, name, explanation["domain"])
    explanation["configuration"] = where_used(config)
    if as_json:
        print(json.dumps(explanation, indent=2, ensure_ascii=False))
    else:
        print_explanation(explanation)
    verdict = explanation["verdict"]
    if problem is not None:
        return EXIT_TEMPFAIL
    if verdict in OK_VERDICTS:
        return EXIT_FOUND
    if verdict == Verdict.NOTFOUND:
        return EXIT_NOTFOUND
    if verdict == Verdict.PERM:
        return EXIT_CONFIG
    return EXIT_TEMPFAIL


def check_config(config: Config) -> int:
    """Print that the file is valid and the server could use what it names, then what the
    Postfix beside us needs of its maps.

    Exit 78 (EX_CONFIG) when ``serve`` would refuse to start (a state directory the server
    user cannot write), 1 when a map Postfix uses would make it defer mail (an ERROR piece
    of advice).
    """
    stores = databases(config, tlsrpt=config.tlsrpt.in_use)
    problems = state_problems(stores, state_identity(config))
    for problem in problems:
        print(f"ERROR: {problem}")
    if problems:
        return EXIT_CONFIG
    print(f"{config.source}: OK")
    if (unsigned := config.tlsrpt.unsigned_mail) is not None:
        print(f"WARNING: {unsigned}")
    dns = config.dns
    for warning in trust_warnings(dns.nameservers, trust_remote=dns.trust_remote_resolver):
        print(f"WARNING: {warning}")
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
