"""Gather the facts for ``check`` with the server's own parts and turn them into a Report.

Orchestrator (async): DNS through the app's validating ``DnsClient``, the policy through the
server's ``PolicyFetcher``, DANE discovery through ``dane.lookup.lookup_dane``, the verdict
through ``PolicyService.resolve`` on a memory cache (what the server would answer now), and
each MX address through a ``Prober``. The rules live in the pure modules beside it.

A resolver that does not answer at all (timeout, network error, REFUSED) on the first query
means the check cannot run (exit status 3); SERVFAIL and friends are the domain's faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tlspolicy.check import danematch, mxhosts, received, smtp, stspolicy, stsrecord
from tlspolicy.check.findings import Finding, Report, Section, Status
from tlspolicy.check.senders import check_outcome, host_verdict
from tlspolicy.check.session import ProbeResult
from tlspolicy.check.tlsrptrecord import check_tlsrpt
from tlspolicy.config import Config
from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.dane.lookup import lookup_dane
from tlspolicy.dane.result import DaneResult, HostResult
from tlspolicy.decision.outcome import Outcome
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import DnsAnswer, TlsaRecord
from tlspolicy.errors import DnsError, FetchError, ReportStoreError
from tlspolicy.mtasts.lookup import Fetcher
from tlspolicy.mtasts.policy import Mode, Policy
from tlspolicy.service.service import PolicyService
from tlspolicy.tlsrpt.aggregate import utc_day
from tlspolicy.tlsrpt.backend import open_store
from tlspolicy.tlsrpt.inbound_explain import explain

UNREACHABLE_KINDS = frozenset({"timeout", "network", "refused"})  # the resolver, not the domain
FAMILIES = ("IPv4", "IPv6")


class Prober(Protocol):
    async def probe(self, host: str, address: str) -> ProbeResult: ...


class Parts(Protocol):
    """What ``run_check`` uses of the app (``app.App`` has it; unit tests pass fakes)."""

    @property
    def config(self) -> Config: ...

    @property
    def dns(self) -> DnsClient: ...

    @property
    def fetcher(self) -> Fetcher: ...

    @property
    def service(self) -> PolicyService: ...


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """What to check: ``families`` to probe, ``prober`` None for ``--no-smtp``."""

    families: tuple[str, ...] = FAMILIES
    map_name: str | None = None
    trust_source: str = "system store"


async def run_check(
    app: Parts,
    domain: str,
    options: CheckOptions,
    *,
    prober: Prober | None,
    now: datetime.datetime,
) -> Report:
    """Check ``domain`` (a lowercase A-label); ``prober`` None skips the SMTP probes.

    Returns:
        the report; ``Report.unknown`` is set when the resolver did not answer at all.
    """
    # What the server answers: its whole edge (deadline included), alongside the checks.
    map_name = options.map_name or next(iter(app.config.maps))
    answer = asyncio.create_task(app.service.answer(map_name, domain))
    try:
        return await _collect(
            app, domain, options, prober=prober, now=now, map_name=map_name, answer=answer
        )
    finally:
        if not answer.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await answer


async def _collect(
    app: Parts,
    domain: str,
    options: CheckOptions,
    *,
    prober: Prober | None,
    now: datetime.datetime,
    map_name: str,
    answer: asyncio.Task[Outcome],
) -> Report:
    dns = app.dns
    findings: list[Finding] = []
    facts: dict[str, Any] = {}
    try:
        mx_answer = await dns.query(domain, "MX")
    except DnsError as err:
        if err.kind in UNREACHABLE_KINDS:
            return Report.build(domain, [], unknown=f"the DNS resolver did not answer ({err})")
        findings.append(
            Finding(
                Section.MX,
                "mx.records",
                Status.ERROR,
                f"MX lookup failed: {err.kind}: {err.detail}",
            )
        )
        hosts: list[str] = []
        null_mx = False
    else:
        hosts, null_mx, found = mxhosts.check_mx(domain, mx_answer)
        findings += found
    addresses, sts_answer, rpt_answer, dane, received_findings = await asyncio.gather(
        asyncio.gather(*(_addresses(dns, h) for h in hosts)),
        _txt(dns, f"_mta-sts.{domain}"),
        _txt(dns, f"_smtp._tls.{domain}"),
        lookup_dane(domain, dns),
        received_reports(app.config.tlsrpt, domain, now=now),
    )
    findings += received_findings
    host_addresses: dict[str, dict[str, list[str]]] = {}
    for host, (a, aaaa) in zip(hosts, addresses, strict=True):
        found_addresses, found = mxhosts.check_addresses(host, a, aaaa)
        host_addresses[host] = found_addresses
        findings += found
    (policy, sts_findings), probes = await asyncio.gather(
        _mta_sts(app, domain, sts_answer, hosts),
        _probe_all(prober, hosts, host_addresses, options.families),
    )
    findings += sts_findings
    enforce = policy is not None and policy.mode is Mode.ENFORCE
    certificates: list[dict[str, Any]] = []
    for host in hosts:
        results = probes.get(host, [])
        if prober is None:
            findings.append(smtp.check_not_probed(host, options.families, "not probed (--no-smtp)"))
        elif not results:
            findings.append(smtp.check_not_probed(host, options.families, "no address to probe"))
        for result in results:
            found, cert = smtp.check_probe(
                result,
                now=now,
                pkix_status=Status.ERROR if enforce else Status.WARNING,
                trust_source=options.trust_source,
            )
            findings += found
            if cert is not None:
                certificates.append(cert)
    facts["certificates"] = certificates
    dane_ok = await _dane(dns, dane, probes, findings)
    if isinstance(rpt_answer, DnsError):
        findings.append(
            Finding(
                Section.TLSRPT, "tlsrpt.record", Status.ERROR, f"TXT lookup failed: {rpt_answer}"
            )
        )
    else:
        findings += check_tlsrpt(f"_smtp._tls.{domain}", rpt_answer)
    usable = {h.host for h in dane.hosts if h.tlsa_status == "secure" and h.usable}
    verdicts = [
        host_verdict(
            h, probes.get(h, []), policy, dane_ok.get(h), findings, tlsa_usable=h in usable
        )
        for h in hosts
    ]
    outcome = await answer
    found, answer_facts = check_outcome(
        app.config.profile(map_name),
        map_name,
        outcome.decision,
        verdicts,
        null_mx=null_mx,
        probed=prober is not None,
    )
    findings += found
    facts.update(answer_facts)
    facts["dane"] = dane.to_json()
    facts["mta_sts_mode"] = policy.mode.value if policy is not None else None
    return Report.build(domain, findings, facts=facts)


async def received_reports(
    config: TlsrptConfig, domain: str, *, now: datetime.datetime
) -> list[Finding]:
    """The "received reports" findings: the last ``RECEIVED_DAYS`` days from the store.

    A SQLite store counts as configured once its file exists (``check`` never creates it,
    it may run as any user); PostgreSQL always does. A store that cannot be read gives a
    line saying so: received reports are optional, the check goes on without them.
    """
    exists = await asyncio.to_thread(Path(config.store_path).exists)
    if config.store_backend == "sqlite" and not exists:
        return received.check_unavailable(
            f"no TLSRPT store ({config.store_path} does not exist): nothing received to show"
        )
    since = utc_day(now) - datetime.timedelta(days=received.RECEIVED_DAYS - 1)
    store = open_store(config)
    try:
        await store.open()
        policies = await store.received_policies(since, domain)
        failures = await store.received_failures(since, domain)
    except ReportStoreError as exc:
        return received.check_unavailable(f"TLSRPT store unavailable: {exc}")
    finally:
        with contextlib.suppress(ReportStoreError):
            await store.aclose()
    return received.check_received(domain, explain(policies, failures, since=since))


async def _addresses(
    dns: DnsClient, host: str
) -> tuple[DnsAnswer | DnsError, DnsAnswer | DnsError]:
    async def one(rdtype: str) -> DnsAnswer | DnsError:
        try:
            answer: DnsAnswer = await dns.query(host, rdtype)
        except DnsError as err:
            return err
        return answer

    a, aaaa = await asyncio.gather(one("A"), one("AAAA"))
    return a, aaaa


async def _txt(dns: DnsClient, name: str) -> DnsAnswer | DnsError:
    try:
        answer: DnsAnswer = await dns.query(name, "TXT")
    except DnsError as err:
        return err
    return answer


async def _mta_sts(
    app: Parts, domain: str, answer: DnsAnswer | DnsError, hosts: Sequence[str]
) -> tuple[Policy | None, list[Finding]]:
    name = f"_mta-sts.{domain}"
    if isinstance(answer, DnsError):
        message = f"TXT lookup failed: {answer.kind}: {answer.detail}"
        return None, [
            Finding(Section.STS_RECORD, "mta-sts-record.grammar", Status.ERROR, message, name)
        ]
    record, candidate, findings = stsrecord.check_sts_record(name, answer)
    if not candidate:
        return None, findings
    url = f"https://mta-sts.{domain}/.well-known/mta-sts.txt"
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        text = await app.fetcher.fetch(domain)
    except FetchError as exc:
        message = f"fetch failed ({exc.kind}): {exc.detail}"
        findings.append(
            Finding(Section.STS_POLICY, "mta-sts-policy.fetch", Status.ERROR, message, url)
        )
        return None, findings
    elapsed = round((loop.time() - started) * 1000)
    size = len(text.encode())
    message = f"HTTP 200 text/plain, {size} bytes, {elapsed} ms"
    if record is None:
        message += " (fetched to explain it; senders do not, the TXT record is invalid)"
    findings.append(Finding(Section.STS_POLICY, "mta-sts-policy.fetch", Status.OK, message, url))
    policy, found = stspolicy.check_policy(text)
    findings += found
    if policy is not None and record is not None:  # a broken TXT record: senders never fetch
        findings += stspolicy.check_coverage(policy, hosts)
    return (policy if record is not None else None), findings


async def _probe_all(
    prober: Prober | None,
    hosts: Sequence[str],
    addresses: dict[str, dict[str, list[str]]],
    families: Sequence[str],
) -> dict[str, list[ProbeResult]]:
    if prober is None:
        return {}
    jobs = [
        (host, address)
        for host in hosts
        for family in families
        for address in addresses.get(host, {}).get(family, [])
    ]
    results = await asyncio.gather(*(prober.probe(h, a) for h, a in jobs))
    out: dict[str, list[ProbeResult]] = {}
    for result in results:
        out.setdefault(result.host, []).append(result)
    return out


async def _dane(
    dns: DnsClient, dane: DaneResult, probes: dict[str, list[ProbeResult]], findings: list[Finding]
) -> dict[str, bool | None]:
    findings.append(danematch.check_domain(dane))
    matched: dict[str, bool | None] = {}
    for host in dane.hosts:
        records = await _tlsa(dns, host)
        chain = next((p.tls.chain for p in probes.get(host.host, []) if p.tls), None)
        found = danematch.check_host(host, records, chain)
        findings += found
        match = [f for f in found if f.check == "dane.match"]
        matched[host.host] = None
        if match and match[0].status in (Status.OK, Status.ERROR):
            matched[host.host] = match[0].status is Status.OK
    return matched


async def _tlsa(dns: DnsClient, host: HostResult) -> list[TlsaRecord]:
    if not host.tlsa_name or host.tlsa_status not in ("secure", "insecure"):
        return []
    try:
        answer = await dns.query(host.tlsa_name, "TLSA")
    except DnsError:
        return []
    return [r for r in answer.records if isinstance(r, TlsaRecord)]
