"""``tlspolicy override add|list|remove``: per-domain exceptions that expire by themselves.

They are stored in the configured cache backend, so every server sharing it (Redis,
PostgreSQL, the sqlite file) answers with them within ``cache.hot_ttl``; the commands use
their own connection and never wait for the server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from typing import Any

from tlspolicy.cache.factory import open_backend
from tlspolicy.config import Config
from tlspolicy.config.overrides import (
    LEVELS,
    Override,
    OverrideError,
    clean_reason,
    parse_level,
    parse_until,
)
from tlspolicy.control.book import weakens
from tlspolicy.control.store import OverrideStore
from tlspolicy.errors import CacheError, ProtocolError
from tlspolicy.socketmap.keys import normalize_key

EXIT_TEMPFAIL = 75


def add_parsers(sub: Any) -> None:
    parser = sub.add_parser("override", help="per-domain answers that win over lookups")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="answer LEVEL for DOMAIN until a time")
    add.add_argument("domain", metavar="DOMAIN", help="the domain (and with --subdomains, below)")
    add.add_argument("level", help=f"one of {', '.join(LEVELS)} ('secure match=...' too)")
    add.add_argument("--match", default="", help="secure only: Postfix match list (a:b)")
    add.add_argument("--until", required=True, help="a duration (12h, 7d) or an ISO date")
    add.add_argument("--reason", required=True, help="why (logged with every use)")
    add.add_argument("--subdomains", action="store_true", help="also names below DOMAIN")
    listing = actions.add_parser("list", help="list overrides (stored and configured)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    remove = actions.add_parser("remove", help="remove the stored override of DOMAIN")
    remove.add_argument("domain", metavar="DOMAIN", help="the domain of the stored override")


def _domain(text: str) -> str:
    try:
        parsed = normalize_key(text.lower())
    except ProtocolError as exc:
        raise SystemExit(f"tlspolicy: {exc}") from None
    if parsed.domain is None:
        raise SystemExit(f"tlspolicy: {text}: {parsed.why}")
    return parsed.domain


def _override(args: argparse.Namespace, now: float) -> Override:
    try:
        level, match = parse_level(args.level, args.match)
        until = parse_until(args.until, now)
    except OverrideError as exc:
        raise SystemExit(f"tlspolicy: {exc}") from None
    reason = clean_reason(args.reason)
    if not reason:
        raise SystemExit("tlspolicy: --reason must say why")
    return Override(
        domain=_domain(args.domain),
        level=level,
        match=match,
        until=until,
        reason=reason,
        subdomains=args.subdomains,
        created_at=now,
    )


def describe(override: Override, now: float) -> dict[str, Any]:
    data = override.to_json()
    data["state"] = "active" if override.active(now) else "expired"
    data["until_text"] = override.describe_until()
    data["answer"] = "OK " + override.postfix_level if override.level != "lookup" else "lookup"
    return data


async def run(config: Config, args: argparse.Namespace) -> int:
    if config.cache.backend == "memory" and args.action != "list":
        print(
            "tlspolicy: the memory cache is private to the server: store overrides in "
            "sqlite, redis or postgres, or put them in the configuration (overrides:)",
            file=sys.stderr,
        )
        return 2
    backend = open_backend(config.cache, recover=False)
    store = OverrideStore(backend, config.overrides)
    try:
        if config.cache.backend != "memory":
            await backend.open()
        return await _run(store, backend, args)
    except CacheError as exc:
        print(f"tlspolicy: cache backend {config.cache.backend}: {exc}", file=sys.stderr)
        return EXIT_TEMPFAIL
    finally:
        with contextlib.suppress(CacheError):
            await backend.aclose()


async def _run(store: OverrideStore, backend: Any, args: argparse.Namespace) -> int:
    now = time.time()
    if args.action == "add":
        override = _override(args, now)
        await store.add(override)
        print(
            f"{override.domain}{' and below' if override.subdomains else ''}: "
            f"{override.postfix_level} until {override.describe_until()} ({override.reason})"
        )
        what = weakens(override, await backend.get(override.domain))
        if what is not None:
            print(f"warning: this weakens {override.domain}'s {what}", file=sys.stderr)
        return 0
    if args.action == "remove":
        domain = _domain(args.domain)
        removed = await store.remove(domain)
        configured = any(o.domain == domain and o.source == "config" for o in store.all())
        note = " (an override in the configuration file still applies)" if configured else ""
        print(f"{domain}: {'removed' if removed else 'no stored override'}{note}")
        return 0 if removed else 1
    await store.load()
    listed = [describe(o, now) for o in store.all()]
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    if not listed:
        print("no overrides")
    for item in listed:
        below = " +subdomains" if item["subdomains"] else ""
        print(
            f"{item['domain'] + below:<40} {item['answer']:<24} {item['state']:<8} "
            f"until {item['until_text']}  [{item['source']}] {item['reason']}"
        )
    return 0
