"""The MX RRset and the MX hosts' addresses, with their DNSSEC status. Pure.

Rules kept here: a null MX (RFC 7505) means no mail and nothing to probe; no MX at all
means the domain itself is the implicit MX (RFC 5321 §5.1); an MX target that is a CNAME
is a warning (RFC 2181 §10.3; senders follow it, RFC 7672 §2.2.2 then names the TLSA base);
a host without any address cannot receive mail.
"""

from __future__ import annotations

from tlspolicy.check.findings import Finding, Section, Status
from tlspolicy.dnsstub.data import AddressRecord, DnsAnswer, MxRecord
from tlspolicy.errors import DnsError


def check_mx(domain: str, answer: DnsAnswer) -> tuple[list[str], bool, list[Finding]]:
    """Judge the MX answer.

    Returns:
        (the MX hosts in preference order, whether it is a null MX, the findings).
    """
    evidence = [f"DNSSEC: {answer.status}"]
    evidence += [f"CNAME {owner} -> {target}" for owner, target in answer.cnames]
    records = sorted(
        (r for r in answer.records if isinstance(r, MxRecord)),
        key=lambda r: (r.preference, r.exchange),
    )
    evidence += [f"MX {r.preference} {r.exchange or '.'}" for r in records]
    ev = tuple(evidence)
    if answer.rcode == "NXDOMAIN":
        return [], False, [_f(Status.ERROR, f"{domain} does not exist (NXDOMAIN)", ev)]
    if not records:
        message = f"no MX records: senders deliver to {domain} itself (implicit MX)"
        return [domain], False, [_f(Status.WARNING, message, ev)]
    if len(records) == 1 and records[0].exchange == "":
        return [], True, [_f(Status.OK, "null MX (RFC 7505): the domain accepts no mail", ev)]
    if any(r.exchange == "" for r in records):
        message = "a null MX '.' mixed with other MX records (RFC 7505 §3: publish it alone)"
        return _hosts(records), False, [_f(Status.ERROR, message, ev)]
    hosts = _hosts(records)
    message = f"{len(hosts)} MX host{'s' if len(hosts) != 1 else ''}, DNSSEC {answer.status}"
    return hosts, False, [_f(Status.OK, message, ev)]


def check_addresses(
    host: str, a: DnsAnswer | DnsError, aaaa: DnsAnswer | DnsError
) -> tuple[dict[str, list[str]], list[Finding]]:
    """Judge one host's A and AAAA answers.

    Returns:
        ({"IPv4": [...], "IPv6": [...]}, the findings).
    """
    addresses: dict[str, list[str]] = {"IPv4": [], "IPv6": []}
    parts: list[str] = []
    evidence: list[str] = []
    failures: list[str] = []
    cname = ""
    for family, rdtype, answer in (("IPv4", "A", a), ("IPv6", "AAAA", aaaa)):
        if isinstance(answer, DnsError):
            failures.append(f"{rdtype} lookup failed: {answer.kind}: {answer.detail}")
            continue
        found = [r.address for r in answer.records if isinstance(r, AddressRecord)]
        addresses[family] = found
        if answer.cnames:
            cname = answer.canonical_name
            evidence += [f"CNAME {o} -> {t}" for o, t in answer.cnames]
        if found:
            parts.append(f"{rdtype} {', '.join(found)} ({answer.status})")
            evidence.append(f"{rdtype} {' '.join(found)} DNSSEC {answer.status}")
        else:
            evidence.append(f"no {rdtype} ({answer.rcode}, DNSSEC {answer.status})")
    ev = tuple(evidence + failures)
    findings: list[Finding] = []
    if failures:
        findings.append(_f(Status.ERROR, "; ".join(failures), ev, host, "mx.address"))
    elif not parts:
        findings.append(
            _f(Status.ERROR, "no A or AAAA record: mail cannot reach it", ev, host, "mx.address")
        )
    else:
        if not addresses["IPv6"]:
            parts.append("no AAAA")
        findings.append(_f(Status.OK, "; ".join(parts), ev, host, "mx.address"))
    if cname:
        message = f"MX target is a CNAME to {cname} (RFC 2181 §10.3: point the MX at {cname})"
        findings.append(_f(Status.WARNING, message, ev, host, "mx.cname"))
    return addresses, findings


def _hosts(records: list[MxRecord]) -> list[str]:
    return list(dict.fromkeys(r.exchange for r in records if r.exchange))


def _f(
    status: Status,
    message: str,
    evidence: tuple[str, ...],
    subject: str = "",
    check: str = "mx.records",
) -> Finding:
    return Finding(Section.MX, check, status, message, subject, evidence)
