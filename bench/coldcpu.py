"""Server CPU per cold domain, in-process: ``.venv/bin/python -m bench.coldcpu``.

Starts the benchmark lab (N DANE + N MTA-STS domains, warm Unbound); a child process
(pinned to ``--core``) builds the app the server builds (sqlite cache in a fresh file,
uvloop) and answers every domain once at 16 at a time, like a cold C=16 pass. It prints
the child's CPU time per domain (its sqlite thread and the client side of the TLS
handshakes included; the lab's HTTPS server is a thread of the parent)
and the resolver's questions per domain; with ``--profile`` also cProfile's top functions
by own and cumulative time, whose call counts are exact, so a before/after comparison does
not depend on how busy the machine is.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench import dnscount, servers
from bench.lab import BOGUS_CANARY, SECURE_CANARY, BenchLab, start_bench_lab
from tlspolicy.config import load_config
from tlspolicy.server.app import build_app

CONCURRENCY = 16


async def _answer_all(config_path: Path, domains: list[str], marker: str) -> float:
    """CPU seconds for answering ``domains`` cold; checks each answer has ``marker``."""
    app = await build_app(load_config(str(config_path)))
    try:
        await app.service.start()
        gate = asyncio.Semaphore(CONCURRENCY)
        wrong: list[str] = []

        async def one(domain: str) -> None:
            async with gate:
                reply = await app.answers.answer("QUERY", domain)
                if marker not in reply:
                    wrong.append(f"{domain}: {reply}")

        started = time.process_time()
        await asyncio.gather(*(one(d) for d in domains))
        await app.cache.flush()  # usage counters; the writes themselves are awaited
        spent = time.process_time() - started
        if wrong:
            print(f"  {len(wrong)} unexpected answers, e.g. {wrong[:2]}")
        return spent
    finally:
        await app.aclose()


def _measure(lab: BenchLab, work: Path, what: str, domains: list[str], *, marker: str,
             args: argparse.Namespace) -> None:  # fmt: skip
    """Run the cold pass in a child process: the lab's HTTPS server is a thread of this one."""
    conf = servers.our_config(
        work / f"coldcpu-{what}.yml", port=servers.free_port(udp=False),
        nameserver=lab.resolver, ca_file=lab.ca_file,
        cache={"backend": args.backend, "path": str(work / f"coldcpu-{what}.sqlite3")},
        secure_canary=SECURE_CANARY, bogus_canary=BOGUS_CANARY,
    )  # fmt: skip
    keys = lab.write_keys(work / f"coldcpu-{what}.keys", domains)
    argv = ["taskset", "-c", str(args.core), sys.executable, "-m", "bench.coldcpu",
            "--child", str(conf), str(keys), marker]  # fmt: skip
    argv += ["--profile"] * args.profile
    asked = dnscount.resolver_queries(lab)
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    queries = dnscount.resolver_queries(lab) - asked
    spent = float(done.stdout.splitlines()[0])
    print(
        f"cold {what}: {spent / len(domains) * 1000:.3f} ms CPU per domain"
        f" ({'with cProfile overhead, ' if args.profile else ''}{len(domains)} domains,"
        f" cache {args.backend}),"
        f" {queries / len(domains):.2f} DNS queries per domain",
        flush=True,
    )
    print("\n".join(done.stdout.splitlines()[1:]), done.stderr[-2000:], flush=True)


def _child(conf: str, keyfile: str, marker: str, *, profile: bool) -> None:
    domains = [line for line in Path(keyfile).read_text().splitlines() if line]
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    spent = uvloop.run(_answer_all(Path(conf), domains, marker))
    if profiler is not None:
        profiler.disable()
    print(spent)
    if profiler is not None:
        stats = pstats.Stats(profiler)
        calls = stats.total_calls  # type: ignore[attr-defined]
        print(f"  {calls / len(domains):,.0f} Python function calls per domain (cProfile)")
        for key in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(key).print_stats(25)
            print(text.getvalue().split("\n", 6)[-1][:6000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=500, help="domains of each kind")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    parser.add_argument("--core", type=int, default=0, help="run on this core")
    parser.add_argument(
        "--backend", choices=("sqlite", "memory"), default="sqlite",
        help="cache backend (default sqlite, the server's default; memory: without the disk)",
    )  # fmt: skip
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # conf, keys, marker
    args = parser.parse_args()
    if args.child:
        _child(*args.child, profile=args.profile)
        return
    work = Path(tempfile.mkdtemp(prefix="tlspolicy-coldcpu-"))
    with start_bench_lab(work, n_dane=args.n, n_sts=args.n) as lab:
        _measure(lab, work, "DANE", lab.dane_domains, marker="OK dane-only", args=args)
        _measure(lab, work, "MTA-STS", lab.sts_domains, marker="OK secure match=", args=args)


if __name__ == "__main__":
    main()
