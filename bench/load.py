"""Build and run the C load generator (``loadgen.c``), pinned to the load core.

``run_load`` also samples the server's CPU time around the pass, so every result says how
busy the server's core was (near 100 %: the server is the bottleneck) next to the
generator's own CPU share (well under 100 %: the generator is not).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.servers import CLOCK_TICKS, WORK, ServerProcess

SOURCE = Path(__file__).resolve().parent / "loadgen.c"
BINARY = WORK / "loadgen"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Werror"]
EXTRA_WAIT_S = 30.0  # beyond the pass's own bound, before we give up on the generator


def build_loadgen() -> Path:
    """Compile ``loadgen.c`` with the Debian gcc when the binary is missing or older."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not BINARY.exists() or BINARY.stat().st_mtime < SOURCE.stat().st_mtime:
        subprocess.run(["gcc", *CFLAGS, "-o", str(BINARY), str(SOURCE)], check=True)
    return BINARY


@dataclass
class Pass:
    """One load pass as ``loadgen`` reported it, plus the server's CPU use during it."""

    label: str
    connections: int
    keys: int
    raw: dict[str, Any]
    server_cpu_s: float
    core_busy_s: float  # all CPU time spent on the server's core during the pass
    replies: Path | None = None
    dns_queries: int | None = None  # what the resolver was asked during the pass

    @property
    def qps(self) -> float:
        return float(self.raw["qps"])

    @property
    def lat(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.raw["lat_us"].items()}

    @property
    def counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.raw["counts"].items()}

    @property
    def failures(self) -> int:
        """Requests without a reply: timeouts, connection errors, unfinished."""
        return int(self.raw["timeouts"]) + int(self.raw["errors"]) + int(self.raw["unfinished"])

    @property
    def server_cpu_share(self) -> float:
        wall = float(self.raw["outer_wall_s"])
        return self.server_cpu_s / wall if wall > 0 else 0.0

    @property
    def other_cpu_share(self) -> float:
        """Share of the server's core used by anything else (other engineers' jobs)."""
        wall = float(self.raw["outer_wall_s"])
        return max(self.core_busy_s - self.server_cpu_s, 0.0) / wall if wall > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "connections": self.connections,
            "keys": self.keys,
            "answered": self.raw["answered"],
            "wall_s": self.raw["wall_s"],
            "qps": round(self.qps, 1),
            "lat_us": self.raw["lat_us"],
            "counts": self.counts,
            "timeouts": self.raw["timeouts"],
            "errors": self.raw["errors"],
            "unfinished": self.raw["unfinished"],
            "server_cpu_s": round(self.server_cpu_s, 3),
            "outer_wall_s": round(float(self.raw["outer_wall_s"]), 4),
            "server_cpu_share": round(self.server_cpu_share, 3),
            "other_cpu_share_on_server_core": round(self.other_cpu_share, 3),
            "loadgen_cpu_share": self.raw["cpu_share"],
            "retried": self.raw.get("retried", 0),
            "dns_queries": self.dns_queries,
            "dns_per_key": None
            if self.dns_queries is None or not self.keys
            else round(self.dns_queries / self.keys, 2),
        }


def core_busy_s(core: int) -> float:
    """CPU seconds core ``core`` has spent busy since boot (``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            ticks = [int(v) for v in line.split()[1:]]
            idle = ticks[3] + ticks[4]  # idle + iowait
            return (sum(ticks[:8]) - idle) / CLOCK_TICKS
    raise RuntimeError(f"/proc/stat has no cpu{core}")


def run_load(
    server: ServerProcess,
    keyfile: Path,
    *,
    label: str,
    core: int,
    server_core: int,
    connections: int,
    count: int = 0,
    duration: float,
    timeout_ms: int,
    replies: Path | None = None,
    extra: Sequence[str] = (),
) -> Pass:
    """One pass: at most ``count`` requests (0: no limit) and at most ``duration`` seconds."""
    keys = sum(1 for line in keyfile.read_text().splitlines() if line)
    argv = [
        "taskset", "-c", str(core), str(BINARY),
        "-p", str(server.port),
        "-k", str(keyfile),
        "-c", str(connections),
        "-d", f"{duration:g}",
        "-t", str(timeout_ms),
    ]  # fmt: skip
    if count:
        argv += ["-n", str(count)]
    if replies is not None:
        argv += ["-r", str(replies)]
    argv += extra
    before = server.cpu_s()
    busy_before = core_busy_s(server_core)
    started = time.monotonic()
    done = subprocess.run(
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=duration + timeout_ms / 1000 + EXTRA_WAIT_S,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
    cpu = server.cpu_s() - before
    busy = core_busy_s(server_core) - busy_before
    raw = json.loads(done.stdout)
    # The generator's wall clock starts after its connections are open; ours includes that.
    raw.setdefault("outer_wall_s", time.monotonic() - started)
    return Pass(label, connections, keys, raw, cpu, busy, replies)
