"""Resolver self-check against FakeDns: verdicts, and the monitor's logging and metric."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.fakes import FakeDns
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.dnsstub.selfcheck import (
    DEFAULT_BOGUS_NAME,
    DEFAULT_SECURE_NAME,
    NOT_RUN,
    ResolverMonitor,
    SelfCheck,
    check_resolver,
)
from tlspolicy.metrics.registry import Metrics

SECURE = "secure.lab"
BOGUS = "bogus.lab"
ADDR = [AddressRecord("192.0.2.1")]


def validating() -> FakeDns:
    dns = FakeDns()
    dns.set(SECURE, "A", ADDR, secure=True)
    dns.fail(BOGUS, "A", "servfail")
    return dns


def non_validating() -> FakeDns:
    dns = FakeDns()
    dns.set(SECURE, "A", ADDR, secure=False)
    dns.set(BOGUS, "A", ADDR, secure=False)
    return dns


def stripping_bogus_only() -> FakeDns:
    """Sets AD for the good name but hands out bogus data (e.g. a forwarder with +cd)."""
    dns = FakeDns()
    dns.set(SECURE, "A", ADDR, secure=True)
    dns.set(BOGUS, "A", ADDR, secure=False)
    return dns


def with_failure(name: str, kind: str) -> FakeDns:
    dns = validating()
    dns.fail(name, "A", kind)
    return dns


def secure_negative() -> FakeDns:
    dns = FakeDns(default_secure=True)  # NXDOMAIN with AD: proves validation too
    dns.fail(BOGUS, "A", "servfail")
    return dns


@pytest.mark.parametrize(
    ("dns", "ok", "reason"),
    [
        pytest.param(validating(), True, "resolver validates", id="validating"),
        pytest.param(secure_negative(), True, "resolver validates", id="secure-nxdomain"),
        pytest.param(
            non_validating(),
            False,
            f"resolver does not set the AD flag for {SECURE}: not validating",
            id="no-ad-flag",
        ),
        pytest.param(
            stripping_bogus_only(),
            False,
            f"resolver answered {BOGUS}: not validating (bogus data accepted)",
            id="bogus-accepted",
        ),
        pytest.param(
            with_failure(SECURE, "timeout"), False, "resolver unreachable: ", id="timeout"
        ),
        pytest.param(
            with_failure(SECURE, "network"), False, "resolver unreachable: ", id="network"
        ),
        pytest.param(
            with_failure(SECURE, "servfail"),
            False,
            f"cannot resolve the probe name {SECURE} (dns.selfcheck_secure_name)",
            id="secure-servfail",
        ),
        pytest.param(
            with_failure(BOGUS, "timeout"), False, "resolver unreachable: ", id="bogus-timeout"
        ),
        pytest.param(
            with_failure(BOGUS, "malformed"),
            False,
            f"cannot resolve the probe name {BOGUS} (dns.selfcheck_bogus_name)",
            id="bogus-malformed",
        ),
    ],
)
async def test_check_resolver_verdicts(dns: FakeDns, ok: bool, reason: str) -> None:
    result = await check_resolver(dns, secure_name=SECURE, bogus_name=BOGUS)
    assert result.ok is ok
    assert result.reason.startswith(reason)


async def test_check_resolver_asks_both_canaries_for_a_pass() -> None:
    dns = validating()
    await check_resolver(dns, secure_name=SECURE, bogus_name=BOGUS)
    assert dns.queries == [(SECURE, "A"), (BOGUS, "A")]


def test_check_resolver_defaults_are_public_canaries() -> None:
    assert (DEFAULT_SECURE_NAME, DEFAULT_BOGUS_NAME) == ("isc.org", "dnssec-failed.org")


class Switchable:
    """A DnsClient whose behaviour the test flips between validating and not."""

    def __init__(self) -> None:
        self.current = validating()
        self.calls = 0

    async def query(self, name: str, rdtype: str):
        self.calls += 1
        return await self.current.query(name, rdtype)

    async def aclose(self) -> None:
        return None


def monitor(dns: object, metrics: Metrics, interval: float = 600.0) -> ResolverMonitor:
    return ResolverMonitor(
        dns,
        secure_name=SECURE,
        bogus_name=BOGUS,
        interval=interval,
        metrics=metrics,  # type: ignore[arg-type]
    )


async def test_resolver_monitor_logs_error_once_and_info_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tlspolicy.dnsstub.selfcheck")
    dns = Switchable()
    metrics = Metrics()
    mon = monitor(dns, metrics)
    assert mon.status == NOT_RUN
    assert mon.health() == (False, NOT_RUN.reason)

    await mon.check_now()
    dns.current = non_validating()
    await mon.check_now()
    await mon.check_now()
    await mon.check_now()
    assert metrics.registry.get_sample_value("tlspolicy_resolver_validating") == 0
    assert mon.health()[0] is False
    dns.current = validating()
    await mon.check_now()
    assert metrics.registry.get_sample_value("tlspolicy_resolver_validating") == 1

    levels = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert levels == [
        ("INFO", "resolver self-check passed"),
        ("ERROR", "resolver self-check failed"),
        ("DEBUG", "resolver self-check unchanged"),
        ("DEBUG", "resolver self-check unchanged"),
        ("INFO", "resolver self-check recovered"),
    ]


async def test_resolver_monitor_first_check_failing_logs_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tlspolicy.dnsstub.selfcheck")
    mon = monitor(non_validating(), Metrics())
    result = await mon.start()
    await mon.aclose()
    assert result.ok is False
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "not validating" in caplog.records[0].getMessage()


async def test_resolver_monitor_rechecks_every_interval() -> None:
    dns = Switchable()
    metrics = Metrics()
    mon = monitor(dns, metrics, interval=0.02)
    assert (await mon.start()).ok
    dns.current = non_validating()
    for _ in range(200):
        if not mon.status.ok:
            break
        await asyncio.sleep(0.01)
    await mon.aclose()
    assert mon.status.ok is False
    assert metrics.registry.get_sample_value("tlspolicy_resolver_validating") == 0
    calls = dns.calls
    await asyncio.sleep(0.06)
    assert dns.calls == calls  # stopped for good


async def test_resolver_monitor_survives_a_crashing_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Crashing(Switchable):
        async def query(self, name: str, rdtype: str):
            self.calls += 1
            if self.calls > 2:
                raise RuntimeError("bug")
            return await self.current.query(name, rdtype)

    dns = Crashing()
    mon = monitor(dns, Metrics(), interval=0.01)
    await mon.start()
    for _ in range(200):
        if dns.calls > 4:
            break
        await asyncio.sleep(0.01)
    await mon.aclose()
    assert dns.calls > 4  # kept running after the crash
    assert mon.status == SelfCheck(False, "resolver self-check crashed (see log)")


def test_resolver_monitor_rejects_bad_interval() -> None:
    with pytest.raises(ValueError):
        ResolverMonitor(FakeDns(), interval=0)


@pytest.mark.parametrize(
    ("dns", "not_validating"),
    [
        pytest.param(validating(), False, id="validating"),
        pytest.param(non_validating(), True, id="no-ad-flag"),
        pytest.param(stripping_bogus_only(), True, id="bogus-accepted"),
        pytest.param(with_failure(SECURE, "timeout"), False, id="unreachable"),
        pytest.param(with_failure(SECURE, "servfail"), False, id="secure-servfail"),
    ],
)
async def test_resolver_monitor_not_validating_only_for_a_resolver_that_answers(
    dns: FakeDns, not_validating: bool
) -> None:
    # dns.on_validation_failure acts on this flag: an unreachable resolver makes lookups
    # fail by themselves, and answers cached earlier stay trustworthy.
    mon = monitor(dns, Metrics())
    assert mon.not_validating() is False  # not run yet: no verdict, no deferral
    await mon.check_now()
    assert mon.not_validating() is not_validating


async def test_resolver_monitor_rechecks_sooner_while_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tlspolicy.dnsstub.selfcheck.FAILING_INTERVAL_S", 0.01)
    dns = Switchable()
    dns.current = non_validating()
    mon = monitor(dns, Metrics(), interval=3600.0)
    assert (await mon.start()).ok is False
    dns.current = validating()
    async with asyncio.timeout(5):
        while not mon.status.ok:  # noqa: ASYNC110 - a plain attribute, bounded wait
            await asyncio.sleep(0.01)
    await mon.aclose()
    assert mon.not_validating() is False


async def test_probe_name_failure_says_what_to_set_not_that_dane_is_untrusted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A validating resolver without Internet access cannot resolve the default names:
    that is a probe problem with its own fix, not a resolver that does not validate."""
    monitor = ResolverMonitor(
        with_failure(SECURE, "servfail"), secure_name=SECURE, bogus_name=BOGUS
    )
    with caplog.at_level(logging.ERROR):
        result = await monitor.check_now()
    assert result.probe_failed and not result.not_validating
    for key in ("dns.selfcheck_secure_name", "dns.selfcheck_bogus_name", "dns.selfcheck: false"):
        assert key in caplog.text
    assert "cannot be trusted" not in caplog.text
