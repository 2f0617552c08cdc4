"""The soak test of issue 15: a million hot queries with memos expiring, RSS sampled throughout.

``.venv/bin/python -m bench.soak`` (root: the lab binds port 443; see ``--help``). A leak in a
per-query or per-expiry structure (the memo index was one) shows as RSS that keeps growing
after the warm-up; a bounded server levels off. Steps:

* the benchmark lab (``bench/lab.py``) with two real domains; a seed server answers one DANE
  and one MTA-STS domain, and their cache entries are cloned into ``--domains`` names
  (``bench/fill.py``): every query of the soak is a cached domain;
* the server runs with ``cache.hot_ttl`` of ``--hot-ttl`` seconds, so every memo and hot
  copy expires and is re-made (re-read from the sqlite file) many times during the run;
* ``loadgen`` (``bench/loadgen.c``) asks ``--queries`` questions over ``--connections``
  persistent connections, the first ``--warmup`` of them as a separate warm-up pass; the
  server's RSS is read every ``--sample`` seconds.

Passes when the RSS grows less than ``--max-growth`` percent from the end of the warm-up to
the end, and every answer is ``OK`` (no time-out, no error, no TEMP). Results go to
``bench/results/soak.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import fill, load, servers
from bench.lab import (
    BOGUS_CANARY,
    SECURE_CANARY,
    BenchLab,
    dane_domain,
    fill_domain,
    start_bench_lab,
    sts_domain,
)

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
TEMPLATES = (dane_domain(0), sts_domain(0))
TIMEOUT_MS = 5_000  # one answer may take this long before it counts as failed
PASS_BOUND_S = 3_600.0  # a pass ends after this even if its count is not reached


@dataclass
class Sampler:
    """RSS of one process every ``interval`` seconds, from a thread, until ``stop``."""

    server: servers.ServerProcess
    interval: float
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def take(self) -> int:
        rss = self.server.rss_kib()
        self.samples.append((round(time.monotonic() - self.started, 1), rss))
        return rss

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self.take()
            print(f"    {self.samples[-1][0]:>7.1f} s  RSS {rss / 1024:7.1f} MiB", flush=True)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--queries", type=int, default=1_000_000, help="total (default 1000000)")
    p.add_argument("--warmup", type=int, default=100_000, help="of which warm-up (100000)")
    p.add_argument("--connections", type=int, default=64, help="persistent (default 64)")
    p.add_argument("--domains", type=int, default=20_000, help="cached domains (default 20000)")
    p.add_argument("--hot-ttl", type=float, default=1.0, help="cache.hot_ttl (default 1 s)")
    p.add_argument("--sample", type=float, default=5.0, help="RSS every N s (default 5)")
    p.add_argument("--max-growth", type=float, default=5.0, help="percent (default 5)")
    p.add_argument("--results", type=Path, default=RESULTS, help=f"JSON (default {RESULTS})")
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--load-core", type=int, default=1)
    return p.parse_args(argv)


def _server(lab: BenchLab, work: Path, tag: str, core: int, **cache: Any) -> servers.ServerProcess:
    return servers.ours(
        work, tag, core, nameserver=lab.resolver, ca_file=lab.ca_file,
        secure_canary=SECURE_CANARY, bogus_canary=BOGUS_CANARY,
        cache={"backend": "sqlite", "path": str(work / f"{tag}.sqlite3"), **cache},
        mta_sts={"recheck_interval": 3600},  # clones keep their templates' check times
    )  # fmt: skip


def _seed(lab: BenchLab, work: Path, core: int, names: list[str]) -> Path:
    seed = _server(lab, work, "seed", core)
    try:
        seed.start(fill_domain(10_000_000))
        for domain in TEMPLATES:
            servers.socketmap_request(seed.port, domain)
    finally:
        seed.stop()  # flushes its cache file
    templates = fill.read_templates(work / "seed.sqlite3", list(TEMPLATES))
    fill.write_clones(work / "soak.sqlite3", templates, names)
    return work / "soak.sqlite3"


def _errors(one: load.Pass) -> int:
    """Requests without an answer, and answers other than OK (every domain is cached)."""
    return one.failures + sum(n for kind, n in one.counts.items() if kind != "OK")


def soak(args: argparse.Namespace, lab: BenchLab, work: Path) -> dict[str, Any]:
    names = [fill_domain(i) for i in range(args.domains)]
    print(f"cloning {args.domains} cache entries ...", flush=True)
    _seed(lab, work, args.load_core, names)
    keyfile = lab.write_keys(work / "soak.keys", names)
    server = _server(lab, work, "soak", args.server_core, hot_ttl=args.hot_ttl)
    passes: list[load.Pass] = []
    try:
        server.start(fill_domain(10_000_001))
        sampler = Sampler(server, args.sample)
        rss_start = sampler.take()
        plan = [("warm-up", args.warmup), ("soak", args.queries - args.warmup)]
        rss_warm = rss_start
        with sampler:
            for label, count in plan:
                print(f"  {label}: {count} queries over {args.connections} connections", flush=True)
                one = load.run_load(
                    server, keyfile, label=label, core=args.load_core,
                    server_core=args.server_core, connections=args.connections,
                    count=count, duration=PASS_BOUND_S, timeout_ms=TIMEOUT_MS,
                )  # fmt: skip
                passes.append(one)
                if label == "warm-up":
                    rss_warm = sampler.take()
        rss_end = sampler.take()
        peak = server.peak_rss_kib()
    finally:
        server.stop()
    answered = sum(int(p.raw["answered"]) for p in passes)
    growth = 100.0 * (rss_end - rss_warm) / rss_warm
    errors = sum(_errors(p) for p in passes)
    return {
        "queries": answered,
        "connections": args.connections,
        "domains": args.domains,
        "hot_ttl_s": args.hot_ttl,
        "duration_s": round(sum(float(p.raw["outer_wall_s"]) for p in passes), 1),
        "qps": round(answered / max(sum(float(p.raw["wall_s"]) for p in passes), 1e-9)),
        "rss_start_kib": rss_start,
        "rss_after_warmup_kib": rss_warm,
        "rss_end_kib": rss_end,
        "peak_rss_kib": peak,
        "growth_after_warmup_pct": round(growth, 2),
        "errors": errors,
        "passes": [p.summary() for p in passes],
        "rss_samples": sampler.samples,
        "passed": errors == 0 and growth < args.max_growth and answered == args.queries,
    }


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    load.build_loadgen()
    work = Path(tempfile.mkdtemp(prefix="tlspolicy-soak-"))
    try:
        with start_bench_lab(work, n_dane=1, n_sts=1) as lab:
            result = soak(args, lab, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"queries {result['queries']} over {result['connections']} connections,"
        f" {result['domains']} domains, hot_ttl {result['hot_ttl_s']:g} s;"
        f" duration {result['duration_s']} s ({result['qps']} q/s)\n"
        f"RSS start {_mib(result['rss_start_kib'])}, after warm-up"
        f" {_mib(result['rss_after_warmup_kib'])}, end {_mib(result['rss_end_kib'])}"
        f" (peak {_mib(result['peak_rss_kib'])}); growth after warm-up"
        f" {result['growth_after_warmup_pct']} %; errors {result['errors']}\n"
        f"{'PASS' if result['passed'] else 'FAIL'}; wrote {args.results}"
    )
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
