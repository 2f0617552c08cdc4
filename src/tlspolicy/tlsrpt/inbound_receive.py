"""Take in one report that someone sent us, whichever way it came, into the store.

The orchestration around the pure parts (``inbound.py``, ``inbound_mail.py``); its I/O
comes in as a ``DnsClient`` (DKIM keys) and a ``ReportStore``. Rules kept here:

* Every report that arrives becomes one store row with its verdict, so what was refused
  is on record (and counted by the metrics) as well as what was accepted.
* Mail (RFC 8460 §3): the DKIM keys of the signatures by the reporting domain are looked
  up with our validating DNS client (``<selector>._domainkey.<domain>`` TXT) before
  dkimpy runs, and dkimpy gets exactly those answers. A mail without a valid signature
  by the reporting domain is ``unsigned``: kept aside (the message, gzipped, in its row)
  and logged, never counted. A DNS failure (SERVFAIL, timeout) is not a verdict on the
  signature: ``DnsError`` goes up, so ``tlsrpt receive`` asks Postfix to retry.
* The raw report of an accepted one is kept gzipped: as received when it came gzipped.
* ``ReportStoreError`` goes up too: the caller answers "try later" (exit 75, HTTP 503).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import InboundReportError
from tlspolicy.tlsrpt.inbound import (
    MAX_COMPRESSED_BYTES,
    InboundReport,
    Kind,
    Transport,
    Verdict,
    compress_raw,
    parse_report,
    report_json,
)
from tlspolicy.tlsrpt.inbound_mail import (
    find_report,
    txt_key,
    verify_dkim,
    wanted_signatures,
)
from tlspolicy.tlsrpt.store import InboundItem, ReportStore

log = logging.getLogger("tlspolicy.tlsrpt.inbound")


@dataclass(frozen=True, slots=True)
class Received:
    """What became of one received report."""

    verdict: str
    reason: str = ""
    report: InboundReport | None = None

    @property
    def counted(self) -> bool:
        return self.verdict in (Verdict.ACCEPTED, Verdict.DUPLICATE)


async def receive_body(
    body: bytes, kind: Kind, store: ReportStore, *, transport: Transport, now: float
) -> Received:
    """Validate and store a report body (HTTPS, a file, or the part of a signed mail)."""
    try:
        report = parse_report(report_json(body, kind))
    except InboundReportError as exc:
        raw = b""  # kept for a report that is wrong, not for one that is too large
        if exc.verdict == Verdict.INVALID:
            raw = compress_raw(body) if kind is Kind.JSON else body
        if len(raw) > MAX_COMPRESSED_BYTES:
            raw = b""
        await store.add_inbound(
            InboundItem(transport, exc.verdict, now, exc.reason, raw=raw or None)
        )
        log.warning("TLSRPT report by %s refused: %s: %s", transport, exc.verdict, exc.reason)
        return Received(exc.verdict, exc.reason)
    raw = body if kind is Kind.GZIP else compress_raw(body)
    return await _store_valid(store, report, raw, transport=transport, now=now)


async def receive_mail(
    message: bytes,
    store: ReportStore,
    dns: DnsClient,
    *,
    now: float,
    transport: Transport = Transport.MAIL,
    strict: bool = False,
) -> Received:
    """Find, DKIM-check, validate and store the report in one mail (see the module doc).

    Raises:
        DnsError: a DKIM key could not be looked up (temporary).
        ReportStoreError: the store failed (temporary).
    """
    try:
        found = find_report(message)
    except InboundReportError as exc:
        await store.add_inbound(InboundItem(transport, exc.verdict, now, exc.reason))
        log.warning("mail by %s is no TLSRPT report: %s", transport, exc.reason)
        return Received(exc.verdict, exc.reason)
    keys: dict[str, bytes | None] = {}
    for sig in wanted_signatures(found):
        answer = await dns.query(sig.key_name, "TXT")
        texts = [txt_key(r.strings) for r in answer.records if isinstance(r, TxtRecord)]
        keys[sig.key_name] = next((t for t in texts if b"p=" in t), texts[0] if texts else None)
    dkim = verify_dkim(message, found, keys, strict=strict)
    if not dkim.ok:
        reason = f"from {found.reporting_domain or '?'}: {dkim.reason}"
        raw = compress_raw(message)
        await store.add_inbound(
            InboundItem(transport, Verdict.UNSIGNED, now, reason[:2048], raw=raw)
        )
        log.warning(
            "TLSRPT mail %s not counted, kept aside: no valid DKIM signature (RFC 8460 §3) %s",
            found.message_id or "(no Message-ID)", reason,
        )  # fmt: skip
        return Received(Verdict.UNSIGNED, reason)
    try:
        report = parse_report(report_json(found.body, found.kind))
    except InboundReportError as exc:
        await store.add_inbound(
            InboundItem(transport, exc.verdict, now, exc.reason, raw=compress_raw(message))
        )
        log.warning("TLSRPT mail %s refused: %s: %s", found.message_id, exc.verdict, exc.reason)
        return Received(exc.verdict, exc.reason)
    raw = found.body if found.kind is Kind.GZIP else compress_raw(found.body)
    return await _store_valid(store, report, raw, transport=transport, now=now, signer=dkim.signer)


async def _store_valid(
    store: ReportStore,
    report: InboundReport,
    raw: bytes,
    *,
    transport: Transport,
    now: float,
    signer: str | None = None,
) -> Received:
    verdict = await store.add_inbound(
        InboundItem(transport, Verdict.ACCEPTED, now, report=report, raw=raw, signer=signer)
    )
    what = "stored" if verdict == Verdict.ACCEPTED else "already stored, not counted again"
    log.info(
        "TLSRPT report %s from %s (%s) by %s %s: %d policies, domains %s",
        report.report_id, report.organization, report.day, transport, what,
        len(report.policies), ", ".join(report.domains) or "-",
    )  # fmt: skip
    return Received(verdict, "" if verdict == Verdict.ACCEPTED else "duplicate", report)
