"""The named test cases of the lab: DNS records and policy-host behaviours, as data.

Every domain has MX hosts with A records on 127.0.0.x (nothing listens there: DANE and MTA-STS
decisions never connect to an MX). MTA-STS domains have ``_mta-sts.<d>`` TXT, ``mta-sts.<d>`` A
(the HTTPS lab address) and a policy on the HTTPS lab. Zones (see ``ZONES``): ``lab.`` signed and
the trust anchor; ``unsigned.lab.`` delegated without DS; ``bogus.lab.`` with every RRSIG broken;
``tlsabogus.lab.`` with only its TLSA RRSIGs broken; ``provider.lab.`` signed, for CNAME targets.

DANE (MX hosts named ``mx1.<d>``, ``mx2.<d>``; TLSA at ``_25._tcp.<mx>``):
  dane-only.lab        2 MX, both with usable TLSA (mx1: 3 1 1 + 3 1 2; mx2: 3 1 1 + 3 0 0 DER)
  dane-mixed.lab       2 MX, mx1 with TLSA 3 1 1, mx2 without
  smart.unsigned.lab   unsigned domain, MX mx.smart-target.lab (signed, TLSA 3 1 1)
  plain.unsigned.lab   unsigned, no TLSA
  insecure-tlsa.unsigned.lab  unsigned, TLSA 3 1 1 in the unsigned zone (must be ignored)
  plain.lab            signed, MX without TLSA, no MTA-STS
  unusable.lab         TLSA 1 1 1, 3 1 5 and 3 2 1 only
  usage01.lab          TLSA 0 0 1 and 1 1 1 only
  malformed-tlsa.lab   TLSA 3 1 1 with 5 bytes and 3 0 0 with junk DER (plain dnspython
                       refuses such an answer; tlspolicy.dnsstub.client relaxes it)
  cname-mx.lab         MX mx.cname-mx.lab CNAME mail.provider.lab (A + TLSA at the target)
  nullmx.lab           MX 0 .
  implicit.lab         no MX; A and TLSA (_25._tcp.implicit.lab) at the domain
  nxdomain.lab         does not exist (validated NXDOMAIN)
  bogus.lab            its own zone, all signatures broken: SERVFAIL
  badtlsa.lab          MX 10 mx1.badtlsa.lab (TLSA ok), MX 20 mx.tlsabogus.lab (TLSA bogus)
  both.lab             DANE hosts with TLSA and an MTA-STS enforce policy
  sts.unsigned.lab     unsigned, MTA-STS enforce
  cname-insecure.lab   MX mx.cname-insecure.lab, a signed CNAME to mx.cname-insecure.unsigned.lab
                       (A in the unsigned zone); TLSA at _25._tcp.mx.cname-insecure.lab, the
                       initial name (RFC 7672 §2.2.2, Postfix qname_secure)
  LONG_LABEL_DOMAIN    "l" * 63 + ".lab": MX mx1.<d> with TLSA 3 1 1 (a 63-octet label)
  LONGEST_DOMAIN       a 253-character name under lab. with an A record and no MX: its
                       _25._tcp and _mta-sts names are too long to exist in the DNS
MTA-STS (signed zone, MX hosts without TLSA; policy mx lines name mx1/mx2 unless said):
  sts-good.lab  enforce          sts-wild.lab  enforce, mx: *.sts-wild.lab
  sts-cname.lab  _mta-sts CNAME _mta-sts.sts-cname.provider.lab, mta-sts CNAME
                 policy-host.provider.lab (certificate names mta-sts.sts-cname.lab)
  sts-twotxt.lab  two v=STSv1 TXT    sts-badtxt.lab  TXT "v=STSv1; id=bad id!;"
  sts-404.lab    sts-redirect.lab (301 to mta-sts.redirect-target.lab, which serves a valid
  policy for sts-redirect.lab)    sts-ctype.lab (text/html)    sts-charset.lab (text/plain;
  charset=utf-8, valid)    sts-untrusted.lab    sts-wrongname.lab    sts-expired.lab
  sts-big.lab (Content-Length, 70 KiB)    sts-bigchunk.lab (chunked, 70 KiB)
  sts-slowhead.lab (headers after 30 s)   sts-slowbody.lab (body over 30 s)
  sts-change.lab (id v1; tests change it)  sts-testing.lab  sts-none.lab
  sts-tlsrpt.lab (RFC 8461 §3.2 example)   sts-lf.lab (LF line ends)
  sts-badpolicy.lab (200 text/plain, no version line)
  sts-nohost.lab (TXT, but mta-sts.sts-nohost.lab does not exist)
SMTP (real sinks, for the Postfix 3.10 lab; added last): ``rpt-*.lab``, see ``smtpcases``.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import itertools
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.checkcases import add_check_cases
from tests.lab.dnslab import Blackhole, LabDns, Nsd, Unbound
from tests.lab.https import POLICY_PATH, Behavior, CertVariant, HttpsLab, redirect
from tests.lab.netutil import LOOPBACK, free_port
from tests.lab.smtpcases import add_smtp_cases
from tests.lab.zones import ALL_TYPES, DEFAULT_TTL_S, ZoneSet, ZoneSpec, tlsa_value

ZONES = (
    ZoneSpec("lab."),
    ZoneSpec("unsigned.lab.", signed=False, ds_in_parent=False),
    ZoneSpec("bogus.lab.", corrupt=frozenset({ALL_TYPES})),
    ZoneSpec("tlsabogus.lab.", corrupt=frozenset({"TLSA"})),
    ZoneSpec("provider.lab."),
)
FIRST_MX_ADDRESS = ipaddress.IPv4Address("127.0.0.10")  # 127.0.0.1 is NSD/Unbound
STS_MAX_AGE_S = 86400  # max_age of the catalogue's policies
BIG_POLICY_BYTES = 70 * 1024  # RFC 8461 §3.3 suggests clients cap bodies at 64 KiB
SLOW_S = 30.0  # head_delay / body_delay of the slow policy hosts


def txt(text: str) -> str:
    """A TXT value in presentation form (quoted)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sts_txt(policy_id: str) -> str:
    """The ``_mta-sts`` TXT value for ``policy_id`` (RFC 8461 §3.1), quoted."""
    return txt(f"v=STSv1; id={policy_id};")


def sts_policy(
    mode: str, mx: Sequence[str], *, max_age: int = STS_MAX_AGE_S, eol: str = "\r\n"
) -> str:
    """A policy body (RFC 8461 §3.2); the RFC's lines end in CRLF."""
    lines = ["version: STSv1", f"mode: {mode}", *(f"mx: {m}" for m in mx), f"max_age: {max_age}"]
    return "".join(line + eol for line in lines)


def policy_host(domain: str) -> str:
    return f"mta-sts.{domain}"


def self_signed_der(name: str) -> tuple[bytes, bytes]:
    """A real self-signed certificate for ``name``: (DER, DER SubjectPublicKeyInfo)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return cert.public_bytes(serialization.Encoding.DER), spki


@dataclass(frozen=True, slots=True)
class RecordSet:
    name: str
    rdtype: str
    values: tuple[str, ...]
    ttl: int = DEFAULT_TTL_S


@dataclass
class Catalogue:
    """Records for ``zones.ZoneSet`` and behaviours for ``https.HttpsLab``."""

    https_address: str
    records: list[RecordSet] = field(default_factory=list)
    https: dict[str, Behavior] = field(default_factory=dict)
    cert_der: bytes = b""  # the certificate behind mx2.dane-only.lab's 3 0 0 and 3 1 1
    mx_keys: dict[str, bytes] = field(default_factory=dict)  # SMTP sink keys (smtpcases)
    _next_address: ipaddress.IPv4Address = FIRST_MX_ADDRESS

    def add(self, name: str, rdtype: str, *values: str, ttl: int = DEFAULT_TTL_S) -> None:
        self.records.append(RecordSet(name, rdtype, values, ttl))

    def host(self, name: str, *tlsa: str) -> None:
        """An MX host: an A record and, if given, TLSA at ``_25._tcp.<name>`` (RFC 7672 §2.2)."""
        self.add(name, "A", str(self._next_address))
        self._next_address += 1
        if tlsa:
            self.add(f"_25._tcp.{name}", "TLSA", *tlsa)

    def mx(self, domain: str, *hosts: str) -> None:
        self.add(domain, "MX", *(f"{10 * (i + 1)} {h}" for i, h in enumerate(hosts)))

    def sts(
        self,
        domain: str,
        behavior: Behavior,
        *,
        policy_id: str = "v1",
        txt_values: Iterable[str] | None = None,
        with_host: bool = True,
    ) -> None:
        """``_mta-sts`` TXT, the policy host's A record and its HTTPS behaviour."""
        self.add(f"_mta-sts.{domain}", "TXT", *(txt_values or [sts_txt(policy_id)]))
        if with_host:
            self.add(policy_host(domain), "A", self.https_address)
        self.https[policy_host(domain)] = behavior


def _tlsa_311() -> str:
    return tlsa_value(3, 1, 1, os.urandom(32))


def _sts_domain(
    cat: Catalogue,
    domain: str,
    *,
    mode: str = "enforce",
    eol: str = "\r\n",
    behavior: Behavior | None = None,
    policy_id: str = "v1",
    txt_values: Iterable[str] | None = None,
    with_host: bool = True,
    **changes: Any,
) -> None:
    """MX mx1/mx2 without TLSA plus MTA-STS; by default a policy naming both hosts.

    ``changes`` replace fields of the default ``Behavior`` (e.g. ``cert=``, ``head_delay=``).
    """
    hosts = [f"mx1.{domain}", f"mx2.{domain}"]
    for host in hosts:
        cat.host(host)
    cat.mx(domain, *hosts)
    if behavior is None:
        behavior = replace(Behavior(body=sts_policy(mode, hosts, eol=eol)), **changes)
    cat.sts(domain, behavior, policy_id=policy_id, txt_values=txt_values, with_host=with_host)


def _dane(cat: Catalogue) -> None:
    der, spki = self_signed_der("mx2.dane-only.lab")
    cat.cert_der = der
    cat.host("mx1.dane-only.lab", _tlsa_311(), tlsa_value(3, 1, 2, os.urandom(64)))
    cat.host(
        "mx2.dane-only.lab",
        tlsa_value(3, 1, 1, hashlib.sha256(spki).digest()),
        tlsa_value(3, 0, 0, der),
    )
    cat.mx("dane-only.lab", "mx1.dane-only.lab", "mx2.dane-only.lab")

    cat.host("mx1.dane-mixed.lab", _tlsa_311())
    cat.host("mx2.dane-mixed.lab")
    cat.mx("dane-mixed.lab", "mx1.dane-mixed.lab", "mx2.dane-mixed.lab")

    cat.host("mx.smart-target.lab", _tlsa_311())
    cat.mx("smart.unsigned.lab", "mx.smart-target.lab")
    cat.host("mx1.plain.unsigned.lab")
    cat.mx("plain.unsigned.lab", "mx1.plain.unsigned.lab")
    cat.host("mx1.insecure-tlsa.unsigned.lab", _tlsa_311())
    cat.mx("insecure-tlsa.unsigned.lab", "mx1.insecure-tlsa.unsigned.lab")
    cat.host("mx1.plain.lab")
    cat.mx("plain.lab", "mx1.plain.lab")

    cat.host(
        "mx1.unusable.lab",
        tlsa_value(1, 1, 1, os.urandom(32)),
        tlsa_value(3, 1, 5, os.urandom(32)),
        tlsa_value(3, 2, 1, os.urandom(32)),
    )
    cat.mx("unusable.lab", "mx1.unusable.lab")
    cat.host(
        "mx1.usage01.lab", tlsa_value(0, 0, 1, os.urandom(32)), tlsa_value(1, 1, 1, os.urandom(32))
    )
    cat.mx("usage01.lab", "mx1.usage01.lab")
    junk_der = b"\x30\x03junk" + os.urandom(16)
    cat.host(
        "mx1.malformed-tlsa.lab", tlsa_value(3, 1, 1, os.urandom(5)), tlsa_value(3, 0, 0, junk_der)
    )
    cat.mx("malformed-tlsa.lab", "mx1.malformed-tlsa.lab")

    cat.add("mx.cname-mx.lab", "CNAME", "mail.provider.lab")
    cat.host("mail.provider.lab", _tlsa_311())
    cat.mx("cname-mx.lab", "mx.cname-mx.lab")
    cat.add("nullmx.lab", "MX", "0 .")
    cat.host("implicit.lab", _tlsa_311())

    cat.host("mx.bogus.lab")
    cat.mx("bogus.lab", "mx.bogus.lab")
    cat.host("mx1.badtlsa.lab", _tlsa_311())
    cat.host("mx.tlsabogus.lab", _tlsa_311())
    cat.mx("badtlsa.lab", "mx1.badtlsa.lab", "mx.tlsabogus.lab")

    cat.host("mx1.both.lab", _tlsa_311())
    cat.host("mx2.both.lab", _tlsa_311())
    cat.mx("both.lab", "mx1.both.lab", "mx2.both.lab")
    both = sts_policy("enforce", ["mx1.both.lab", "mx2.both.lab"])
    cat.sts("both.lab", Behavior(body=both))
    _sts_domain(cat, "sts.unsigned.lab")


def _mta_sts(cat: Catalogue) -> None:
    _sts_domain(cat, "sts-good.lab")
    _sts_domain(
        cat, "sts-wild.lab", behavior=Behavior(body=sts_policy("enforce", ["*.sts-wild.lab"]))
    )

    hosts = ["mx1.sts-cname.lab", "mx2.sts-cname.lab"]
    for host in hosts:
        cat.host(host)
    cat.mx("sts-cname.lab", *hosts)
    cat.add("_mta-sts.sts-cname.lab", "CNAME", "_mta-sts.sts-cname.provider.lab")
    cat.add("_mta-sts.sts-cname.provider.lab", "TXT", sts_txt("cname1"))
    cat.add("mta-sts.sts-cname.lab", "CNAME", "policy-host.provider.lab")
    cat.add("policy-host.provider.lab", "A", cat.https_address)
    cat.https["mta-sts.sts-cname.lab"] = Behavior(body=sts_policy("enforce", hosts))

    _sts_domain(cat, "sts-twotxt.lab", txt_values=[sts_txt("one"), sts_txt("two")])
    _sts_domain(cat, "sts-badtxt.lab", txt_values=[txt("v=STSv1; id=bad id!;")])
    _sts_domain(cat, "sts-404.lab", behavior=Behavior(body=b"not found\n", status=404))
    target = "mta-sts.redirect-target.lab"
    _sts_domain(cat, "sts-redirect.lab", behavior=redirect(f"https://{target}{POLICY_PATH}"))
    cat.add(target, "A", cat.https_address)
    redirected = sts_policy("enforce", ["mx1.sts-redirect.lab", "mx2.sts-redirect.lab"])
    cat.https[target] = Behavior(body=redirected)
    _sts_domain(cat, "sts-ctype.lab", content_type="text/html")
    _sts_domain(cat, "sts-charset.lab", content_type="text/plain; charset=utf-8")
    _sts_domain(cat, "sts-untrusted.lab", cert=CertVariant.UNTRUSTED)
    _sts_domain(cat, "sts-wrongname.lab", cert=CertVariant.WRONG_NAME)
    _sts_domain(cat, "sts-expired.lab", cert=CertVariant.EXPIRED)
    _sts_domain(cat, "sts-slowhead.lab", head_delay=SLOW_S)
    _sts_domain(cat, "sts-slowbody.lab", body_delay=SLOW_S)
    for domain, chunked in [("sts-big.lab", False), ("sts-bigchunk.lab", True)]:
        body = sts_policy("enforce", [f"mx1.{domain}", f"mx2.{domain}"])
        padding = (f"mx: pad{n:05d}.{domain}\r\n" for n in itertools.count())
        while len(body) < BIG_POLICY_BYTES:
            body += next(padding)
        _sts_domain(cat, domain, behavior=Behavior(body=body, chunked=chunked))
    _sts_domain(cat, "sts-change.lab", policy_id="v1")
    _sts_domain(cat, "sts-testing.lab", mode="testing")
    _sts_domain(cat, "sts-none.lab", mode="none")
    _sts_domain(cat, "sts-lf.lab", eol="\n")
    _sts_domain(cat, "sts-badpolicy.lab", behavior=Behavior(body="mode: enforce\r\nmx: *.lab\r\n"))
    _sts_domain(cat, "sts-nohost.lab", with_host=False)

    # RFC 8461 §3.2, the example policy with example.com replaced by the domain.
    cat.host("mail.sts-tlsrpt.lab")
    cat.host("backupmx.sts-tlsrpt.lab")
    cat.mx("sts-tlsrpt.lab", "mail.sts-tlsrpt.lab", "backupmx.sts-tlsrpt.lab")
    rfc_policy = sts_policy(
        "enforce",
        ["mail.sts-tlsrpt.lab", "*.sts-tlsrpt.lab", "backupmx.sts-tlsrpt.lab"],
        max_age=604800,
    )
    cat.sts("sts-tlsrpt.lab", Behavior(body=rfc_policy))


# Names at the length limits (RFC 1035 §2.3.4): a 63-octet label, and a 253-character name
# (255 octets on the wire), the longest a DNS query can carry.
LONG_LABEL_DOMAIN = "l" * 63 + ".lab"
LONGEST_DOMAIN = ".".join(["x" * 63, "y" * 63, "z" * 63, "w" * 57, "lab"])


def _dane_names(cat: Catalogue) -> None:
    """DANE cases added after the first catalogue; last, so older hosts keep their addresses."""
    cat.add("mx.cname-insecure.lab", "CNAME", "mx.cname-insecure.unsigned.lab")
    cat.host("mx.cname-insecure.unsigned.lab")
    cat.add("_25._tcp.mx.cname-insecure.lab", "TLSA", _tlsa_311())
    cat.mx("cname-insecure.lab", "mx.cname-insecure.lab")
    cat.host(f"mx1.{LONG_LABEL_DOMAIN}", _tlsa_311())
    cat.mx(LONG_LABEL_DOMAIN, f"mx1.{LONG_LABEL_DOMAIN}")
    cat.host(LONGEST_DOMAIN)


def build_catalogue(https_address: str) -> Catalogue:
    """Every named case, with fresh random TLSA data; policy hosts resolve to ``https_address``."""
    cat = Catalogue(https_address=https_address)
    _dane(cat)
    _mta_sts(cat)
    _dane_names(cat)
    add_smtp_cases(cat)  # last: older hosts keep their addresses
    _sts_dns_failure(cat)
    add_check_cases(cat)  # last: older hosts keep their addresses
    return cat


def _sts_dns_failure(cat: Catalogue) -> None:
    """sts-bogustxt.lab: signed MX without TLSA, ``_mta-sts`` a CNAME into the bogus zone,
    so the TXT lookup fails (SERVFAIL) while DANE is a validated "no"."""
    hosts = ["mx1.sts-bogustxt.lab"]
    cat.host(hosts[0])
    cat.mx("sts-bogustxt.lab", *hosts)
    cat.add("_mta-sts.sts-bogustxt.lab", "CNAME", "_mta-sts.bogus.lab")


@dataclass
class Lab:
    """The running lab, as the session fixture ``lab`` hands it to tests.

    ``resolver`` is the validating Unbound, ``blackhole`` a resolver that never answers,
    ``dns`` edits zones at runtime (``set_records`` then ``apply``), ``https`` changes policy
    hosts at runtime (``https.set(host, Behavior(...))``) and counts their requests.
    """

    tmp: Path
    resolver: tuple[str, int]
    blackhole: tuple[str, int]
    nsd_port: int
    https: HttpsLab
    ca_file: Path
    dns: LabDns
    catalogue: Catalogue

    def config_dict(self, **overrides: Any) -> dict[str, Any]:
        """A tlspolicy configuration mapping for this lab (see ``tlspolicy.config``).

        Each keyword names a top-level section whose keys are merged over the defaults
        (``mta_sts={"timeout": 1}``); a section given as None is dropped. ``server.listen`` is
        a new free port on every call.
        """
        host, port = self.resolver
        config: dict[str, Any] = {
            "server": {"listen": [f"{LOOPBACK}:{free_port(udp=False)}"]},
            "dns": {
                "nameservers": [f"{host}:{port}"],
                "selfcheck_secure_name": "dane-only.lab",
                "selfcheck_bogus_name": "bogus.lab",
            },
            "mta_sts": {
                "ca_file": str(self.ca_file),
                "allow_private_addresses": True,
                "timeout": 3,
            },
            "cache": {"backend": "memory"},
            "postfix": {"postconf": ""},  # the host's Postfix is no part of the lab
        }
        for section, value in overrides.items():
            if value is None:
                config.pop(section, None)
            elif isinstance(value, dict) and isinstance(config.get(section), dict):
                config[section] = {**config[section], **value}
            else:
                config[section] = value
        return config

    def write_config(self, path: Path | str, **overrides: Any) -> Path:
        """Write ``config_dict(**overrides)`` as YAML to ``path`` and return the path."""
        target = Path(path)
        target.write_text(yaml.safe_dump(self.config_dict(**overrides), sort_keys=False))
        return target

    def reset(self) -> None:
        """Undo runtime DNS and HTTPS changes and clear the request log."""
        self.dns.reset()
        self.https.reset()


@contextlib.contextmanager
def start_lab(tmp: Path) -> Iterator[Lab]:
    """Start HTTPS, NSD, Unbound and the blackhole in ``tmp``; stop them all on exit."""
    with contextlib.ExitStack() as stack:
        https = HttpsLab(tmp)
        stack.callback(https.stop)
        https.start()
        catalogue = build_catalogue(https.address)
        https.load(catalogue.https)
        zones = ZoneSet(ZONES, serial=int(time.time()))
        for record in catalogue.records:
            zones.put(record.name, record.rdtype, record.values, ttl=record.ttl)
        nsd = Nsd(tmp, zones)
        stack.callback(nsd.stop)
        nsd.start()
        unbound = Unbound(tmp, zones, nsd.port)
        stack.callback(unbound.stop)
        unbound.start()
        blackhole = Blackhole()
        stack.callback(blackhole.stop)
        blackhole.start()
        yield Lab(
            tmp=tmp,
            resolver=(LOOPBACK, unbound.port),
            blackhole=blackhole.address,
            nsd_port=nsd.port,
            https=https,
            ca_file=https.ca_file,
            dns=LabDns(zones, nsd, unbound),
            catalogue=catalogue,
        )
