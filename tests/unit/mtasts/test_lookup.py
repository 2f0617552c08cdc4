"""refresh_sts with FakeDns, a counting fake fetcher and a fake clock (explicit ``now``)."""

from __future__ import annotations

import logging

import pytest

from tests.fakes import FakeDns, FakeFetcher
from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import FetchError
from tlspolicy.mtasts.lookup import refresh_sts
from tlspolicy.mtasts.policy import Mode
from tlspolicy.mtasts.state import Freshness, StsErrorKind, StsState, StsView, sts_view

DOMAIN = "example.com"
TXT_NAME = "_mta-sts.example.com"
T0 = 1_700_000_000.0
RECHECK = 60.0
ENFORCE = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"
ENFORCE_NEW = "version: STSv1\nmode: enforce\nmx: new.example.com\nmax_age: 86400\n"
NONE = "version: STSv1\nmode: none\nmax_age: 86400\n"


def _record(dns: FakeDns, record_id: str, *, ttl: int = 300) -> None:
    dns.set(TXT_NAME, "TXT", [TxtRecord((f"v=STSv1; id={record_id}".encode(),))], ttl=ttl)


class Harness:
    """What the service does per query: view, then refresh when the view asks for it."""

    def __init__(self) -> None:
        self.dns = FakeDns()
        self.fetcher = FakeFetcher(body=ENFORCE)
        self.state: StsState | None = None

    async def refresh(self, now: float) -> StsState:
        self.state = await refresh_sts(
            DOMAIN, self.state, dns=self.dns, fetcher=self.fetcher, now=now
        )
        return self.state

    async def query(self, now: float) -> StsView:
        view = sts_view(self.state, now, recheck_interval=RECHECK)
        if view.freshness is not Freshness.FRESH:
            await self.refresh(now)
            if view.freshness is Freshness.STALE:
                view = sts_view(self.state, now, recheck_interval=RECHECK)
        return view

    @property
    def txt_queries(self) -> int:
        return self.dns.queries.count((TXT_NAME, "TXT"))


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    _record(harness.dns, "id1")
    return harness


async def test_refresh_sts_first_contact_fetches(h: Harness) -> None:
    view = await h.query(T0)
    assert view.policy is not None and view.policy.mode is Mode.ENFORCE
    assert h.fetcher.calls == [DOMAIN]
    assert h.state is not None
    assert (h.state.policy_id, h.state.record_id, h.state.fetched_at) == ("id1", "id1", T0)
    assert h.state.error is None


async def test_refresh_sts_answers_from_cache_between_rechecks(h: Harness) -> None:
    await h.query(T0)
    for offset in (1, 30, 59):
        assert (await h.query(T0 + offset)).policy is not None
    assert h.txt_queries == 1
    assert len(h.fetcher.calls) == 1


async def test_refresh_sts_same_id_checks_txt_without_fetch(h: Harness) -> None:
    await h.query(T0)
    view = await h.query(T0 + 61)
    assert view.freshness is Freshness.RECHECK
    assert h.txt_queries == 2
    assert len(h.fetcher.calls) == 1
    assert h.state is not None and h.state.checked_at == T0 + 61
    assert h.state.fetched_at == T0  # an unchanged id does not extend the policy


async def test_refresh_sts_id_change_refetches(h: Harness) -> None:
    await h.query(T0)
    _record(h.dns, "id2")
    h.fetcher.body = ENFORCE_NEW
    await h.query(T0 + 61)  # RECHECK: answered from the old policy, refreshed behind
    view = await h.query(T0 + 62)
    assert view.policy is not None and view.policy.mx == ("new.example.com",)
    assert view.policy_id == "id2"
    assert len(h.fetcher.calls) == 2


async def test_refresh_sts_proactive_refresh_at_half_max_age(h: Harness) -> None:
    await h.query(T0)
    await h.query(T0 + 43000)  # id check only
    assert len(h.fetcher.calls) == 1
    await h.query(T0 + 43200)  # half of 86400: refetch although the id is unchanged
    assert len(h.fetcher.calls) == 2
    assert h.state is not None and h.state.fetched_at == T0 + 43200
    assert h.state.expires_at() == T0 + 43200 + 86400


async def test_refresh_sts_unchanged_id_never_extends_beyond_max_age(h: Harness) -> None:
    await h.query(T0)
    h.fetcher.body = FetchError("connect", "refused")
    now = T0
    while now < T0 + 86400:
        now += RECHECK
        view = await h.query(now)
        if now < T0 + 86400:
            assert view.policy is not None, now
    assert view.policy is None
    assert h.state is not None and h.state.error_kind == StsErrorKind.FETCH


async def test_refresh_sts_fetch_failure_keeps_valid_policy(h: Harness) -> None:
    await h.query(T0)
    _record(h.dns, "id2")
    h.fetcher.body = FetchError("timeout", "slow")
    state = await h.refresh(T0 + 100)
    assert state.policy_id == "id1"
    assert state.record_id == "id2"
    assert (state.error_kind, state.error_id, state.fetch_failed_at) == ("fetch", "id2", T0 + 100)
    view = sts_view(state, T0 + 101, recheck_interval=RECHECK)
    assert view.policy is not None and view.policy.mx == ("mail.example.com",)


async def test_refresh_sts_invalid_policy_keeps_valid_policy(h: Harness) -> None:
    await h.query(T0)
    _record(h.dns, "id2")
    h.fetcher.body = "version: STSv1\nmode: enforce\nmax_age: 1\n"
    state = await h.refresh(T0 + 100)
    assert state.policy_id == "id1"
    assert state.error_kind == StsErrorKind.POLICY
    assert state.error is not None and "no mx" in state.error
    assert state.error_id == "id2"


async def test_refresh_sts_backoff_five_minutes_per_id(h: Harness) -> None:
    _record(h.dns, "id1")
    h.fetcher.body = FetchError("connect", "refused")
    view = await h.query(T0)
    assert view.policy is None and view.freshness is Freshness.FRESH
    assert len(h.fetcher.calls) == 1
    for offset in (1, 100, 299):  # "no policy" is believed while the backoff runs
        assert (await h.query(T0 + offset)).freshness is Freshness.FRESH
    assert h.txt_queries == 1
    await h.refresh(T0 + 200)  # a forced refresh inside the backoff does not fetch
    assert len(h.fetcher.calls) == 1
    assert h.state is not None and h.state.error_kind == StsErrorKind.FETCH
    await h.query(T0 + 300)  # backoff over: fetch again
    assert len(h.fetcher.calls) == 2


async def test_refresh_sts_backoff_does_not_block_a_new_id(h: Harness) -> None:
    h.fetcher.body = FetchError("status", "HTTP 404")
    await h.refresh(T0)
    _record(h.dns, "id2")
    h.fetcher.body = ENFORCE
    state = await h.refresh(T0 + 10)
    assert len(h.fetcher.calls) == 2
    assert state.policy_id == "id2"
    assert state.error is None


async def test_refresh_sts_backoff_applies_to_proactive_refresh(h: Harness) -> None:
    await h.query(T0)
    h.fetcher.body = FetchError("timeout", "slow")
    await h.query(T0 + 43200)  # proactive refresh fails
    assert len(h.fetcher.calls) == 2
    await h.query(T0 + 43260)  # id check; same id still in backoff
    await h.query(T0 + 43320)
    assert len(h.fetcher.calls) == 2
    assert h.txt_queries == 4
    await h.query(T0 + 43500)  # 300 s after the failure
    assert len(h.fetcher.calls) == 3


async def test_refresh_sts_mode_none_replaces_enforce_at_once(h: Harness) -> None:
    await h.query(T0)
    _record(h.dns, "id2")
    h.fetcher.body = NONE
    state = await h.refresh(T0 + 61)
    view = sts_view(state, T0 + 62, recheck_interval=RECHECK)
    assert view.policy is not None and view.policy.mode is Mode.NONE
    assert view.policy_id == "id2"


@pytest.mark.parametrize("kind", ["servfail", "timeout", "refused"])
async def test_refresh_sts_dns_error_never_erases_policy(h: Harness, kind: str) -> None:
    await h.query(T0)
    h.dns.fail(TXT_NAME, "TXT", kind)
    state = await h.refresh(T0 + 61)
    assert state.policy is not None and state.policy_id == "id1"
    assert state.record_id == "id1"  # the last successful lookup's id
    assert state.error_kind == StsErrorKind.DNS
    assert state.error is not None and kind in state.error
    view = sts_view(state, T0 + 62, recheck_interval=RECHECK)
    assert view.policy is not None and not view.dns_failed


async def test_refresh_sts_dns_error_without_policy_is_short_negative(h: Harness) -> None:
    h.dns.fail(TXT_NAME, "TXT", "timeout")
    view = await h.query(T0)
    assert view.policy is None and view.dns_failed
    assert h.fetcher.calls == []
    assert h.state is not None and h.state.negative_until == T0 + 60
    assert (await h.query(T0 + 59)).freshness is Freshness.FRESH
    _record(h.dns, "id1")
    view = await h.query(T0 + 60)
    assert view.policy is not None and not view.dns_failed


@pytest.mark.parametrize(
    ("records", "kind"),
    [
        pytest.param([], StsErrorKind.NO_RECORD, id="nodata"),
        pytest.param([TxtRecord((b"v=spf1 -all",))], StsErrorKind.NO_RECORD, id="only-spf"),
        pytest.param([TxtRecord((b"v=STSv1; id=a-b",))], StsErrorKind.RECORD, id="broken"),
        pytest.param(
            [TxtRecord((b"v=STSv1; id=a",)), TxtRecord((b"v=STSv1; id=b",))],
            StsErrorKind.RECORD,
            id="two-records",
        ),
    ],
)
async def test_refresh_sts_unusable_record_keeps_policy(
    h: Harness, records: list[TxtRecord], kind: StsErrorKind
) -> None:
    await h.query(T0)
    h.dns.set(TXT_NAME, "TXT", tuple(records), ttl=300)
    state = await h.refresh(T0 + 61)
    assert state.record_id is None
    assert state.error_kind == kind
    assert state.policy is not None and state.policy_id == "id1"
    assert len(h.fetcher.calls) == 1  # no discovery, no fetch (RFC 8461 §3.1)
    assert sts_view(state, T0 + 62, recheck_interval=RECHECK).policy is not None


async def test_refresh_sts_nxdomain_is_no_record(h: Harness) -> None:
    h.dns.answers.clear()  # FakeDns answers NXDOMAIN for unknown names
    state = await h.refresh(T0)
    assert state.error_kind == StsErrorKind.NO_RECORD
    assert state.policy is None and h.fetcher.calls == []


@pytest.mark.parametrize(
    ("ttl", "believed"),
    [
        pytest.param(0, 60, id="zero-ttl-raised-to-min"),
        pytest.param(5, 60, id="short-ttl-raised-to-min"),
        pytest.param(900, 900, id="ttl-kept"),
        pytest.param(86400, 3600, id="long-ttl-capped"),
    ],
)
async def test_refresh_sts_negative_cache_is_bounded(h: Harness, ttl: int, believed: int) -> None:
    h.dns.set(TXT_NAME, "TXT", [], ttl=ttl)
    await h.query(T0)
    assert h.state is not None and h.state.negative_until == T0 + believed
    assert (await h.query(T0 + believed - 1)).freshness is Freshness.FRESH
    assert h.txt_queries == 1
    await h.query(T0 + believed)
    assert h.txt_queries == 2


async def test_refresh_sts_custom_negative_bounds(h: Harness) -> None:
    h.dns.set(TXT_NAME, "TXT", [], ttl=5)
    state = await refresh_sts(
        DOMAIN, None, dns=h.dns, fetcher=h.fetcher, now=T0, negative_ttl_bounds=(120, 600)
    )
    assert state.negative_until == T0 + 120


async def test_refresh_sts_record_returns_after_absence(h: Harness) -> None:
    h.dns.set(TXT_NAME, "TXT", [], ttl=60)
    await h.query(T0)
    _record(h.dns, "id1")
    view = await h.query(T0 + 60)
    assert view.policy is not None


async def test_refresh_sts_expired_policy_is_fetched_again_on_use(h: Harness) -> None:
    # max_age 0: never applied from the cache; each use after it fetches again (the service
    # coalesces concurrent uses), never "no policy" from a negative window.
    h.fetcher.body = ENFORCE.replace("86400", "0")
    view = await h.query(T0)
    assert view.policy is None  # expired at once
    for offset in (1, 30):
        await h.query(T0 + offset)
    assert len(h.fetcher.calls) == 3


async def test_refresh_sts_custom_backoff(h: Harness) -> None:
    h.fetcher.body = FetchError("connect", "refused")
    state = await refresh_sts(
        DOMAIN, None, dns=h.dns, fetcher=h.fetcher, now=T0, fetch_backoff=900.0
    )
    assert state.negative_until == T0 + 900
    state = await refresh_sts(
        DOMAIN, state, dns=h.dns, fetcher=h.fetcher, now=T0 + 600, fetch_backoff=900.0
    )
    assert len(h.fetcher.calls) == 1
    assert state.error_kind == StsErrorKind.FETCH


async def test_refresh_sts_expired_policy_same_id_refetches(h: Harness) -> None:
    await h.query(T0)
    state = await h.refresh(T0 + 90000)
    assert len(h.fetcher.calls) == 2
    assert state.fetched_at == T0 + 90000


async def test_refresh_sts_success_clears_errors(h: Harness) -> None:
    h.dns.fail(TXT_NAME, "TXT")
    await h.refresh(T0)
    _record(h.dns, "id1")
    state = await h.refresh(T0 + 60)
    assert (state.error, state.error_kind) == (None, None)


async def test_refresh_sts_trace_records_steps(h: Harness) -> None:
    with recording(Trace()) as trace:
        await refresh_sts(DOMAIN, None, dns=h.dns, fetcher=h.fetcher, now=T0)
    kinds = [event.kind for event in trace.events]
    assert kinds[0] == "dns"
    assert "note" in kinds
    assert any("id1" in event.name for event in trace.events if event.kind == "note")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tlspolicy.mtasts" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize(
    ("cached", "body", "says"),
    [
        pytest.param(
            False,
            FetchError("status", "HTTP 404 Not Found"),
            [
                "example.com: MTA-STS policy fetch failed for id id1: status: HTTP 404",
                "no policy applied",
                "no new fetch for this id for 300s",
            ],
            id="first-contact-fetch",
        ),
        pytest.param(
            True,
            FetchError("timeout", "no complete answer within 2s"),
            [
                "example.com: MTA-STS policy fetch failed for id id2: timeout",
                "cached enforce policy id id1 kept (expires in 86300s)",
            ],
            id="cached-fetch",
        ),
        pytest.param(
            False,
            "version: STSv1\nmode: enforce\nmax_age: 1\n",
            ["example.com: MTA-STS invalid policy for id id1:", "no policy applied"],
            id="first-contact-invalid",
        ),
    ],
)
async def test_refresh_sts_fetch_failure_logs_warning(
    h: Harness,
    caplog: pytest.LogCaptureFixture,
    cached: bool,
    body: str | FetchError,
    says: list[str],
) -> None:
    if cached:
        await h.query(T0)
        _record(h.dns, "id2")
    h.fetcher.body = body
    with caplog.at_level(logging.INFO, logger="tlspolicy.mtasts"):
        await h.refresh(T0 + 100)
    [message] = _warnings(caplog)
    for part in says:
        assert part in message


async def test_refresh_sts_backoff_logs_no_second_warning(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.fetcher.body = FetchError("status", "HTTP 404 Not Found")
    with caplog.at_level(logging.INFO, logger="tlspolicy.mtasts"):
        await h.refresh(T0)
        await h.refresh(T0 + 61)  # same id, inside the backoff: no fetch, no warning
    assert len(_warnings(caplog)) == 1
    assert len(h.fetcher.calls) == 1


@pytest.mark.parametrize(
    ("cached", "says"),
    [
        pytest.param(False, "no policy applied", id="nothing-cached"),
        pytest.param(True, "cached enforce policy id id1 kept", id="cached"),
    ],
)
async def test_refresh_sts_dns_error_logs_warning(
    h: Harness, caplog: pytest.LogCaptureFixture, cached: bool, says: str
) -> None:
    if cached:
        await h.query(T0)
    h.dns.fail(TXT_NAME, "TXT", "servfail")
    with caplog.at_level(logging.INFO, logger="tlspolicy.mtasts"):
        await h.refresh(T0 + 61)
    [message] = _warnings(caplog)
    assert message.startswith("example.com: MTA-STS TXT lookup failed: ")
    assert "servfail" in message and says in message


async def test_refresh_sts_success_logs_no_warning(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tlspolicy.mtasts"):
        await h.refresh(T0)
        _record(h.dns, "id2")
        await h.refresh(T0 + 61)
    assert _warnings(caplog) == []


async def test_a_clamped_max_age_is_logged_once_per_fetched_policy(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 8461 §3.2: a max_age over 31557600 is clamped, not refused (refusing failed
    open); the warning names the domain and the published value, once per fetch."""
    h.fetcher.body = ENFORCE.replace("86400", "40000000")
    with caplog.at_level(logging.INFO, logger="tlspolicy.mtasts"):
        view = await h.query(T0)
        await h.query(T0 + 61)  # the id check: cached policy kept, no new warning
    assert view.policy is not None and view.policy.max_age == 31557600
    assert _warnings(caplog) == [
        "example.com: MTA-STS policy id id1: max_age 40000000 clamped to 31557600 "
        "(RFC 8461 §3.2 maximum)"
    ]
