"""Self-test of the loopback lab: the data other integration tests rely on is really served.

DNS is checked with dnspython straight against Unbound (DO set), HTTPS with the standard ssl
module, the socketmap client side with the real ``postmap``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import cast

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.lab.dnslab import query
from tests.lab.https import POLICY_PATH, WRONG_CERT_NAME, Behavior
from tests.lab.postfix import PostmapKind, postmap_query, socketmap_inet, socketmap_unix
from tests.lab.scenario import Lab, start_lab, sts_policy, sts_txt
from tlspolicy.config import load_config, parse_config
from tlspolicy.dnsstub.codec import parse_response
from tlspolicy.dnsstub.data import TlsaRecord

pytestmark = pytest.mark.integration

EDE_DNSSEC_BOGUS = 6  # RFC 8914 §4.7
EDE_SIGNATURE_EXPIRED = 7  # RFC 8914 §4.8
EDE_DNSKEY_MISSING = 9  # RFC 8914 §4.10


def answers(response: dns.message.Message, rdtype: str) -> list[str]:
    """The rdata texts of ``rdtype`` in the answer section (after any CNAMEs)."""
    kind = dns.rdatatype.from_text(rdtype)
    return [rdata.to_text() for rrset in response.answer if rrset.rdtype == kind for rdata in rrset]


def authenticated(response: dns.message.Message) -> bool:
    return bool(response.flags & dns.flags.AD)


def https_get(
    lab: Lab, host: str, *, timeout: float = 5.0, path: str = POLICY_PATH
) -> tuple[int, Message, bytes]:
    """GET ``https://host/path`` from the lab's policy hosts, trusting only the lab CA."""
    raw = socket.create_connection((lab.https.address, 443), timeout=timeout)
    with lab.https.client_context().wrap_socket(raw, server_hostname=host) as tls:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        return response.status, response.headers, response.read()


# --- DNS ------------------------------------------------------------------------------


DNS_CASES = [
    pytest.param("dane-only.lab", "MX", ("NOERROR", True, 2), id="dane-only-mx"),
    pytest.param("_25._tcp.mx1.dane-only.lab", "TLSA", ("NOERROR", True, 2), id="dane-only-tlsa1"),
    pytest.param("_25._tcp.mx2.dane-only.lab", "TLSA", ("NOERROR", True, 2), id="dane-only-tlsa2"),
    pytest.param("_25._tcp.mx1.dane-mixed.lab", "TLSA", ("NOERROR", True, 1), id="mixed-tlsa"),
    pytest.param("_25._tcp.mx2.dane-mixed.lab", "TLSA", ("NXDOMAIN", True, 0), id="mixed-none"),
    pytest.param("smart.unsigned.lab", "MX", ("NOERROR", False, 1), id="smart-mx-insecure"),
    pytest.param("_25._tcp.mx.smart-target.lab", "TLSA", ("NOERROR", True, 1), id="smart-tlsa"),
    pytest.param("plain.unsigned.lab", "MX", ("NOERROR", False, 1), id="unsigned-mx"),
    pytest.param(
        "_25._tcp.mx1.insecure-tlsa.unsigned.lab", "TLSA", ("NOERROR", False, 1), id="insecure-tlsa"
    ),
    pytest.param("plain.lab", "MX", ("NOERROR", True, 1), id="plain-signed-mx"),
    pytest.param("_25._tcp.mx1.unusable.lab", "TLSA", ("NOERROR", True, 3), id="unusable-tlsa"),
    pytest.param("_25._tcp.mx1.usage01.lab", "TLSA", ("NOERROR", True, 2), id="usage01-tlsa"),
    pytest.param("mx.cname-mx.lab", "A", ("NOERROR", True, 1), id="cname-mx-host"),
    pytest.param("_25._tcp.mail.provider.lab", "TLSA", ("NOERROR", True, 1), id="cname-target"),
    pytest.param("_25._tcp.mx.cname-mx.lab", "TLSA", ("NXDOMAIN", True, 0), id="cname-origin"),
    pytest.param("nullmx.lab", "MX", ("NOERROR", True, 1), id="nullmx"),
    pytest.param("implicit.lab", "MX", ("NOERROR", True, 0), id="implicit-nodata"),
    pytest.param("implicit.lab", "A", ("NOERROR", True, 1), id="implicit-a"),
    pytest.param("_25._tcp.implicit.lab", "TLSA", ("NOERROR", True, 1), id="implicit-tlsa"),
    pytest.param("nxdomain.lab", "MX", ("NXDOMAIN", True, 0), id="nxdomain"),
    pytest.param("bogus.lab", "MX", ("SERVFAIL", False, 0), id="bogus-mx"),
    pytest.param("mx.tlsabogus.lab", "A", ("NOERROR", True, 1), id="tlsabogus-a"),
    pytest.param("_25._tcp.mx.tlsabogus.lab", "TLSA", ("SERVFAIL", False, 0), id="tlsabogus"),
    pytest.param("badtlsa.lab", "MX", ("NOERROR", True, 2), id="badtlsa-mx"),
    pytest.param("_25._tcp.mx1.badtlsa.lab", "TLSA", ("NOERROR", True, 1), id="badtlsa-good"),
    pytest.param("_mta-sts.both.lab", "TXT", ("NOERROR", True, 1), id="both-txt"),
    pytest.param("_25._tcp.mx2.both.lab", "TLSA", ("NOERROR", True, 1), id="both-tlsa"),
    pytest.param("_mta-sts.sts.unsigned.lab", "TXT", ("NOERROR", False, 1), id="sts-unsigned"),
    pytest.param("_mta-sts.sts-good.lab", "TXT", ("NOERROR", True, 1), id="sts-good-txt"),
    pytest.param("mta-sts.sts-good.lab", "A", ("NOERROR", True, 1), id="sts-good-host"),
    pytest.param("_25._tcp.mx1.sts-good.lab", "TLSA", ("NXDOMAIN", True, 0), id="sts-no-tlsa"),
    pytest.param("_mta-sts.sts-twotxt.lab", "TXT", ("NOERROR", True, 2), id="sts-twotxt"),
    pytest.param("_mta-sts.sts-cname.lab", "TXT", ("NOERROR", True, 1), id="sts-cname-txt"),
    pytest.param("mta-sts.sts-cname.lab", "A", ("NOERROR", True, 1), id="sts-cname-host"),
    pytest.param("mta-sts.sts-nohost.lab", "A", ("NXDOMAIN", True, 0), id="sts-nohost"),
    pytest.param("sts-tlsrpt.lab", "MX", ("NOERROR", True, 2), id="sts-tlsrpt-mx"),
]


@pytest.mark.parametrize(("qname", "rdtype", "expected"), DNS_CASES)
def test_lab_resolver_serves_catalogue(
    lab: Lab, qname: str, rdtype: str, expected: tuple[str, bool, int]
) -> None:
    """expected: (rcode, AD flag, number of ``rdtype`` records in the answer)."""
    response = query(qname, rdtype, lab.resolver[1])
    got = (
        dns.rcode.to_text(response.rcode()),
        authenticated(response),
        len(answers(response, rdtype)),
    )
    assert got == expected


def test_lab_dane_only_mx_and_tlsa_are_authenticated(lab: Lab) -> None:
    mx = query("dane-only.lab", "MX", lab.resolver[1])
    assert authenticated(mx)
    assert sorted(answers(mx, "MX")) == ["10 mx1.dane-only.lab.", "20 mx2.dane-only.lab."]
    tlsa = query("_25._tcp.mx1.dane-only.lab", "TLSA", lab.resolver[1])
    assert authenticated(tlsa)
    assert any(text.startswith("3 1 1 ") for text in answers(tlsa, "TLSA"))


def test_lab_dane_only_3_0_0_is_the_catalogue_certificate(lab: Lab) -> None:
    tlsa = query("_25._tcp.mx2.dane-only.lab", "TLSA", lab.resolver[1])
    full = [text for text in answers(tlsa, "TLSA") if text.startswith("3 0 0 ")]
    assert [bytes.fromhex(t[6:].replace(" ", "")) for t in full] == [lab.catalogue.cert_der]


def test_lab_bogus_answer_is_servfail_with_ede(lab: Lab) -> None:
    response = query("bogus.lab", "MX", lab.resolver[1])
    assert response.rcode() == dns.rcode.SERVFAIL
    codes = {o.code for o in response.options if isinstance(o, dns.edns.EDEOption)}
    assert codes & {EDE_DNSSEC_BOGUS, EDE_SIGNATURE_EXPIRED, EDE_DNSKEY_MISSING}


def test_lab_bogus_data_is_there_without_validation(lab: Lab) -> None:
    request = dns.message.make_query("bogus.lab", "MX", want_dnssec=True)
    request.flags |= dns.flags.CD
    response = dns.query.udp(request, lab.resolver[0], port=lab.resolver[1], timeout=2)
    assert answers(response, "MX") == ["10 mx.bogus.lab."]


def test_lab_tlsabogus_tlsa_fails_while_address_validates(lab: Lab) -> None:
    address = query("mx.tlsabogus.lab", "A", lab.resolver[1])
    tlsa = query("_25._tcp.mx.tlsabogus.lab", "TLSA", lab.resolver[1])
    assert address.rcode() == dns.rcode.NOERROR and authenticated(address)
    assert tlsa.rcode() == dns.rcode.SERVFAIL


def test_lab_nxdomain_is_authenticated(lab: Lab) -> None:
    response = query("nxdomain.lab", "MX", lab.resolver[1])
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert authenticated(response)
    assert response.answer == []


def test_lab_malformed_tlsa_is_served_securely(lab: Lab) -> None:
    """The wire answer is secure and carries the 5-byte SHA-256 record.

    Plain dnspython refuses such a record; tlspolicy.dnsstub.codec keeps it (the data only makes
    the record unusable), which the DANE integration tests exercise.
    """
    request = dns.message.make_query("_25._tcp.mx1.malformed-tlsa.lab", "TLSA", want_dnssec=True)
    request.flags |= dns.flags.AD
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(request.to_wire(), lab.resolver)
        wire, _ = sock.recvfrom(65535)
    flags = int.from_bytes(wire[2:4], "big")
    assert flags & 0x000F == dns.rcode.NOERROR
    assert flags & dns.flags.AD
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    message = parse_response(wire)
    (rrset,) = [r for (_owner, rdtype), r in message.answer.items() if rdtype == 52]
    assert 5 in [len(rd.data) for rd in rrset.items if isinstance(rd, TlsaRecord)]


@pytest.mark.parametrize("transport", [dns.query.udp, dns.query.tcp], ids=["udp", "tcp"])
def test_lab_blackhole_times_out(lab: Lab, transport: object) -> None:
    request = dns.message.make_query("dane-only.lab", "MX", want_dnssec=True)
    host, port = lab.blackhole
    started = time.monotonic()
    with pytest.raises(dns.exception.Timeout):
        transport(request, host, port=port, timeout=0.3)  # type: ignore[operator]
    assert time.monotonic() - started >= 0.3


def test_lab_dns_change_is_visible_within_one_second(fresh_lab: Lab) -> None:
    name, port = "_mta-sts.sts-change.lab", fresh_lab.resolver[1]
    assert answers(query(name, "TXT", port), "TXT") == ['"v=STSv1; id=v1;"']  # now cached
    started = time.monotonic()
    fresh_lab.dns.set_records(name, "TXT", [sts_txt("v2")])
    fresh_lab.dns.apply()
    response = query(name, "TXT", port)
    assert time.monotonic() - started < 1.0
    assert answers(response, "TXT") == ['"v=STSv1; id=v2;"']
    assert authenticated(response)


def test_lab_corrupt_makes_one_rrset_bogus_until_reset(fresh_lab: Lab) -> None:
    port = fresh_lab.resolver[1]
    fresh_lab.dns.corrupt("sts-good.lab", "MX")
    fresh_lab.dns.apply()
    assert query("sts-good.lab", "MX", port).rcode() == dns.rcode.SERVFAIL
    assert authenticated(query("_mta-sts.sts-good.lab", "TXT", port))
    fresh_lab.reset()
    assert authenticated(query("sts-good.lab", "MX", port))


def test_lab_reset_restores_deleted_records(fresh_lab: Lab) -> None:
    port = fresh_lab.resolver[1]
    fresh_lab.dns.delete_records("_mta-sts.sts-change.lab")
    fresh_lab.dns.apply()
    assert query("_mta-sts.sts-change.lab", "TXT", port).rcode() == dns.rcode.NXDOMAIN
    fresh_lab.reset()
    assert answers(query("_mta-sts.sts-change.lab", "TXT", port), "TXT") == ['"v=STSv1; id=v1;"']


# --- HTTPS ----------------------------------------------------------------------------


def test_lab_https_serves_policy_and_counts_requests(fresh_lab: Lab) -> None:
    status, headers, body = https_get(fresh_lab, "mta-sts.sts-good.lab")
    assert status == 200
    assert headers["Content-Type"] == "text/plain"
    assert body.decode() == sts_policy("enforce", ["mx1.sts-good.lab", "mx2.sts-good.lab"])
    assert fresh_lab.https.count("mta-sts.sts-good.lab") == 1
    assert fresh_lab.https.requests_for("mta-sts.sts-good.lab")[0].sni == "mta-sts.sts-good.lab"


HTTPS_CASES = [
    pytest.param("mta-sts.sts-404.lab", 404, "text/plain", id="404"),
    pytest.param("mta-sts.sts-redirect.lab", 301, "text/plain", id="redirect"),
    pytest.param("mta-sts.redirect-target.lab", 200, "text/plain", id="redirect-target"),
    pytest.param("mta-sts.sts-ctype.lab", 200, "text/html", id="ctype"),
    pytest.param("mta-sts.sts-charset.lab", 200, "text/plain; charset=utf-8", id="charset"),
    pytest.param("mta-sts.sts-cname.lab", 200, "text/plain", id="cname"),
    pytest.param("mta-sts.sts-testing.lab", 200, "text/plain", id="testing"),
    pytest.param("mta-sts.both.lab", 200, "text/plain", id="both"),
    pytest.param("mta-sts.sts.unsigned.lab", 200, "text/plain", id="unsigned"),
    pytest.param("mta-sts.unknown-host.lab", 404, "text/plain", id="unknown-host"),
]


@pytest.mark.parametrize(("host", "status", "content_type"), HTTPS_CASES)
def test_lab_https_status_and_content_type(
    lab: Lab, host: str, status: int, content_type: str
) -> None:
    got_status, headers, _ = https_get(lab, host)
    assert (got_status, headers["Content-Type"]) == (status, content_type)


def test_lab_https_redirect_points_at_a_valid_policy(lab: Lab) -> None:
    _, headers, _ = https_get(lab, "mta-sts.sts-redirect.lab")
    assert headers["Location"] == f"https://mta-sts.redirect-target.lab{POLICY_PATH}"
    _, _, body = https_get(lab, "mta-sts.redirect-target.lab")
    assert "mx: mx1.sts-redirect.lab" in body.decode()


def test_lab_https_tlsrpt_policy_is_the_rfc_example(lab: Lab) -> None:
    _, _, body = https_get(lab, "mta-sts.sts-tlsrpt.lab")
    assert body == (
        b"version: STSv1\r\nmode: enforce\r\nmx: mail.sts-tlsrpt.lab\r\n"
        b"mx: *.sts-tlsrpt.lab\r\nmx: backupmx.sts-tlsrpt.lab\r\nmax_age: 604800\r\n"
    )


@pytest.mark.parametrize(
    ("host", "chunked"),
    [
        pytest.param("mta-sts.sts-big.lab", False, id="content-length"),
        pytest.param("mta-sts.sts-bigchunk.lab", True, id="chunked"),
    ],
)
def test_lab_https_big_bodies(lab: Lab, host: str, chunked: bool) -> None:
    _, headers, body = https_get(lab, host)
    assert len(body) >= 70 * 1024
    assert (headers["Transfer-Encoding"] == "chunked") is chunked
    assert (headers["Content-Length"] is None) is chunked


def test_lab_https_slow_headers_time_out(lab: Lab) -> None:
    with pytest.raises(TimeoutError):
        https_get(lab, "mta-sts.sts-slowhead.lab", timeout=0.5)


def test_lab_https_slow_body_starts_then_stalls(lab: Lab) -> None:
    raw = socket.create_connection((lab.https.address, 443), timeout=0.5)
    host = "mta-sts.sts-slowbody.lab"
    with lab.https.client_context().wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        assert response.status == 200
        with pytest.raises(TimeoutError):
            response.read()


@pytest.mark.parametrize(
    ("host", "message"),
    [
        pytest.param("mta-sts.sts-untrusted.lab", "unable to get local issuer", id="untrusted"),
        pytest.param("mta-sts.sts-expired.lab", "certificate has expired", id="expired"),
        pytest.param("mta-sts.sts-wrongname.lab", "Hostname mismatch", id="wrong-name"),
    ],
)
def test_lab_https_bad_certificates_fail_verification(lab: Lab, host: str, message: str) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match=message):
        https_get(lab, host)


def test_lab_https_wrong_name_certificate_names_the_other_host(lab: Lab) -> None:
    context = lab.https.client_context()
    context.check_hostname = False
    raw = socket.create_connection((lab.https.address, 443), timeout=5)
    with context.wrap_socket(raw, server_hostname="mta-sts.sts-wrongname.lab") as tls:
        cert = tls.getpeercert()
    assert cert is not None
    names = [value for _, value in cast(tuple[tuple[str, str], ...], cert["subjectAltName"])]
    assert names == [WRONG_CERT_NAME]


def test_lab_https_set_changes_behaviour_until_reset(fresh_lab: Lab) -> None:
    host = "mta-sts.sts-change.lab"
    fresh_lab.https.set(host, Behavior(body="changed\n", status=200))
    assert https_get(fresh_lab, host)[2] == b"changed\n"
    fresh_lab.reset()
    assert https_get(fresh_lab, host)[2].startswith(b"version: STSv1\r\n")
    assert fresh_lab.https.count(host) == 1  # reset cleared the request log


# --- postmap and configuration --------------------------------------------------------


class OkServer:
    """A throwaway socketmap server answering every query with ``OK hello``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.queries: list[bytes] = []
        sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.sock, contextlib.suppress(OSError):  # OSError: the test closed the socket
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    buffer = b""
                    while data := conn.recv(4096):
                        buffer += data
                        while b":" in buffer:
                            size_text, rest = buffer.split(b":", 1)
                            size = int(size_text)
                            if len(rest) < size + 1:
                                break
                            self.queries.append(rest[:size])
                            buffer = rest[size + 1 :]
                            conn.sendall(b"8:OK hello,")


@pytest.fixture
def ok_inet() -> Iterator[OkServer]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = OkServer(sock)
    yield server
    sock.close()


def test_lab_postmap_prints_socketmap_value(ok_inet: OkServer) -> None:
    port = ok_inet.sock.getsockname()[1]
    result = postmap_query("example.lab", socketmap_inet("127.0.0.1", port, "QUERY"))
    assert (result.returncode, result.stdout, result.kind) == (0, "hello\n", PostmapKind.FOUND)
    assert ok_inet.queries == [b"QUERY example.lab"]


def test_lab_postmap_unix_socketmap(tmp_path: Path) -> None:
    path = tmp_path / "map.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)
    server = OkServer(sock)
    try:
        result = postmap_query("example.lab", socketmap_unix(path, "QUERYwithTLSRPT"))
    finally:
        sock.close()
    assert result.value == "hello"
    assert server.queries == [b"QUERYwithTLSRPT example.lab"]


def test_lab_postmap_connection_refused_is_an_error(lab: Lab) -> None:
    port = int(lab.config_dict()["server"]["listen"][0].rpartition(":")[2])  # nothing there
    result = postmap_query("example.lab", socketmap_inet("127.0.0.1", port))
    assert result.returncode == 1
    assert result.kind is PostmapKind.ERROR


def test_lab_config_dict_is_a_valid_tlspolicy_config(lab: Lab, tmp_path: Path) -> None:
    config = parse_config(lab.config_dict(mta_sts={"timeout": 1}))
    assert config.dns.nameservers == (lab.resolver,)
    assert config.mta_sts.ca_file == str(lab.ca_file)
    assert config.mta_sts.timeout == 1.0
    assert config.mta_sts.allow_private_addresses is True
    assert config.cache.backend == "memory"
    loaded = load_config(str(lab.write_config(tmp_path / "tlspolicy.yml", cache=None)))
    assert loaded.dns.nameservers == (lab.resolver,)


def live_group_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies (from /proc/PID/stat)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def test_lab_second_lab_stops_daemons_and_frees_ports_on_failure(lab: Lab, tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="simulated test failure"),
        start_lab(tmp_path) as second,
    ):
        assert second.https.address != lab.https.address
        daemons = [second.dns.nsd.daemon, second.dns.unbound.daemon]
        groups = [d.proc.pid for d in daemons if d.proc is not None]
        ports = [second.nsd_port, second.resolver[1], second.blackhole[1]]
        assert authenticated(query("dane-only.lab", "MX", second.resolver[1]))
        raise RuntimeError("simulated test failure")
    assert groups
    assert [pid for group in groups for pid in live_group_members(group)] == []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((second.https.address, 443))
