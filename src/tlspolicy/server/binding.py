"""Listening sockets bound once by the supervisor and handed to its worker processes.

Why the supervisor binds and keeps every socket open for its whole life: a listening
socket whose last descriptor closes drops the connections waiting in its accept queue
(refused or reset). As long as the supervisor holds a descriptor, a worker may die, be
re-spawned or be replaced by a newer one without a single connection being lost: they wait
in the backlog until some worker accepts them.

* TCP: one socket per worker slot, all bound to the same address with ``SO_REUSEPORT``, so
  the kernel spreads new connections over the workers evenly (one shared socket lets the
  first worker to wake up take a whole burst of connections).
* Unix sockets and sockets from systemd (socket activation) are shared by every worker:
  ``SO_REUSEPORT`` does not balance ``AF_UNIX``, and systemd passes one socket per entry.

A worker learns its sockets from ``$TLSPOLICY_WORKER`` (``slot:fd,fd:ready_fd:life_fd``).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from tlspolicy.config.schema import ListenAddress, ServerConfig
from tlspolicy.errors import ConfigError

WORKER_ENV = "TLSPOLICY_WORKER"
BACKLOG = 1024


@dataclass
class Bound:
    """What the supervisor holds: shared sockets plus one TCP socket set per slot."""

    shared: list[socket.socket]
    per_slot: list[list[socket.socket]]
    unix_paths: list[str]

    def for_slot(self, slot: int) -> list[socket.socket]:
        return [*self.shared, *self.per_slot[slot]]

    def close(self) -> None:
        for sock in [*self.shared, *(s for slot in self.per_slot for s in slot)]:
            sock.close()
        for path in self.unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def bind_all(config: ServerConfig, slots: int, activated: Sequence[socket.socket]) -> Bound:
    """Bind ``server.listen`` for ``slots`` workers (or share the activated sockets)."""
    bound = Bound(shared=list(activated), per_slot=[[] for _ in range(slots)], unix_paths=[])
    if activated:
        return bound
    try:
        for address in config.listen:
            if address.kind == "unix":
                bound.shared.append(_bind_unix(address.path, config))
                bound.unix_paths.append(address.path)
                continue
            first = _bind_tcp(address, address.port)
            bound.per_slot[0].append(first)
            port = first.getsockname()[1]  # port 0: the others join the one the first got
            for slot in range(1, slots):
                bound.per_slot[slot].append(_bind_tcp(address, port))
    except BaseException:
        bound.close()
        raise
    return bound


def _bind_tcp(address: ListenAddress, port: int) -> socket.socket:
    host = "" if address.host in ("*", "0.0.0.0") else address.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"server.listen: cannot listen on {address}: {exc.strerror or exc}"
        ) from None
    sock.setblocking(False)
    return sock


def _bind_unix(path: str, config: ServerConfig) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # a stale socket from an earlier run
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(BACKLOG)
        os.chmod(path, config.socket_mode)
        uid = pwd.getpwnam(config.socket_owner).pw_uid if config.socket_owner else -1
        gid = grp.getgrnam(config.socket_group).gr_gid if config.socket_group else -1
        if uid != -1 or gid != -1:
            os.chown(path, uid, gid)
    except (OSError, KeyError) as exc:
        sock.close()
        raise ConfigError(f"server.listen: cannot listen on unix:{path}: {exc}") from None
    sock.setblocking(False)
    return sock


@dataclass
class Handoff:
    """A worker's side: its slot, its sockets and the two pipes to the supervisor."""

    slot: int
    sockets: list[socket.socket]
    ready_fd: int
    life_fd: int

    def ready(self) -> None:
        """Tell the supervisor this worker accepts connections (it may stop the old one)."""
        if self.ready_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.ready_fd, b"R")
                os.close(self.ready_fd)
            self.ready_fd = -1


def encode_handoff(slot: int, fds: Sequence[int], ready_fd: int, life_fd: int) -> str:
    return f"{slot}:{','.join(str(fd) for fd in fds)}:{ready_fd}:{life_fd}"


def worker_handoff() -> Handoff | None:
    """This process's handoff when started by a supervisor; the variable is removed."""
    text = os.environ.pop(WORKER_ENV, "")
    if not text:
        return None
    try:
        slot_text, fds_text, ready_text, life_text = text.split(":")
        fds = [int(fd) for fd in fds_text.split(",") if fd]
        slot, ready_fd, life_fd = int(slot_text), int(ready_text), int(life_text)
    except ValueError:
        raise ConfigError(f"${WORKER_ENV}: malformed: {text!r}") from None
    sockets = []
    for fd in fds:
        sock = socket.socket(fileno=fd)
        sock.set_inheritable(False)
        sock.setblocking(False)
        sockets.append(sock)
    for fd in (ready_fd, life_fd):
        os.set_inheritable(fd, False)
    return Handoff(slot=slot, sockets=sockets, ready_fd=ready_fd, life_fd=life_fd)
