"""``tlspolicy cache ...``: look at and manage the configured cache, also while serving.

With sqlite the server and these commands share the file (WAL); with Redis/PostgreSQL they
share the server's database. A running server sees purges after its hot-layer staleness
bound (``cache.hot_ttl``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

from tlspolicy.cache.entry import CacheEntry
from tlspolicy.cli.warm import DEFAULT_RATE, warm
from tlspolicy.config import Config, MapProfile
from tlspolicy.control.book import override_decision
from tlspolicy.control.drift import entry_drift
from tlspolicy.decision.plan import PlanSettings, plan_answer
from tlspolicy.decision.verdict import OK_VERDICTS
from tlspolicy.errors import CacheError
from tlspolicy.postfix.maillog import read_lines, recent_domains
from tlspolicy.server.app import App, build_app
from tlspolicy.socketmap.answer import Reply, render, shadowed
from tlspolicy.socketmap.keys import normalize_key


def add_parsers(sub: Any) -> None:
    cache = sub.add_parser("cache", help="inspect and manage the policy cache")
    actions = cache.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list cached domains")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.add_argument("--map", default=None, help="profile used to format answers")
    show = actions.add_parser("show", help="show one cached entry")
    show.add_argument("domain", metavar="DOMAIN", help="domain or Postfix next-hop key")
    purge = actions.add_parser("purge", help="remove one domain, or everything")
    purge.add_argument("domain", metavar="DOMAIN", nargs="?", help="one domain (default: all)")
    export = actions.add_parser("export", help="print current answers in Postfix texthash format")
    export.add_argument("--map", default=None, help="profile used to format answers")
    warm = actions.add_parser("warm", help="resolve domains now, ahead of first contact")
    warm.add_argument(
        "file", nargs="?", help="one domain per line ('-' for stdin); # comments allowed"
    )
    warm.add_argument(
        "--from-maillog",
        nargs="+",
        metavar="LOG",
        help="recipient domains of sent/deferred deliveries in Postfix logs (.gz, '-')",
    )
    warm.add_argument("--limit", type=int, default=None, help="at most N (most recent) domains")
    warm.add_argument("--rate", type=float, default=DEFAULT_RATE, help="lookups per second")
    warm.add_argument("--map", default=None, help="socketmap name (profile); default: first map")


def cached_answer(entry: CacheEntry, profile: MapProfile, config: Config, now: float) -> Reply:
    """What the server answers from this entry: the cache plan's decision as a reply, or
    (kind ``lookup``) what the next query looks up first. The server acts on the same plan,
    so this is what it answers, by construction."""
    plan = plan_answer(entry, now, profile, PlanSettings.from_config(config))
    if plan.decision is None:
        return Reply(plan.describe(), "lookup")
    return render(plan.decision, profile)


def _describe(entry: CacheEntry, now: float) -> dict[str, Any]:
    data = entry.to_json()
    if entry.dane is not None:
        data["dane"]["expires_in"] = round(entry.dane.expires_at - now)
    data["keep_until_in"] = round(entry.keep_until() - now)
    drift = entry_drift(entry)  # the same pure check the server logs at warning
    data["drift"] = None if drift is None else drift.to_json()
    described: dict[str, Any] = with_utc(data)
    return described


_MOMENT_SUFFIXES = ("_at", "_until")  # epoch seconds in the stored entry's JSON


def with_utc(data: Any) -> Any:
    """``data`` with an ISO 8601 UTC twin (``expires_at_utc``) beside every epoch moment: a
    person reads the text, scripts keep computing with the numbers."""
    if isinstance(data, list):
        return [with_utc(item) for item in data]
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    for key, value in data.items():
        out[key] = with_utc(value)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        moment = number and 0 < value < math.inf
        if moment and key.endswith(_MOMENT_SUFFIXES):
            out[f"{key}_utc"] = utc_text(value)
    return out


def utc_text(seconds: float) -> str:
    """``2026-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _profile(config: Config, name: str | None) -> MapProfile:
    profile = config.profile(name or next(iter(config.maps)))
    if profile is None:
        raise SystemExit(f"tlspolicy: unknown map {name}")
    return profile


async def run(config: Config, args: argparse.Namespace) -> int:
    # recover_cache=False: an admin command reports a damaged sqlite file; only the server
    # moves it aside (it may be in use by the running server).
    app = await build_app(config, recover_cache=False)
    try:
        return await _run(app, config, args)
    except CacheError as exc:
        print(f"tlspolicy: cache backend {config.cache.backend}: {exc}", file=sys.stderr)
        return 75
    finally:
        await app.aclose()


async def _run(app: App, config: Config, args: argparse.Namespace) -> int:
    cache = app.cache
    now = time.time()
    if args.action == "list":
        entries = sorted(await cache.entries(), key=lambda e: e.domain)
        profile = _profile(config, args.map)
        overrides = app.service.overrides
        await overrides.load()
        if args.json:
            print(json.dumps([_describe(e, now) for e in entries], indent=2))
        else:
            for entry in entries:
                decided = cached_answer(entry, profile, config, now)
                override = override_decision(overrides.find(entry.domain, now), entry.domain)
                if override is not None:  # answered before the cached data is looked at
                    decided = render(override, profile)
                reply = decided.text
                if override is not None:
                    reply += f" ({override.reason})"
                if decided.kind != "lookup" and shadowed(decided, profile) is not decided:
                    reply = f"{shadowed(decided, profile).text}(shadow; enforces: {reply})"
                drift = entry_drift(entry)
                if drift is not None:
                    reply += f"  [drift: {drift.detail}]"
                print(f"{entry.domain:<40} hits={entry.hits:<6} {reply}")
        return 0
    if args.action == "show":
        domain = _domain(args.domain)
        found = await cache.get(domain)
        if found is None:
            print(f"{domain}: not cached", file=sys.stderr)
            return 1
        print(json.dumps(_describe(found, now), indent=2))
        return 0
    if args.action == "purge":
        if args.domain:
            removed = await cache.delete(_domain(args.domain))
            print(f"{args.domain}: {'removed' if removed else 'not cached'}")
        else:
            print(f"removed {await cache.purge()} entries")
        return 0
    if args.action == "export":
        profile = _profile(config, args.map)
        for entry in sorted(await cache.entries(), key=lambda e: e.domain):
            answer = cached_answer(entry, profile, config, now)
            if answer.kind in OK_VERDICTS:
                print(f"{entry.domain} {answer.text.removeprefix('OK ')}")
        return 0
    if args.action == "warm":
        return await _warm(app.service, config, args)
    return 2


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except OSError as exc:
        raise SystemExit(f"tlspolicy: {path}: {exc.strerror or exc}") from None


def _domain(text: str) -> str:
    parsed = normalize_key(text)
    if parsed.domain is None:
        raise SystemExit(f"tlspolicy: {text}: {parsed.why}")
    return parsed.domain


async def _warm(service: Any, config: Config, args: argparse.Namespace) -> int:
    if (args.file is None) == (args.from_maillog is None):
        raise SystemExit("tlspolicy: cache warm: give FILE or --from-maillog LOG..., not both")
    if args.from_maillog is not None:
        names = _maillog_domains(args.from_maillog, args.limit)
    else:
        names = [line.split("#", 1)[0].strip() for line in _read_lines(args.file)]
        names = [n for n in names if n][: args.limit]
    summary = await warm(
        service,
        _profile(config, args.map),
        names,
        rate=args.rate,
        limit_s=config.server.request_timeout,
    )
    return 75 if summary.failed else 0


def _maillog_domains(paths: list[str], limit: int | None) -> list[str]:
    lines: list[str] = []
    for path in paths:
        try:
            if path == "-":
                lines.extend(read_lines(sys.stdin.buffer))
            else:
                with open(path, "rb") as handle:
                    lines.extend(read_lines(handle))
        except (OSError, EOFError) as exc:  # gzip raises EOFError on a truncated file
            raise SystemExit(
                f"tlspolicy: {path}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    return recent_domains(lines, limit)
