"""The pure DANE decision helpers: MX planning, verdict aggregation, TTLs."""

from __future__ import annotations

import pytest

from tlspolicy.dane.decision import (
    HostOutcome,
    MxPlan,
    TtlLimits,
    count_tlsa,
    decide,
    describe_error,
    plan_mx,
)
from tlspolicy.dane.result import DaneLevel, HostResult
from tlspolicy.dnsstub.data import DnsAnswer, MxRecord, TlsaRecord
from tlspolicy.errors import DnsError


def mx_answer(*records: MxRecord, rcode: str = "NOERROR", secure: bool = True) -> DnsAnswer:
    return DnsAnswer("example.com", "MX", rcode, secure, (), "example.com", records, 300)


@pytest.mark.parametrize(
    ("answer", "hosts", "implicit", "reason"),
    [
        pytest.param(
            mx_answer(
                MxRecord(20, "b.example"), MxRecord(10, "a.example"), MxRecord(30, "b.example")
            ),
            ("a.example", "b.example"),
            False,
            "",
            id="sorted-deduped",
        ),
        pytest.param(mx_answer(), ("example.com",), True, "", id="nodata-implicit"),
        pytest.param(mx_answer(rcode="NXDOMAIN"), (), False, "NXDOMAIN", id="nxdomain"),
        pytest.param(mx_answer(MxRecord(0, "")), (), False, "null MX", id="null-mx"),
        pytest.param(
            mx_answer(MxRecord(0, ""), MxRecord(5, "a.example")),
            (),
            False,
            "null MX",
            id="null-mx-mixed",
        ),
        pytest.param(
            mx_answer(MxRecord(5, "*.example"), MxRecord(10, "a.example")),
            ("a.example",),
            False,
            "",
            id="wildcard-target-skipped",
        ),
        pytest.param(
            mx_answer(MxRecord(5, "a\\.b.example")),
            (),
            False,
            "no MX target is a valid host name",
            id="only-invalid-targets",
        ),
        pytest.param(
            mx_answer(MxRecord(5, "a" * 63 + ".example"), MxRecord(6, "_mx-.0.example")),
            ("a" * 63 + ".example", "_mx-.0.example"),
            False,
            "",
            id="odd-but-valid-targets-kept",
        ),
    ],
)
def test_plan_mx(answer: DnsAnswer, hosts: tuple[str, ...], implicit: bool, reason: str) -> None:
    plan = plan_mx("example.com", answer)
    assert plan.hosts == hosts
    assert plan.implicit is implicit
    assert reason in plan.reason
    assert plan.secure is True


def test_count_tlsa_reports_first_unusable_reason() -> None:
    records = [
        TlsaRecord(3, 1, 1, bytes(32)),
        TlsaRecord(1, 1, 1, bytes(32)),
        TlsaRecord(3, 1, 9, b""),
    ]
    usable, unusable, why = count_tlsa(records)
    assert (usable, unusable) == (1, 2)
    assert why.startswith("1 1 1: usage 1 (PKIX-EE)")


@pytest.mark.parametrize(
    ("err", "text"),
    [
        pytest.param(
            DnsError("servfail", "EDE 6 DNSSEC Bogus"), "servfail (EDE 6 DNSSEC Bogus)", id="detail"
        ),
        pytest.param(DnsError("servfail", ""), "servfail", id="no-detail"),
        pytest.param(
            DnsError("servfail", "EDE 9 DNSKEY Missing: validation failure <x. MX IN>: crypto"),
            "servfail (EDE 9 DNSKEY Missing)",
            id="ede-text-dropped",
        ),
        pytest.param(
            DnsError("servfail", "EDE 6 DNSSEC Bogus: sig, expired; EDE 22 No Reachable Authority"),
            "servfail (EDE 6 DNSSEC Bogus; EDE 22 No Reachable Authority)",
            id="several-ede",
        ),
        pytest.param(
            DnsError("timeout", "no answer from 127.0.0.1:53 within 1.00 s"),
            "timeout (no answer from 127.0.0.1:53 within 1.00 s)",
            id="timeout-kept",
        ),
    ],
)
def test_describe_error(err: DnsError, text: str) -> None:
    assert describe_error(err) == text


def test_describe_error_full_keeps_ede_text() -> None:
    err = DnsError("servfail", "EDE 6 DNSSEC Bogus: signature crypto failed")
    assert (
        describe_error(err, brief=False) == "servfail (EDE 6 DNSSEC Bogus: signature crypto failed)"
    )


def outcome(
    name: str, *, usable: int = 0, unusable: int = 0, failure: str = "", ttl: int = 300
) -> HostOutcome:
    status = "secure" if usable or unusable else "none"
    result = HostResult(name, "secure", f"_25._tcp.{name}", status, usable, unusable)
    return HostOutcome(result, (ttl,), failure)


def test_decide_reports_first_failure_in_preference_order() -> None:
    plan = MxPlan(("a.example", "b.example", "c.example"), True, 300)
    hosts = [
        outcome("a.example", usable=1),
        outcome("b.example", failure="TLSA lookup failed for b.example: timeout"),
        outcome("c.example", failure="TLSA lookup failed for c.example: servfail"),
    ]
    result = decide(plan, hosts, TtlLimits())
    assert (result.level, result.ttl) == (DaneLevel.TEMP, 0)
    assert result.reason == "TLSA lookup failed for b.example: timeout"
    assert len(result.hosts) == 3


@pytest.mark.parametrize(
    ("mx_secure", "hosts", "level"),
    [
        pytest.param(
            True,
            [outcome("a", usable=1), outcome("b", usable=2)],
            DaneLevel.DANE_ONLY,
            id="all-usable",
        ),
        pytest.param(False, [outcome("a", usable=1)], DaneLevel.DANE, id="insecure-mx"),
        pytest.param(
            True,
            [outcome("a", usable=1), outcome("b", unusable=1)],
            DaneLevel.DANE,
            id="one-unusable",
        ),
        pytest.param(True, [outcome("a", unusable=1)], DaneLevel.DANE, id="only-unusable"),
        pytest.param(True, [outcome("a"), outcome("b")], DaneLevel.NONE, id="no-tlsa"),
    ],
)
def test_decide_levels(mx_secure: bool, hosts: list[HostOutcome], level: DaneLevel) -> None:
    plan = MxPlan(tuple(h.result.host for h in hosts), mx_secure, 300)
    assert decide(plan, hosts, TtlLimits()).level is level


def test__ttl_negative_ttl_only_without_any_ttl() -> None:
    from tlspolicy.dane.decision import TtlLimits, _ttl  # noqa: PLC0415

    limits = TtlLimits(min_ttl=180, max_ttl=86400, negative_ttl=1800)
    assert _ttl(DaneLevel.NONE, [], limits) == 1800
    assert _ttl(DaneLevel.NONE, [0], limits) == 180
    assert _ttl(DaneLevel.DANE_ONLY, [0, 300], limits) == 180
    assert _ttl(DaneLevel.DANE, [999999], limits) == 86400
