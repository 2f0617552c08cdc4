"""``tlspolicy tlsrpt receive|import|received``: reports other senders send about our domains.

``receive`` reads one mail on stdin, for a Postfix ``pipe(8)`` transport or an alias
(``docs/tlsrpt-inbound.md``). Its exit status follows sendmail's (``sysexits.h``), which
Postfix understands: 75 (EX_TEMPFAIL, Postfix keeps the mail and tries again) when the
store or a DKIM key look-up failed, or the [mail] extra is missing; 0 for everything else,
also for a mail that is no report or is refused (logged and on record in the store): a
bounce would go to a reporting robot that reads none.

``import`` takes files (``.json``, ``.json.gz``, ``.eml``; mail is DKIM-checked as
``receive`` does): exit 0 when every file was stored (or was already), 1 when one was
refused, 75 when the store or DNS failed. ``received`` explains what was received.
All read ``TLSPOLICY_TLSRPT_NOW`` as "now" when it is set (tests only, see runtime.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from tlspolicy.config import Config
from tlspolicy.dnsstub.client import DnsClient, ResolverClient
from tlspolicy.errors import DnsError, ReportStoreError
from tlspolicy.server.app import nameservers
from tlspolicy.server.logsetup import setup_logging
from tlspolicy.tlsrpt.aggregate import utc_day
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.inbound import Kind, Transport, kind_of_name
from tlspolicy.tlsrpt.inbound_explain import explain, render
from tlspolicy.tlsrpt.inbound_mail import MAX_MESSAGE_BYTES
from tlspolicy.tlsrpt.inbound_receive import Received, receive_body, receive_mail
from tlspolicy.tlsrpt.runtime import clock_from_env
from tlspolicy.tlsrpt.store import ReportStore

EX_OK = 0
EX_REFUSED = 1
EX_TEMPFAIL = 75  # sysexits.h: Postfix defers the mail and tries again
SECONDS_PER_DAY = 86400.0
MAIL_EXTRA_MISSING = (
    "tlspolicy tlsrpt {action}: checking DKIM signatures (RFC 8460 §3) needs the Python"
    " package dkim (dkimpy), which is not installed: install the [mail] extra"
    " (pip install 'postfix-tlspolicy[mail]') or Debian's python3-dkim"
)

log = logging.getLogger("tlspolicy.tlsrpt.inbound")


async def run(
    config: Config, args: argparse.Namespace, *, drop_privileges: Callable[[Config], None]
) -> int:
    """``drop_privileges``: ``tlsrpt_commands``' (as root: become ``server.user``)."""
    setup_logging(config.server.log_level, config.server.log_format)
    if args.action != "received" and importlib.util.find_spec("dkim") is None:
        needs_mail = args.action == "receive" or any(
            kind_of_name(f) is None for f in getattr(args, "files", ())
        )
        if needs_mail:
            print(MAIL_EXTRA_MISSING.format(action=args.action), file=sys.stderr)
            return EX_TEMPFAIL
    message = _read_stdin() if args.action == "receive" else b""
    drop_privileges(config)
    store = open_store(config.tlsrpt)
    dns: DnsClient | None = None
    try:
        await store.open()
        if args.action == "received":
            return await received(config, store, args.domain, args.since, as_json=args.json)
        dns = ResolverClient(nameservers(config), timeout=config.dns.timeout)
        if args.action == "receive":
            return await receive(config, store, dns, message)
        return await import_files(config, store, dns, args.files)
    except (ReportStoreError, DnsError) as exc:
        print(f"tlspolicy tlsrpt {args.action}: try again later: {exc}", file=sys.stderr)
        log.error("TLSRPT %s: try again later: %s", args.action, exc)
        return EX_TEMPFAIL
    finally:
        if dns is not None:
            await dns.aclose()
        await store.aclose()


def _read_stdin() -> bytes:
    """At most one byte more than a message may have (``find_report`` refuses it)."""
    return sys.stdin.buffer.read(MAX_MESSAGE_BYTES + 1)


def _read_file(path: Path) -> bytes:
    """At most one byte more than a report or message may have (it is refused then)."""
    with path.open("rb") as file:
        return file.read(MAX_MESSAGE_BYTES + 1)


async def receive(config: Config, store: ReportStore, dns: DnsClient, message: bytes) -> int:
    now = clock_from_env()().timestamp()
    result = await receive_mail(
        message, store, dns, now=now, strict=config.tlsrpt.inbound_dkim_strict
    )
    await _purge(config, store, now)
    print(_line("stdin", result))
    return EX_OK


async def import_files(config: Config, store: ReportStore, dns: DnsClient, files: list[str]) -> int:
    now = clock_from_env()().timestamp()
    status = EX_OK
    for name in files:
        path = Path(name)
        try:
            data = _read_file(path)
        except OSError as exc:
            print(f"{name}: cannot read: {exc.strerror}", file=sys.stderr)
            status = EX_REFUSED
            continue
        kind = kind_of_name(path.name)
        if kind is None:
            result = await receive_mail(
                data, store, dns, now=now, transport=Transport.FILE,
                strict=config.tlsrpt.inbound_dkim_strict,
            )  # fmt: skip
        else:
            if kind is Kind.JSON and data[:2] == b"\x1f\x8b":
                kind = Kind.GZIP  # a gzip file named .json
            result = await receive_body(data, kind, store, transport=Transport.FILE, now=now)
        print(_line(name, result))
        if not result.counted:
            status = EX_REFUSED
    await _purge(config, store, now)
    return status


async def _purge(config: Config, store: ReportStore, now: float) -> None:
    await store.purge_inbound_before(now - config.tlsrpt.inbound_keep_days * SECONDS_PER_DAY)


def _line(name: str, result: Received) -> str:
    if result.report is not None:
        r = result.report
        return f"{name}: {result.verdict}: {r.organization} {r.report_id} ({r.day})"
    return f"{name}: {result.verdict}: {result.reason}"


async def received(
    config: Config, store: ReportStore, domain: str | None, since_days: int, *, as_json: bool
) -> int:
    today = utc_day(clock_from_env()())
    since = today - timedelta(days=since_days - 1)
    wanted = domain.lower().removesuffix(".") if domain else None
    explanation = explain(
        await store.received_policies(since, wanted),
        await store.received_failures(since, wanted),
        since=since,
    )
    if as_json:
        print(json.dumps(explanation, indent=2))
    else:
        print(render(explanation))
    return EX_OK
