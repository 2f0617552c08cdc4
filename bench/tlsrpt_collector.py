"""The TLSRPT collector's sustained datagrams per second on one core, with none dropped.

``.venv/bin/python -m bench.tlsrpt_collector`` runs the real ``Collector`` + ``BatchWriter``
+ SQLite store (uvloop when installed) in a child process pinned to core 0, and a sender on
core 1 that writes libtlsrpt-shaped datagrams (an MTA-STS policy with one failure detail,
about 400 bytes) the way libtlsrpt does: ``sendto`` with ``MSG_DONTWAIT``, so a full queue
is an EAGAIN, i.e. a lost event.

Two measurements:

* ``max``: a blocking sender (it waits for room, loses nothing) for ``--count`` datagrams:
  the collector's throughput when it is the bottleneck.
* ``paced``: ``MSG_DONTWAIT`` at fixed rates for ``--seconds`` each; the figure that
  matters is the highest rate with 0 EAGAIN (what libtlsrpt would lose).

The end of a run is a marker datagram (invalid JSON on purpose): AF_UNIX datagrams keep
their order, so when the collector has counted the marker it has read everything before it.
The queue holds ``net.unix.max_dgram_qlen`` + 1 datagrams (printed); the kernel default of
10 makes short scheduling gaps visible as drops, so results depend on that sysctl. To
measure with systemd's 512 without touching the host (the sysctl is per network
namespace)::

    unshare --net sh -c 'echo 512 > /proc/sys/net/unix/max_dgram_qlen &&
        .venv/bin/python -m bench.tlsrpt_collector'
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.tlsrpt.collector import QLEN_SYSCTL, Collector
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore
from tlspolicy.tlsrpt.store import BatchWriter

MARKER = b"end-of-run"
DATAGRAM = json.dumps(
    {
        "dpv": "1",
        "d": "example.com",
        "pr": "v=TLSRPTv1; rua=mailto:tlsrpt@example.com",
        "policies": [
            {
                "policy-type": 2,
                "policy-domain": "example.com",
                "policy-string": [
                    "version: STSv1",
                    "mode: enforce",
                    "mx: mx.example.com",
                    "max_age: 604800",
                ],
                "mx-host": ["mx.example.com"],
                "failure-details": [
                    {"c": 202, "s": "192.0.2.1", "n": "mx.example.com", "r": "198.51.100.7"}
                ],
                "t": 1,
                "f": 1,
            }
        ],
    }
).encode()


def collector_main(sock_path: str, db_path: str, conn: Connection, cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    try:
        import uvloop  # noqa: PLC0415 - optional, as in tlspolicy serve

        uvloop.run(_collect(sock_path, db_path, conn))
    except ImportError:
        asyncio.run(_collect(sock_path, db_path, conn))


async def _collect(sock_path: str, db_path: str, conn: Connection) -> None:
    store = SqliteReportStore(db_path)
    await store.open()
    writer = BatchWriter(store)
    collector = Collector(TlsrptConfig(collector_socket=sock_path), writer)
    collector.start()
    flusher = asyncio.create_task(writer.run())
    conn.send("ready")
    for _ in range(int(conn.recv())):  # one round per measurement
        marks = collector.stats.invalid
        started_cpu = time.process_time()
        while collector.stats.invalid == marks:  # noqa: ASYNC110 - the marker is the only invalid datagram
            await asyncio.sleep(0.001)
        await writer.flush()
        conn.send(
            {
                "received": collector.stats.received,
                "written": writer.written,
                "cpu_s": time.process_time() - started_cpu,
            }
        )
    flusher.cancel()
    await collector.aclose()
    await store.aclose()


def blocking_run(path: str, count: int) -> float:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        started = time.perf_counter()
        for _ in range(count):
            s.sendto(DATAGRAM, path)
        s.sendto(MARKER, path)
        return time.perf_counter() - started


def paced_run(path: str, rate: int, seconds: float) -> tuple[int, int, float]:
    sent = dropped = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(int(elapsed * rate) - sent - dropped):
                try:
                    s.sendto(DATAGRAM, socket.MSG_DONTWAIT, path)
                    sent += 1
                except BlockingIOError:
                    dropped += 1
            time.sleep(0.0002)
        s.setblocking(True)
        s.sendto(MARKER, path)
    return sent, dropped, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="2000,5000,10000,20000,40000")
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    qlen = Path(QLEN_SYSCTL).read_text().strip()
    work = Path(tempfile.mkdtemp(prefix="tlsrpt-bench-"))
    sock, db = str(work / "tlsrpt.sock"), str(work / "tlsrpt.sqlite3")
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=collector_main, args=(sock, db, child, 0))
    proc.start()
    os.sched_setaffinity(0, {1})
    assert parent.recv() == "ready"
    parent.send(str(1 + len(rates)))
    print(f"net.unix.max_dgram_qlen = {qlen}; datagram {len(DATAGRAM)} bytes; collector on core 0")
    before = 0
    wall = blocking_run(sock, args.count)
    got = parent.recv()
    print(
        f"max:   {args.count} datagrams (blocking sender) in {wall:.2f} s = "
        f"{args.count / wall:,.0f}/s; collector CPU {got['cpu_s']:.2f} s = "
        f"{args.count / got['cpu_s']:,.0f} datagrams per CPU-second; stored {got['written']}"
    )
    before = got["received"]
    for rate in rates:
        sent, dropped, wall = paced_run(sock, rate, args.seconds)
        got = parent.recv()
        received = got["received"] - before - 1
        before = got["received"]
        print(
            f"paced: {rate:>6}/s for {wall:.1f} s: sent {sent}, EAGAIN (lost) {dropped}, "
            f"received {received}, collector CPU {got['cpu_s'] / wall:.0%} of a core"
        )
    proc.join(timeout=30)


if __name__ == "__main__":
    main()
