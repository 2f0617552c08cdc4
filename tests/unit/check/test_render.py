from __future__ import annotations

import json

from tests.schemas.check_report import validate_check_report
from tlspolicy.check.findings import Finding, Report, Section, Status
from tlspolicy.check.render import headline, render_human, render_json, render_monitoring

GOOD = [
    Finding(Section.MX, "mx.records", Status.OK, "1 MX host, DNSSEC secure", "", ("MX 10 mx",)),
    Finding(Section.SMTP, "smtp.starttls", Status.OK, "STARTTLS TLSv1.3", "mx[192.0.2.1]"),
]
CERTS = {"certificates": [{"host": "mx", "address": "192.0.2.1", "days_left": 30}]}


def test_render_all_green_headline_and_table() -> None:
    report = Report.build("d.example", GOOD, facts=CERTS)
    text = render_human(report)
    assert text.splitlines()[:2] == [
        "✔ d.example: all checks passed",
        "  (0 errors, 0 warnings, 2 ok)",
    ]
    assert "MX\n  ✔ 1 MX host, DNSSEC secure\n" in text
    assert "  ✔ mx[192.0.2.1]: STARTTLS TLSv1.3" in text
    assert "MX 10 mx" not in text and "      MX 10 mx" in render_human(report, verbose=True)


def test_render_first_line_names_the_fault() -> None:
    bad = Finding(Section.DANE, "dane.match", Status.ERROR, "no TLSA record matches", "mx")
    report = Report.build("d.example", [*GOOD, bad])
    assert headline(report) == "✗ d.example: fix first: DANE: mx: no TLSA record matches"
    assert "  ✗ mx: no TLSA record matches" in render_human(report)


def test_render_json_stable_keys() -> None:
    report = Report.build("d.example", GOOD, facts=CERTS)
    data = json.loads(render_json(report))
    assert list(data) == [
        "version", "domain", "status", "exit_status", "unknown", "first_fix", "counts",
        "sections", "facts",
    ]  # fmt: skip
    assert (data["status"], data["exit_status"], data["first_fix"]) == ("ok", 0, None)
    assert [s["section"] for s in data["sections"]] == ["mx", "smtp"]
    validate_check_report(data)
    bad = Finding(Section.DANE, "dane.match", Status.ERROR, "no match", "mx")
    validate_check_report(json.loads(render_json(Report.build("d.example", [*GOOD, bad]))))
    validate_check_report(json.loads(render_json(Report.build("d.example", [], unknown="x"))))


def test_render_monitoring_line_and_perfdata() -> None:
    soon = Finding(Section.SMTP, "smtp.expiry", Status.WARNING, "expires in 5 days | soon", "mx")
    line = render_monitoring(Report.build("d.example", [*GOOD, soon], facts=CERTS))
    assert line == (
        "TLSPOLICY WARNING - d.example: 0 errors, 1 warning; SMTP STARTTLS: mx: expires in 5 "
        "days / soon | 'mx[192.0.2.1]_days'=30;14;0"
    )
    assert render_monitoring(Report.build("d.example", GOOD)) == (
        "TLSPOLICY OK - d.example: all checks passed"
    )
    unknown = render_monitoring(Report.build("d.example", [], unknown="no resolver"))
    assert unknown == "TLSPOLICY UNKNOWN - d.example: check could not run: no resolver"
