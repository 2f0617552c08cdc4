"""Parse one libtlsrpt datagram (datagram protocol version ``dpv`` "1") into values.

libtlsrpt (sys4/libtlsrpt ``libtlsrpt.c``) sends one JSON object per finished delivery
request; Postfix 3.10 sends one per TLS handshake status. The object is written by hand
with ``fprintf``:

    {"dpv": "1","d": "<domain>","pr": "<raw TXT record>",
     "policies":[{"policy-type":<1|2|9>,"policy-domain": "<domain>",
       "policy-string":["..."],"mx-host":["..."],
       "failure-details":[{"c":<code>,"s": "..","n": "..","h": "..","r": "..",
                           "a": "..","f": ".."}],
       "t":<number of failure details>,"f":<0 success|1 failure>}]}

Rules kept here:

* ``policy-domain``, ``policy-string``, ``mx-host``, ``failure-details`` and every failure
  field except ``c`` are omitted by libtlsrpt when NULL or empty: missing means absent.
  ``dpv`` is missing before libtlsrpt 0.5.0: accepted as version "0" (same layout).
  Another ``dpv`` is refused: its layout is unknown.
* Unknown keys are ignored (a newer libtlsrpt may add some).
* libtlsrpt's escape table passes bytes >= 0x80 through unchanged, so a raw TXT record
  can make the datagram invalid UTF-8; such bytes become U+FFFD rather than losing the
  session. Lone surrogates from ``\\ud800`` escapes and NUL become U+FFFD too, so every
  string can be stored (PostgreSQL text has no NUL) and sent as UTF-8.
* Result codes (``tlsrpt_failure_t``) map to the RFC 8460 §4.3 names. An unknown code
  (a newer libtlsrpt) becomes the general ``validation-failure`` with the code in
  ``failure-reason-code`` (``unknown-result-code-<code>``, followed by Postfix's own reason
  if any): the session still counts, the report stays valid for receivers, and the code is
  not lost. Unknown policy types are refused (a report cannot carry them).
* At most ``MAX_FAILURE_DETAILS`` failure details are kept per datagram; the others are
  dropped unread and counted (``PolicyResult.dropped_details``; the collector logs and
  counts them). A delivery request fails in a few ways, and Postfix 3.10 sends one
  datagram per handshake, so a long list is hostile or broken: 8,006 details in one
  256 KB datagram cost 21 ms to read, and the objects they left behind set off full
  garbage collections of 10 to 25 ms. They are dropped as the JSON decoder makes them
  (``_Details``), so none outlives the decode. The session counts stay exact (``f``
  says whether the session failed); only detail is lost.
* The only exception raised is ``DatagramError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tlspolicy.errors import DatagramError

# Largest datagram accepted, in bytes. libtlsrpt has no limit of its own (open_memstream);
# an MTA-STS policy is at most 64 KiB (RFC 8461 §3.3, MAX_POLICY_BYTES) and appears once
# in policy-string, so four times that leaves room for escaping and failure details.
MAX_DATAGRAM_BYTES = 256 * 1024
SUPPORTED_VERSIONS = ("1", "0")  # "0": no dpv key (libtlsrpt before 0.5.0)
MAX_DOMAIN_CHARS = 253  # RFC 1035 §2.3.4, presentation format without the final dot
MAX_FAILURE_DETAILS = 100  # per datagram; see the module docstring


class PolicyType(StrEnum):
    """RFC 8460 §4.4 ``policy-type`` values."""

    TLSA = "tlsa"
    STS = "sts"
    NO_POLICY_FOUND = "no-policy-found"


# libtlsrpt tlsrpt.h tlsrpt_policy_type_t
POLICY_TYPE_CODES: dict[int, PolicyType] = {
    1: PolicyType.TLSA,
    2: PolicyType.STS,
    9: PolicyType.NO_POLICY_FOUND,
}

# libtlsrpt tlsrpt.h tlsrpt_failure_t -> RFC 8460 §4.3 result types (IANA registry)
RESULT_TYPE_CODES: dict[int, str] = {
    201: "starttls-not-supported",
    202: "certificate-host-mismatch",
    203: "certificate-not-trusted",
    204: "certificate-expired",
    205: "validation-failure",
    301: "sts-policy-fetch-error",
    302: "sts-policy-invalid",
    303: "sts-webpki-invalid",
    304: "tlsa-invalid",
    305: "dnssec-invalid",
    306: "dane-required",
}

UNKNOWN_CODE_RESULT = "validation-failure"  # RFC 8460 §4.3.3 general failure, for new codes

# datagram failure-detail key -> FailureDetail field
_DETAIL_KEYS = {
    "s": "sending_mta_ip",
    "n": "receiving_mx_hostname",
    "h": "receiving_mx_helo",
    "r": "receiving_ip",
    "a": "additional_information",
    "f": "failure_reason_code",
}


@dataclass(frozen=True, slots=True)
class FailureDetail:
    """One failure of one session (RFC 8460 §4.4 failure-details, without the count)."""

    result_type: str
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None

    @property
    def text(self) -> str:
        """Canonical JSON of the fields, in order: the key the stores count it under."""
        return json.dumps(
            [
                self.result_type,
                self.sending_mta_ip,
                self.receiving_mx_hostname,
                self.receiving_mx_helo,
                self.receiving_ip,
                self.additional_information,
                self.failure_reason_code,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> FailureDetail:
        return cls(*json.loads(text))


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One policy of one session: what was applied and whether the session failed."""

    policy_type: PolicyType
    policy_domain: str | None
    policy_strings: tuple[str, ...]
    mx_hosts: tuple[str, ...]
    failures: tuple[FailureDetail, ...]
    failed: bool
    dropped_details: int = 0  # failure details beyond the datagram's MAX_FAILURE_DETAILS


@dataclass(frozen=True, slots=True)
class Datagram:
    """One delivery request: the TLSRPT domain ``d``, its raw record ``pr``, the policies."""

    version: str
    domain: str
    record: str
    policies: tuple[PolicyResult, ...]


def parse_datagram(data: bytes) -> Datagram:
    """Parse one datagram.

    Args:
        data: the datagram bytes as received.

    Returns:
        The ``Datagram``; the domain is lowercased without a trailing dot.

    Raises:
        DatagramError: oversized, not JSON, not the libtlsrpt shape, unknown ``dpv`` or
            policy type. The caller counts it as invalid and goes on.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise DatagramError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_BYTES}")
    text = data.decode("utf-8", errors="replace")
    try:
        top = json.loads(text, object_hook=_Details())
    except RecursionError:
        raise DatagramError("JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and int() digit limits
        raise DatagramError(f"not JSON: {exc}") from None
    if not isinstance(top, dict):
        raise DatagramError("not a JSON object")
    version = top.get("dpv", "0")
    if version not in SUPPORTED_VERSIONS:
        raise DatagramError(f"unsupported datagram protocol version dpv={version!r}")
    domain = _domain(top.get("d"), "d")
    record = _string(top.get("pr"), "pr")
    policies = top.get("policies")
    if not isinstance(policies, list) or not policies:
        raise DatagramError("policies: must be a non-empty list")
    parsed = tuple(_policy(p, i) for i, p in enumerate(policies))
    return Datagram(version=str(version), domain=domain, record=record, policies=parsed)


_DROPPED = object()  # what ``_Details`` leaves of a failure detail beyond the cap


class _Details:
    """The JSON decoder's ``object_hook``: the first ``MAX_FAILURE_DETAILS`` objects shaped
    like a failure detail (a ``c`` key; the top object and policies have none) are kept,
    later ones become ``_DROPPED`` at once (the decoder calls it innermost first)."""

    __slots__ = ("kept",)

    def __init__(self) -> None:
        self.kept = 0

    def __call__(self, value: dict[str, Any]) -> object:
        if "c" in value:
            if self.kept >= MAX_FAILURE_DETAILS:
                return _DROPPED
            self.kept += 1
        return value


def result_type_name(code: int) -> str | None:
    """The RFC 8460 result type for a libtlsrpt failure code; None for an unknown code."""
    return RESULT_TYPE_CODES.get(code)


def _policy(value: Any, index: int) -> PolicyResult:
    where = f"policies[{index}]"
    if not isinstance(value, dict):
        raise DatagramError(f"{where}: must be an object")
    code = _int(value.get("policy-type"), f"{where}.policy-type")
    policy_type = POLICY_TYPE_CODES.get(code)
    if policy_type is None:
        raise DatagramError(f"{where}.policy-type: unknown code {code}")
    domain = value.get("policy-domain")
    final = _int(value.get("f"), f"{where}.f")
    if final not in (0, 1):
        raise DatagramError(f"{where}.f: must be 0 or 1, not {final}")
    if "t" in value:
        _int(value["t"], f"{where}.t")  # informational: the list below is what counts
    details = value.get("failure-details", [])
    if not isinstance(details, list):
        raise DatagramError(f"{where}.failure-details: must be a list")
    dropped = details.count(_DROPPED)
    if dropped:
        details = [d for d in details if d is not _DROPPED]
    return PolicyResult(
        policy_type=policy_type,
        policy_domain=None if domain is None else _domain(domain, f"{where}.policy-domain"),
        policy_strings=_strings(value.get("policy-string", []), f"{where}.policy-string"),
        mx_hosts=_strings(value.get("mx-host", []), f"{where}.mx-host"),
        failures=tuple(_failure(d, f"{where}.failure-details[{i}]") for i, d in enumerate(details)),
        failed=final == 1,
        dropped_details=dropped,
    )


def _failure(value: Any, where: str) -> FailureDetail:
    if not isinstance(value, dict):
        raise DatagramError(f"{where}: must be an object")
    fields: dict[str, str | None] = {}
    for key, name in _DETAIL_KEYS.items():
        item = value.get(key)
        fields[name] = None if item is None else _string(item, f"{where}.{key}")
    code = _int(value.get("c"), f"{where}.c")
    result_type = result_type_name(code)
    if result_type is None:
        result_type = UNKNOWN_CODE_RESULT
        reason = fields["failure_reason_code"]
        unknown = f"unknown-result-code-{code}"
        fields["failure_reason_code"] = f"{unknown}: {reason}" if reason else unknown
    return FailureDetail(result_type=result_type, **fields)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatagramError(f"{where}: must be an integer")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise DatagramError(f"{where}: must be a string")
    return _clean(value)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise DatagramError(f"{where}: must be a list of strings")
    return tuple(_string(item, f"{where}[{i}]") for i, item in enumerate(value))


def _domain(value: Any, where: str) -> str:
    text = _string(value, where).lower().removesuffix(".")
    if not text or len(text) > MAX_DOMAIN_CHARS:
        raise DatagramError(f"{where}: must be a domain name")
    for label in text.split("."):
        if not 0 < len(label) < 64 or not all(
            c.isascii() and (c.isalnum() or c in "-_") for c in label
        ):
            raise DatagramError(f"{where}: {text[:80]!r} is not a domain name (A-labels)")
    return text


def _clean(text: str) -> str:
    """Replace lone surrogates and NUL with U+FFFD: UTF-8 and PostgreSQL text must hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return text.replace("\0", "\ufffd") if "\0" in text else text
