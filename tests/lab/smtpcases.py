"""Lab domains with real SMTP hosts behind them, for the Postfix 3.10 TLSRPT tests, as data.

``add_smtp_cases`` adds their DNS records and policy hosts to the catalogue; ``tests.lab.mxsinks``
starts an SMTP sink for every host in ``SINKS``. Every domain publishes ``_smtp._tls`` TXT.
Hosts (``kind`` says how the sink behaves; addresses come from the catalogue's 127.0.0.x):

  mx.rpt-good.lab       good: lab-CA certificate for its name, TLSA 3 1 1 of its key (DANE)
  mx.rpt-sts.lab        good, without TLSA (MTA-STS: DANE would win over it)
  mx.rpt-nostarttls.lab no STARTTLS offered
  mx.rpt-wrongname.lab  lab-CA certificate for ``WRONG_MX_NAME``
  mx.rpt-untrusted.lab  right name, issued by the lab's untrusted CA
  mx.rpt-selfsigned.lab right name, self-signed
  mx.rpt-expired.lab    lab-CA certificate, expired yesterday
  mx.rpt-danebad.lab    good certificate, but a TLSA 3 1 1 that does not match its key
  rogue.rpt-stspattern.lab  lab-CA certificate naming mx.rpt-stspattern.lab, outside the policy

Domains (MTA-STS policies list only the domain's own ``mx.`` host):
  rpt-sts / rpt-testing / rpt-none.lab   MTA-STS enforce / testing / none, MX mx.rpt-sts.lab
  rpt-dane.lab          MX mx.rpt-good.lab (DANE: the server answers dane-only)
  rpt-danemixed.lab     MX mx.rpt-good.lab and mx2.rpt-danemixed.lab (no TLSA): dane
  rpt-nostarttls / rpt-wrongname / rpt-untrusted / rpt-selfsigned / rpt-expired.lab
                        MTA-STS enforce, MX the host of the same name
  rpt-danebad.lab       MX mx.rpt-danebad.lab (dane-only, TLSA mismatch)
  rpt-stspattern.lab    enforce, ``mx: mx.rpt-stspattern.lab``; MX 10 rogue (not covered),
                        MX 20 mx.rpt-stspattern.lab (good)
  reports.rpt.lab       the rua domain of them all (``REPORT_ADDRESS``): MX mx.rpt-good.lab
                        (DANE), with its own ``_smtp._tls`` record, so a report about the
                        report mail would show as a datagram for it
  rpt-x-<level>-<host>.lab  experiments for an MTA-STS testing policy: Postfix takes the
                        answer from a static table (``EXPERIMENTS``: ``<level> policy_type=sts
                        ...``), level may / encrypt / dane; MX good (mx.rpt-sts), wrongname,
                        nostarttls, rogue (outside mx_host_pattern) or tlsa (mx.rpt-good)
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.lab.https import Behavior
from tests.lab.zones import tlsa_value

if TYPE_CHECKING:
    from tests.lab.scenario import Catalogue

WRONG_MX_NAME = "mx.wrong-name.lab"
REPORT_ADDRESS = "tlsrpt@reports.rpt.lab"  # the rua of every _smtp._tls record here
REPORT_DOMAIN = REPORT_ADDRESS.partition("@")[2]
SECOND_MX = "mx2.rpt-danemixed.lab"  # no TLSA; no sink (never tried: the first MX works)


class SinkKind(StrEnum):
    GOOD = "good"
    NO_STARTTLS = "no-starttls"
    WRONG_NAME = "wrong-name"
    UNTRUSTED = "untrusted"
    SELF_SIGNED = "self-signed"
    EXPIRED = "expired"
    ROGUE = "rogue"  # certificate for another host of the domain


@dataclass(frozen=True, slots=True)
class Sink:
    host: str
    kind: SinkKind
    tlsa: str = "match"  # "match": TLSA 3 1 1 of the key; "mismatch": random; "": none


SINKS = (
    Sink("mx.rpt-good.lab", SinkKind.GOOD),
    Sink("mx.rpt-sts.lab", SinkKind.GOOD, tlsa=""),
    Sink("mx.rpt-nostarttls.lab", SinkKind.NO_STARTTLS, tlsa=""),
    Sink("mx.rpt-wrongname.lab", SinkKind.WRONG_NAME, tlsa=""),
    Sink("mx.rpt-untrusted.lab", SinkKind.UNTRUSTED, tlsa=""),
    Sink("mx.rpt-selfsigned.lab", SinkKind.SELF_SIGNED, tlsa=""),
    Sink("mx.rpt-expired.lab", SinkKind.EXPIRED, tlsa=""),
    Sink("mx.rpt-danebad.lab", SinkKind.GOOD, tlsa="mismatch"),
    Sink("mx.rpt-stspattern.lab", SinkKind.GOOD, tlsa=""),
    Sink("rogue.rpt-stspattern.lab", SinkKind.ROGUE, tlsa=""),
)
GOOD_MX = "mx.rpt-good.lab"
STS_MX = "mx.rpt-sts.lab"
STS_ENFORCE_BAD = ("nostarttls", "wrongname", "untrusted", "selfsigned", "expired")


def _policy_lines(mode: str, mx: list[str]) -> list[tuple[str, str]]:
    return [("version", "STSv1"), ("mode", mode), *(("mx", m) for m in mx), ("max_age", "86400")]


def sts_body(mode: str, mx: list[str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in _policy_lines(mode, mx))


def sts_answer(level: str, domain: str, mode: str, mx: list[str]) -> str:
    """A TLSRPT-style policy answer at ``level``, the shape our server sends for enforce."""
    parts = [level, f"policy_type=sts policy_domain={domain}"]
    parts += [f"mx_host_pattern={m}" for m in mx]
    parts += [f"{{ policy_string = {k}: {v} }}" for k, v in _policy_lines(mode, mx)]
    return " ".join(parts)


def _experiments() -> dict[str, tuple[str, str]]:
    """Experiment domain -> (its MX host, the answer Postfix's static table gives for it)."""
    hosts = {
        "good": STS_MX,
        "wrongname": "mx.rpt-wrongname.lab",
        "nostarttls": "mx.rpt-nostarttls.lab",
        "rogue": "rogue.rpt-stspattern.lab",
        "tlsa": GOOD_MX,  # has TLSA 3 1 1
    }
    table: dict[str, tuple[str, str]] = {}
    for level in ("may", "encrypt", "dane"):
        for name, host in hosts.items():
            domain = f"rpt-x-{level}-{name}.lab"
            # rogue: the pattern covers another host, as for a policy that omits the MX
            pattern = "mx.rpt-stspattern.lab" if name == "rogue" else host
            table[domain] = (host, sts_answer(level, domain, "testing", [pattern]))
    return table


EXPERIMENTS = _experiments()


def _txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tlsrpt_txt() -> str:
    return _txt(f"v=TLSRPTv1; rua=mailto:{REPORT_ADDRESS}")


def _key_pem() -> tuple[bytes, bytes]:
    """A fresh P-256 key: (PKCS#8 PEM, DER SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, spki


def _sts(cat: Catalogue, domain: str, mode: str, mx: list[str]) -> None:
    cat.sts(domain, Behavior(body=sts_body(mode, mx)))


def add_smtp_cases(cat: Catalogue) -> None:
    """Hosts, MX, TLSA, TLSRPT and MTA-STS records of the domains above; keys in ``mx_keys``."""
    for sink in SINKS:
        pem, spki = _key_pem()
        cat.mx_keys[sink.host] = pem
        tlsa = []
        if sink.tlsa == "match":
            tlsa.append(tlsa_value(3, 1, 1, hashlib.sha256(spki).digest()))
        elif sink.tlsa == "mismatch":
            tlsa.append(tlsa_value(3, 1, 1, os.urandom(32)))
        cat.host(sink.host, *tlsa)
    cat.host(SECOND_MX)

    def domain(name: str, *mx: str) -> str:
        cat.mx(name, *mx)
        cat.add(f"_smtp._tls.{name}", "TXT", tlsrpt_txt())
        return name

    for mode in ("enforce", "testing", "none"):
        name = {"enforce": "rpt-sts.lab"}.get(mode, f"rpt-{mode}.lab")
        _sts(cat, domain(name, STS_MX), mode, [STS_MX])
    domain("rpt-dane.lab", GOOD_MX)
    domain("rpt-danemixed.lab", GOOD_MX, SECOND_MX)
    for case in STS_ENFORCE_BAD:
        host = f"mx.rpt-{case}.lab"
        _sts(cat, domain(f"rpt-{case}.lab", host), "enforce", [host])
    domain("rpt-danebad.lab", "mx.rpt-danebad.lab")
    pattern_mx = "mx.rpt-stspattern.lab"
    _sts(
        cat,
        domain("rpt-stspattern.lab", "rogue.rpt-stspattern.lab", pattern_mx),
        "enforce",
        [pattern_mx],
    )
    for name, (host, _) in EXPERIMENTS.items():
        _sts(cat, domain(name, host), "testing", [host])
    domain(REPORT_DOMAIN, GOOD_MX)  # no new host: later hosts keep their addresses
