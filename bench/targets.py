"""The targets of issue 12 (and 6) against what was measured: rows of (target, measured, met).

With postfix-tlspol measured (``tlspol.py``), the hot pass is compared with its answers per
CPU-second and the DNS queries per MTA-STS domain with its measured count; without it, the
first reads "not given" and the second uses the count read from its source (6).
"""

from __future__ import annotations

from typing import Any

from bench.cells import NA, TLSPOL, fmt_mb, fmt_ms, kib_to_mb, per_cpu_second, with_tlspol


def targets(r: dict[str, Any]) -> list[list[str]]:
    """Issue 12's targets (and issue 6's that it does not replace): (target, measured, met)."""
    cold, hot = r.get("cold", {}), r.get("hot", {})
    out: list[list[str]] = []

    def check(name: str, measured: str, ok: bool | None) -> None:
        out.append([name, measured, NA if ok is None else ("yes" if ok else "**no**")])

    # Cold: server CPU per domain, throughput per core against the peer, latency.
    for key, what, limit in (("dane", "DANE", 0.5), ("sts", "MTA-STS (TLS included)", 1.0)):
        rate = per_cpu_second(cold.get(f"ours_{key}_c16"))
        if rate:
            ms = 1000 / rate
            check(f"server CPU per cold {what} domain ≤ {limit:g} ms, C=16", f"{ms:.2f} ms",
                  ms <= limit)  # fmt: skip
    ours_cold, peer_cold = (per_cpu_second(cold.get(f"{w}_sts_c16")) for w in ("ours", "peer"))
    if ours_cold and peer_cold:
        ratio = ours_cold / peer_cold
        check("cold MTA-STS throughput per core ≥ 3x the peer's (q/CPU-s, C=16)",
              f"{ratio:.2f}x", ratio >= 3)  # fmt: skip
    for key, what, limit in (("dane", "DANE", 10), ("sts", "MTA-STS", 20)):
        p = cold.get(f"ours_{key}_c16")
        if p:
            p50 = p["lat_us"]["p50"]
            check(f"cold p50 ≤ {limit} ms, {what}, C=16", f"{fmt_ms(p50)} ms", p50 <= limit * 1000)
    # Hot: per core against both peers, and the tail.
    ours16, peer16 = (per_cpu_second(hot.get(f"{w}_sts_c16")) for w in ("ours", "peer"))
    if ours16 and peer16:
        ratio = ours16 / peer16
        check("hot pass ≥ 3x the peer's (q/CPU-s, C=16, MTA-STS)", f"{ratio:.2f}x", ratio >= 3)
    out.extend(tlspol_hot_targets(r))
    for key, what in (("ours_sts_c16", "MTA-STS"), ("ours_dane_c16", "DANE")):
        if key in hot:
            p99 = hot[key]["lat_us"]["p99"]
            check(f"hot pass p99 < 0.5 ms, C=16 ({what})", f"{fmt_ms(p99)} ms", p99 < 500)
    # Memory and start-up.
    start = r.get("startup", {}).get("ours")
    if start:
        idle = start["idle_rss_kib"]
        check("RSS idle ≤ 40 MB", f"{fmt_mb(idle)} MB", kib_to_mb(idle) <= 40)
    memory = r.get("memory", {})
    sizes = [int(k[4:-4]) for k in memory if k.startswith("rss_") and k[4:-4].isdigit()]
    if sizes:
        big = max(sizes)
        rss = memory[f"rss_{big}_kib"]
        check(f"RSS < 250 MB with {big:,} cached domains (default config)", f"{fmt_mb(rss)} MB",
              kib_to_mb(rss) < 250)  # fmt: skip
        everything = memory.get(f"rss_{big}_all_in_process_kib")
        if everything and memory.get("idle_rss_kib"):
            per = (everything - memory["idle_rss_kib"]) * 1024 / big
            check(f"≤ 1 KB per domain in the in-process layer ({big:,} domains, RSS growth)",
                  f"{per / 1000:.2f} KB", per <= 1000)  # fmt: skip
    if start:
        ms = start["first_answer_ms"]
        check("startup to first answer ≤ 250 ms", f"{ms:.0f} ms", ms <= 250)
    out.extend(issue12_targets(r))
    return out


def tlspol_hot_targets(r: dict[str, Any]) -> list[list[str]]:
    """Answers per CPU-second, hot C=16, ours / postfix-tlspol's ("not given" without it)."""
    hot, rows = r.get("hot", {}), []
    for kind, what in (("sts", "MTA-STS"), ("dane", "DANE")):
        ours = per_cpu_second(hot.get(f"ours_{kind}_c16"))
        if ours is None:
            continue
        name = f"hot C=16 ≥ 1.0x {TLSPOL} (q/CPU-s, {what})"
        if not with_tlspol(r):
            rows.append([name, "not given (TLSPOL_BIN)", NA])
            continue
        theirs = per_cpu_second(hot.get(f"tlspol_{kind}_c16"))
        if theirs is None:
            rows.append([name, "not measured", NA])
            continue
        ratio = ours / theirs
        rows.append([name, f"{ratio:.2f}x", "yes" if ratio >= 1 else "**no**"])
    return rows


def issue12_targets(r: dict[str, Any]) -> list[list[str]]:
    """Issue 12: DNS queries per domain, workers scaling, a restart without failures."""
    rows: list[list[str]] = []
    cold = r.get("cold", {})
    sts = cold.get("ours_sts_c16") or cold.get("ours_sts_c1")
    theirs = (cold.get("tlspol_sts_c16") or cold.get("tlspol_sts_c1") or {}).get("dns_per_key")
    if sts and sts.get("dns_per_key") is not None:
        per = sts["dns_per_key"]
        if theirs is None:  # postfix-tlspol not measured: the figure read from its source
            rows.append(["DNS queries per MTA-STS domain < 6 (postfix-tlspol's)", f"{per:g}",
                         "yes" if per < 6 else "**no**"])  # fmt: skip
        else:
            rows.append([f"DNS queries per MTA-STS domain < {TLSPOL}'s ({theirs:g}, measured)",
                         f"{per:g}", "yes" if per < theirs else "**no**"])  # fmt: skip
    w = r.get("workers", {})
    if "ratio_2_to_1" in w:
        ratio = w["ratio_2_to_1"]
        rows.append(["2 workers ≥ 1.8x one worker, hot, 2 cores", f"{ratio:.2f}x",
                     "yes" if ratio >= 1.8 else "**no**"])  # fmt: skip
    restart = w.get("restart")
    if restart:
        bad = restart["timeouts"] + restart["errors"] + restart["unfinished"]
        done = restart.get("restart_s") is not None
        rows.append(["rolling restart under load (C=64): 0 failed", f"{bad} failed",
                     "yes" if bad == 0 and done else "**no**"])  # fmt: skip
    return rows
