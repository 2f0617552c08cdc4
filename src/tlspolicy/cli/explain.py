"""``tlspolicy query``: decide one domain with the server's own code and show why."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from tlspolicy.cache.factory import open_backend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.cli.admin import cached_answer
from tlspolicy.config import Config, MapProfile
from tlspolicy.control.book import override_decision
from tlspolicy.control.store import OverrideStore
from tlspolicy.dnsstub.trace import Trace, recording
from tlspolicy.errors import CacheError
from tlspolicy.mtasts.state import StsState
from tlspolicy.server.app import App
from tlspolicy.socketmap.answer import NOTFOUND, Reply, perm, render, shadowed
from tlspolicy.socketmap.keys import normalize_key


async def explain_domain(app: App, map_name: str, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {"key": key, "map": map_name}
    profile = app.config.profile(map_name)
    if profile is None:
        out.update(reply=perm(f"unknown map {map_name}"), verdict="perm", reason="unknown map")
        return out
    out["profile"] = {
        "tlsrpt": profile.tlsrpt,
        "strict_testing": profile.strict_testing,
        "servername": profile.servername,
        "shadow": profile.shadow,
    }
    parsed = normalize_key(key)
    if parsed.domain is None:
        out.update(reply=NOTFOUND, verdict="notfound", reason=f"no lookup: {parsed.why}")
        return out
    domain = parsed.domain
    out["domain"] = domain
    overrides = await configured_overrides(app.config)
    match = overrides.find(domain, time.time())
    if match is not None:
        out["override"] = {**match.override.to_json(), "state": match.state.value}
        out["override"]["until"] = match.override.describe_until()
        decision = override_decision(match, domain)
        if decision is not None:  # the server answers this before any lookup
            _served(out, render(decision, profile), profile, decision.reason)
            return out
    trace = Trace()
    started = time.monotonic()
    with recording(trace):
        resolution = await app.service.resolve(domain, profile)
    out["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    decision = resolution.decision
    _served(out, render(decision, profile), profile, decision.reason)
    if resolution.dane is not None:
        out["dane"] = resolution.dane.to_json()
    sts_state = resolution.sts_state
    if sts_state is None:
        # DANE decided, so the server did not need MTA-STS; look anyway, to show it.
        with recording(trace):
            sts_state = await app.service.sts_for_display(domain)
        out["mta_sts_note"] = "not used: DANE takes precedence (RFC 8461 §2)"
    out["mta_sts"] = _sts_summary(sts_state)
    out["lookups"] = [event.as_dict() for event in trace.events]
    return out


async def cached_view(config: Config, map_name: str, domain: str) -> dict[str, Any]:
    """What the configured cache (the running server's) holds for ``domain``, and the answer
    the server gives from it; the live lookup above may differ (e.g. a cached MTA-STS policy
    kept while its host fails). Read-only: a damaged file is reported, not moved aside."""
    profile = config.profile(map_name)
    if profile is None or config.cache.backend == "memory":
        return {"backend": config.cache.backend, "entry": None}
    cache = PolicyCache(
        open_backend(config.cache, recover=False), hot_entries=1, hot_ttl=config.cache.hot_ttl
    )
    try:
        await cache.open()
        if not cache.healthy:
            return {"backend": config.cache.backend, "error": cache.outage_reason}
        entry = await cache.get(domain)
    except CacheError as exc:
        return {"backend": config.cache.backend, "error": str(exc)}
    finally:
        with contextlib.suppress(CacheError):
            await cache.aclose()
    if entry is None:
        return {"backend": config.cache.backend, "entry": None}
    answer = cached_answer(entry, profile, config, time.time())
    return {
        "backend": config.cache.backend,
        "reply": answer.text,
        "looks_up": answer.kind == "lookup",
        "entry": entry.to_json(),
    }


def _served(out: dict[str, Any], decided: Reply, profile: MapProfile, reason: str) -> None:
    """What the server sends (``shadowed``: a shadow map sends NOTFOUND) and, for a shadow
    map, what it would have sent."""
    reply = shadowed(decided, profile)
    out.update(reply=reply.text, verdict=reply.kind, reason=reason)
    if reply is not decided:
        out.update(shadow_reply=decided.text, shadow_verdict=decided.kind)


async def configured_overrides(config: Config) -> OverrideStore:
    """The overrides the server applies: the configuration's plus those stored in the
    configured cache backend (read once; an unreadable backend leaves the configured)."""
    if config.cache.backend == "memory":
        return OverrideStore(None, config.overrides)
    backend = open_backend(config.cache, recover=False)
    store = OverrideStore(backend, config.overrides)
    try:
        await backend.open()
        await store.load()
    except CacheError:
        pass
    finally:
        with contextlib.suppress(CacheError):
            await backend.aclose()
    return store


def _sts_summary(state: StsState) -> dict[str, Any]:
    summary: dict[str, Any] = {"record_id": state.record_id}
    if state.policy is not None:
        summary.update(
            policy_id=state.policy_id,
            mode=state.policy.mode.value,
            max_age=state.policy.max_age,
            mx=list(state.policy.mx),
            policy=state.policy.text,
        )
    if state.error:
        summary.update(error=state.error, error_kind=state.error_kind)
    return summary


def print_explanation(out: dict[str, Any]) -> None:
    lines = [f"key:      {out['key']}  (map {out['map']})"]
    if "domain" in out:
        lines.append(f"domain:   {out['domain']}")
    lines.append(f"reply:    {out['reply']}")
    lines.append(f"verdict:  {out['verdict']}: {out['reason']}")
    if "shadow_reply" in out:
        lines.append(f"shadow:   the map is in shadow mode; it would answer {out['shadow_reply']}")
    override = out.get("override")
    if override:
        lines.append(
            f"override: {override['level']} {override['state']} until {override['until']} "
            f"({override['source']}): {override['reason'] or 'no reason given'}"
        )
    dane = out.get("dane")
    if dane:
        secure = {True: "secure", False: "insecure", None: "unknown"}[dane.get("mx_secure")]
        lines.append(
            f"DANE:     {dane['level']} (MX {secure}, ttl {dane['ttl']}s): {dane['reason']}"
        )
        for host in dane.get("hosts", []):
            tlsa = host.get("tlsa_status") or "not looked up"
            counts = (
                f" usable={host['usable']} unusable={host['unusable']}"
                if host.get("tlsa_name")
                else ""
            )
            detail = f" ({host['detail']})" if host.get("detail") else ""
            lines.append(
                f"  {host['host']}: address {host['address_status']}, TLSA {tlsa}{counts}{detail}"
            )
    sts = out.get("mta_sts")
    if sts is not None:
        note = f" [{out['mta_sts_note']}]" if "mta_sts_note" in out else ""
        if "mode" in sts:
            lines.append(
                f"MTA-STS:  mode {sts['mode']}, id {sts['policy_id']}, max_age {sts['max_age']}, "
                f"mx {', '.join(sts['mx'])}{note}"
            )
        elif sts.get("record_id") is None:
            lines.append(f"MTA-STS:  no policy (no MTA-STS TXT record){note}")
        else:
            lines.append(f"MTA-STS:  no policy (TXT id {sts['record_id']}){note}")
        if sts.get("error"):
            lines.append(f"  last error ({sts.get('error_kind')}): {sts['error']}")
    lookups = out.get("lookups", [])
    if lookups:
        lines.append("lookups:")
        lines.extend(_lookup_line(event) for event in lookups)
    if "elapsed_ms" in out:
        lines.append(f"total:    {out['elapsed_ms']} ms")
    cache = out.get("cache")
    if cache and cache.get("error"):
        lines.append(f"cache:    {cache['backend']}: unavailable ({cache['error']})")
    elif cache and cache.get("entry"):
        reply = cache["reply"]
        lines.append(f"cache:    {cache['backend']} holds an entry; the server answers: {reply}")
    elif cache:
        lines.append(f"cache:    {cache['backend']}: no entry")
    print("\n".join(lines))


def _lookup_line(event: dict[str, Any]) -> str:
    """``  DNS   MX    example.com: NOERROR ttl=300 1.2 ms  10 mx.example.com``; parts
    a lookup did not record are left out, with their separators."""
    result = " ".join(
        part
        for part in (
            event.get("status") or "",
            f"ttl={event['ttl']}" if "ttl" in event else "",
            f"{event['elapsed_ms']:.1f} ms" if "elapsed_ms" in event else "",
        )
        if part
    )
    data = f"  {'; '.join(event['data'])}" if event.get("data") else ""
    head = f"  {event['kind']:<5} {event.get('detail', ''):<5} {event['name']}"
    return f"{head}: {result}{data}" if result or data else head
