"""Tracing through a context variable: recorded only inside ``recording``, and in the tasks
started there."""

from __future__ import annotations

import asyncio

from tlspolicy.dnsstub.trace import Trace, TraceEvent, current, note, record, recording


def test_nothing_is_recorded_outside_recording() -> None:
    assert current() is None
    note("lost")
    record(TraceEvent("dns", "example.com", "MX"))  # no error, nothing kept


def test_recording_collects_events_and_notes_then_stops() -> None:
    with recording(Trace()) as trace:
        assert current() is trace
        record(TraceEvent("dns", "example.com", "MX", "secure", ttl=60))
        note("a step")
    note("after")
    assert [(e.kind, e.name) for e in trace.events] == [("dns", "example.com"), ("note", "a step")]
    assert trace.events[0].as_dict() == {
        "kind": "dns",
        "name": "example.com",
        "detail": "MX",
        "status": "secure",
        "ttl": 60,
    }
    assert current() is None


async def test_tasks_started_while_recording_record_into_that_trace() -> None:
    async def lookup(name: str) -> None:
        await asyncio.sleep(0)
        note(name)

    with recording(Trace()) as trace:
        task = asyncio.create_task(lookup("inside"))
    other = asyncio.create_task(lookup("outside"))
    await asyncio.gather(task, other)
    assert [e.name for e in trace.events] == ["inside"]
