"""RFC 8461 §3.1 TXT record parsing and selection."""

from __future__ import annotations

import pytest

from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import RecordSyntaxError
from tlspolicy.mtasts.record import NoRecordError, StsRecord, parse_record, select_record


@pytest.mark.parametrize(
    ("text", "record_id", "extensions"),
    [
        pytest.param("v=STSv1; id=20160831085700Z;", "20160831085700Z", (), id="rfc-example"),
        pytest.param("v=STSv1;id=abc", "abc", (), id="no-spaces-no-trailing-delim"),
        pytest.param("v=STSv1 ; id=abc", "abc", (), id="wsp-before-semicolon-erratum-6285"),
        pytest.param("v=STSv1\t;\tid=abc\t;\t", "abc", (), id="tabs-around-delims"),
        pytest.param("v=STSv1;  id=abc  ;  ", "abc", (), id="trailing-delim-with-spaces"),
        pytest.param("v=STSv1; id=" + "a" * 32, "a" * 32, (), id="id-32-chars"),
        pytest.param("v=STSv1; id=A1", "A1", (), id="id-mixed-case"),
        pytest.param(
            "v=STSv1; foo=bar; id=x1",
            "x1",
            (("foo", "bar"),),
            id="extension-before-id",
        ),
        pytest.param(
            "v=STSv1; id=x; a.b_c-d=!#$%&'()*+,-./0123456789:<>?@[]^_`{|}~",
            "x",
            (("a.b_c-d", "!#$%&'()*+,-./0123456789:<>?@[]^_`{|}~"),),
            id="extension-all-allowed-chars",
        ),
        pytest.param(
            "v=STSv1; id=x; " + "n" * 32 + "=v",
            "x",
            (("n" * 32, "v"),),
            id="extension-name-32-chars",
        ),
        pytest.param("v=STSv1; id=first; id=second", "first", (), id="first-id-wins"),
        # RFC 8461 §3.2: later duplicates SHALL be ignored, so their values are not judged.
        pytest.param("v=STSv1; id=abc; id=bad-value", "abc", (), id="later-bad-id-ignored"),
        pytest.param("v=STSv1; id=abc; id=" + "a" * 33, "abc", (), id="later-long-id-ignored"),
        pytest.param("v=STSv1; ID=upper; id=lower", "lower", (("ID", "upper"),), id="ID-is-ext"),
        pytest.param("v=STSv1; 9=x; id=y", "y", (("9", "x"),), id="digit-ext-name"),
    ],
)
def test_parse_record_accepts_valid(
    text: str, record_id: str, extensions: tuple[tuple[str, str], ...]
) -> None:
    assert parse_record(text) == StsRecord(id=record_id, extensions=extensions)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("v=spf1 -all", id="spf"),
        pytest.param("v=STSv1", id="version-only-no-delim"),
        pytest.param("v=STSv1 id=abc", id="no-semicolon"),
        pytest.param("v=STSv12; id=abc", id="wrong-version-suffix"),
        pytest.param("v=stsv1; id=abc", id="version-case"),
        pytest.param(" v=STSv1; id=abc", id="leading-space"),
        pytest.param("id=abc; v=STSv1;", id="version-not-first"),
        pytest.param("v = STSv1; id=abc", id="spaces-around-equals"),
    ],
)
def test_parse_record_not_sts_returns_none(text: str) -> None:
    assert parse_record(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("v=STSv1;", "no fields", id="no-fields"),
        pytest.param("v=STSv1; ;", "empty field", id="empty-field"),
        pytest.param("v=STSv1;; id=abc", "empty field", id="double-semicolon"),
        pytest.param("v=STSv1; foo=bar", "no id", id="missing-id"),
        pytest.param("v=STSv1; ID=abc", "no id", id="only-uppercase-ID"),
        pytest.param("v=STSv1; id=", "empty value", id="empty-id"),
        pytest.param("v=STSv1; id=" + "a" * 33, "bad id", id="id-33-chars"),
        pytest.param("v=STSv1; id=2024-01-01", "bad id", id="id-with-hyphen"),
        pytest.param("v=STSv1; id=a_b; id=abc", "bad id", id="first-id-bad"),
        pytest.param("v=STSv1; id=abc; id=a;b", "no '=value'", id="later-id-breaks-grammar"),
        pytest.param("v=STSv1; id=abc def", "expected ';'", id="space-inside-value"),
        pytest.param("v=STSv1; id=abc; foo", "no '=value'", id="ext-without-value"),
        pytest.param("v=STSv1; id=abc; foo=", "empty value", id="ext-empty-value"),
        pytest.param("v=STSv1; id=abc; foo=a=b", "bad value", id="ext-value-with-equals"),
        pytest.param("v=STSv1; id=abc; _x=1", "bad field name", id="ext-name-underscore-first"),
        pytest.param("v=STSv1; id=abc; " + "n" * 33 + "=v", "bad field name", id="ext-name-33"),
        pytest.param("v=STSv1; id=abc; f=\x01", "bad value", id="control-char"),
        pytest.param("v=STSv1; id=abc\x7f", "bad value", id="del-char"),
        pytest.param("v=STSv1; id=abc; f=caf\u00e9", "US-ASCII", id="non-ascii"),
        pytest.param("v=STSv1; =x; id=abc", "bad field name", id="empty-name"),
        pytest.param("v=STSv1; id=abc\r\n", "bad value", id="crlf-at-end"),
    ],
)
def test_parse_record_rejects_broken(text: str, message: str) -> None:
    with pytest.raises(RecordSyntaxError, match=message):
        parse_record(text)


def _txt(*strings: bytes) -> TxtRecord:
    return TxtRecord(strings=strings)


@pytest.mark.parametrize(
    ("records", "record_id"),
    [
        pytest.param([_txt(b"v=STSv1; id=one")], "one", id="single"),
        pytest.param([_txt(b"v=STSv1; ", b"id=", b"joined")], "joined", id="strings-joined"),
        pytest.param([_txt(b"v=STS", b"v1; id=split")], "split", id="version-split"),
        pytest.param(
            [_txt(b"v=spf1 -all"), _txt(b"v=STSv1; id=one"), _txt(b"other")],
            "one",
            id="others-ignored",
        ),
        pytest.param(
            [_txt(b"caf\xc3\xa9 menu"), _txt(b"v=STSv1; id=one")],
            "one",
            id="non-ascii-non-candidate-ignored",
        ),
        pytest.param(
            [_txt(b"v=STSv1"), _txt(b"v=STSv1; id=one")],
            "one",
            id="version-without-delim-is-not-candidate",
        ),
    ],
)
def test_select_record_picks_the_one_candidate(records: list[TxtRecord], record_id: str) -> None:
    assert select_record(records).id == record_id


@pytest.mark.parametrize(
    ("records", "error", "message"),
    [
        pytest.param([], NoRecordError, "no v=STSv1 record", id="empty"),
        pytest.param([_txt(b"v=spf1 -all")], NoRecordError, "no v=STSv1 record", id="only-spf"),
        pytest.param([_txt()], NoRecordError, "no v=STSv1 record", id="rr-without-strings"),
        pytest.param(
            [_txt(b"v=STSv1; id=one"), _txt(b"v=STSv1; id=two")],
            RecordSyntaxError,
            "2 v=STSv1 records",
            id="two-valid",
        ),
        pytest.param(
            [_txt(b"v=STSv1; id=one"), _txt(b"v=STSv1; broken")],
            RecordSyntaxError,
            "2 v=STSv1 records",
            id="one-valid-one-broken",
        ),
        pytest.param(
            [_txt(b"v=STSv1; id=one"), _txt(b"v=STSv1; id=one")],
            RecordSyntaxError,
            "2 v=STSv1 records",
            id="duplicates-count-twice",
        ),
        pytest.param(
            [_txt(b"v=STSv1; id=caf\xc3\xa9")], RecordSyntaxError, "US-ASCII", id="non-ascii"
        ),
        pytest.param([_txt(b"v=STSv1; id=\xff")], RecordSyntaxError, "US-ASCII", id="invalid-utf8"),
        pytest.param([_txt(b"v=STSv1; x=1")], RecordSyntaxError, "no id", id="broken-single"),
    ],
)
def test_select_record_rejects(
    records: list[TxtRecord], error: type[RecordSyntaxError], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        select_record(records)
    assert type(info.value) is error  # broken/ambiguous must not look like "no record"
