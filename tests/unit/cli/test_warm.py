"""The warm runner: one line per domain, the summary, the progress bar only on a terminal."""

from __future__ import annotations

import io

from tests.unit.service.test_service import Clock, make_service, make_world
from tlspolicy.cli.warm import Progress, WarmSummary, warm
from tlspolicy.config import MapProfile
from tlspolicy.decision.verdict import Verdict


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_warm_resolves_counts_and_summarises() -> None:
    dns, fetcher = make_world()
    dns.fail("broken.example", "MX")
    edge = make_service(dns, fetcher, Clock())
    await edge.cache.open()
    out, err = io.StringIO(), io.StringIO()
    names = ["dane.example", "sts.example", "plain.example", "broken.example", "[192.0.2.1]"]
    summary = await warm(
        edge.service, MapProfile(), [*names, "dane.example"], rate=0, out=out, err=err
    )
    assert (summary.resolved, summary.dane, summary.mta_sts, summary.failed, summary.skipped) == (
        3,
        1,
        1,
        1,
        1,
    )
    lines = out.getvalue().splitlines()
    assert "dane.example: OK dane-only" in lines and len(lines) == 5
    assert err.getvalue() == (
        "warmed: 3 resolved (1 DANE, 1 MTA-STS, 1 no policy), 1 failed, 1 skipped\n"
    )
    assert await edge.cache.get("sts.example") is not None  # stored for the server


def test_summary_counts_by_verdict() -> None:
    summary = WarmSummary()
    for verdict in (Verdict.DANE_ONLY, Verdict.SECURE, Verdict.NOTFOUND, Verdict.TEMP):
        summary.count(verdict)
    assert summary.line() == "warmed: 3 resolved (1 DANE, 1 MTA-STS, 1 no policy), 1 failed"


def test_progress_bar_only_on_a_terminal() -> None:
    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        progress = Progress(2, stream)
        progress.step()
        progress.step()
    assert tty.getvalue().endswith("] 2/2\n") and "\r[" in tty.getvalue()
    assert pipe.getvalue() == ""
