"""What the received reports say about our own domains, pure (``tlspolicy tlsrpt received``).

Input: the stored policy and failure rows of accepted reports (``store.ReceivedPolicy``,
``store.ReceivedFailure``). Output: a JSON-ready dict, per policy domain and UTC day:
sessions, successful and failed counts, the failure rate, and the failures grouped by
result type, MX host, receiving IP and reporting organization; per domain the totals and
the problems to fix, worst first. Rules:

* Counts are exact sums of what the reports said; nothing is sampled or capped, so
  ``--json`` totals are the stored totals.
* A problem is a (result type, MX host) pair over the whole period. The one to fix first
  is the one the most organizations report, then the one with the most failed sessions
  (many senders seeing it is the best sign it is ours, not one sender's bug), then the
  name, so the order is stable.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from tlspolicy.tlsrpt.store import ReceivedFailure, ReceivedPolicy

UNKNOWN_HOST = "(no MX host given)"
UNKNOWN_IP = "(no IP given)"
MAX_PROBLEMS = 10  # problems listed per domain


def failure_rate(successful: int, failed: int) -> float:
    total = successful + failed
    return round(failed / total, 6) if total else 0.0


def explain(
    policies: Iterable[ReceivedPolicy], failures: Iterable[ReceivedFailure], *, since: date
) -> dict[str, Any]:
    """The whole explanation (see the module doc); ``since`` is the first day included."""
    days: dict[tuple[str, date], dict[str, Any]] = {}
    orgs: dict[tuple[str, date], set[str]] = defaultdict(set)

    def day_entry(domain: str, day: date) -> dict[str, Any]:
        entry = days.get((domain, day))
        if entry is None:
            entry = days[(domain, day)] = {
                "day": day.isoformat(),
                "successful": 0,
                "failed": 0,
                "by_result_type": defaultdict(int),
                "by_mx_host": defaultdict(int),
                "by_receiving_ip": defaultdict(int),
                "by_organization": defaultdict(int),
            }
        return entry

    for p in policies:
        if p.day < since:
            continue
        entry = day_entry(p.domain, p.day)
        entry["successful"] += p.successful
        entry["failed"] += p.failed
        orgs[(p.domain, p.day)].add(p.organization)
        if p.failed:
            entry["by_organization"][p.organization] += p.failed
    problems: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for f in failures:
        if f.day < since:
            continue
        entry = day_entry(f.domain, f.day)
        host = f.mx_host or UNKNOWN_HOST
        entry["by_result_type"][f.result_type] += f.count
        entry["by_mx_host"][host] += f.count
        entry["by_receiving_ip"][f.receiving_ip or UNKNOWN_IP] += f.count
        problem = problems[f.domain].setdefault(
            (f.result_type, host),
            {"result_type": f.result_type, "mx_host": host, "failed": 0,
             "organizations": set(), "first_day": f.day, "last_day": f.day},
        )  # fmt: skip
        problem["failed"] += f.count
        problem["organizations"].add(f.organization)
        problem["first_day"] = min(problem["first_day"], f.day)
        problem["last_day"] = max(problem["last_day"], f.day)
    domains = []
    total_ok = total_failed = 0
    for domain in sorted({d for d, _ in days}):
        entries = [
            _finished(days[(d, day)], orgs[(d, day)]) for d, day in sorted(days) if d == domain
        ]
        ok = sum(e["successful"] for e in entries)
        failed = sum(e["failed"] for e in entries)
        total_ok += ok
        total_failed += failed
        ranked = sorted(
            problems[domain].values(),
            key=lambda p: (-len(p["organizations"]), -p["failed"], p["result_type"], p["mx_host"]),
        )
        fixes = [_problem(p) for p in ranked[:MAX_PROBLEMS]]
        domains.append({
            "domain": domain,
            "sessions": ok + failed,
            "successful": ok,
            "failed": failed,
            "failure_rate": failure_rate(ok, failed),
            "fix_first": fixes[0]["summary"] if fixes else None,
            "problems": fixes,
            "days": entries,
        })  # fmt: skip
    return {
        "since": since.isoformat(),
        "sessions": total_ok + total_failed,
        "successful": total_ok,
        "failed": total_failed,
        "failure_rate": failure_rate(total_ok, total_failed),
        "domains": domains,
    }


def _finished(entry: dict[str, Any], organizations: set[str]) -> dict[str, Any]:
    ok, failed = entry["successful"], entry["failed"]
    out = {
        "day": entry["day"],
        "sessions": ok + failed,
        "successful": ok,
        "failed": failed,
        "failure_rate": failure_rate(ok, failed),
        "reporting_organizations": sorted(organizations),
    }
    for key in ("by_result_type", "by_mx_host", "by_receiving_ip", "by_organization"):
        counts = entry[key]
        out[key] = {k: counts[k] for k in sorted(counts, key=lambda k: (-counts[k], k))}
    return out


def _problem(p: dict[str, Any]) -> dict[str, Any]:
    orgs = sorted(p["organizations"])
    first: date = p["first_day"]
    n = len(orgs)
    where = "" if p["mx_host"] == UNKNOWN_HOST else f" on {p['mx_host']}"
    summary = (
        f"{p['result_type']}{where}, reported by {n} organization{'s' if n != 1 else ''}"
        f" since {first:%A} {first.isoformat()} ({p['failed']} failed sessions)"
    )
    return {
        "result_type": p["result_type"],
        "mx_host": p["mx_host"],
        "failed": p["failed"],
        "organizations": orgs,
        "first_day": first.isoformat(),
        "last_day": p["last_day"].isoformat(),
        "summary": summary,
    }


def render(explanation: dict[str, Any]) -> str:
    """The explanation as text for people: the thing to fix first on top of each domain."""
    lines = [
        f"TLSRPT reports received since {explanation['since']}: {explanation['sessions']}"
        f" sessions, {explanation['failed']} failed ({explanation['failure_rate']:.2%})"
    ]
    if not explanation["domains"]:
        lines.append("  no reports received for this period")
    for d in explanation["domains"]:
        lines.append("")
        lines.append(
            f"{d['domain']}: {d['sessions']} sessions, {d['failed']} failed"
            f" ({d['failure_rate']:.2%})"
        )
        if d["fix_first"]:
            lines.append(f"  fix first: {d['fix_first']}")
        for p in d["problems"][1:]:
            lines.append(f"  then:      {p['summary']}")
        for e in d["days"]:
            lines.append(
                f"  {e['day']}: {e['sessions']} sessions, {e['failed']} failed"
                f" ({e['failure_rate']:.2%}), from {', '.join(e['reporting_organizations'])}"
            )
            for key, label in (
                ("by_result_type", "result type"),
                ("by_mx_host", "MX host"),
                ("by_receiving_ip", "receiving IP"),
                ("by_organization", "reported by"),
            ):
                if e[key]:
                    parts = ", ".join(f"{k} {v}" for k, v in e[key].items())
                    lines.append(f"    {label}: {parts}")
    return "\n".join(lines)
