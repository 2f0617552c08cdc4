"""The unix datagram socket Postfix's libtlsrpt writes to, read on the event loop.

libtlsrpt sends each datagram with ``MSG_DONTWAIT``: when our receive queue is full the
sender gets EAGAIN and the event is gone (Postfix logs "Could not report"). So:

* The socket is non-blocking and read with ``loop.add_reader``: each wake-up reads until
  EAGAIN, parses, and counts into the ``BatchWriter``. No disk I/O happens on this path.
  A wake-up also stops after ``MAX_READS_PER_WAKEUP`` datagrams, ``MAX_BYTES_PER_WAKEUP``
  bytes or ``MAX_WAKEUP_S`` seconds, whichever comes first, so the loop still serves
  others. The reader is then paused for one turn of the loop (``call_soon``): left
  registered, it would be called again before the timers that fell due meanwhile. The
  byte and time budgets matter for large datagrams: eight of 256 KB, each with
  thousands of failure details, held the loop for 400 ms in one go.
* Failure details beyond ``datagram.MAX_FAILURE_DETAILS`` per policy are dropped unread;
  their number is counted (``stats.details_dropped``) and logged at most once per
  ``INVALID_LOG_INTERVAL_S``.
* ``SO_RCVBUF`` is raised to ``tlsrpt.receive_buffer``. On Linux this is not what limits
  an AF_UNIX datagram queue: the queue holds at most ``net.unix.max_dgram_qlen`` + 1
  datagrams (sysctl, per network namespace; the kernel default is 10, systemd's is 512),
  and the bytes are charged to the sender's ``SO_SNDBUF``. Raise the sysctl on busy hosts.
* Kernel drops: ``SO_RXQ_OVFL`` is asked for and its counter read when the kernel sends it;
  on Linux no such control message arrives for AF_UNIX (checked: the option is accepted,
  the counter never comes), and ``/proc/net/unix`` has no drop counter either, because an
  AF_UNIX sender is refused instead of the receiver dropping. So ``dropped`` stays 0 on
  Linux today; ``queue_full`` counts wake-ups that found the queue at its limit
  (``max_dgram_qlen`` + 1 datagrams waiting), i.e. moments when a sender may have been
  refused; the first one each ``QUEUE_FULL_LOG_INTERVAL_S`` is logged.
* A datagram that does not parse is counted as invalid and logged at most once per
  ``INVALID_LOG_INTERVAL_S`` with a sample; nothing a peer sends stops the collector.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.errors import ConfigError, DatagramError
from tlspolicy.files import bind_unix, remove_stale_socket
from tlspolicy.metrics.sink import NULL_TLSRPT_METRICS, TlsrptMetricsSink
from tlspolicy.tlsrpt.datagram import MAX_DATAGRAM_BYTES, MAX_FAILURE_DETAILS, parse_datagram
from tlspolicy.tlsrpt.store import BatchWriter

SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # linux/socket.h; Python lacks the name
MAX_READS_PER_WAKEUP = 2000  # then return to the loop; the reader fires again at once
MAX_BYTES_PER_WAKEUP = 1024 * 1024  # datagram bytes read in one wake-up (four of the largest)
MAX_WAKEUP_S = 0.005  # time spent reading and parsing in one wake-up
INVALID_LOG_INTERVAL_S = 60.0
QUEUE_FULL_LOG_INTERVAL_S = 600.0
SAMPLE_CHARS = 200  # of an invalid datagram, in the log
QLEN_SYSCTL = "/proc/sys/net/unix/max_dgram_qlen"

log = logging.getLogger("tlspolicy.tlsrpt")


@dataclass(slots=True)
class CollectorStats:
    received: int = 0
    invalid: int = 0
    dropped: int = 0  # SO_RXQ_OVFL, when the kernel reports it (not for AF_UNIX on Linux)
    queue_full: int = 0
    details_dropped: int = 0  # failure details beyond datagram.MAX_FAILURE_DETAILS
    budget_stops: int = 0  # wake-ups that stopped on a budget with datagrams left


class Collector:
    """Receives libtlsrpt datagrams on ``config.collector_socket`` into ``writer``."""

    def __init__(
        self,
        config: TlsrptConfig,
        writer: BatchWriter,
        *,
        metrics: TlsrptMetricsSink = NULL_TLSRPT_METRICS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.collector_socket is None:
            raise ValueError("tlsrpt.collector_socket is not set")
        self.path = config.collector_socket
        self.config = config
        self.writer = writer
        self.metrics = metrics
        self.stats = CollectorStats()
        self._monotonic = monotonic
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray(MAX_DATAGRAM_BYTES + 1)
        self._view = memoryview(self._buffer)
        self._ancillary = 0
        self._kernel_drops = 0
        self._last_invalid_log = -INVALID_LOG_INTERVAL_S
        self._invalid_unlogged = 0
        self._last_full_log = -QUEUE_FULL_LOG_INTERVAL_S
        self._last_dropped_log = -INVALID_LOG_INTERVAL_S
        self.queue_limit = _queue_limit()

    def bind(self) -> None:
        """Create the socket (replacing a stale one) with the configured owner and mode.

        Raises:
            ConfigError: the socket cannot be created, or the owner/group is unknown.
        """
        path = self.path
        try:
            remove_stale_socket(path)
            os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
            cfg = self.config
            uid = pwd.getpwnam(cfg.socket_owner).pw_uid if cfg.socket_owner else -1
            gid = grp.getgrnam(cfg.socket_group).gr_gid if cfg.socket_group else -1
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            bind_unix(sock, path, cfg.socket_mode, uid, gid)  # tlspolicy.files: no chmod
        except KeyError as exc:
            raise ConfigError(f"tlsrpt.socket_owner/socket_group: unknown {exc}") from None
        except OSError as exc:
            raise ConfigError(
                f"tlsrpt.collector_socket: cannot bind {path}: {exc.strerror or exc}"
            ) from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.receive_buffer)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self._ancillary = socket.CMSG_SPACE(4)
        self._sock = sock

    @property
    def receive_buffer(self) -> int:
        """The SO_RCVBUF the kernel granted (Linux reports twice the value set)."""
        return (
            0 if self._sock is None else self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        )

    def start(self) -> None:
        """Start reading on the running loop (``bind`` first)."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        log.info(
            "TLSRPT collector on %s (receive buffer %d bytes, queue limit %s datagrams)",
            self.path,
            self.receive_buffer,
            self.queue_limit if self.queue_limit else "unknown",
        )

    async def aclose(self) -> None:
        """Read what is queued, then close and remove the socket.

        Draining first means a datagram whose ``sendto`` returned before SIGTERM is counted;
        the writer is flushed by its owner afterwards.
        """
        sock = self._sock
        if sock is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        while self._read_some():
            pass
        self._sock = None
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def _on_readable(self) -> None:
        """The reader callback: read; after a budget stop, let the loop run a turn."""
        if self._read_some() and self._loop is not None and self._sock is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        if self._loop is not None and self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._on_readable)

    def _read_some(self) -> bool:
        """Read until EAGAIN or a budget runs out (see the module docstring).

        Returns:
            True when a budget stopped the reading: more datagrams may be queued.
        """
        sock = self._sock
        if sock is None:
            return False
        reads = 0
        octets = 0
        deadline = self._monotonic() + MAX_WAKEUP_S
        stopped = False
        while True:
            if (
                reads >= MAX_READS_PER_WAKEUP
                or octets >= MAX_BYTES_PER_WAKEUP
                or (reads and self._monotonic() >= deadline)
            ):
                stopped = True
                self.stats.budget_stops += 1
                break
            try:
                size, ancdata, flags, _ = sock.recvmsg_into([self._view], self._ancillary)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # never stop reading because of one bad receive
                log.warning("TLSRPT collector receive failed: %s", exc)
                break
            reads += 1
            octets += size
            if ancdata:
                self._note_drops(ancdata)
            self._handle(size, truncated=bool(flags & socket.MSG_TRUNC))
        if self.queue_limit and reads >= self.queue_limit:
            self._queue_was_full()
        return stopped

    def _queue_was_full(self) -> None:
        self.stats.queue_full += 1
        now = self._monotonic()
        if now - self._last_full_log >= QUEUE_FULL_LOG_INTERVAL_S:
            self._last_full_log = now
            log.warning(
                "TLSRPT collector found its queue full (%d datagrams, %d times so far): "
                "Postfix may have lost events; raise net.unix.max_dgram_qlen",
                self.queue_limit,
                self.stats.queue_full,
            )

    def _handle(self, size: int, *, truncated: bool) -> None:
        self.stats.received += 1
        self.metrics.tlsrpt_datagrams("received")
        data = bytes(self._view[:size])
        try:
            if truncated:
                raise DatagramError(f"datagram larger than {MAX_DATAGRAM_BYTES} bytes")
            datagram = parse_datagram(data)
        except DatagramError as exc:
            self._invalid(exc, data)
            return
        self.writer.add(datagram)
        for policy in datagram.policies:
            self.metrics.tlsrpt_session(
                str(policy.policy_type), "failed" if policy.failed else "successful"
            )
            if policy.dropped_details:
                self._details_dropped(datagram.domain, policy.dropped_details)

    def _details_dropped(self, domain: str, count: int) -> None:
        self.stats.details_dropped += count
        now = self._monotonic()
        if now - self._last_dropped_log >= INVALID_LOG_INTERVAL_S:
            self._last_dropped_log = now
            log.warning(
                "TLSRPT datagram for %s: %d failure details beyond the first %d dropped "
                "(%d so far); its sessions are counted",
                domain,
                count,
                MAX_FAILURE_DETAILS,
                self.stats.details_dropped,
            )

    def _invalid(self, exc: DatagramError, data: bytes) -> None:
        self.stats.invalid += 1
        self.metrics.tlsrpt_datagrams("invalid")
        now = self._monotonic()
        if now - self._last_invalid_log < INVALID_LOG_INTERVAL_S:
            self._invalid_unlogged += 1
            return
        more = f" ({self._invalid_unlogged} more since the last message)"
        log.warning(
            "invalid TLSRPT datagram: %s%s; sample: %r",
            exc,
            more if self._invalid_unlogged else "",
            data[:SAMPLE_CHARS],
        )
        self._last_invalid_log = now
        self._invalid_unlogged = 0

    def _note_drops(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(payload) >= 4:
                total = struct.unpack("=I", payload[:4])[0]  # cumulative since bind
                if total > self._kernel_drops:
                    self.metrics.tlsrpt_datagrams("dropped", total - self._kernel_drops)
                    self.stats.dropped += total - self._kernel_drops
                    self._kernel_drops = total


def _queue_limit() -> int:
    """Datagrams an AF_UNIX socket queues before senders get EAGAIN (0 when unknown)."""
    try:
        with open(QLEN_SYSCTL) as f:
            return int(f.read().strip()) + 1
    except (OSError, ValueError):
        return 0
