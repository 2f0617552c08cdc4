"""``bench/run``: the benchmark suite of issue 6 (see ``bench/README.md``).

Builds the load generator, installs postfix-mta-sts-resolver (and py-spy) into virtualenvs
under ``bench/.work``, starts the benchmark lab, runs the chosen scenarios, prints the table
and writes ``bench/results/latest.json`` and ``latest.md``. With ``--tlspol-bin`` (or
``TLSPOL_BIN``) postfix-tlspol is measured too, in the scenarios it supports (``tlspol.py``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import load, report, servers, system, tlspol, workers
from bench.lab import start_bench_lab
from bench.scenarios import Bench, Options

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = ("startup", "cold", "hot", "backends", "memory", "temp", "workers")
NOTES = [
    "How it was measured:",
    "",
    "* Load: `bench/loadgen.c`, C persistent connections, one request at a time per connection"
    " (like Postfix's smtp processes). Cold passes ask every domain once, on a freshly started"
    " server; hot passes cycle over the cached domains for a fixed time, repeated, and the"
    " fastest pass is shown (other jobs on this machine only ever slow a pass down). The"
    " generator's own CPU use stays far below one core (in latest.json: loadgen_cpu_share).",
    "* Lab (`bench/lab.py`, built from `tests/lab`): NSD serving a DNSSEC-signed `dane.bench`"
    " (every domain: 2 MX hosts, each with A and TLSA 3 1 1) and an unsigned `sts.bench` (every"
    " domain: 2 MX hosts, `_mta-sts` TXT, an `enforce` policy on one HTTPS server with a test"
    " CA), behind a validating Unbound that was asked every question once before the servers"
    " start (a warm resolver).",
    "* Both servers run with their defaults apart from what the lab needs: the resolver address,"
    " the test CA, private policy-host addresses allowed; tlspolicy with the sqlite cache"
    " (its default) unless a row names another backend; the peer with its internal cache"
    " sized to hold every domain, and its resolver set through a private resolv.conf in its own"
    " mount namespace (`unshare -m`).",
    "* Memory with 10,000 and 100,000 cached domains (`bench/fill.py`): real lookups of that"
    " many domains would take minutes, so the cache file is written with clones (new names,"
    " current timestamps) of the entries a server stored for one real DANE domain and one real"
    " MTA-STS domain, half of each; the server is then asked for every name, which loads each"
    " entry into its in-process cache layer, and its RSS is read.",
    "* The floor rows: the same hot passes against `loadgen -L`, a C responder with one fixed"
    " reply, on the server's core: what the generator, loopback TCP and this machine manage"
    " without any policy server (at C=16 and 64 the generator itself is the limit there).",
    "* RSS with 100,000 domains: with the default `cache.hot_entries` only part of them is held"
    " in process (the rest stays in the sqlite file); the 'all in the in-process layer' row"
    " raises `cache.hot_entries` to 100,000, the worst case.",
    "* The TEMP row: the server's resolver is a socket that reads queries and never answers.",
]
TLSPOL_NOTE = (
    "* postfix-tlspol (when `--tlspol-bin`/`TLSPOL_BIN` names its binary, built by the operator"
    " outside the repository): its defaults (prefetch on, its in-memory cache with a cache file)"
    " apart from the listen address, `dns.address` (the lab Unbound), `server.log-level: {level}`"
    " (its default `info` logs a line per query; ours logs none), the lab CA through"
    " `SSL_CERT_FILE` (and an empty `SSL_CERT_DIR`), and, since Go's resolver looks up the"
    " policy host from /etc/resolv.conf, the peer's private resolv.conf (`unshare -m`)."
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument(
        "-n",
        "--domains",
        type=int,
        default=2000,
        help="DANE domains, and as many MTA-STS domains (default 2000)",
    )
    parser.add_argument(
        "--fill",
        type=int,
        default=100_000,
        help="cached domains for the large RSS figure (default 100000)",
    )
    parser.add_argument(
        "--fill-first",
        type=int,
        default=10_000,
        help="cached domains for the first RSS figure (default 10000)",
    )
    parser.add_argument(
        "--hot-seconds", type=float, default=5.0, help="length of one hot pass (default 5)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="hot passes (fastest kept) and startups (median kept) per figure (default 3)",
    )
    parser.add_argument(
        "--backend-domains",
        type=int,
        default=500,
        help="DANE and MTA-STS domains each in the per-backend passes (default 500)",
    )
    parser.add_argument(
        "--connections", default="1,16,64", help="C values for the hot passes (default 1,16,64)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default all)",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip postfix-mta-sts-resolver")
    parser.add_argument(
        "--tlspol-bin",
        metavar="PATH",
        default=os.environ.get("TLSPOL_BIN") or None,
        help="postfix-tlspol's binary, also measured when given (default: $TLSPOL_BIN; unset:"
        " not measured; bench/README.md says how to build it outside the repository)",
    )
    parser.add_argument(
        "--tlspol-log-level",
        choices=tlspol.LOG_LEVELS,
        default=tlspol.DEFAULT_LOG_LEVEL,
        help=f"postfix-tlspol's server.log-level (default {tlspol.DEFAULT_LOG_LEVEL}; its own"
        " default, info, logs a line per query)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    parser.add_argument("--server-core", type=int, default=0)
    parser.add_argument("--load-core", type=int, default=1)
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help="where latest.json and latest.md go (default bench/results)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)  # fmt: skip


def options(args: argparse.Namespace) -> Options:
    chosen = frozenset(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"bench/run: unknown scenarios: {', '.join(sorted(unknown))}")
    cores = os.sched_getaffinity(0)
    if args.server_core == args.load_core or not {args.server_core, args.load_core} <= cores:
        raise SystemExit(f"bench/run: need two distinct cores out of {sorted(cores)}")
    if args.fill_first > args.fill:
        raise SystemExit("bench/run: --fill-first must not exceed --fill")
    return Options(
        n=args.domains,
        fill=args.fill,
        fill_first=args.fill_first,
        hot_seconds=args.hot_seconds,
        repeats=max(1, args.repeats),
        backend_domains=min(args.backend_domains, args.domains),
        connections=tuple(int(c) for c in args.connections.split(",")),
        scenarios=chosen,
        peer=not args.no_peer,
        profile=not args.no_profile,
        server_core=args.server_core,
        load_core=args.load_core,
        tlspol_bin=None if not args.tlspol_bin else str(tlspol.check_binary(args.tlspol_bin)),
        tlspol_log_level=args.tlspol_log_level,
    )


def our_event_loop() -> str:
    """``tlspolicy serve`` runs on uvloop when the project virtualenv has it."""
    probe = subprocess.run(
        [str(servers.REPO / ".venv" / "bin" / "python"), "-c", "import uvloop"],
        check=False,
        capture_output=True,
    )
    return "uvloop" if probe.returncode == 0 else "asyncio"


def tlspolicy_version() -> str:
    from importlib.metadata import version  # noqa: PLC0415 - only for the report

    return version("postfix-tlspolicy")


def compile_package() -> None:
    """Byte-compile tlspolicy as ``pip install`` does (the peers' packages come compiled):
    from a checkout under ``PYTHONDONTWRITEBYTECODE`` (set on this machine) every start
    would otherwise compile each changed module again, about 100 ms of the start-up."""
    import tlspolicy  # noqa: PLC0415 - only its location

    compileall.compile_dir(Path(tlspolicy.__file__).parent, quiet=1)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    opts = options(args)
    began = time.monotonic()
    meta: dict[str, Any] = {
        "command": "bench/run" + ("" if not argv else " " + shlex.join(argv)),
        "options": {k: v for k, v in vars(opts).items() if k != "scenarios"},
        "scenarios": sorted(opts.scenarios),
        "machine": system.machine(),
        "tlspolicy": tlspolicy_version(),
        "event_loop": our_event_loop(),
        "notes": NOTES,
    }
    print("building bench/loadgen.c with gcc -O2 ...", flush=True)
    load.build_loadgen()
    compile_package()
    if opts.peer:
        print("installing postfix-mta-sts-resolver into bench/.work/peer-venv ...", flush=True)
        meta["peer_version"] = servers.ensure_peer_venv()
    if opts.tlspol_bin is not None:
        meta["tlspol_version"] = tlspol.version(Path(opts.tlspol_bin))
        meta["notes"] = [*NOTES, TLSPOL_NOTE.format(level=opts.tlspol_log_level)]
        print(f"measuring postfix-tlspol {meta['tlspol_version']} ({opts.tlspol_bin})", flush=True)
    if opts.profile:
        system.ensure_py_spy()
    work = Path(tempfile.mkdtemp(prefix="tlspolicy-bench-"))
    print(f"starting the lab in {work} ({opts.n} DANE + {opts.n} MTA-STS domains) ...", flush=True)
    with start_bench_lab(work, n_dane=opts.n, n_sts=opts.n) as lab:
        meta["lab_setup_s"] = {k: round(v, 2) for k, v in lab.timings.items()}
        print(f"  lab ready: {meta['lab_setup_s']}", flush=True)
        system.pin(os.getpid(), opts.load_core)
        print(
            f"pinned with taskset: servers under test -> core {opts.server_core}; load generator,"
            f" NSD, Unbound, HTTPS server, Redis/PostgreSQL and this script -> core"
            f" {opts.load_core}",
            flush=True,
        )
        bench = Bench(opts, lab, work)
        for name in SCENARIOS:
            if name not in opts.scenarios:
                continue
            print(f"== {name}", flush=True)
            step = {
                "cold": bench.cold_latency,
                "hot": bench.cold_and_hot,
                "workers": lambda: workers.run(bench),
            }.get(name)
            steps = [(name, step or getattr(bench, name))]
            if opts.tlspol_bin is not None and name in tlspol.STEPS:
                steps.append((f"{name} (postfix-tlspol)", partial(tlspol.STEPS[name], bench)))
            for what, run in steps:
                try:
                    run()
                except Exception as exc:  # a broken scenario must not lose the others' figures
                    traceback.print_exc()
                    bench.checks.append(f"scenario {what} failed: {type(exc).__name__}: {exc}")
    meta["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta["duration_s"] = round(time.monotonic() - began, 1)
    meta["machine"]["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    meta["peer_event_loop"] = bench.results.pop("peer_event_loop", None)
    results = {"meta": meta, **bench.results, "checks": bench.checks}
    json_path, md_path = report.write(results, args.results)
    print()
    print(report.markdown(results))
    print(f"wrote {json_path} and {md_path} in {meta['duration_s']:.0f} s")
    if not args.keep:
        import shutil  # noqa: PLC0415

        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work directory kept: {work}")
    return 1 if bench.checks else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
