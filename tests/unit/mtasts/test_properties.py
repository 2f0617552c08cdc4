"""Property tests: the parsers accept or raise their own error, never anything else."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.dnsstub.data import TxtRecord
from tlspolicy.errors import PolicySyntaxError, RecordSyntaxError
from tlspolicy.mtasts.policy import (
    MAX_AGE_LIMIT_S,
    Mode,
    Policy,
    mx_matches,
    mx_pattern_problem,
    parse_policy,
)
from tlspolicy.mtasts.record import StsRecord, parse_record, select_record

# Characters that matter to the grammars, so that generated input gets past the first check.
RECORD_ALPHABET = st.sampled_from([*"v=STSv1;id= \t\x00\x7fab09_-.:\u00e9", "STSv1", "id="])
POLICY_KEYS = st.sampled_from(
    ["version", "mode", "max_age", "mx", "Mode", "x_y", "a" * 33, "", " mode", "mode "]
)
POLICY_VALUES = st.one_of(
    st.sampled_from(
        [
            "STSv1",
            "enforce",
            "testing",
            "none",
            "86400",
            "31557601",
            "mail.example.com",
            "*.example.com",
            "1.2.3.4",
            "[::1]",
            "*",
            "",
            " ",
            "a\tb",
            "caf\u00e9",
        ]
    ),
    st.text(max_size=20),
)
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", ""])


RECORD_DELIMS = st.sampled_from([";", "; ", " ;", "\t;\t", ";;", " ", ""])
RECORD_FIELDS = st.one_of(
    st.from_regex(r"id=[A-Za-z0-9]{1,33}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,32}=[!-:<>-~]{0,4}", fullmatch=True),
    st.sampled_from(["", "id=", "=x", "x", "id=a-b", "ID=x"]),
)


def _record_text() -> st.SearchStrategy[str]:
    tail = st.lists(RECORD_ALPHABET, max_size=12).map("".join)
    fields = st.lists(st.tuples(RECORD_DELIMS, RECORD_FIELDS), max_size=5)
    structured = st.builds(
        lambda parts, end: "v=STSv1" + "".join(d + f for d, f in parts) + end,
        fields,
        st.sampled_from(["", ";", " ; "]),
    )
    return st.one_of(st.text(), st.builds(lambda t: "v=STSv1;" + t, tail), tail, structured)


@given(_record_text())
def test_parse_record_only_raises_record_syntax_error(text: str) -> None:
    try:
        record = parse_record(text)
    except RecordSyntaxError:
        return
    if record is not None:
        assert isinstance(record, StsRecord)
        assert re.fullmatch(r"[A-Za-z0-9]{1,32}", record.id)
        assert text.isascii() and text.startswith("v=STSv1")


@given(
    st.lists(
        st.lists(
            st.one_of(st.binary(max_size=40), _record_text().map(lambda t: t.encode())),
            max_size=3,
        ).map(lambda strings: TxtRecord(tuple(strings))),
        max_size=4,
    )
)
def test_select_record_only_raises_record_syntax_error(records: list[TxtRecord]) -> None:
    try:
        record = select_record(records)
    except RecordSyntaxError:
        return
    assert isinstance(record, StsRecord)


def _policy_text() -> st.SearchStrategy[str]:
    line = st.builds(
        lambda k, sep, v: f"{k}{sep}{v}",
        POLICY_KEYS,
        st.sampled_from([":", ": ", " :", ":\t", ""]),
        POLICY_VALUES,
    )
    lines = st.lists(st.tuples(line, LINE_ENDS), max_size=10)
    return st.one_of(st.text(), lines.map(lambda ls: "".join(a + b for a, b in ls)))


def _check_policy(policy: Policy) -> None:
    assert isinstance(policy.mode, Mode)
    assert 0 <= policy.max_age <= MAX_AGE_LIMIT_S
    assert policy.mx or policy.mode is Mode.NONE
    for pattern in policy.mx:
        assert pattern == pattern.lower()
        assert mx_pattern_problem(pattern) is None


@given(_policy_text())
def test_parse_policy_text_only_raises_policy_syntax_error(text: str) -> None:
    try:
        policy = parse_policy(text)
    except PolicySyntaxError as exc:
        assert exc.line >= 0
        return
    _check_policy(policy)


@given(st.binary(max_size=200))
def test_parse_policy_bytes_only_raises_policy_syntax_error(data: bytes) -> None:
    try:
        policy = parse_policy(data)
    except PolicySyntaxError:
        return
    _check_policy(policy)


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
DOMAIN = st.lists(LABEL, min_size=1, max_size=4).map(lambda labels: ".".join([*labels, "example"]))


@given(
    st.sampled_from(list(Mode)),
    st.integers(0, MAX_AGE_LIMIT_S),
    st.lists(st.one_of(DOMAIN, DOMAIN.map(lambda d: "*." + d)), min_size=1, max_size=4),
    st.sampled_from(["\n", "\r\n"]),
)
def test_parse_policy_accepts_every_valid_policy(
    mode: Mode, max_age: int, mx: list[str], end: str
) -> None:
    lines = [
        "version: STSv1",
        f"mode: {mode.value}",
        *(f"mx: {m}" for m in mx),
        f"max_age: {max_age}",
    ]
    policy = parse_policy(end.join(lines) + end)
    assert policy.mode is mode
    assert policy.max_age == max_age
    assert policy.mx == tuple(dict.fromkeys(mx))
    assert [f"{k}: {v}" for k, v in policy.fields] == lines


@given(LABEL, DOMAIN, LABEL)
def test_mx_matches_wildcard_is_exactly_one_label(first: str, domain: str, extra: str) -> None:
    assert mx_matches("*." + domain, f"{first}.{domain}")
    assert not mx_matches("*." + domain, domain)
    assert not mx_matches("*." + domain, f"{extra}.{first}.{domain}")
    assert mx_matches(domain, domain.upper())
