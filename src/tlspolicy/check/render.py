"""The three output forms of a ``Report``: the human table, ``--json``, ``--monitoring``. Pure.

* Human: the first line names the one thing to fix first (or says all is well), then one
  line per check grouped by section with ✔ / ! / ✗ (``-`` not checked); ``verbose`` adds the
  evidence under each line.
* JSON: stable keys (``JSON_VERSION`` changes when they do).
* Monitoring (Nagios/Icinga plugin guidelines): one line ``TLSPOLICY <STATE> - <text> |
  <perfdata>``; perfdata are the days until each certificate expires, with the warning and
  critical thresholds; the exit status is the same 0/1/2/3.
"""

from __future__ import annotations

import json
from typing import Any

from tlspolicy.check.certs import EXPIRY_WARNING_DAYS
from tlspolicy.check.findings import TITLES, ExitStatus, Finding, Report, Status

JSON_VERSION = 1
MARKS = {Status.OK: "✔", Status.WARNING: "!", Status.ERROR: "✗", Status.SKIPPED: "-"}
STATES = {
    ExitStatus.OK: "OK",
    ExitStatus.WARNING: "WARNING",
    ExitStatus.ERROR: "CRITICAL",
    ExitStatus.UNKNOWN: "UNKNOWN",
}


def headline(report: Report) -> str:
    """The first line: what to fix first, or that all is well."""
    if report.unknown:
        return f"? {report.domain}: the check could not run: {report.unknown}"
    first = report.first_fix
    if first is None:
        return f"✔ {report.domain}: all checks passed"
    return f"{MARKS[first.status]} {report.domain}: fix first: {_line(first, with_section=True)}"


def render_human(report: Report, *, verbose: bool = False) -> str:
    counts = ", ".join(
        _plural(report.count(s), name)
        for s, name in ((Status.ERROR, "error"), (Status.WARNING, "warning"), (Status.OK, "ok"))
    )
    lines = [headline(report), f"  ({counts})"]
    for section, findings in report.sections():
        lines.append("")
        lines.append(TITLES[section])
        for finding in findings:
            lines.append(f"  {MARKS[finding.status]} {_line(finding)}")
            if verbose:
                lines += [f"      {item}" for item in finding.evidence]
    return "\n".join(lines)


def to_json(report: Report) -> dict[str, Any]:
    first = report.first_fix
    return {
        "version": JSON_VERSION,
        "domain": report.domain,
        "status": STATES[report.exit_status].lower(),
        "exit_status": int(report.exit_status),
        "unknown": report.unknown or None,
        "first_fix": first.to_json() if first is not None else None,
        "counts": {s.value: report.count(s) for s in Status},
        "sections": [
            {
                "section": section.value,
                "title": TITLES[section],
                "findings": [f.to_json() for f in findings],
            }
            for section, findings in report.sections()
        ],
        "facts": report.facts,
    }


def render_json(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False)


def render_monitoring(report: Report) -> str:
    state = STATES[report.exit_status]
    if report.unknown:
        text = f"{report.domain}: check could not run: {report.unknown}"
    elif report.first_fix is None:
        text = f"{report.domain}: all checks passed"
    else:
        errors, warnings = report.count(Status.ERROR), report.count(Status.WARNING)
        first = _line(report.first_fix, with_section=True)
        text = (
            f"{report.domain}: {_plural(errors, 'error')}, {_plural(warnings, 'warning')}; {first}"
        )
    perf = [
        f"'{c['host']}[{c['address']}]_days'={c['days_left']};{EXPIRY_WARNING_DAYS};0"
        for c in report.facts.get("certificates", [])
    ]
    text = text.replace("|", "/")  # "|" starts the perfdata
    return f"TLSPOLICY {state} - {text}" + (f" | {' '.join(perf)}" if perf else "")


def _line(finding: Finding, *, with_section: bool = False) -> str:
    parts = [TITLES[finding.section]] if with_section else []
    if finding.subject:
        parts.append(finding.subject)
    parts.append(finding.message)
    return ": ".join(parts)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 or word == "ok" else f"{count} {word}s"
