"""``/healthz?format=json``: the same status, with the detail (weakening overrides)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tlspolicy.metrics.registry import Metrics
from tlspolicy.server.http import HttpEndpoint


async def _get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as reply:
        return reply.status, reply.headers.get("Content-Type", ""), await reply.text()


async def test_healthz_json_detail_and_plain_text_unchanged() -> None:
    state: dict[str, Any] = {"ok": (True, ""), "detail": {"weakening_overrides": [{"d": 1}]}}

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    endpoint = HttpEndpoint(Metrics(), lambda: state["ok"], lambda: state["detail"])
    base = "http://" + await endpoint.start("127.0.0.1", 0)
    try:
        assert (await _get(base + "/healthz"))[::2] == (200, "ok\n")
        status, ctype, body = await _get(base + "/healthz?format=json")
        assert (status, ctype.split(";")[0]) == (200, "application/json")
        assert json.loads(body) == {"ok": True, "reason": "ok", "weakening_overrides": [{"d": 1}]}
        state["ok"] = (False, "cache backend unavailable")
        status, _, body = await _get(base + "/healthz", Accept="application/json")
        assert status == 503 and json.loads(body)["reason"] == "cache backend unavailable"
        endpoint.detail = broken
        status, _, body = await _get(base + "/healthz?format=json")
        assert status == 503 and json.loads(body) == {
            "ok": False,
            "reason": "cache backend unavailable",
        }
    finally:
        await endpoint.stop()
