"""The ``_mta-sts`` TXT discovery record (RFC 8461 §3.1): strict parsing and selection.

Pure: strings and bytes in, ``StsRecord`` out, ``RecordSyntaxError`` (or its subclass
``NoRecordError``) otherwise. Rules kept here:

* Only records that begin with ``v=STSv1`` and a field delimiter are candidates; all others
  are someone else's TXT data and are ignored (RFC 8461 §3.1).
* Exactly one candidate must remain, and it must match the grammar in full; anything else
  means "no MTA-STS policy available" (RFC 8461 §3.1). ``NoRecordError`` is raised when there
  is no candidate at all, plain ``RecordSyntaxError`` when the candidates are broken or
  ambiguous, so callers can log the two differently.
* The strings of one TXT RR are joined without a separator (RFC 8461 §3.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import RecordSyntaxError

# RFC 8461 §3.1 (RFC 7405 ABNF):
#
#   sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
#   sts-field       = sts-id /                 ; Note that sts-id record
#                     sts-extension            ; is required.
#   sts-field-delim = *WSP ";" *WSP
#   sts-version     = %s"v=STSv1"
#   sts-id          = %s"id=" 1*32(ALPHA / DIGIT)     ; id=...
#   sts-extension   = sts-ext-name "=" sts-ext-value  ; name=value
#   sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
#   sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
#                     ; chars excluding "=", ";", SP, and control chars
#
# Erratum 6285: the *WSP allowed before ";" contradicts the prose "records which do not begin
# with 'v=STSv1;' are discarded". We follow the grammar: "v=STSv1 ;" is a candidate.
#
# Choices where the RFC is silent (documented, tested):
# * Several ``id`` fields: the first one wins, as RFC 8461 §3.2 rules for policy fields
#   ("all entries except for the first SHALL be ignored") and as postfix-tlspol does
#   (docs/protocol-notes.md §7.3); later ones are ignored without judging their value
#   (they still need the generic field grammar): ``id=abc; id=bad-value`` has id ``abc``.
#   Refusing the record for a field that is ignored anyway would drop the policy, failing
#   open.
# * The first field named exactly ``id`` whose value is not 1*32(ALPHA / DIGIT) would,
#   read literally, be an extension field that happens to be called "id". We reject it
#   instead: a publisher who wrote ``id=2024-01-01`` means an id, and silently treating the
#   record as id-less (or picking a later id field) hides the mistake.
# * Field names are case-sensitive (%s"id="): ``ID=abc`` is an extension, so a record with
#   only ``ID=`` lacks an id.
VERSION = "v=STSv1"
_CANDIDATE_RE = re.compile(r"v=STSv1[ \t]*;")
_CANDIDATE_BYTES_RE = re.compile(rb"v=STSv1[ \t]*;")
_DELIM_RE = re.compile(r"[ \t]*;[ \t]*")
_FIELD_RE = re.compile(r"([A-Za-z0-9][A-Za-z0-9_.\-]{0,31})=([\x21-\x3a\x3c\x3e-\x7e]+)")
_ID_RE = re.compile(r"[A-Za-z0-9]{1,32}")
_NAME_CHARS_RE = re.compile(r"[^ \t;=]*")
MAX_ID_CHARS = 32  # RFC 8461 §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT)


class NoRecordError(RecordSyntaxError):
    """No TXT record at ``_mta-sts`` starts with ``v=STSv1``: the domain has no MTA-STS record.

    Like its parent this means "no policy available now"; it does not remove a cached policy
    (RFC 8461 §3.1, §5.1). Log it quietly: it is the normal state of most domains.
    """


@dataclass(frozen=True, slots=True)
class StsRecord:
    """A valid MTA-STS TXT record.

    Attributes:
        id: the policy instance id (1 to 32 letters and digits).
        extensions: every other field as (name, value), in record order.
    """

    id: str
    extensions: tuple[tuple[str, str], ...]


def is_candidate(text: str) -> bool:
    """True when ``text`` begins like an STS record: ``v=STSv1``, optional WSP, ``;``."""
    return _CANDIDATE_RE.match(text) is not None


def parse_record(text: str) -> StsRecord | None:
    """Parse one TXT record (its strings already joined).

    Returns:
        ``None`` when the text is not an STS record at all (does not begin with ``v=STSv1``
        followed by optional WSP and ``;``); otherwise the parsed record.

    Raises:
        RecordSyntaxError: the text begins like an STS record but breaks the grammar.
    """
    if not is_candidate(text):
        return None
    if not text.isascii():
        raise RecordSyntaxError("STS record is not US-ASCII (RFC 8461 §3.1)")
    pos = len(VERSION)
    record_id: str | None = None
    extensions: list[tuple[str, str]] = []
    fields = 0
    while pos < len(text):
        delim = _DELIM_RE.match(text, pos)
        if delim is None:
            raise RecordSyntaxError(f"expected ';' at offset {pos}: {_excerpt(text, pos)!r}")
        pos = delim.end()
        if pos == len(text):
            break  # a trailing delimiter is allowed
        field = _FIELD_RE.match(text, pos)
        if field is None or not _field_ends(text, field.end()):
            raise RecordSyntaxError(_field_problem(text, pos))
        name, value = field.group(1), field.group(2)
        pos = field.end()
        fields += 1
        if name == "id":
            if record_id is not None:
                continue  # a later id: ignored, unjudged (see above)
            if _ID_RE.fullmatch(value) is None:
                raise RecordSyntaxError(
                    f"bad id {value!r}: must be 1 to {MAX_ID_CHARS} letters or digits"
                )
            record_id = value
            continue
        extensions.append((name, value))
    if fields == 0:
        raise RecordSyntaxError("STS record has no fields after v=STSv1")
    if record_id is None:
        raise RecordSyntaxError("STS record has no id field")
    return StsRecord(id=record_id, extensions=tuple(extensions))


def select_record(records: Sequence[TxtRecord]) -> StsRecord:
    """Pick the one STS record out of the TXT RRset at ``_mta-sts.<domain>``.

    Each RR's strings are joined with no separator; RRs that are not candidates are ignored.

    Returns:
        the only candidate, parsed.

    Raises:
        NoRecordError: no candidate at all ("no v=STSv1 record").
        RecordSyntaxError: more than one candidate ("2 v=STSv1 records"), or the only one is
            not US-ASCII or breaks the grammar.
    """
    candidates = [joined for joined in (b"".join(r.strings) for r in records) if _is_cand(joined)]
    if not candidates:
        raise NoRecordError("no v=STSv1 record")
    if len(candidates) > 1:
        raise RecordSyntaxError(f"{len(candidates)} v=STSv1 records (RFC 8461 §3.1: need one)")
    try:
        text = candidates[0].decode("ascii")
    except UnicodeDecodeError:
        raise RecordSyntaxError("STS record is not US-ASCII (RFC 8461 §3.1)") from None
    parsed = parse_record(text)
    if parsed is None:  # pragma: no cover - the byte and text candidate tests agree
        raise RecordSyntaxError("no v=STSv1 record")
    return parsed


def _is_cand(data: bytes) -> bool:
    return _CANDIDATE_BYTES_RE.match(data) is not None


def _field_ends(text: str, pos: int) -> bool:
    """A field must be followed by the end of the text or by a delimiter."""
    return pos == len(text) or text[pos] in " \t;"


def _field_problem(text: str, pos: int) -> str:
    """Say what is wrong with the field that starts at ``pos`` (for the error message)."""
    if text[pos] == ";":
        return f"empty field at offset {pos}"
    name = _NAME_CHARS_RE.match(text, pos)
    name_text = name.group(0) if name is not None else ""
    end = pos + len(name_text)
    if end >= len(text) or text[end] != "=":
        return f"field {name_text!r} has no '=value'"
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}", name_text) is None:
        return f"bad field name {name_text!r}"
    value_end = end + 1
    while value_end < len(text) and text[value_end] not in " \t;":
        value_end += 1
    value = text[end + 1 : value_end]
    if not value:
        return f"field {name_text!r} has an empty value"
    return f"bad value {value!r} for field {name_text!r}"


def _excerpt(text: str, pos: int) -> str:
    return text[pos : pos + 20]
