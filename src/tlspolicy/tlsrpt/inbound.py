"""Reports other senders send us: unpack, bound and validate them (RFC 8460 §4), pure.

Every way in (mail, HTTPS, files) ends here with the report's bytes and a content kind;
this module turns them into an ``InboundReport`` or raises ``InboundReportError`` with the
verdict and the reason. Rules kept here:

* Everything is hostile and bounded before it costs memory: at most
  ``MAX_COMPRESSED_BYTES`` of gzip, inflated incrementally to at most ``MAX_REPORT_BYTES``
  (a gzip bomb stops after that many bytes, never in full), a compression ratio of at most
  ``MAX_GZIP_RATIO`` once the output passes ``RATIO_FLOOR_BYTES``, JSON nesting of at most
  ``MAX_JSON_DEPTH`` (checked on the bytes, before ``json.loads`` recurses), at most
  ``MAX_POLICIES`` policies and ``MAX_FAILURE_DETAILS`` failure details per policy, and
  text fields of at most ``MAX_TEXT_CHARS`` (``MAX_ID_CHARS`` for the two that form the
  de-duplication key, so they fit a PostgreSQL btree entry).
* RFC 8460 §4 fields are required with their types: ``organization-name``, ``date-range``
  (two RFC 3339 times, start not after end), ``contact-info``, ``report-id``, ``policies``;
  per policy ``policy-type`` (``tlsa``, ``sts``, ``no-policy-found``), ``policy-domain``
  and both summary counts (non-negative integers); per failure detail ``result-type`` and
  ``failed-session-count``. Fields the RFC does not define are ignored (the §4.5 example
  itself carries ``failure-error-code``), and so are result types it does not list (§4.3
  lets new ones be registered): they count under their own name, metrics show ``other``.
* ``mx-host`` may be a string (the §4.5 example) or an array (§4.4's prose, libtlsrpt).
* A report is one per (``organization-name``, ``report-id``); the store keeps it once.
* ``day`` of a report is the UTC day its date range starts on.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from tlspolicy.errors import InboundReportError

MAX_COMPRESSED_BYTES = 1024 * 1024  # gzip as received; the largest reports seen are ~100 KB
MAX_REPORT_BYTES = 4 * 1024 * 1024  # JSON after inflating
RATIO_FLOOR_BYTES = 256 * 1024  # below this much JSON the ratio is not checked
MAX_GZIP_RATIO = 100  # JSON bytes per gzip byte; repetitive reports reach ~30, bombs ~1000
MAX_JSON_DEPTH = 16  # a report nests 5 deep (report, policies, item, details, detail)
MAX_POLICIES = 1000  # per report; our own reporter sends at most 100 (report.py)
MAX_FAILURE_DETAILS = 1000  # per policy
MAX_TEXT_CHARS = 2048  # any other string field
MAX_ID_CHARS = 512  # organization-name and report-id: the de-duplication key
MAX_COUNT = 2**53  # session counts: beyond this no sender has sent anything
INFLATE_CHUNK = 64 * 1024  # inflated per step, so a bomb never gets ahead of the checks

RESULT_TYPES = frozenset({
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
    "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",
})  # fmt: skip  # RFC 8460 §4.3
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")  # RFC 8460 §4.4
_DATETIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)", re.I)
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NON_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INNERMOST_RE = re.compile(rb"\(\)")


class Transport(StrEnum):
    """How a report reached us."""

    MAIL = "mail"  # tlspolicy tlsrpt receive (Postfix pipe or alias)
    HTTPS = "https"  # POST /tlsrpt on tlsrpt.inbound_listen
    FILE = "file"  # tlspolicy tlsrpt import


class Verdict(StrEnum):
    """What became of one received report (metrics label and store column)."""

    ACCEPTED = "accepted"  # valid, new: counted
    DUPLICATE = "duplicate"  # this (organization, report-id) is already stored
    INVALID = "invalid"  # not RFC 8460 §4 JSON
    UNSIGNED = "unsigned"  # mail without a valid DKIM signature by the reporting domain
    TOO_LARGE = "too-large"  # over a size, ratio, depth or count limit
    WRONG_TYPE = "wrong-type"  # not application/tlsrpt+gzip or +json
    RATE_LIMITED = "rate-limited"  # a source sent too many requests this minute
    NOT_REPORT = "not-report"  # a mail without a report in it


class Kind(StrEnum):
    """The two media types of RFC 8460 §6.4/§6.5."""

    GZIP = "application/tlsrpt+gzip"
    JSON = "application/tlsrpt+json"


@dataclass(frozen=True, slots=True)
class InboundFailure:
    """One failure detail (RFC 8460 §4.4), the fields an explanation groups by."""

    result_type: str
    count: int
    receiving_mx_hostname: str | None = None
    receiving_ip: str | None = None
    sending_mta_ip: str | None = None
    receiving_mx_helo: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    policy_type: str
    policy_domain: str
    policy_strings: tuple[str, ...]
    mx_hosts: tuple[str, ...]
    successful: int
    failed: int
    failures: tuple[InboundFailure, ...]


@dataclass(frozen=True, slots=True)
class InboundReport:
    organization: str
    contact_info: str
    report_id: str
    start: datetime
    end: datetime
    policies: tuple[InboundPolicy, ...]

    @property
    def day(self) -> date:
        return self.start.astimezone(UTC).date()

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(sorted({p.policy_domain for p in self.policies}))


def kind_of(content_type: str) -> Kind:
    """The ``Kind`` of a Content-Type header value (parameters ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    for kind in Kind:
        if media == kind.value:
            return kind
    raise InboundReportError(
        Verdict.WRONG_TYPE, f"content type {media or '(none)'} is not {Kind.GZIP} or {Kind.JSON}"
    )


def kind_of_name(filename: str) -> Kind | None:
    """``.json.gz``/``.gz`` is gzip, ``.json`` is JSON (RFC 8460 §5.1 names), else None."""
    name = filename.lower()
    if name.endswith((".json.gz", ".gz")):
        return Kind.GZIP
    if name.endswith(".json"):
        return Kind.JSON
    return None


def inflate(data: bytes) -> bytes:
    """The JSON in a gzip body, within ``MAX_REPORT_BYTES`` and ``MAX_GZIP_RATIO``."""
    if len(data) > MAX_COMPRESSED_BYTES:
        raise InboundReportError(Verdict.TOO_LARGE, f"gzip body over {MAX_COMPRESSED_BYTES} bytes")
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    pending = data
    try:
        while not decoder.eof:
            chunk = decoder.decompress(pending, INFLATE_CHUNK)
            pending = decoder.unconsumed_tail
            out += chunk
            _check_inflated(len(out), len(data) - len(pending))
            if not chunk and not pending:
                break  # all input used and nothing more comes out: truncated
    except zlib.error as exc:
        raise InboundReportError(Verdict.INVALID, f"not gzip: {exc}") from None
    if not decoder.eof:
        raise InboundReportError(Verdict.INVALID, "gzip body is truncated")
    return bytes(out)


def _check_inflated(size: int, compressed: int) -> None:
    """``compressed``: the input used so far, so a bomb is caught near its start."""
    if size > MAX_REPORT_BYTES:
        raise InboundReportError(
            Verdict.TOO_LARGE, f"report inflates to more than {MAX_REPORT_BYTES} bytes"
        )
    if size > RATIO_FLOOR_BYTES and size > MAX_GZIP_RATIO * compressed:
        raise InboundReportError(
            Verdict.TOO_LARGE, f"gzip ratio over {MAX_GZIP_RATIO}:1 (a compression bomb)"
        )


def report_json(body: bytes, kind: Kind) -> bytes:
    """The report's JSON bytes from a body of ``kind``, size-checked."""
    if kind is Kind.GZIP:
        return inflate(body)
    if len(body) > MAX_REPORT_BYTES:
        raise InboundReportError(Verdict.TOO_LARGE, f"report over {MAX_REPORT_BYTES} bytes")
    return body


def json_depth_ok(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when no array or object in ``data`` nests deeper than ``limit``.

    Brackets inside strings do not count; then ``()`` pairs are removed ``limit`` times,
    each pass one level (in C, so megabytes of ``[`` cost milliseconds, not recursion).
    Unbalanced brackets are left to the JSON parser, which refuses them.
    """
    brackets = _STRING_RE.sub(b"", data).translate(_BRACKETS, _NON_BRACKETS)
    for _ in range(limit):
        brackets, pairs = _INNERMOST_RE.subn(b"", brackets)
        if not pairs:
            return True
    return b"()" not in brackets


def parse_report(data: bytes) -> InboundReport:
    """Validate JSON bytes against RFC 8460 §4 (see the module doc for the rules)."""
    if len(data) > MAX_REPORT_BYTES:
        raise InboundReportError(Verdict.TOO_LARGE, f"report over {MAX_REPORT_BYTES} bytes")
    if not json_depth_ok(data):
        raise InboundReportError(Verdict.TOO_LARGE, f"JSON nests deeper than {MAX_JSON_DEPTH}")
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise InboundReportError(Verdict.INVALID, "not UTF-8 (RFC 7493 I-JSON)") from None
    except (ValueError, RecursionError) as exc:
        raise InboundReportError(Verdict.INVALID, f"not JSON: {exc}") from None
    return report_from_json(doc)


def report_from_json(doc: Any) -> InboundReport:
    """The ``InboundReport`` of a decoded JSON document."""
    top = _object(doc, "report")
    range_ = _object(top.get("date-range"), "date-range")
    start = _datetime(range_.get("start-datetime"), "date-range.start-datetime")
    end = _datetime(range_.get("end-datetime"), "date-range.end-datetime")
    if start > end:
        raise InboundReportError(Verdict.INVALID, "date-range: start-datetime after end-datetime")
    policies = top.get("policies")
    if not isinstance(policies, list):
        raise InboundReportError(Verdict.INVALID, "policies: missing or not an array")
    if len(policies) > MAX_POLICIES:
        raise InboundReportError(Verdict.TOO_LARGE, f"more than {MAX_POLICIES} policies")
    return InboundReport(
        organization=_text(top.get("organization-name"), "organization-name", MAX_ID_CHARS),
        contact_info=_text(top.get("contact-info"), "contact-info"),
        report_id=_text(top.get("report-id"), "report-id", MAX_ID_CHARS),
        start=start,
        end=end,
        policies=tuple(_policy(item, f"policies[{i}]") for i, item in enumerate(policies)),
    )


def _policy(item: Any, where: str) -> InboundPolicy:
    obj = _object(item, where)
    policy = _object(obj.get("policy"), f"{where}.policy")
    summary = _object(obj.get("summary"), f"{where}.summary")
    policy_type = policy.get("policy-type")
    if policy_type not in POLICY_TYPES:
        raise InboundReportError(
            Verdict.INVALID, f"{where}.policy.policy-type: {policy_type!r} is not one of"
            f" {', '.join(POLICY_TYPES)}",
        )  # fmt: skip
    details = obj.get("failure-details", [])
    if not isinstance(details, list):
        raise InboundReportError(Verdict.INVALID, f"{where}.failure-details: not an array")
    if len(details) > MAX_FAILURE_DETAILS:
        raise InboundReportError(
            Verdict.TOO_LARGE, f"{where}: more than {MAX_FAILURE_DETAILS} failure details"
        )
    domain = _text(policy.get("policy-domain"), f"{where}.policy.policy-domain", 253)
    return InboundPolicy(
        policy_type=str(policy_type),
        policy_domain=domain.lower().removesuffix("."),
        policy_strings=_texts(policy.get("policy-string"), f"{where}.policy.policy-string"),
        mx_hosts=_texts(policy.get("mx-host"), f"{where}.policy.mx-host", single=True),
        successful=_count(summary.get("total-successful-session-count"),
                          f"{where}.summary.total-successful-session-count"),
        failed=_count(summary.get("total-failure-session-count"),
                      f"{where}.summary.total-failure-session-count"),
        failures=tuple(
            _failure(d, f"{where}.failure-details[{i}]") for i, d in enumerate(details)
        ),
    )  # fmt: skip


def _failure(item: Any, where: str) -> InboundFailure:
    obj = _object(item, where)

    def optional(name: str) -> str | None:
        value = obj.get(name)
        return None if value is None else _text(value, f"{where}.{name}", allow_empty=True)

    host = optional("receiving-mx-hostname")
    return InboundFailure(
        result_type=_text(obj.get("result-type"), f"{where}.result-type", 64),
        count=_count(obj.get("failed-session-count"), f"{where}.failed-session-count"),
        receiving_mx_hostname=None if host is None else host.lower().removesuffix("."),
        receiving_ip=optional("receiving-ip"),
        sending_mta_ip=optional("sending-mta-ip"),
        receiving_mx_helo=optional("receiving-mx-helo"),
        additional_information=optional("additional-information"),
        failure_reason_code=optional("failure-reason-code"),
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InboundReportError(Verdict.INVALID, f"{where}: missing or not an object")
    return value


def _text(value: Any, where: str, limit: int = MAX_TEXT_CHARS, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise InboundReportError(Verdict.INVALID, f"{where}: missing or not a non-empty string")
    if len(value) > limit:
        raise InboundReportError(Verdict.TOO_LARGE, f"{where}: longer than {limit} characters")
    return value


def _texts(value: Any, where: str, *, single: bool = False) -> tuple[str, ...]:
    if value is None:
        return ()
    if single and isinstance(value, str):
        return (_text(value, where),)
    if not isinstance(value, list) or len(value) > MAX_FAILURE_DETAILS:
        raise InboundReportError(Verdict.INVALID, f"{where}: not an array of strings")
    return tuple(_text(v, f"{where}[{i}]", allow_empty=True) for i, v in enumerate(value))


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InboundReportError(Verdict.INVALID, f"{where}: not a non-negative integer")
    return value


def _datetime(value: Any, where: str) -> datetime:
    if not isinstance(value, str) or not _DATETIME_RE.fullmatch(value):
        raise InboundReportError(Verdict.INVALID, f"{where}: not an RFC 3339 date-time")
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InboundReportError(Verdict.INVALID, f"{where}: not a valid time") from None
    return moment.astimezone(UTC)


def compress_raw(data: bytes) -> bytes:
    """The raw report as kept in the store (gzip, as the RFC's own media type)."""
    return gzip.compress(data, compresslevel=6, mtime=0)
