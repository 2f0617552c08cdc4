"""The figures as table cells: ms, MB, ratios, answers per CPU-second, Markdown tables.

Shared by ``report.py`` (the tables) and ``targets.py`` (the targets against the figures).
"""

from __future__ import annotations

from typing import Any

PEER = "postfix-mta-sts-resolver"
TLSPOL = "postfix-tlspol"
NA = "—"


def fmt_ms(us: float | None) -> str:
    if us is None:
        return NA
    ms = us / 1000
    if ms < 1:
        return f"{ms:.3f}"
    if ms < 10:
        return f"{ms:.2f}"
    return f"{ms:.1f}"


def fmt_mb(kib: float | None) -> str:
    return NA if kib is None else f"{kib * 1024 / 1e6:.1f}"


def kib_to_mb(kib: float) -> float:
    return kib * 1024 / 1e6


def fmt_ratio(ours: float | None, peer: float | None) -> str:
    if not ours or not peer:
        return NA
    return f"{ours / peer:.2f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
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


def pass_cells(p: dict[str, Any] | None) -> list[str]:
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
        fmt_ms(lat["p50"]),
        fmt_ms(lat["p99"]),
        NA if efficiency is None else f"{efficiency:,.0f}",
    ]


def with_tlspol(r: dict[str, Any]) -> bool:
    """Whether the run measured postfix-tlspol (its columns are left out otherwise)."""
    return bool(r.get("meta", {}).get("tlspol_version")) or "tlspol" in r.get("startup", {})


def qps_of(p: dict[str, Any] | None) -> float | None:
    return None if p is None else float(p["qps"])
