"""Results as tables: printed, and written to ``bench/results/latest.{json,md}``.

Ratios are always ours / peer: above 1 is better for throughput, below 1 is better for
latency, time and memory. RSS is in MB of 10^6 bytes (``/proc/<pid>/status`` counts KiB), the
stricter reading of the issue's "60 MB" and "250 MB".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PEER = "postfix-mta-sts-resolver"
NA = "—"


def _ms(us: float | None) -> str:
    if us is None:
        return NA
    ms = us / 1000
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    return f"{ms:.1f}"


def _mb(kib: float | None) -> str:
    return NA if kib is None else f"{kib * 1024 / 1e6:.1f}"


def _kib_to_mb(kib: float) -> float:
    return kib * 1024 / 1e6


def _ratio(ours: float | None, peer: float | None) -> str:
    if not ours or not peer:
        return NA
    return f"{ours / peer:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


NOISY_SHARE = 0.10  # a pass where other processes used more of the server's core is marked
NOISY_MARK = "†"


def per_cpu_second(p: dict[str, Any] | None) -> float | None:
    """Answers per second of server CPU: throughput as if the server had its core alone."""
    if p is None or not p.get("server_cpu_s"):
        return None
    return float(p["answered"]) / float(p["server_cpu_s"])


def _pass_cells(p: dict[str, Any] | None) -> list[str]:
    if p is None:
        return [NA, NA, NA, NA]
    lat = p["lat_us"]
    bad = p["timeouts"] + p["errors"] + p["unfinished"]
    qps = f"{p['qps']:,.0f}" + (f" ({bad} failed)" if bad else "")
    if p["other_cpu_share_on_server_core"] > NOISY_SHARE:
        qps += f" {NOISY_MARK}"
    efficiency = per_cpu_second(p)
    return [
        qps,
        _ms(lat["p50"]),
        _ms(lat["p99"]),
        NA if efficiency is None else f"{efficiency:,.0f}",
    ]


def load_rows(r: dict[str, Any], n: int) -> list[list[str]]:
    cold, hot = r.get("cold", {}), r.get("hot", {})
    rows: list[list[str]] = []

    def add(name: str, c: int, ours: dict[str, Any] | None, peer: dict[str, Any] | None,
            peer_note: str = NA) -> None:  # fmt: skip
        if ours is None and peer is None:
            return
        per = [f"{p['dns_per_key']:g}" if p and p.get("dns_per_key") else NA for p in (ours, peer)]
        if per != [NA, NA]:
            name += f" (DNS q/domain {per[0]}" + ("" if per[1] == NA else f", peer {per[1]}") + ")"
        peer_cells = _pass_cells(peer) if peer is not None else [peer_note, NA, NA, NA]
        ratio = _ratio(None if ours is None else ours["qps"], None if peer is None else peer["qps"])
        cpu_ratio = _ratio(per_cpu_second(ours), per_cpu_second(peer))
        rows.append([name, str(c), *_pass_cells(ours), *peer_cells, ratio, cpu_ratio])

    no_dane = "no DANE support"
    for c in (1, 16):
        add(f"cold, {n} DANE domains", c, cold.get(f"ours_dane_c{c}"), None, no_dane)
    for c in (1, 16):
        add(f"cold, {n} MTA-STS domains", c, cold.get(f"ours_sts_c{c}"), cold.get(f"peer_sts_c{c}"))
    for c in (1, 16, 64):
        add("hot, MTA-STS domains", c, hot.get(f"ours_sts_c{c}"), hot.get(f"peer_sts_c{c}"))
    for c in (1, 16, 64):
        add("hot, DANE domains", c, hot.get(f"ours_dane_c{c}"), None, no_dane)
    for c in (1, 16, 64):
        add("floor: C responder, fixed reply (in the tlspolicy columns)", c,
            hot.get(f"floor_c{c}"), None)  # fmt: skip
    for backend, data in r.get("backends", {}).items():
        add(f"cold, DANE + MTA-STS, cache {backend}", 16, data.get("cold_c16"), None)
        add(f"hot, DANE + MTA-STS, cache {backend}", 16, data.get("hot_c16"), None)
    memory = r.get("memory", {})
    for key in sorted((k for k in memory if k.startswith("load_to_")), key=lambda k: int(k[8:])):
        add(f"load cached clones into memory, to {int(key[8:]):,}", 64, memory[key], None)
    if "temp" in r:
        t = r["temp"]
        add(f"resolver silent, dns.timeout {t['dns_timeout_s']:g} s (TEMP)",
            t["connections"], t, None, "never TEMP (fail-open NOTFOUND)")  # fmt: skip
    return rows


def memory_rows(r: dict[str, Any], n: int) -> list[list[str]]:
    start, rss, memory = r.get("startup", {}), r.get("rss", {}), r.get("memory", {})
    ours_s, peer_s = start.get("ours", {}), start.get("peer", {})
    rows = [
        [
            "startup to first answer (ms)",
            str(ours_s.get("first_answer_ms", NA)),
            str(peer_s.get("first_answer_ms", NA)),
            _ratio(ours_s.get("first_answer_ms"), peer_s.get("first_answer_ms")),
        ],
        [
            "RSS idle (MB)",
            _mb(ours_s.get("idle_rss_kib")),
            _mb(peer_s.get("idle_rss_kib")),
            _ratio(ours_s.get("idle_rss_kib"), peer_s.get("idle_rss_kib")),
        ],
        [
            f"RSS after the cold pass over {n} MTA-STS domains (MB)",
            _mb(rss.get("ours_after_sts_kib")),
            _mb(rss.get("peer_after_sts_kib")),
            _ratio(rss.get("ours_after_sts_kib"), rss.get("peer_after_sts_kib")),
        ],
        [
            f"RSS after the hot passes (ours: {2 * n} domains cached, peer: {n}) (MB)",
            _mb(rss.get("ours_after_hot_kib")),
            _mb(rss.get("peer_after_hot_kib")),
            _ratio(rss.get("ours_after_hot_kib"), rss.get("peer_after_hot_kib")),
        ],
    ]
    for key in sorted(
        (k for k in memory if k.startswith("rss_")),
        key=lambda k: (int(k.split("_")[1]), "all_in_process" in k),
    ):
        count = int(key.split("_")[1])
        where = (
            "all in the in-process layer (cache.hot_entries raised to match)"
            if "all_in_process" in key
            else "default cache.hot_entries"
        )
        rows.append([f"RSS with {count:,} domains cached, {where} (MB)", _mb(memory[key]),
                     NA, NA])  # fmt: skip
    if "cached_entries" in memory:
        rows.append(["entries in the cache after the fill", f"{memory['cached_entries']:,}",
                     NA, NA])  # fmt: skip
    return [row for row in rows if row[1] != NA or row[2] != NA]


def targets(r: dict[str, Any]) -> list[list[str]]:
    """Issue 6's targets against what was measured: (target, measured, met)."""
    cold, hot = r.get("cold", {}), r.get("hot", {})
    out: list[list[str]] = []

    def check(name: str, measured: str, ok: bool | None) -> None:
        out.append([name, measured, NA if ok is None else ("yes" if ok else "**no**")])

    ours16, peer16 = hot.get("ours_sts_c16"), hot.get("peer_sts_c16")
    if ours16 and peer16:
        ratio = ours16["qps"] / peer16["qps"]
        check("hot pass ≥ 3x the peer's throughput, C=16", f"{ratio:.2f}x", ratio >= 3)
    for key, what in (("ours_sts_c16", "MTA-STS"), ("ours_dane_c16", "DANE")):
        if key in hot:
            p99 = hot[key]["lat_us"]["p99"]
            check(f"hot pass p99 < 1 ms, C=16 ({what})", f"{_ms(p99)} ms", p99 < 1000)
    for key, what, limit in (("dane", "DANE", 10), ("sts", "MTA-STS", 50)):
        for c in (1, 16):
            p = cold.get(f"ours_{key}_c{c}")
            if p:
                p50 = p["lat_us"]["p50"]
                check(f"cold p50 < {limit} ms, {what}, C={c}", f"{_ms(p50)} ms", p50 < limit * 1000)
    start = r.get("startup", {}).get("ours")
    if start:
        idle = start["idle_rss_kib"]
        check("RSS < 60 MB idle", f"{_mb(idle)} MB", _kib_to_mb(idle) < 60)
    memory = r.get("memory", {})
    sizes = [int(k[4:-4]) for k in memory if k.startswith("rss_") and k[4:-4].isdigit()]
    if sizes:
        big = max(sizes)
        rss = memory[f"rss_{big}_kib"]
        check(f"RSS < 250 MB with {big:,} cached domains (default config)", f"{_mb(rss)} MB",
              _kib_to_mb(rss) < 250)  # fmt: skip
        everything = memory.get(f"rss_{big}_all_in_process_kib")
        if everything:
            check(f"... with all {big:,} in the in-process layer", f"{_mb(everything)} MB",
                  _kib_to_mb(everything) < 250)  # fmt: skip
    if start:
        ms = start["first_answer_ms"]
        check("startup to first answer < 1 s", f"{ms:.0f} ms", ms < 1000)
    out.extend(issue12_targets(r))
    return out


def issue12_targets(r: dict[str, Any]) -> list[list[str]]:
    """Issue 12: DNS queries per domain, workers scaling, a restart without failures."""
    rows: list[list[str]] = []
    sts = r.get("cold", {}).get("ours_sts_c16") or r.get("cold", {}).get("ours_sts_c1")
    if sts and sts.get("dns_per_key") is not None:
        per = sts["dns_per_key"]
        rows.append(["DNS queries per MTA-STS domain < 6 (postfix-tlspol's)", f"{per:g}",
                     "yes" if per < 6 else "**no**"])  # fmt: skip
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


def workers_lines(r: dict[str, Any]) -> list[str]:
    """``server.workers`` 1 vs 2 (both cores shared) and the rolling restart under load."""
    w = r.get("workers")
    if not w:
        return []
    rows = []
    for key, what in (("hot_w1_c64", "hot, 1 worker"), ("hot_w2_c64", "hot, 2 workers"),
                      ("restart", "hot, 2 workers, rolling restart (loadgen -R)")):  # fmt: skip
        p = w.get(key)
        if p:
            bad = p["timeouts"] + p["errors"] + p["unfinished"]
            rows.append([what, "64", f"{p['qps']:,.0f}", _ms(p["lat_us"]["p99"]), str(bad),
                         str(p.get("retried", 0)), f"{p['loadgen_cpu_share']:.0%}"])  # fmt: skip
    lines = ["", f"Workers (`server.workers`; server and generator share both cores; 2 / 1 ="
             f" {w.get('ratio_2_to_1', NA)}x):", ""]  # fmt: skip
    head = ["pass", "C", "q/s", "p99", "failed", "retried (Postfix retry)", "loadgen CPU"]
    return lines + _table(head, rows)


def profile_lines(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, prof in r.get("profiles", {}).items():
        if not prof.get("samples"):
            continue
        lines += ["", f"Top frames, {name.replace('_', ' ')} ({prof['samples']} samples):", ""]
        rows = [[f"{e['share']:.1%}", f"`{e['frame']}`"] for e in prof["own"][:10]]
        lines += _table(["own time", "frame"], rows)
        rows = [[f"{e['share']:.1%}", f"`{e['frame']}`"] for e in prof["inclusive"][:10]]
        lines += ["", *_table(["incl. time", "tlspolicy frame"], rows)]
    return lines


def markdown(results: dict[str, Any]) -> str:
    r, meta = results, results["meta"]
    n = meta["options"]["n"]
    m = meta["machine"]
    lines = [
        f"Measured {meta['finished']} with `{meta['command']}`: tlspolicy {meta['tlspolicy']}"
        f" ({meta.get('event_loop', NA)}) and {PEER} {meta.get('peer_version', NA)}"
        f" ({meta.get('peer_event_loop') or NA}), each on one core, same run, same lab.",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, Linux"
        f" {m['kernel']}, Python {m['python']}; load average at start"
        f" {' '.join(m['loadavg_at_start'])}. The server under test is pinned to core"
        f" {meta['options']['server_core']}; the load generator, the resolver, the HTTPS"
        f" policy server and the cache servers to core {meta['options']['load_core']}.",
        "",
        "Throughput and latency. Latency in ms. q/CPU-s: answers per second of the server's own"
        " CPU time, i.e. throughput as if it had its core alone (other engineers' jobs share"
        f" this machine; {NOISY_MARK}: they used over {NOISY_SHARE:.0%} of the server's core"
        " during that pass).",
        "",
    ]
    head = ["pass", "C", "q/s", "p50", "p99", "q/CPU-s", f"{PEER} q/s", "p50", "p99", "q/CPU-s",
            "q/s ours/peer", "q/CPU-s ours/peer"]  # fmt: skip
    lines += _table(head, load_rows(r, n))
    lines += ["", "Startup and memory:", ""]
    lines += _table(["measure", "tlspolicy", PEER, "ours/peer"], memory_rows(r, n))
    lines += workers_lines(r)
    lines += ["", "Targets (issues 6 and 12):", ""]
    lines += _table(["target", "measured", "met"], targets(r))
    lines += profile_lines(r)
    if r.get("checks"):
        lines += ["", "Problems seen during the run:", ""]
        lines += [f"* {c}" for c in r["checks"]]
    lines += ["", *meta.get("notes", [])]
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "latest.json", directory / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
