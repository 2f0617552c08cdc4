"""``tlspolicy tlsrpt collect|status|show|send``: the TLSRPT collector and reports by hand.

``collect`` runs the collector alone (a host that only reports); ``status`` shows today's
and yesterday's counts and deliveries; ``show`` prints the exact report that is or will
be sent; ``send`` sends what is due now (for hosts without the reporter running, and tests).
All read ``TLSPOLICY_TLSRPT_NOW`` as "now" when it is set (tests only, see runtime.py).

As root with ``server.user`` set, every action runs as that user, as ``serve`` does:
``send`` talks to hosts that recipient domains chose, and the store's files must stay the
server's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tlspolicy.config import Config
from tlspolicy.dnsstub.client import ResolverClient
from tlspolicy.errors import ConfigError
from tlspolicy.server.app import nameservers
from tlspolicy.server.logsetup import setup_logging
from tlspolicy.server.privileges import (
    databases,
    drop_privileges,
    prepare_state,
    state_identity,
)
from tlspolicy.server.warmup import preload
from tlspolicy.tlsrpt.aggregate import utc_day
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.report import format_report, report_id, totals
from tlspolicy.tlsrpt.runtime import TlsrptRuntime, clock_from_env
from tlspolicy.tlsrpt.schedule import due_at
from tlspolicy.tlsrpt.store import ReportStore

if TYPE_CHECKING:
    from tlspolicy.tlsrpt.reporter import Reporter

EXIT_TEMPFAIL = 75

log = logging.getLogger("tlspolicy.tlsrpt")


async def run(config: Config, args: argparse.Namespace) -> int:
    if args.action == "collect":
        return await collect(config)
    if args.action in ("receive", "import", "received"):
        from tlspolicy.cli import tlsrpt_inbound  # noqa: PLC0415 - mail parsing, DKIM

        return await tlsrpt_inbound.run(config, args, drop_privileges=_drop_privileges)
    _drop_privileges(config, reporting=args.action in ("show", "send"))
    store = open_store(config.tlsrpt)
    await store.open()
    try:
        if args.action == "status":
            return await status(config, store, as_json=args.json)
        if args.action == "show":
            return await show(config, store, args.domain, args.day, as_json=args.json)
        return await send(config, store, args.day, args.domain, dry_run=args.dry_run)
    finally:
        await store.aclose()


async def collect(config: Config) -> int:
    setup_logging(config.server.log_level, config.server.log_format)
    if config.tlsrpt.collector_socket is None:
        raise ConfigError("tlsrpt.collector_socket: must be set for tlspolicy tlsrpt collect")
    runtime = TlsrptRuntime(config, collect=True, report=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runtime.bind()
    _drop_privileges(config)
    await runtime.start()
    await stop.wait()
    await runtime.aclose()
    assert runtime.collector is not None
    stats = runtime.collector.stats
    log.info(
        "TLSRPT collector stopped: %d received, %d invalid, %d stored, queue full %d times",
        stats.received, stats.invalid, runtime.writer.written, stats.queue_full,
    )  # fmt: skip
    return 0


def _drop_privileges(config: Config, *, reporting: bool = False) -> None:
    """Prepare the store for the server user (``privileges.prepare_state``) and, as root
    with ``server.user`` set, run as that user once the socket is bound, with what the
    command may import later loaded first (``warmup.preload``: the installation may not be
    readable by that user)."""
    identity = state_identity(config)
    stores = databases(config, cache=False)
    prepare_state(stores, identity, group_mode=config.server.group is not None)
    if identity is not None:
        reporter_on = replace(config.tlsrpt, reporter=True)
        preload(replace(config, tlsrpt=reporter_on) if reporting else config)
        drop_privileges(config.server.user, config.server.group)


NOT_CONFIGURED = "TLSRPT is not configured (no tlsrpt: section)"


async def status(config: Config, store: ReportStore, *, as_json: bool) -> int:
    now = clock_from_env()()
    today = utc_day(now)
    cfg = config.tlsrpt
    if not cfg.in_use:  # zero counts would read as "nothing failed"
        if as_json:
            print(json.dumps({"now": _stamp(now), "configured": False, "days": []}, indent=2))
        else:
            print(NOT_CONFIGURED)
        return 0
    days: list[dict[str, Any]] = []
    for day, label in ((today, "today"), (today - timedelta(days=1), "yesterday")):
        groups = await store.day_counts(day)
        deliveries = await store.deliveries(day)
        domains = []
        for domain in sorted({g.domain for g in groups}):
            ok, failed = totals(g for g in groups if g.domain == domain)
            item: dict[str, Any] = {
                "domain": domain,
                "successful": ok,
                "failed": failed,
                "due": _stamp(due_at(day, domain, delay=cfg.delay, spread=cfg.spread)),
                "deliveries": [
                    {
                        "uri": d.uri,
                        "state": d.state,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                        "next_attempt": _epoch_stamp(d.next_attempt),
                        "delivered_at": _epoch_stamp(d.delivered_at),
                    }
                    for d in deliveries
                    if d.domain == domain
                ],
            }
            frozen = await store.frozen(day, domain)
            if frozen is not None:
                item["report_id"] = frozen.report_id
            elif cfg.submitter:
                item["report_id"] = report_id(day, domain, cfg.submitter, await store.instance())
            if cfg.suppressed(domain):
                item["suppressed"] = True
            domains.append(item)
        days.append({"day": day.isoformat(), "label": label, "domains": domains})
    if as_json:
        print(json.dumps({"now": _stamp(now), "configured": True, "days": days}, indent=2))
        return 0
    for entry in days:
        print(f"{entry['day']} ({entry['label']}): {len(entry['domains'])} report domains")
        for item in entry["domains"]:
            note = " (suppressed)" if item.get("suppressed") else ""
            print(
                f"  {item['domain']}: {item['successful']} successful, {item['failed']} failed"
                f" sessions; report due {item['due']}{note}"
            )
            for d in item["deliveries"]:
                print(f"    {d['uri']}: {_describe(d)}")
    return 0


async def show(
    config: Config, store: ReportStore, domain: str, day: date | None, *, as_json: bool
) -> int:
    cfg = config.tlsrpt
    if cfg.submitter is None:
        raise ConfigError("tlsrpt.submitter: required to build a report")
    now = clock_from_env()()
    day = day or utc_day(now) - timedelta(days=1)
    reporter = _reporter()(cfg, store, _NoDns(), clock=lambda: now)
    report = await reporter.build(day, domain.lower().removesuffix("."))
    if report is None:
        print(f"tlspolicy: no TLSRPT data for {domain} on {day}", file=sys.stderr)
        return 1
    if not as_json:
        print(f"# report for {domain} on {day}, as it is or will be sent", file=sys.stderr)
    sys.stdout.write(format_report(report).decode("utf-8") + "\n")
    return 0


async def send(
    config: Config, store: ReportStore, day: date | None, domain: str | None, *, dry_run: bool
) -> int:
    cfg = config.tlsrpt
    if cfg.submitter is None:
        raise ConfigError("tlsrpt.submitter: required to send reports")
    dns = ResolverClient(nameservers(config), timeout=config.dns.timeout)
    reporter = _reporter()(cfg, store, dns, clock=clock_from_env())
    attempts = await reporter.run_once(day=day, domain=domain, force=True, dry_run=dry_run)
    for a in attempts:
        detail = f": {a.detail}" if a.detail else ""
        print(f"{a.day} {a.domain} {a.uri or '-'} {a.outcome}{detail}")
    if not attempts:
        print("nothing to send")
    return EXIT_TEMPFAIL if any(a.outcome in ("failed", "gave-up") for a in attempts) else 0


class _NoDns:
    """``show`` builds reports only; it never looks anything up."""

    async def query(self, name: str, rdtype: str, *, trace: Any = None) -> Any:
        raise AssertionError("show does not query DNS")

    async def aclose(self) -> None:
        return None


def _reporter() -> type[Reporter]:
    """The reporter class, imported when a command needs it: its mail and DKIM libraries
    cost every other command (``serve`` above all) memory and start-up time."""
    from tlspolicy.tlsrpt.reporter import Reporter  # noqa: PLC0415

    return Reporter


def _describe(d: dict[str, Any]) -> str:
    if d["state"] == "sent":
        return f"sent {d['delivered_at']} ({d['attempts']} attempts)"
    if d["state"] == "failed":
        return f"failed after {d['attempts']} attempts: {d['last_error']}"
    if d["attempts"]:
        return f"waiting: next attempt {d['next_attempt']}, last error: {d['last_error']}"
    return "waiting: not tried yet"


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch_stamp(seconds: float | None) -> str | None:
    return None if seconds is None else _stamp(datetime.fromtimestamp(seconds, UTC))
