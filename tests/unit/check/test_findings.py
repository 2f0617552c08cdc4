from __future__ import annotations

from tlspolicy.check.findings import ExitStatus, Finding, Report, Section, Status


def f(section: Section, status: Status, check: str = "x.y") -> Finding:
    return Finding(section, check, status, f"{section.value} {status.value}")


def test_findings_exit_status_follows_the_worst_status() -> None:
    assert Report.build("d", [f(Section.MX, Status.OK)]).exit_status is ExitStatus.OK
    assert Report.build("d", [f(Section.MX, Status.SKIPPED)]).exit_status is ExitStatus.OK
    warn = [f(Section.MX, Status.OK), f(Section.DANE, Status.WARNING)]
    assert Report.build("d", warn).exit_status is ExitStatus.WARNING
    err = [*warn, f(Section.TLSRPT, Status.ERROR)]
    assert Report.build("d", err).exit_status is ExitStatus.ERROR
    assert Report.build("d", err, unknown="no resolver").exit_status is ExitStatus.UNKNOWN


def test_findings_first_fix_is_the_earliest_error_in_section_order() -> None:
    report = Report.build(
        "d",
        [
            f(Section.TLSRPT, Status.ERROR, "late"),
            f(Section.MX, Status.WARNING, "warn"),
            f(Section.STS_POLICY, Status.ERROR, "early"),
        ],
    )
    assert report.first_fix is not None and report.first_fix.check == "early"
    assert [s for s, _ in report.sections()] == [Section.MX, Section.STS_POLICY, Section.TLSRPT]


def test_findings_first_fix_prefers_any_section_over_senders() -> None:
    report = Report.build(
        "d", [f(Section.SENDERS, Status.ERROR, "senders"), f(Section.DANE, Status.ERROR, "dane")]
    )
    assert report.first_fix is not None and report.first_fix.check == "dane"
    only = Report.build("d", [f(Section.SENDERS, Status.WARNING, "senders")])
    assert only.first_fix is not None and only.first_fix.check == "senders"
    assert Report.build("d", [f(Section.MX, Status.OK)]).first_fix is None


def test_findings_to_json_has_stable_keys() -> None:
    finding = Finding(Section.SMTP, "smtp.expiry", Status.WARNING, "soon", "h[1.2.3.4]", ("e",))
    assert finding.to_json() == {
        "section": "smtp",
        "check": "smtp.expiry",
        "status": "warning",
        "subject": "h[1.2.3.4]",
        "message": "soon",
        "evidence": ["e"],
    }
