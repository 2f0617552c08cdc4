"""Scenario ``workers``: ``server.workers`` 1 and 2 on both cores, and a restart under load.

Here the server and the generator share both cores (``taskset`` over both, for every
process): the question is what two processes get out of two cores, so per-core pinning
would answer the wrong one. The ratio (2 workers / 1 worker, same run, same keys, hot
C=64) is the figure; the generator's own CPU share is in the JSON (it uses part of the
second core, so a perfect 2.0 is out of reach).

The restart pass runs the generator with ``-R`` (Postfix's one retry of a broken
connection, ``dict_sockmap.c``) while the supervisor gets SIGUSR2 (a rolling restart):
every request must be answered, with no error, timeout or refused connection.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from bench import load, servers
from bench.lab import BOGUS_CANARY, SECURE_CANARY
from bench.scenarios import HOT_TIMEOUT_MS, Bench

CONNECTIONS = 64
RESTART_PASS_S = 30.0
RESTART_AFTER_S = 2.0


class TreeServer(servers.ServerProcess):
    """A supervisor and its workers: CPU time is the whole process tree's."""

    def cpu_s(self) -> float:
        total = _proc_cpu(self.pid, with_reaped=True)
        for pid in _children(self.pid):
            total += _proc_cpu(pid, with_reaped=False)
        return total


def _proc_cpu(pid: int, *, with_reaped: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if with_reaped:  # workers that exited (a restart) and were waited for
        ticks += int(fields[13]) + int(fields[14])
    return ticks / servers.CLOCK_TICKS


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                found.append(int(entry))
    return found


def _start(bench: Bench, workers: int, cores: str) -> TreeServer:
    port = servers.free_port(udp=False)
    conf = servers.our_config(
        bench.work / f"tlspolicy-workers{workers}.yml",
        port=port,
        nameserver=bench.lab.resolver,
        ca_file=bench.lab.ca_file,
        cache={"backend": "sqlite", "path": str(bench.work / f"workers{workers}.sqlite3")},
        secure_canary=SECURE_CANARY,
        bogus_canary=BOGUS_CANARY,
        server={"workers": workers},
    )
    argv = ["taskset", "-c", cores, str(servers.TLSPOLICY), "serve", "-c", str(conf)]
    log = bench.work / f"tlspolicy-workers{workers}.log"
    server = TreeServer("tlspolicy", argv, port, log, dict(os.environ))
    server.start(bench.probe_key())
    if workers > 1:
        _wait_log(log, f"{workers} workers ready", 60.0)
    return server


def _wait_log(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{text!r} not logged in {timeout:g} s")
        time.sleep(0.1)


def run(bench: Bench) -> None:
    opts = bench.opts
    cores = f"{opts.server_core},{opts.load_core}"
    keys = bench.keys("workers", bench.lab.dane_domains + bench.lab.sts_domains)
    out: dict[str, Any] = bench.results.setdefault("workers", {})

    def one(server: TreeServer, label: str, seconds: float, extra: list[str]) -> load.Pass:
        result = load.run_load(
            server, keys, label=label, core=cores, server_core=opts.server_core,
            connections=CONNECTIONS, duration=seconds, timeout_ms=HOT_TIMEOUT_MS, extra=extra,
        )  # fmt: skip
        s = result.summary()
        print(
            f"  {label:<34} C={CONNECTIONS} {s['qps']:>9.1f} q/s  p99 {s['lat_us']['p99']} µs"
            f"  errors {s['errors']} timeouts {s['timeouts']} retried {s['retried']}"
            f"  server CPU {s['server_cpu_s']:.1f} s  loadgen CPU {s['loadgen_cpu_share']:.0%}",
            flush=True,
        )
        return result

    for workers in (1, 2):
        server = _start(bench, workers, cores)
        try:
            bench.cold(server, keys, f"fill, {workers} worker(s)", 16)
            passes = [one(server, f"hot, {workers} worker(s)", opts.hot_seconds, [])
                      for _ in range(opts.repeats)]  # fmt: skip
            best = max(passes, key=lambda p: p.qps).summary()
            best["all_qps"] = [round(p.qps, 1) for p in passes]
            out[f"hot_w{workers}_c{CONNECTIONS}"] = best
            if workers > 1:
                out["restart"] = _restart_pass(server, one)
        finally:
            server.stop()
    w1, w2 = out.get(f"hot_w1_c{CONNECTIONS}"), out.get(f"hot_w2_c{CONNECTIONS}")
    if w1 and w2:
        out["ratio_2_to_1"] = round(w2["qps"] / w1["qps"], 2)
        print(f"  2 workers / 1 worker: {out['ratio_2_to_1']:.2f}x", flush=True)
    restart = out.get("restart", {})
    if restart.get("errors") or restart.get("timeouts") or restart.get("unfinished"):
        bench.checks.append(f"workers: errors during the rolling restart: {restart}")
    if restart and restart.get("restart_s") is None:
        bench.checks.append("workers: the rolling restart did not finish within the pass")


def _restart_pass(server: TreeServer, one: Any) -> dict[str, Any]:
    """A pass with ``-R`` during which the supervisor does a rolling restart."""

    took: list[float] = []

    def restart() -> None:
        time.sleep(RESTART_AFTER_S)
        began = time.monotonic()
        os.kill(server.pid, signal.SIGUSR2)
        _wait_log(server.log, "rolling restart done", RESTART_PASS_S - RESTART_AFTER_S)
        took.append(time.monotonic() - began)

    trigger = threading.Thread(target=restart, daemon=True)
    trigger.start()
    result: load.Pass = one(server, "hot, 2 workers, rolling restart", RESTART_PASS_S, ["-R"])
    trigger.join()
    summary = result.summary()
    summary["restart_s"] = round(took[0], 2) if took else None  # None: not done in the pass
    return summary
