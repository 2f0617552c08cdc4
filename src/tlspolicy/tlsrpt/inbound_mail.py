"""A report that came by mail: find it in the message and check its DKIM signature, pure.

RFC 8460 §3: reports sent by mail MUST be DKIM-signed by the reporting domain, and
reports without such a signature MUST be ignored. So, here:

* ``find_report`` reads at most ``MAX_MESSAGE_BYTES`` and ``MAX_MIME_PARTS`` parts and
  takes the first ``application/tlsrpt+gzip`` or ``application/tlsrpt+json`` part (§5.3);
  failing that, the first attachment whose file name ends as §5.1's names do (``.json.gz``,
  ``.gz``, ``.json``), whatever its media type (some reporters send
  ``application/gzip`` or ``application/octet-stream``).
* The reporting domain is the ``TLS-Report-Submitter`` header (§5.3), or the domain of
  ``From`` when that header is missing. A signature counts when its ``d=`` is that domain
  or a parent of it, and it verifies.
* ``verify_dkim`` runs dkimpy in TLSRPT mode (``tlsrpt=True``: a signature with ``l=`` is
  refused; with ``strict``, also a key without ``s=tlsrpt``, as §3 recommends). The keys
  are looked up beforehand by the caller, through the validating DNS client, and handed in
  as ``keys``: dkimpy's own look-up (``dnsfunc``) only reads that mapping, so it never
  touches the network or the host's resolver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import parseaddr

from tlspolicy.errors import InboundReportError
from tlspolicy.tlsrpt.inbound import (
    MAX_COMPRESSED_BYTES,
    MAX_REPORT_BYTES,
    Kind,
    Verdict,
    kind_of_name,
)

MAX_MESSAGE_BYTES = 2 * MAX_REPORT_BYTES  # base64 of the largest JSON report, with room
MAX_MIME_PARTS = 64
MAX_SIGNATURES = 8  # DKIM-Signature headers looked at (a key look-up each)
DKIM_MIN_KEY_BITS = 1024  # RFC 8301 §3.2
DKIM_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Signature:
    """The ``d=`` and ``s=`` of one DKIM-Signature header (index: its position)."""

    index: int
    domain: str
    selector: str

    @property
    def key_name(self) -> str:
        """Where the key is published (RFC 6376 §3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"


@dataclass(frozen=True, slots=True)
class MailReport:
    """What a report message carries."""

    body: bytes
    kind: Kind
    reporting_domain: str
    signatures: tuple[Signature, ...] = field(default=())
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class DkimResult:
    ok: bool
    signer: str  # the d= that verified, or ""
    reason: str


def find_report(message: bytes) -> MailReport:
    """The report part, the reporting domain and the DKIM signatures of a message.

    Raises:
        InboundReportError: ``not-report`` when there is no report in it, ``too-large``.
    """
    if len(message) > MAX_MESSAGE_BYTES:
        raise InboundReportError(Verdict.TOO_LARGE, f"message over {MAX_MESSAGE_BYTES} bytes")
    msg = message_from_bytes(message, policy=compat32)
    part = _report_part(msg)
    if part is None:
        raise InboundReportError(Verdict.NOT_REPORT, "no application/tlsrpt part in the message")
    mime, kind = part
    payload = mime.get_payload(decode=True)
    if not isinstance(payload, bytes) or not payload:
        raise InboundReportError(Verdict.INVALID, "the report part is empty")
    limit = MAX_COMPRESSED_BYTES if kind is Kind.GZIP else MAX_REPORT_BYTES
    if len(payload) > limit:
        raise InboundReportError(Verdict.TOO_LARGE, f"report part over {limit} bytes")
    return MailReport(
        body=payload,
        kind=kind,
        reporting_domain=reporting_domain(msg),
        signatures=signatures(msg),
        message_id=str(msg.get("Message-ID", "")).strip()[:998],
    )


def _report_part(msg: Message) -> tuple[Message, Kind] | None:
    by_name: tuple[Message, Kind] | None = None
    for count, part in enumerate(msg.walk()):
        if count >= MAX_MIME_PARTS:
            break
        if part.is_multipart():
            continue
        media = part.get_content_type()
        for kind in Kind:
            if media == kind.value:
                return part, kind
        name = part.get_filename()
        if by_name is None and isinstance(name, str) and (named := kind_of_name(name)):
            by_name = part, named
    return by_name


def reporting_domain(msg: Message) -> str:
    """``TLS-Report-Submitter`` (RFC 8460 §5.3), else the ``From`` domain; lowercase."""
    submitter = str(msg.get("TLS-Report-Submitter", "")).strip()
    if not submitter:
        submitter = parseaddr(str(msg.get("From", "")))[1].rpartition("@")[2]
    return submitter.lower().removesuffix(".")


def signatures(msg: Message) -> tuple[Signature, ...]:
    """The DKIM-Signature headers' ``d=`` and ``s=``, in order (index for dkimpy)."""
    found = []
    for index, value in enumerate(msg.get_all("DKIM-Signature") or ()):
        if index >= MAX_SIGNATURES:
            break
        tags = dkim_tags(str(value))
        domain, selector = tags.get("d", ""), tags.get("s", "")
        if domain and selector:
            found.append(Signature(index, domain.lower().removesuffix("."), selector.lower()))
    return tuple(found)


def dkim_tags(value: str) -> dict[str, str]:
    """``tag=value`` pairs of a DKIM-Signature (RFC 6376 §3.2), whitespace removed."""
    tags: dict[str, str] = {}
    for item in value.split(";"):
        name, sep, text = item.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(text.split()))
    return tags


def aligned(signer: str, domain: str) -> bool:
    """A signature by ``signer`` is one by the reporting ``domain`` (or its parent)."""
    return bool(domain) and (domain == signer or domain.endswith("." + signer))


def wanted_signatures(report: MailReport) -> tuple[Signature, ...]:
    """The signatures by the reporting domain: the only keys worth looking up."""
    return tuple(s for s in report.signatures if aligned(s.domain, report.reporting_domain))


def verify_dkim(
    message: bytes,
    report: MailReport,
    keys: Mapping[str, bytes | None],
    *,
    strict: bool = False,
) -> DkimResult:
    """Whether a signature by the reporting domain verifies, with the keys in ``keys``
    (key name, as ``Signature.key_name``, to the TXT record's text, None when absent)."""
    import dkim  # noqa: PLC0415 - the [mail] extra; callers check it (needs_extra)

    wanted = wanted_signatures(report)
    if not wanted:
        by = ", ".join(s.domain for s in report.signatures) or "nobody"
        return DkimResult(
            False, "", f"no DKIM signature by {report.reporting_domain or '?'} (signed by {by})"
        )

    def dnsfunc(name: bytes, timeout: int = DKIM_TIMEOUT_S) -> bytes | None:
        return keys.get(name.decode("ascii", "replace").lower().removesuffix("."))

    reasons = []
    for sig in wanted:
        checker = dkim.DKIM(
            message,
            minkey=DKIM_MIN_KEY_BITS,
            timeout=DKIM_TIMEOUT_S,
            tlsrpt="strict" if strict else True,
        )
        try:
            if checker.verify(idx=sig.index, dnsfunc=dnsfunc):
                return DkimResult(True, sig.domain, "ok")
            reasons.append(f"{sig.key_name}: signature does not verify")
        except dkim.DKIMException as exc:
            reasons.append(f"{sig.key_name}: {exc}")
    return DkimResult(False, "", "; ".join(reasons))


def txt_key(strings: tuple[bytes, ...]) -> bytes:
    """One TXT record's character-strings joined (RFC 6376 §3.6.2.2)."""
    return b"".join(strings)
