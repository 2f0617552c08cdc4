"""A misbehaving resolver for the DNS fault matrix: a proxy to the lab Unbound that breaks rules.

Questions under ``target`` (a domain and every name below it) get the fault of ``mode``;
every other question is passed to ``upstream`` unchanged (so the server's self-check still
passes and only the faulted domain is affected). UDP and TCP on one loopback port; each
exchange runs in its own thread. Modes (``Mode``):

* ``pass``: nothing broken (the reference answer);
* ``servfail`` / ``refused``: that rcode, nothing else;
* ``garbage`` / ``garbage_then_answer``: random bytes from the right address (then the
  real answer);
* ``wrong_id`` / ``wrong_id_then_answer``: the real answer with another message ID (then
  the real one);
* ``wrong_source_then_answer``: a forged NXDOMAIN from another port of the resolver's
  address, then the real answer;
* ``truncated_no_tcp``: an empty TC=1 reply over UDP, and TCP connections are reset;
* ``truncated_tcp_stalls``: TC=1 over UDP; over TCP the query is read and never answered;
* ``rebind``: A answers with TTL 0, every second one naming ``REBIND_ADDRESS`` instead (a
  DNS-rebinding host: whoever resolves twice connects somewhere else the second time).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from enum import StrEnum

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype

from tests.lab.netutil import LOOPBACK, free_port

UPSTREAM_TIMEOUT_S = 5.0
REBIND_ADDRESS = "127.0.0.66"  # nothing listens there


class Mode(StrEnum):
    PASS = "pass"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    GARBAGE = "garbage"
    GARBAGE_THEN_ANSWER = "garbage_then_answer"
    WRONG_ID = "wrong_id"
    WRONG_ID_THEN_ANSWER = "wrong_id_then_answer"
    WRONG_SOURCE_THEN_ANSWER = "wrong_source_then_answer"
    TRUNCATED_NO_TCP = "truncated_no_tcp"
    TRUNCATED_TCP_STALLS = "truncated_tcp_stalls"
    REBIND = "rebind"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class FakeResolver:
    """``start()``, then point ``dns.nameservers`` at ``address``; ``stop()`` at the end."""

    def __init__(self, upstream: tuple[str, int], target: str, mode: Mode) -> None:
        self.upstream = upstream
        self.target = dns.name.from_text(target)
        self.mode = mode
        self.port = 0
        self.faulted = 0  # questions that got the fault
        self.a_answers = 0  # A answers given in rebind mode
        self._stop = threading.Event()
        self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def start(self) -> None:
        self.port = free_port()
        self._tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._udp.bind(self.address)
        self._tcp.bind(self.address)
        self._tcp.listen(64)
        self._forger.bind((LOOPBACK, 0))
        for name, loop in (("udp", self._serve_udp), ("tcp", self._serve_tcp)):
            self._spawn(loop, f"fakedns-{name}")

    def stop(self) -> None:
        self._stop.set()
        for sock in (self._udp, self._tcp, self._forger):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(2.0)

    def _spawn(self, target: object, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _hit(self, wire: bytes) -> bool:
        try:
            qname = dns.message.from_wire(wire).question[0].name
        except Exception:
            return False
        if self.mode is Mode.PASS or not qname.is_subdomain(self.target):
            return False
        with self._lock:
            self.faulted += 1
        return True

    # UDP ------------------------------------------------------------------------------

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                wire, client = self._udp.recvfrom(65535)
            except OSError:
                return
            self._spawn(self._udp_exchange, "fakedns-udp-q", wire, client)

    def _upstream_udp(self, wire: bytes) -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(UPSTREAM_TIMEOUT_S)
            sock.sendto(wire, self.upstream)
            return sock.recv(65535)

    def _udp_exchange(self, wire: bytes, client: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):
            if not self._hit(wire):
                self._udp.sendto(self._upstream_udp(wire), client)
                return
            for reply, sock in self._udp_fault(wire):
                sock.sendto(reply, client)

    def _udp_fault(self, wire: bytes) -> list[tuple[bytes, socket.socket]]:
        query = dns.message.from_wire(wire)
        mode = self.mode
        if mode in (Mode.SERVFAIL, Mode.REFUSED):
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL if mode is Mode.SERVFAIL else dns.rcode.REFUSED)
            return [(reply.to_wire(), self._udp)]
        if mode in (Mode.TRUNCATED_NO_TCP, Mode.TRUNCATED_TCP_STALLS):
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return [(reply.to_wire(), self._udp)]
        real = self._upstream_udp(wire)
        if mode is Mode.REBIND:
            return [(self._rebind(real), self._udp)]
        if mode in (Mode.GARBAGE, Mode.GARBAGE_THEN_ANSWER):
            first = wire[:2] + os.urandom(40)  # the right ID, then noise
        elif mode in (Mode.WRONG_ID, Mode.WRONG_ID_THEN_ANSWER):
            first = struct.pack("!H", struct.unpack("!H", real[:2])[0] ^ 0x5A5A) + real[2:]
        else:  # WRONG_SOURCE_THEN_ANSWER: a forged NXDOMAIN with the right ID
            forged = dns.message.make_response(query)
            forged.set_rcode(dns.rcode.NXDOMAIN)
            return [(forged.to_wire(), self._forger), (real, self._udp)]
        if mode in (Mode.GARBAGE, Mode.WRONG_ID):
            return [(first, self._udp)]
        return [(first, self._udp), (real, self._udp)]

    def _rebind(self, real: bytes) -> bytes:
        reply = dns.message.from_wire(real)
        if reply.question[0].rdtype != dns.rdatatype.A:
            return real
        with self._lock:
            self.a_answers += 1
            swap = self.a_answers % 2 == 0
        for rrset in reply.answer:
            rrset.ttl = 0
            if swap and rrset.rdtype == dns.rdatatype.A:
                rrset.clear()
                rrset.add(dns.rdata.from_text("IN", "A", REBIND_ADDRESS))
        return reply.to_wire()

    # TCP ------------------------------------------------------------------------------

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._tcp.accept()
            except OSError:
                return
            self._spawn(self._tcp_exchange, "fakedns-tcp-q", conn)

    def _tcp_exchange(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ConnectionError):
            conn.settimeout(UPSTREAM_TIMEOUT_S)
            if self.mode is Mode.TRUNCATED_NO_TCP:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed with RST: as if nothing listened
            while True:
                (length,) = struct.unpack("!H", _recv_exact(conn, 2))
                wire = _recv_exact(conn, length)
                if self.mode is Mode.TRUNCATED_TCP_STALLS and self._hit(wire):
                    self._stop.wait()  # read, never answered
                    return
                with socket.create_connection(self.upstream, UPSTREAM_TIMEOUT_S) as up:
                    up.sendall(struct.pack("!H", len(wire)) + wire)
                    (n,) = struct.unpack("!H", _recv_exact(up, 2))
                    conn.sendall(struct.pack("!H", n) + _recv_exact(up, n))
