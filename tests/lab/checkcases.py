"""Lab domains for ``tlspolicy check`` (``chk-*.lab``), as data; added to the catalogue last.

SMTP hosts here get sinks from ``tests.lab.checksinks`` (on the host loopback, not in the
Postfix namespace). The ``rpt-*`` hosts of ``smtpcases`` are served there too.

  chk-dane.lab        MX mx.chk-dane.lab: lab-CA certificate, TLSA 3 1 1 of its key plus a
                      3 1 1 of the next key (a rollover partner), TLSRPT: all green
  chk-danta.lab       MX mx.chk-danta.lab: lab-CA certificate sent with the CA (a full chain);
                      TLSA 2 0 1 placeholders (a test puts the lab CA's digest in at runtime:
                      the CA is made after the catalogue)
  chk-v6.lab          MX mx.chk-v6.lab with A 127.0.0.x (a sink) and AAAA ::1 (nothing listens
                      there: the IPv6 address is refused), MTA-STS enforce, TLSRPT
  chk-soon.lab        MTA-STS enforce, MX mx.chk-soon.lab whose certificate expires in
                      ``SOON_DAYS`` days
  chk-badrua.lab      MTA-STS enforce, MX mx.rpt-sts.lab, TLSRPT rua=mailto:without-at-sign
  chk-longid.lab      _mta-sts TXT with a 40-character id (DNS only: check with --no-smtp)
  chk-colon.lab       policy line "mode : enforce" (space before the colon)
  chk-shortage.lab    policy max_age 3600 (below one day: a warning)
  chk-ipmx.lab        policy "mx: 192.0.2.25" (an IP address as a pattern)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.lab.https import Behavior
from tests.lab.smtpcases import STS_MX, sts_body, tlsrpt_txt
from tests.lab.zones import tlsa_value

if TYPE_CHECKING:
    from tests.lab.scenario import Catalogue

SOON_DAYS = 5  # below the 14-day warning threshold of ``tlspolicy check``
LONG_ID = "a" * 40  # RFC 8461 §3.1 allows at most 32


@dataclass(frozen=True, slots=True)
class CheckSink:
    """An SMTP sink for ``check``: a lab-CA certificate for ``host`` valid ``days`` more days."""

    host: str
    days: int = 30
    chain: bool = False  # send the CA certificate after the leaf


CHECK_SINKS = (
    CheckSink("mx.chk-dane.lab"),
    CheckSink("mx.chk-soon.lab", days=SOON_DAYS),
    CheckSink("mx.chk-danta.lab", chain=True),
    CheckSink("mx.chk-v6.lab"),
)
IPV6_LOOPBACK = "::1"


def _key() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, spki


def _txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add_check_cases(cat: Catalogue) -> None:
    """DNS records and policy hosts of the domains above; sink keys into ``cat.mx_keys``."""
    pem, spki = _key()
    cat.mx_keys["mx.chk-dane.lab"] = pem
    _, next_spki = _key()
    cat.host(
        "mx.chk-dane.lab",
        tlsa_value(3, 1, 1, hashlib.sha256(spki).digest()),
        tlsa_value(3, 1, 1, hashlib.sha256(next_spki).digest()),
    )
    cat.mx("chk-dane.lab", "mx.chk-dane.lab")
    cat.add("_smtp._tls.chk-dane.lab", "TXT", tlsrpt_txt())

    pem, _ = _key()
    cat.mx_keys["mx.chk-danta.lab"] = pem
    cat.host("mx.chk-danta.lab", *(tlsa_value(2, 0, 1, os.urandom(32)) for _ in range(2)))
    cat.mx("chk-danta.lab", "mx.chk-danta.lab")
    cat.add("_smtp._tls.chk-danta.lab", "TXT", tlsrpt_txt())

    pem, _ = _key()
    cat.mx_keys["mx.chk-v6.lab"] = pem
    cat.host("mx.chk-v6.lab")
    cat.add("mx.chk-v6.lab", "AAAA", IPV6_LOOPBACK)
    cat.mx("chk-v6.lab", "mx.chk-v6.lab")
    cat.sts("chk-v6.lab", Behavior(body=sts_body("enforce", ["mx.chk-v6.lab"])))
    cat.add("_smtp._tls.chk-v6.lab", "TXT", tlsrpt_txt())

    pem, _ = _key()
    cat.mx_keys["mx.chk-soon.lab"] = pem
    cat.host("mx.chk-soon.lab")
    cat.mx("chk-soon.lab", "mx.chk-soon.lab")
    cat.sts("chk-soon.lab", Behavior(body=sts_body("enforce", ["mx.chk-soon.lab"])))
    cat.add("_smtp._tls.chk-soon.lab", "TXT", tlsrpt_txt())

    cat.mx("chk-badrua.lab", STS_MX)
    cat.sts("chk-badrua.lab", Behavior(body=sts_body("enforce", [STS_MX])))
    cat.add("_smtp._tls.chk-badrua.lab", "TXT", _txt("v=TLSRPTv1; rua=mailto:reports.example"))

    cat.mx("chk-longid.lab", STS_MX)
    cat.sts(
        "chk-longid.lab",
        Behavior(body=sts_body("enforce", [STS_MX])),
        txt_values=[_txt(f"v=STSv1; id={LONG_ID};")],
    )
    bodies = {
        "chk-colon.lab": f"version: STSv1\r\nmode : enforce\r\nmx: {STS_MX}\r\nmax_age: 86400\r\n",
        "chk-shortage.lab": f"version: STSv1\r\nmode: enforce\r\nmx: {STS_MX}\r\nmax_age: 3600\r\n",
        "chk-ipmx.lab": "version: STSv1\r\nmode: enforce\r\nmx: 192.0.2.25\r\nmax_age: 86400\r\n",
    }
    for domain, body in bodies.items():
        cat.mx(domain, STS_MX)
        cat.sts(domain, Behavior(body=body), policy_id=os.urandom(4).hex())
