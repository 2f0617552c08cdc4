from __future__ import annotations

import pytest

from tlspolicy.check.findings import Status
from tlspolicy.check.tlsrptrecord import check_tlsrpt
from tlspolicy.dnsstub.data import DnsAnswer, TxtRecord

NAME = "_smtp._tls.example.com"


def answer(*texts: str) -> DnsAnswer:
    records = tuple(TxtRecord((t.encode(),)) for t in texts)
    return DnsAnswer(NAME, "TXT", "NOERROR", True, (), NAME, records, 300)


def test_tlsrptrecord_valid_record() -> None:
    findings = check_tlsrpt(
        NAME, answer("v=TLSRPTv1; rua=mailto:r@example.com,https://r.example/x")
    )
    assert [(f.check, f.status) for f in findings] == [("tlsrpt.record", Status.OK)]
    assert findings[0].message == "valid, reports to mailto:r@example.com, https://r.example/x"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "v=TLSRPTv1; rua=mailto:no-at-sign",
            "'mailto:no-at-sign' is not usable: not a mail address",
        ),
        ("v=TLSRPTv1; rua=https:no-host", "'https:no-host' is not usable: no host"),
        ("v=TLSRPTv1; rua=ftp://r.example/", "scheme 'ftp'"),
    ],
)
def test_tlsrptrecord_unusable_rua_is_an_error(text: str, words: str) -> None:
    findings = check_tlsrpt(NAME, answer(text))
    rua = [f for f in findings if f.check == "tlsrpt.rua"]
    assert [f.status for f in rua] == [Status.ERROR]
    assert words in rua[0].message


@pytest.mark.parametrize(
    ("texts", "words"),
    [
        (["v=TLSRPTv1; foo=bar"], "no rua field"),
        (
            ["v=TLSRPTv1; rua=mailto:a@b.example", "v=TLSRPTv1; rua=mailto:c@d.example"],
            "2 TLSRPT records",
        ),
        (["v=TLSRPTv1;rua=mailto:a@b.example;;"], "empty"),
        (["v=tlsrptv1; rua=mailto:a@b.example"], "is not 'v=TLSRPTv1;...'"),
    ],
)
def test_tlsrptrecord_broken_record_is_an_error(texts: list[str], words: str) -> None:
    (finding,) = check_tlsrpt(NAME, answer(*texts))
    assert finding.status is Status.ERROR
    assert words in finding.message or "bad field" in finding.message


def test_tlsrptrecord_no_record_is_fine() -> None:
    (finding,) = check_tlsrpt(NAME, answer("v=spf1 -all"))
    assert finding.status is Status.OK and "no TLSRPT record" in finding.message
