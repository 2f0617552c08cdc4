from __future__ import annotations

import pytest

from tlspolicy.check.findings import Status
from tlspolicy.check.stsrecord import check_sts_record
from tlspolicy.dnsstub.data import DnsAnswer, TxtRecord

NAME = "_mta-sts.example.com"


def answer(*texts: str | tuple[str, ...], cnames: tuple[tuple[str, str], ...] = ()) -> DnsAnswer:
    records = tuple(
        TxtRecord(tuple(s.encode() for s in (t if isinstance(t, tuple) else (t,)))) for t in texts
    )
    return DnsAnswer(NAME, "TXT", "NOERROR", True, cnames, NAME, records, 300)


@pytest.mark.parametrize(
    ("texts", "words"),
    [
        pytest.param(["v=STSv1; id=a b;"], "space inside the id 'a b'", id="space-in-id"),
        pytest.param(["v=STSv1; id=" + "x" * 33], "id has 33 characters, at most 32", id="long-id"),
        pytest.param(["v=STSv1; id=2024-01-01;"], "characters other than letters", id="dash-id"),
        pytest.param(["v=STSv1; foo=bar;"], "no id field", id="no-id"),
        pytest.param(["v=STSv1; id=a;", "v=STSv1; id=b;"], "2 v=STSv1 records", id="two"),
        pytest.param(["v=stsv1; id=a;"], "wrong case", id="case"),
        pytest.param(["v=STSv2; id=a;"], "wrong version 'STSv2'", id="version"),
        pytest.param([" v=STSv1; id=a;"], "starts with a space", id="leading-space"),
        pytest.param(["v = STSv1; id=a;"], "spaces around '='", id="spaces-equals"),
        pytest.param(["v=STSv1 id=a;"], "no ';' after v=STSv1", id="no-semicolon"),
    ],
)
def test_stsrecord_explains_each_deviation(texts: list[str], words: str) -> None:
    record, candidate, findings = check_sts_record(NAME, answer(*texts))
    assert record is None and candidate
    (finding,) = findings
    assert finding.status is Status.ERROR
    assert words in finding.message


def test_stsrecord_valid_record_is_ok_and_joined_across_strings() -> None:
    record, candidate, findings = check_sts_record(NAME, answer(("v=STSv1; id=", "abc123;")))
    assert record is not None and record.id == "abc123" and candidate
    assert [(f.status, f.message) for f in findings] == [(Status.OK, "valid, id=abc123")]


def test_stsrecord_space_before_semicolon_is_a_warning() -> None:
    record, _, findings = check_sts_record(NAME, answer("v=STSv1 ; id=abc"))
    assert record is not None
    assert [f.status for f in findings] == [Status.OK, Status.WARNING]
    assert "erratum 6285" in findings[1].message


def test_stsrecord_no_record_is_not_an_error() -> None:
    record, candidate, findings = check_sts_record(NAME, answer("google-site-verification=x"))
    assert record is None and not candidate
    assert findings[0].status is Status.OK
    assert "does not publish MTA-STS" in findings[0].message


def test_stsrecord_evidence_shows_records_dnssec_and_cnames() -> None:
    _, _, findings = check_sts_record(
        NAME, answer("v=STSv1; id=a", cnames=((NAME, "_mta-sts.provider.example"),))
    )
    assert findings[0].evidence == (
        "TXT 'v=STSv1; id=a'",
        "DNSSEC: secure",
        f"CNAME {NAME} -> _mta-sts.provider.example",
    )
