"""Results as tables: printed, and written to ``bench/results/latest.{json,md}``.

Ratios are always ours / peer (and ours / postfix-tlspol, whose columns appear only when
the run measured it): above 1 is better for throughput, below 1 is better for latency, time
and memory. RSS is in MB of 10^6 bytes (``/proc/<pid>/status`` counts KiB), the
stricter reading of the issue's "60 MB" and "250 MB". The targets are in ``targets.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cells import (
    NA,
    NOISY_MARK,
    NOISY_SHARE,
    PEER,
    TLSPOL,
    fmt_mb,
    fmt_ms,
    fmt_ratio,
    pass_cells,
    per_cpu_second,
    qps_of,
    table,
    with_tlspol,
)
from bench.targets import targets


def load_rows(r: dict[str, Any], n: int) -> list[list[str]]:
    cold, hot = r.get("cold", {}), r.get("hot", {})
    rows: list[list[str]] = []
    third = with_tlspol(r)

    def add(name: str, c: int, ours: dict[str, Any] | None, peer: dict[str, Any] | None,
            peer_note: str = NA, *, tlspol: dict[str, Any] | None = None) -> None:  # fmt: skip
        if ours is None and peer is None and tlspol is None:
            return
        per = [f"{p['dns_per_key']:g}" if p and p.get("dns_per_key") else NA
               for p in (ours, peer, tlspol)]  # fmt: skip
        if per != [NA, NA, NA]:
            name += (f" (DNS q/domain {per[0]}" + ("" if per[1] == NA else f", peer {per[1]}")
                     + ("" if per[2] == NA else f", tlspol {per[2]}") + ")")  # fmt: skip
        peer_cells = pass_cells(peer) if peer is not None else [peer_note, NA, NA, NA]
        ratio = fmt_ratio(qps_of(ours), qps_of(peer))
        cpu_ratio = fmt_ratio(per_cpu_second(ours), per_cpu_second(peer))
        row = [name, str(c), *pass_cells(ours), *peer_cells, ratio, cpu_ratio]
        if third:
            row += [*pass_cells(tlspol), fmt_ratio(qps_of(ours), qps_of(tlspol)),
                    fmt_ratio(per_cpu_second(ours), per_cpu_second(tlspol))]  # fmt: skip
        rows.append(row)

    passes = [(cold, "dane", f"cold, {n} DANE domains", (1, 16)),
              (cold, "sts", f"cold, {n} MTA-STS domains", (1, 16)),
              (hot, "sts", "hot, MTA-STS domains", (1, 16, 64)),
              (hot, "dane", "hot, DANE domains", (1, 16, 64))]  # fmt: skip
    for figures, kind, name, connections in passes:
        note = "no DANE support" if kind == "dane" else NA  # the peer has no DANE figures
        for c in connections:
            add(name, c, figures.get(f"ours_{kind}_c{c}"), figures.get(f"peer_{kind}_c{c}"),
                note, tlspol=figures.get(f"tlspol_{kind}_c{c}"))  # fmt: skip
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
    who = ("ours", "peer", "tlspol") if with_tlspol(r) else ("ours", "peer")
    cached = f"ours: {2 * n} domains cached, peer: {n}"
    if "tlspol" in who:
        cached += f", {TLSPOL}: {2 * n}"

    def plain(v: float | None) -> str:
        return NA if v is None else str(v)

    measured: list[tuple[str, list[float | None], Callable[[float | None], str]]] = [
        ("startup to first answer (ms)", [start.get(w, {}).get("first_answer_ms") for w in who],
         plain),
        ("RSS idle (MB)", [start.get(w, {}).get("idle_rss_kib") for w in who], fmt_mb),
        (f"RSS after the cold pass over {n} MTA-STS domains (MB)",
         [rss.get(f"{w}_after_sts_kib") for w in who], fmt_mb),
        (f"RSS after the hot passes ({cached}) (MB)",
         [rss.get(f"{w}_after_hot_kib") for w in who], fmt_mb),
    ]  # fmt: skip
    rows = [
        [name, *(text(v) for v in values), *(fmt_ratio(values[0], v) for v in values[1:])]
        for name, values, text in measured
    ]
    pad = [NA] * (2 * (len(who) - 1))  # the other servers' cells and the ratios
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
        rows.append([f"RSS with {count:,} domains cached, {where} (MB)", fmt_mb(memory[key]),
                     *pad])  # fmt: skip
    if "cached_entries" in memory:
        rows.append(["entries in the cache after the fill", f"{memory['cached_entries']:,}",
                     *pad])  # fmt: skip
    return [row for row in rows if any(cell != NA for cell in row[1 : 1 + len(who)])]


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
            rate = per_cpu_second(p)
            rows.append([what, "64", f"{p['qps']:,.0f}", fmt_ms(p["lat_us"]["p99"]), str(bad),
                         str(p.get("retried", 0)), f"{p['server_cpu_share']:.2f}",
                         NA if rate is None else f"{rate:,.0f}",
                         f"{p['loadgen_cpu_share']:.0%}"])  # fmt: skip
    lines = ["", f"Workers (`server.workers`; server and generator share both cores; 2 / 1 ="
             f" {w.get('ratio_2_to_1', NA)}x; server cores: the CPU all workers used, in"
             " cores; q/CPU-s: answers per second of that CPU):", ""]  # fmt: skip
    head = ["pass", "C", "q/s", "p99", "failed", "retried (Postfix retry)", "server cores",
            "q/CPU-s", "loadgen CPU"]  # fmt: skip
    return lines + table(head, rows)


def profile_lines(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, prof in r.get("profiles", {}).items():
        if not prof.get("samples"):
            continue
        lines += ["", f"Top frames, {name.replace('_', ' ')} ({prof['samples']} samples):", ""]
        rows = [[f"{e['share']:.1%}", f"`{e['frame']}`"] for e in prof["own"][:10]]
        lines += table(["own time", "frame"], rows)
        rows = [[f"{e['share']:.1%}", f"`{e['frame']}`"] for e in prof["inclusive"][:10]]
        lines += ["", *table(["incl. time", "tlspolicy frame"], rows)]
    return lines


def markdown(results: dict[str, Any]) -> str:
    r, meta = results, results["meta"]
    n = meta["options"]["n"]
    m = meta["machine"]
    servers = [
        f"tlspolicy {meta['tlspolicy']} ({meta.get('event_loop', NA)})",
        f"{PEER} {meta.get('peer_version', NA)} ({meta.get('peer_event_loop') or NA})",
    ]
    if meta.get("tlspol_version"):
        servers.append(f"{TLSPOL} {meta['tlspol_version']} (Go)")
    lines = [
        f"Measured {meta['finished']} with `{meta['command']}`: {', '.join(servers[:-1])} and"
        f" {servers[-1]}, each on one core, same run, same lab.",
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
    memory_head = ["measure", "tlspolicy", PEER, "ours/peer"]
    if with_tlspol(r):
        head += [f"{TLSPOL} q/s", "p50", "p99", "q/CPU-s", "q/s ours/tlspol",
                 "q/CPU-s ours/tlspol"]  # fmt: skip
        memory_head[3:3] = [TLSPOL]
        memory_head.append("ours/tlspol")
    lines += table(head, load_rows(r, n))
    lines += ["", "Startup and memory:", ""]
    lines += table(memory_head, memory_rows(r, n))
    lines += workers_lines(r)
    lines += ["", "Targets (issues 6 and 12):", ""]
    lines += table(["target", "measured", "met"], targets(r))
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
