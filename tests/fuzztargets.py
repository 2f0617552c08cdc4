"""One fuzz target per parser: bytes in; returns, or raises only that parser's own error.

Shared by the atheris harness (``bench/fuzz.py``, a million inputs per parser, outside CI),
the hypothesis property tests and the corpus regression test
(``tests/unit/test_fuzz_parsers.py``), so all three check the same contract. A target lets
the parser's documented error type through as ``ALLOWED[name]``; anything else escaping is
a bug. Seeds and every crash the fuzzer found live in ``tests/fuzz_corpus/<parser>/``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tlspolicy.config import load_config
from tlspolicy.dane.tlsa import tlsa_usable
from tlspolicy.dnsstub import codec as dnscodec
from tlspolicy.dnsstub.answer import to_answer
from tlspolicy.dnsstub.data import TlsaRecord, TxtRecord
from tlspolicy.errors import (
    ConfigError,
    DatagramError,
    DnsError,
    PolicySyntaxError,
    ProtocolError,
    RecordSyntaxError,
)
from tlspolicy.mtasts import policy as sts_policy
from tlspolicy.mtasts import record as sts_record
from tlspolicy.socketmap.connection import NEED_DATA, Request, SocketmapConnection
from tlspolicy.socketmap.keys import normalize_key
from tlspolicy.tlsrpt import record as rpt_record
from tlspolicy.tlsrpt.datagram import parse_datagram

CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
_CONFIG_DIR = Path(os.environ.get("TLSPOLICY_FUZZ_TMP", "/dev/shm" if os.path.isdir("/dev/shm")
                                  else tempfile.gettempdir()))  # fmt: skip
_CONFIG_FILE = _CONFIG_DIR / f"tlspolicy-fuzz-config-{os.getpid()}.yml"


def _txt_strings(data: bytes) -> list[TxtRecord]:
    """NUL separates records, SOH separates the strings of one record (each <= 255 bytes)."""
    return [TxtRecord(tuple(s[:255] for s in rr.split(b"\x01"))) for rr in data.split(b"\x00")[:8]]


def netstring(data: bytes) -> None:
    """Socketmap framing, fed in pieces: the first byte says where the stream is cut."""
    conn = SocketmapConnection()
    cut = data[0] % (len(data)) if data else 0
    for piece in (data[1 : cut + 1], data[cut + 1 :], b""):
        conn.receive_data(piece)
        while True:
            item = conn.next_request()
            if item is None or item is NEED_DATA:
                break
            assert isinstance(item, Request)
            assert len(item.name.encode()) + len(item.key.encode()) <= 3 * 10000


def keys(data: bytes) -> None:
    """Key normalisation never raises; a domain it returns is lowercase LDH within limits."""
    result = normalize_key(data.decode("utf-8", "replace"))
    if result.domain is not None:
        assert result.domain.isascii() and result.domain == result.domain.lower()
        assert len(result.domain) <= 253
        assert all(0 < len(label) <= 63 for label in result.domain.split("."))


def sts_txt(data: bytes) -> None:
    """MTA-STS TXT: one joined record, then the RRset selection."""
    with contextlib.suppress(RecordSyntaxError):
        sts_record.parse_record(data.decode("utf-8", "replace"))
    sts_record.select_record(_txt_strings(data))


def policy(data: bytes) -> None:
    """The MTA-STS policy body as bytes (it must be UTF-8) and as text."""
    with contextlib.suppress(PolicySyntaxError):
        sts_policy.parse_policy(data)
    sts_policy.parse_policy(data.decode("utf-8", "replace"))


def tlsa(data: bytes) -> None:
    """TLSA usability (DER parsing of Full data) never raises: unusable is a finding."""
    head = data[:3].ljust(3, b"\x00")
    usable, why = tlsa_usable(TlsaRecord(head[0] % 4, head[1] % 3, head[2] % 4, data[3:]))
    assert isinstance(usable, bool) and why


def tlsrpt_record(data: bytes) -> None:
    """TLSRPT TXT: one joined record, then the RRset selection."""
    with contextlib.suppress(RecordSyntaxError):
        rpt_record.parse_record(data.decode("utf-8", "replace"))
    rpt_record.select_record(_txt_strings(data))


def datagram(data: bytes) -> None:
    """A libtlsrpt datagram."""
    parse_datagram(data)


def dns_response(data: bytes) -> None:
    """A DNS response from the resolver, read and turned into the answer to its question."""
    response = dnscodec.parse_response(data)
    if response.question is not None:
        name, qtype, _qclass = response.question
        rdtype = next((k for k, v in dnscodec.QTYPES.items() if v == qtype), "A")
        answer = to_answer(response, name, rdtype)
        assert answer.rcode in ("NOERROR", "NXDOMAIN") and answer.ttl >= 0


def config(data: bytes) -> None:
    """A configuration file, through the same loader ``tlspolicy serve -c`` uses."""
    _CONFIG_FILE.write_bytes(data)
    try:
        load_config(str(_CONFIG_FILE))
    finally:
        _CONFIG_FILE.unlink(missing_ok=True)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "netstring": netstring,
    "keys": keys,
    "sts_txt": sts_txt,
    "policy": policy,
    "tlsa": tlsa,
    "tlsrpt_record": tlsrpt_record,
    "datagram": datagram,
    "dns_response": dns_response,
    "config": config,
}
ALLOWED: dict[str, tuple[type[Exception], ...]] = {
    "netstring": (ProtocolError,),
    "keys": (),
    "sts_txt": (RecordSyntaxError,),
    "policy": (PolicySyntaxError,),
    "tlsa": (),
    "tlsrpt_record": (RecordSyntaxError,),
    "datagram": (DatagramError,),
    "dns_response": (dnscodec.FormatError, DnsError),
    "config": (ConfigError,),
}


def run(name: str, data: bytes) -> bool:
    """Run target ``name``; True if the input was accepted, False if rejected as allowed."""
    allowed = ALLOWED[name]
    if not allowed:
        TARGETS[name](data)
        return True
    try:
        TARGETS[name](data)
    except allowed:
        return False
    return True


def corpus(name: str) -> list[Path]:
    """The seed and regression inputs kept for ``name``."""
    return sorted(p for p in (CORPUS / name).glob("*") if p.is_file())
