from __future__ import annotations

import pytest

from tlspolicy.check.findings import Status
from tlspolicy.check.stspolicy import check_coverage, check_policy
from tlspolicy.mtasts.policy import parse_policy

GOOD = (
    "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\n"
    "max_age: 604800\r\n"
)


def by_check(findings: list, check: str) -> list[tuple[Status, str]]:  # type: ignore[type-arg]
    return [(f.status, f.message) for f in findings if f.check == check]


def test_stspolicy_good_policy_is_all_ok() -> None:
    policy, findings = check_policy(GOOD)
    assert policy is not None and policy.max_age == 604800
    assert {f.status for f in findings} == {Status.OK}
    assert by_check(findings, "mta-sts-policy.grammar") == [(Status.OK, "valid (5 lines)")]
    assert by_check(findings, "mta-sts-policy.max-age") == [
        (Status.OK, "max_age 604800 s (7 days)")
    ]


def body(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


V, M, X, A = "version: STSv1", "mode: enforce", "mx: a.example", "max_age: 86400"
INVALID = {
    "space-colon": (body(V, "mode : enforce", X, A), "line 2: whitespace before ':'"),
    "blank": (body(V, "", M, X, A), "line 2: blank line"),
    "ip": (body(V, M, "mx: 192.0.2.1", A), "line 3: bad mx pattern '192.0.2.1'"),
    "wildcard": (body(V, M, "mx: *.*.example", A), "wildcard is only allowed"),
    "max-age-digits": (body(V, M, X, "max_age: 99999999999"), "1 to 10 digits"),
    "mode": (body(V, "mode: strict", X, A), "mode must be enforce"),
    "no-version": (body(M, X, A), "missing version"),
}


@pytest.mark.parametrize(("text", "words"), INVALID.values(), ids=INVALID.keys())
def test_stspolicy_invalid_policy_names_the_line(text: str, words: str) -> None:
    policy, findings = check_policy(text)
    assert policy is None
    (status, message), *_ = by_check(findings, "mta-sts-policy.grammar")
    assert status is Status.ERROR
    assert words in message
    assert "senders treat the domain as without MTA-STS" in message


def test_stspolicy_max_age_over_the_maximum_is_clamped_with_a_warning() -> None:
    policy, findings = check_policy(body(V, M, X, "max_age: 40000000"))
    assert policy is not None and policy.max_age == 31557600
    assert by_check(findings, "mta-sts-policy.adjusted") == [
        (Status.WARNING, "max_age 40000000 clamped to 31557600 (RFC 8461 §3.2 maximum)")
    ]


def test_stspolicy_line_notes_the_parser_accepts() -> None:
    text = "version: STSv1\r\n" + body(
        M, "Mx: a.example", "mx: b.example", "foo: bar", "mode: none", "max_age: 3600"
    )
    policy, findings = check_policy(text)
    assert policy is not None
    notes = [m for _, m in by_check(findings, "mta-sts-policy.lines")]
    assert notes == [
        "mixed line endings (1 CRLF, 6 LF)",
        "line 3: field 'Mx' is not 'mx' (field names are case-sensitive, so senders ignore it)",
        "line 5: unknown field 'foo' (senders ignore it)",
        "line 6: second 'mode' field is ignored (the first wins)",
    ]
    assert by_check(findings, "mta-sts-policy.max-age")[0][0] is Status.WARNING


@pytest.mark.parametrize(
    ("mode", "status"), [("testing", Status.WARNING), ("none", Status.WARNING)]
)
def test_stspolicy_mode_other_than_enforce_is_a_warning(mode: str, status: Status) -> None:
    _, findings = check_policy(f"version: STSv1\nmode: {mode}\nmx: a.example\nmax_age: 86400\n")
    assert by_check(findings, "mta-sts-policy.mode")[0][0] is status


def test_stspolicy_coverage_errors_for_uncovered_mx_and_warns_for_unused_pattern() -> None:
    policy = parse_policy(GOOD)
    findings = check_coverage(policy, ["mx1.example.com", "mail.example.net", "a.b.example.net"])
    cover = {f.subject: f.status for f in findings if f.check == "mta-sts-policy.mx-coverage"}
    assert cover == {
        "mx1.example.com": Status.OK,
        "mail.example.net": Status.OK,
        "a.b.example.net": Status.ERROR,  # the wildcard covers exactly one label
    }
    assert not [f for f in findings if f.check == "mta-sts-policy.unused-pattern"]
    unused = check_coverage(policy, ["mx1.example.com"])
    assert [
        (f.subject, f.status) for f in unused if f.check == "mta-sts-policy.unused-pattern"
    ] == [("*.example.net", Status.WARNING)]


def test_stspolicy_coverage_in_testing_is_a_warning_and_none_is_skipped() -> None:
    testing = parse_policy(GOOD.replace("enforce", "testing"))
    assert next(f.status for f in check_coverage(testing, ["other.example"])) is Status.WARNING
    assert (
        check_coverage(parse_policy("version: STSv1\nmode: none\nmax_age: 1\n"), ["x.example"])
        == []
    )
