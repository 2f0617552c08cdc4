"""A private network + mount namespace for the lab's real Postfix, and the plumbing into it.

Postfix needs a resolver on port 53 of the address in its ``/etc/resolv.conf`` and MX hosts on
port 25; neither may touch the host. So it runs in a namespace of its own (``unshare --net
--mount``), held open by a sleeping process. Into it:

* ``LabNamespace.socket`` creates a socket *inside* the namespace (a short-lived thread calls
  ``setns``; a socket keeps its namespace for life), so servers in this process (the SMTP
  sinks) can listen there while everything else of theirs stays on the host;
* ``Forwarder`` relays UDP and TCP from an address in the namespace to a host loopback
  service (the lab's Unbound, our socketmap server). No veth, no host routing change.
  With ``inward=True`` it relays TCP the other way: from a host loopback port to a service
  inside the namespace (Postfix's smtpd on port 25), connecting with ``LabNamespace.connect``.

The namespace's ``lo`` is up with the whole 127.0.0.0/8, plus ``EXTRA_ADDRESS``: glibc's
``getaddrinfo`` with ``AI_ADDRCONFIG`` finds no address family without a non-loopback one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from tests.lab.netutil import Daemon, wait_until

CLONE_NEWNET = 0x40000000  # linux/sched.h
EXTRA_ADDRESS = "192.0.2.1/32"  # TEST-NET-1 (RFC 5737), only inside the namespace
START_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
UDP_ANSWER_TIMEOUT_S = 10.0  # an upstream DNS answer later than this is dropped
RELAY_BYTES = 65535
_LIBC = ctypes.CDLL(None, use_errno=True)


class LabNamespace:
    """``unshare --net --mount`` running ``setup`` (shell, ``set -e``), then sleeping.

    ``setup`` runs inside the new namespaces: mounts made there stay there. ``ip`` is the
    command that runs iproute2 (the host may not have it; the lab root does).
    """

    def __init__(self, workdir: Path, setup: str, *, ip: Sequence[str] = ("ip",)) -> None:
        self.dir = workdir
        self.pid = 0
        self.net_fd = -1
        pid_file = workdir / "netns.pid"
        ip_cmd = shlex.join(ip)
        script = (
            "set -e\n"
            f"{ip_cmd} link set lo up\n"
            f"{ip_cmd} addr add {EXTRA_ADDRESS} dev lo\n"
            f"{setup}\n"
            f"echo $$ > {shlex.quote(str(pid_file))}.tmp\n"
            f"mv {shlex.quote(str(pid_file))}.tmp {shlex.quote(str(pid_file))}\n"
            "exec sleep infinity\n"
        )
        argv = ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c"]
        self.daemon = Daemon("netns", [*argv, script], workdir / "netns.log")
        self._pid_file = pid_file

    def start(self) -> None:
        self.daemon.start()
        wait_until(
            self._pid_file.exists,
            timeout=START_TIMEOUT_S,
            what="the lab namespace to be set up",
            alive=self.daemon,
        )
        self.pid = int(self._pid_file.read_text())
        self.net_fd = os.open(f"/proc/{self.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)

    def path(self, inside: str | Path) -> Path:
        """A host path for ``inside`` as the namespace's processes see it (``/proc/PID/root``)."""
        return Path(f"/proc/{self.pid}/root") / str(inside).lstrip("/")

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace (nsenter execs it: no extra process)."""
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--", *argv]

    def run(
        self, argv: Sequence[str], *, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            self.command(argv),
            input=input,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} failed ({done.returncode}):\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
            )
        return done

    def connect(self, address: tuple[str, int], *, timeout: float) -> socket.socket:
        """A TCP connection to ``address`` made from inside the namespace."""
        result: list[socket.socket] = []
        errors: list[BaseException] = []

        def create() -> None:
            try:
                if _LIBC.setns(self.net_fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")
                result.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            except BaseException as exc:  # re-raised in the caller
                errors.append(exc)

        thread = threading.Thread(target=create, name="netns-connect")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        sock = result[0]  # it stays in the namespace: connect from this thread
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock

    def socket(self, kind: socket.SocketKind, address: tuple[str, int]) -> socket.socket:
        """A socket bound to ``address`` inside the namespace (listening if TCP)."""
        result: list[socket.socket] = []
        errors: list[BaseException] = []

        def create() -> None:
            try:
                if _LIBC.setns(self.net_fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns(CLONE_NEWNET) failed")
                sock = socket.socket(socket.AF_INET, kind)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                if kind == socket.SOCK_STREAM:
                    sock.listen(64)
                result.append(sock)
            except BaseException as exc:  # re-raised in the caller
                errors.append(exc)

        thread = threading.Thread(target=create, name="netns-socket")
        thread.start()
        thread.join()
        if errors:
            raise errors[0]
        return result[0]

    def stop(self) -> None:
        self.daemon.stop()
        if self.net_fd >= 0:
            os.close(self.net_fd)
            self.net_fd = -1


class Forwarder:
    """Relays TCP (and UDP if asked) from ``listen`` in the namespace to ``target`` on the host.

    ``inward``: TCP only, from ``listen`` on the host to ``target`` inside the namespace.
    """

    def __init__(
        self,
        ns: LabNamespace,
        listen: tuple[str, int],
        target: tuple[str, int],
        *,
        udp: bool = False,
        inward: bool = False,
    ) -> None:
        if inward and udp:
            raise ValueError("an inward forwarder relays TCP only")
        self.target = target
        self._ns = ns
        self._inward = inward
        self._stop = threading.Event()
        if inward:
            self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._tcp.bind(listen)
            self._tcp.listen(64)
        else:
            self._tcp = ns.socket(socket.SOCK_STREAM, listen)
        self.address: tuple[str, int] = self._tcp.getsockname()[:2]  # port 0: the one bound
        self._udp = ns.socket(socket.SOCK_DGRAM, listen) if udp else None
        self._threads = [threading.Thread(target=self._run, name="netns-forward", daemon=True)]

    def start(self) -> Forwarder:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self) -> None:
        pending: dict[socket.socket, tuple[tuple[str, int], float]] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._tcp, selectors.EVENT_READ)
            if self._udp is not None:
                sel.register(self._udp, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    with contextlib.suppress(OSError):
                        if sock is self._tcp:
                            conn, _ = self._tcp.accept()
                            threading.Thread(
                                target=self._pump, args=(conn,), name="netns-tcp", daemon=True
                            ).start()
                        elif sock is self._udp:
                            data, client = self._udp.recvfrom(RELAY_BYTES)
                            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                            upstream.connect(self.target)
                            upstream.send(data)
                            pending[upstream] = (client, time.monotonic() + UDP_ANSWER_TIMEOUT_S)
                            sel.register(upstream, selectors.EVENT_READ)
                        else:
                            client, _ = pending.pop(sock)
                            sel.unregister(sock)
                            with sock:
                                answer = sock.recv(RELAY_BYTES)
                            assert self._udp is not None
                            self._udp.sendto(answer, client)
                now = time.monotonic()
                for upstream, (_, deadline) in list(pending.items()):
                    if deadline < now:
                        del pending[upstream]
                        sel.unregister(upstream)
                        upstream.close()
            for upstream in pending:
                upstream.close()

    def _pump(self, conn: socket.socket) -> None:
        """Copy both ways until either side closes."""
        with conn, contextlib.suppress(OSError):
            if self._inward:
                upstream = self._ns.connect(self.target, timeout=5.0)
            else:
                upstream = socket.create_connection(self.target, timeout=5.0)
            with upstream, selectors.DefaultSelector() as sel:
                upstream.settimeout(None)
                sel.register(conn, selectors.EVENT_READ, upstream)
                sel.register(upstream, selectors.EVENT_READ, conn)
                while not self._stop.is_set():
                    for key, _ in sel.select(timeout=0.2):
                        source = key.fileobj
                        assert isinstance(source, socket.socket)
                        data = source.recv(RELAY_BYTES)
                        if not data:
                            return
                        key.data.sendall(data)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(2.0)
        self._tcp.close()
        if self._udp is not None:
            self._udp.close()
