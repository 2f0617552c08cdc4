"""The "received reports" section of ``check``: what other senders reported about the domain.

Pure. Input: the explanation of the last ``RECEIVED_DAYS`` days of TLSRPT reports received
for the checked domain (``tlsrpt/inbound_explain.explain``), or why there is none. ``check``
asks whether the setup is right; these reports say whether it works for the senders that
tried it. Rules:

* Failures are warnings, never errors: a report describes the past (the fault may be
  fixed already), and one sender's own bug shows up in it too. The problem most
  organizations report comes first, as in ``tlspolicy tlsrpt received``, so it is the one
  ``first_fix`` picks when nothing else is wrong.
* No store, an empty or unreachable store, or no report for the domain is a line that
  says so, never a failure of the check: inbound reports are optional.
"""

from __future__ import annotations

from typing import Any

from tlspolicy.check.findings import Finding, Section, Status

RECEIVED_DAYS = 7  # the days of received reports ``check`` shows
MAX_PROBLEM_FINDINGS = 3  # problems shown; ``tlspolicy tlsrpt received`` lists them all
CHECK_REPORTS = "received.reports"
CHECK_PROBLEM = "received.problem"


def check_unavailable(why: str) -> list[Finding]:
    """The line for "nothing to show": no store configured, or it could not be read."""
    return [Finding(Section.RECEIVED, CHECK_REPORTS, Status.SKIPPED, why)]


def check_received(domain: str, explanation: dict[str, Any]) -> list[Finding]:
    """Findings from ``explain``'s output for ``domain`` (other domains in it are ignored).

    Returns:
        a SKIPPED line when no report covered the domain; else one warning per problem
        (worst first, at most ``MAX_PROBLEM_FINDINGS``) and the totals line (a warning when
        any session failed, else OK), with the per-day counts as evidence.
    """
    entry = next((d for d in explanation["domains"] if d["domain"] == domain), None)
    since = explanation["since"]
    if entry is None or not entry["sessions"]:
        return check_unavailable(f"no TLSRPT report received for {domain} since {since}")
    findings = [
        Finding(
            Section.RECEIVED,
            CHECK_PROBLEM,
            Status.WARNING,
            problem["summary"],
            evidence=(f"reported by {', '.join(problem['organizations'])}",),
        )
        for problem in entry["problems"][:MAX_PROBLEM_FINDINGS]
    ]
    organizations = sorted({o for day in entry["days"] for o in day["reporting_organizations"]})
    count = len(organizations)
    message = (
        f"{entry['sessions']} sessions since {since}, {entry['failed']} failed"
        f" ({entry['failure_rate']:.2%}), reported by {count}"
        f" organization{'s' if count != 1 else ''}"
    )
    evidence = tuple(
        f"{day['day']}: {day['sessions']} sessions, {day['failed']} failed,"
        f" from {', '.join(day['reporting_organizations'])}"
        for day in entry["days"]
    )
    status = Status.WARNING if entry["failed"] else Status.OK
    findings.append(Finding(Section.RECEIVED, CHECK_REPORTS, status, message, evidence=evidence))
    return findings
