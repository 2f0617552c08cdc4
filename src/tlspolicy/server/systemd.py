"""systemd integration without libsystemd: sd_notify, the watchdog and socket activation.

Implements the documented, stable protocols directly (a few lines each, no dependency):
* sd_notify(3): newline-separated ``KEY=VALUE`` assignments in one datagram to the
  ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
  namespace). Outside systemd the variable is unset and every call is a cheap no-op.
* sd_watchdog_enabled(3): ``$WATCHDOG_USEC`` (for ``$WATCHDOG_PID`` if set) asks for
  ``WATCHDOG=1`` more often than that; we ping at half the interval, as the man page advises.
* sd_listen_fds(3): with ``$LISTEN_PID`` equal to our pid, ``$LISTEN_FDS`` sockets start at
  fd 3 (``SD_LISTEN_FDS_START``), optionally named by ``$LISTEN_FDNAMES``. The variables are
  removed afterwards so child processes do not inherit them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

from tlspolicy.errors import ConfigError

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3  # sd_listen_fds(3)
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"`` or ``"STATUS=...\\nREADY=1"``) to systemd.

    Returns:
        True when the datagram was sent; False when not running under systemd (no
        ``$NOTIFY_SOCKET``) or the send failed (logged at debug: notification is best effort,
        as with libsystemd).
    """
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target:
        return False
    if target.startswith("@"):
        address = "\0" + target[1:]  # abstract namespace (sd_notify(3))
    elif target.startswith("/"):
        address = target
    else:
        log.debug("NOTIFY_SOCKET %r: only unix socket addresses are supported", target)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Non-blocking: a full notification queue must never stall the event loop.
            sock.sendto(state.encode(), socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL, address)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", target, exc)
        return False
    return True


def notify_ready(status: str = "") -> bool:
    """Tell systemd start-up is complete (``Type=notify``), with an optional status line."""
    return notify(f"READY=1\nSTATUS={_one_line(status)}" if status else "READY=1")


def notify_reloading() -> bool:
    """Tell systemd a reload started; send ``notify_ready()`` when it is done.

    ``MONOTONIC_USEC`` is required by ``Type=notify-reload`` (systemd.service(5)) so systemd
    can tell this reload from an earlier one.
    """
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify(f"RELOADING=1\nMONOTONIC_USEC={usec}")


def notify_stopping() -> bool:
    return notify("STOPPING=1")


def notify_status(status: str) -> bool:
    return notify(f"STATUS={_one_line(status)}")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds, or None when no watchdog is requested for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1_000_000


async def watchdog_loop(interval: float) -> None:
    """Send ``WATCHDOG=1`` every ``interval / 2`` seconds until cancelled.

    Run it as a task on the serving event loop: when the loop stalls, the pings stop and
    systemd restarts the service (``WatchdogSec=``).
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval / 2)


def listen_fds_with_names() -> list[tuple[str, socket.socket]]:
    """The sockets systemd passed us, with their ``FileDescriptorName=`` (or ``"unknown"``).

    The sockets are non-blocking and close-on-exec. The ``LISTEN_*`` variables are removed
    from the environment in every case, as ``sd_listen_fds(1)`` does.

    Returns:
        an empty list when not socket-activated (or activated for another pid).

    Raises:
        ConfigError: the variables are malformed, a passed fd is not a socket, or a stream
            socket is not listening (``Accept=yes`` units are not supported).
    """
    try:
        pid_text = os.environ.get("LISTEN_PID", "")
        if not pid_text:
            return []
        if not pid_text.isdigit():
            raise ConfigError(f"LISTEN_PID: not a process id: {pid_text!r}")
        if int(pid_text) != os.getpid():
            return []
        count_text = os.environ.get("LISTEN_FDS", "")
        if not count_text.isdigit():
            raise ConfigError(f"LISTEN_FDS: not a number: {count_text!r}")
        count = int(count_text)
        names = os.environ.get("LISTEN_FDNAMES", "").split(":")
        if len(names) != count:
            names = ["unknown"] * count  # sd_listen_fds_with_names(3): names are optional
        return [(names[i], _adopt(SD_LISTEN_FDS_START + i)) for i in range(count)]
    finally:
        for var in _LISTEN_VARS:
            os.environ.pop(var, None)


def listen_fds() -> list[socket.socket]:
    """The sockets systemd passed us (see ``listen_fds_with_names``)."""
    return [sock for _, sock in listen_fds_with_names()]


def _adopt(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)  # family, type and protocol are read from the fd
    except OSError as exc:
        raise ConfigError(f"LISTEN_FDS: fd {fd} is not a usable socket: {exc}") from None
    sock.set_inheritable(False)
    sock.setblocking(False)
    if sock.type == socket.SOCK_STREAM and not sock.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        sock.detach()
        raise ConfigError(
            f"LISTEN_FDS: fd {fd} is not a listening socket (use Accept=no in the .socket unit)"
        )
    return sock


def _one_line(text: str) -> str:
    return " ".join(text.split())
