"""RFC 8461 §3.2 policy parsing and §4.1 MX pattern matching."""

from __future__ import annotations

import pytest

from tlspolicy.errors import PolicySyntaxError
from tlspolicy.mtasts.policy import (
    MAX_AGE_LIMIT_S,
    MAX_MX_PATTERNS,
    Mode,
    domain_problem,
    from_fields,
    mx_matches,
    parse_policy,
)

GOOD = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 86400\n"


def test_parse_policy_rfc_example() -> None:
    text = (
        "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
        "mx: backupmx.example.com\r\nmax_age: 604800\r\n"
    )
    policy = parse_policy(text)
    assert policy.mode is Mode.ENFORCE
    assert policy.max_age == 604800
    assert policy.mx == ("mail.example.com", "*.example.net", "backupmx.example.com")
    assert policy.fields == (
        ("version", "STSv1"),
        ("mode", "enforce"),
        ("mx", "mail.example.com"),
        ("mx", "*.example.net"),
        ("mx", "backupmx.example.com"),
        ("max_age", "604800"),
    )
    assert policy.text == text


@pytest.mark.parametrize(
    ("text", "mode", "max_age", "mx"),
    [
        pytest.param(GOOD, Mode.ENFORCE, 86400, ("mail.example.com",), id="lf"),
        pytest.param(GOOD.replace("\n", "\r\n"), Mode.ENFORCE, 86400, None, id="crlf"),
        pytest.param(GOOD.rstrip("\n"), Mode.ENFORCE, 86400, None, id="no-final-terminator"),
        pytest.param(
            "version: STSv1\r\nmode: enforce\nmx: mail.example.com\r\nmax_age: 86400",
            Mode.ENFORCE,
            86400,
            None,
            id="mixed-terminators",
        ),
        pytest.param(GOOD + "\n\n", Mode.ENFORCE, 86400, None, id="trailing-blank-lines"),
        pytest.param(GOOD + " \r\n\t\n", Mode.ENFORCE, 86400, None, id="trailing-wsp-lines"),
        pytest.param(
            "version:STSv1\nmode:\t testing\nmx:mail.example.com \t\nmax_age:  0",
            Mode.TESTING,
            0,
            ("mail.example.com",),
            id="wsp-after-colon-and-trailing",
        ),
        pytest.param(
            "mode: none\nversion: STSv1\nmax_age: 31557600\n",
            Mode.NONE,
            31557600,
            (),
            id="none-without-mx-any-order-max-limit",
        ),
        pytest.param(
            "version: STSv1\nmode: none\nmx: a.example\nmax_age: 1\n",
            Mode.NONE,
            1,
            ("a.example",),
            id="none-with-mx",
        ),
        pytest.param(
            GOOD + "max_age: 5\nmode: testing\nversion: STSv1\n",
            Mode.ENFORCE,
            86400,
            None,
            id="first-occurrence-wins",
        ),
        pytest.param(
            GOOD + "mx: MAIL.Example.COM\nmx: *.Backup.Example.com\n",
            Mode.ENFORCE,
            86400,
            ("mail.example.com", "*.backup.example.com"),
            id="mx-lowercased-deduplicated",
        ),
        pytest.param(
            "version: STSv1\nmode: enforce\nmx: xn--bcher-kva.example\nmx: 1mail.e-x.example"
            "\nmax_age: 0000086400\n",
            Mode.ENFORCE,
            86400,
            ("xn--bcher-kva.example", "1mail.e-x.example"),
            id="a-label-digit-start-leading-zeros",
        ),
        pytest.param(
            "version: STSv1\nmode: enforce\nmx: localhost\nmax_age: 1",
            Mode.ENFORCE,
            1,
            ("localhost",),
            id="single-label-mx",
        ),
        pytest.param(
            "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 1",
            Mode.ENFORCE,
            1,
            ("*.com",),
            id="wildcard-on-tld",
        ),
        pytest.param(
            "version: STSv1\nmode: enforce\nmx: " + "a" * 63 + ".example\nmax_age: 1",
            Mode.ENFORCE,
            1,
            ("a" * 63 + ".example",),
            id="label-63",
        ),
    ],
)
def test_parse_policy_accepts(
    text: str, mode: Mode, max_age: int, mx: tuple[str, ...] | None
) -> None:
    policy = parse_policy(text)
    assert policy.mode is mode
    assert policy.max_age == max_age
    if mx is not None:
        assert policy.mx == mx
    assert policy.text == text


def test_parse_policy_keeps_unknown_fields_in_served_order() -> None:
    text = (
        "version: STSv1\nfoo: bar baz\nmode: enforce\nmx: a.example\nx.y_z-1: caf\u00e9 \u2603\n"
        "max_age: 10\nmode: testing\n"
    )
    policy = parse_policy(text)
    assert policy.mode is Mode.ENFORCE
    assert policy.fields == (
        ("version", "STSv1"),
        ("foo", "bar baz"),
        ("mode", "enforce"),
        ("mx", "a.example"),
        ("x.y_z-1", "caf\u00e9 \u2603"),
        ("max_age", "10"),
        ("mode", "testing"),
    )


def test_parse_policy_accepts_utf8_bytes() -> None:
    policy = parse_policy((GOOD + "note: gr\u00fc\u00dfe\n").encode())
    assert policy.fields[-1] == ("note", "gr\u00fc\u00dfe")


def test_parse_policy_fields_keep_mx_as_served() -> None:
    policy = parse_policy(GOOD.replace("mail.example.com", "Mail.Example.com"))
    assert ("mx", "Mail.Example.com") in policy.fields
    assert policy.mx == ("mail.example.com",)


BAD_MX = "version: STSv1\nmode: enforce\nmx: {}\nmax_age: 86400\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("", 0, "empty", id="empty"),
        pytest.param("\n\n", 0, "empty", id="only-blank-lines"),
        pytest.param(b"version: STSv1\n\xff\n", 0, "not UTF-8", id="bytes-not-utf8"),
        pytest.param("version: STSv1\nmode: \udcff\n", 0, "not UTF-8", id="lone-surrogate"),
        pytest.param(
            "version: STSv1\n\nmode: enforce\nmx: a.b\nmax_age: 1",
            2,
            "blank line",
            id="blank-line-between-fields",
        ),
        pytest.param(
            "version: STSv1\n \nmode: enforce\nmx: a.b\nmax_age: 1",
            2,
            "blank line",
            id="wsp-line-between-fields",
        ),
        pytest.param("version STSv1\n", 1, "no ':'", id="no-colon"),
        pytest.param("version : STSv1\n", 1, "whitespace before ':'", id="space-before-colon"),
        pytest.param("version\t: STSv1\n", 1, "whitespace before ':'", id="tab-before-colon"),
        pytest.param(" version: STSv1\n", 1, "bad field name", id="leading-space"),
        pytest.param(": STSv1\n", 1, "bad field name", id="empty-name"),
        pytest.param("_x: y\n", 1, "bad field name", id="name-starts-underscore"),
        pytest.param("a b: y\n", 1, "bad field name", id="name-with-space"),
        pytest.param("x" * 33 + ": y\n", 1, "longer than 32", id="name-33"),
        pytest.param("version:\n", 1, "no value", id="empty-value"),
        pytest.param("version:   \n", 1, "no value", id="wsp-value"),
        pytest.param(GOOD + "note: a\tb\n", 5, "control character", id="tab-inside-value"),
        pytest.param(GOOD + "note: a\x00b\n", 5, "control character", id="nul"),
        pytest.param(GOOD + "note: a\x7fb\n", 5, "control character", id="del"),
        pytest.param(GOOD + "note: a\rb\n", 5, "control character", id="bare-cr"),
        pytest.param("version: STSv1\rmode: enforce\r", 1, "control character", id="cr-only"),
        pytest.param(GOOD.replace("STSv1", "STSv2"), 1, "version must be STSv1", id="version"),
        pytest.param(GOOD.replace("STSv1", "stsv1"), 1, "version must be", id="version-case"),
        pytest.param(GOOD.replace("enforce", "Enforce"), 2, "mode must be", id="mode-case"),
        pytest.param(GOOD.replace("enforce", "strict"), 2, "mode must be", id="mode-unknown"),
        pytest.param("mode: bogus\n" + GOOD, 1, "mode must be", id="bad-first-mode"),
        pytest.param(GOOD + "mode: a\tb\n", 5, "control character", id="duplicate-bad-line"),
        pytest.param(GOOD.replace("86400", "-1"), 4, "1 to 10 digits", id="max-age-negative"),
        pytest.param(GOOD.replace("86400", "+1"), 4, "1 to 10 digits", id="max-age-plus"),
        pytest.param(GOOD.replace("86400", "1.5"), 4, "1 to 10 digits", id="max-age-float"),
        pytest.param(GOOD.replace("86400", "1 d"), 4, "1 to 10 digits", id="max-age-unit"),
        pytest.param(GOOD.replace("86400", "12345678901"), 4, "1 to 10 digits", id="11-digits"),
        pytest.param(GOOD.replace("86400", "\u0661"), 4, "1 to 10 digits", id="arabic-digit"),
        pytest.param("mode: enforce\nmx: a.b\nmax_age: 1\n", 0, "missing version", id="no-ver"),
        pytest.param("version: STSv1\nmx: a.b\nmax_age: 1\n", 0, "missing mode", id="no-mode"),
        pytest.param("version: STSv1\nmode: none\n", 0, "missing max_age", id="no-max-age"),
        pytest.param("version: STSv1\nmode: enforce\nmax_age: 1\n", 0, "no mx", id="no-mx"),
        pytest.param("version: STSv1\nmode: testing\nmax_age: 1\n", 0, "no mx", id="no-mx-test"),
        pytest.param(
            "Version: STSv1\nmode: none\nmax_age: 1\n",
            0,
            "missing version",
            id="field-names-case-sensitive",
        ),
        pytest.param(BAD_MX.format("1.2.3.4"), 3, "IP addresses", id="mx-ipv4"),
        pytest.param(BAD_MX.format("192.0.2.25"), 3, "IP addresses", id="mx-ipv4-doc"),
        pytest.param(BAD_MX.format("[192.0.2.25]"), 3, "IP address literal", id="mx-literal"),
        pytest.param(BAD_MX.format("2001:db8::1"), 3, "IP addresses", id="mx-ipv6"),
        pytest.param(BAD_MX.format("[IPv6:2001:db8::1]"), 3, "IP address", id="mx-v6-literal"),
        pytest.param(BAD_MX.format("*.1.2.3"), 3, "IP addresses", id="mx-wildcard-numeric"),
        pytest.param(BAD_MX.format("*"), 3, "wildcard", id="mx-star-alone"),
        pytest.param(BAD_MX.format("*."), 3, "empty name", id="mx-star-dot"),
        pytest.param(BAD_MX.format("*.*.example.com"), 3, "wildcard", id="mx-double-wildcard"),
        pytest.param(BAD_MX.format("a.*.example.com"), 3, "wildcard", id="mx-inner-wildcard"),
        pytest.param(BAD_MX.format("*mail.example.com"), 3, "wildcard", id="mx-partial-wildcard"),
        pytest.param(BAD_MX.format("mail*.example.com"), 3, "wildcard", id="mx-partial-2"),
        pytest.param(BAD_MX.format(".example.com"), 3, "empty label", id="mx-leading-dot"),
        pytest.param(BAD_MX.format("mail..example.com"), 3, "empty label", id="mx-empty-label"),
        pytest.param(BAD_MX.format("mail.example.com."), 3, "trailing dot", id="mx-trailing-dot"),
        pytest.param(BAD_MX.format("-mail.example.com"), 3, "not letters", id="mx-leading-hyph"),
        pytest.param(BAD_MX.format("mail-.example.com"), 3, "not letters", id="mx-trail-hyph"),
        pytest.param(BAD_MX.format("mail_1.example.com"), 3, "not letters", id="mx-underscore"),
        pytest.param(BAD_MX.format("mail example.com"), 3, "not letters", id="mx-space"),
        pytest.param(BAD_MX.format("b\u00fccher.example"), 3, "A-labels", id="mx-u-label"),
        pytest.param(BAD_MX.format("a" * 64 + ".example"), 3, "longer than 63", id="mx-label-64"),
        pytest.param(
            BAD_MX.format(".".join(["a" * 63] * 4)), 3, "longer than 253", id="mx-name-255"
        ),
        pytest.param(BAD_MX.format("mail.example.com:25"), 3, "no ports", id="mx-with-port"),
    ],
)
def test_parse_policy_rejects(text: str | bytes, line: int, message: str) -> None:
    with pytest.raises(PolicySyntaxError, match=message) as info:
        parse_policy(text)
    assert info.value.line == line


def test_parse_policy_error_message_names_line() -> None:
    with pytest.raises(PolicySyntaxError) as info:
        parse_policy(GOOD.replace("enforce", "strict"))
    assert str(info.value).startswith("line 2: mode must be")


def test_parse_policy_accepts_name_253() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert parse_policy(BAD_MX.format(name)).mx == (name,)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        pytest.param("mail.example.com", "mail.example.com", True, id="exact"),
        pytest.param("mail.example.com", "MAIL.Example.COM", True, id="exact-case"),
        pytest.param("mail.example.com", "mail.example.com.", True, id="host-trailing-dot"),
        pytest.param("Mail.Example.com", "mail.example.com", True, id="pattern-case"),
        pytest.param("mail.example.com", "mx.example.com", False, id="other-name"),
        pytest.param("mail.example.com", "a.mail.example.com", False, id="exact-no-sub"),
        pytest.param("*.example.com", "mail.example.com", True, id="wildcard-one-label"),
        pytest.param("*.example.com", "MAIL.EXAMPLE.COM", True, id="wildcard-case"),
        pytest.param("*.example.com", "example.com", False, id="wildcard-not-apex"),
        pytest.param("*.example.com", "foo.bar.example.com", False, id="wildcard-not-two"),
        pytest.param("*.example.com", ".example.com", False, id="wildcard-empty-label"),
        pytest.param("*.example.com", "mail.example.com.evil", False, id="suffix-attack"),
        pytest.param("*.example.com", "mailexample.com", False, id="no-dot"),
        pytest.param("*.example.com", "*.example.com", False, id="star-host"),
        pytest.param("example.com", "", False, id="empty-host"),
        pytest.param("", "example.com", False, id="empty-pattern"),
    ],
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_policy_matches_any_pattern() -> None:
    policy = parse_policy(GOOD + "mx: *.backup.example.net\n")
    assert policy.matches("mail.example.com")
    assert policy.matches("b1.backup.example.net")
    assert not policy.matches("backup.example.net")


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        pytest.param("example.com", None, id="ok"),
        pytest.param("EXAMPLE.com", None, id="upper-ok"),
        pytest.param("", "empty name", id="empty"),
        pytest.param("10.0.0.1", "IP addresses", id="ipv4"),
        pytest.param("example.com.", "trailing dot", id="trailing-dot"),
    ],
)
def test_domain_problem(name: str, problem: str | None) -> None:
    result = domain_problem(name)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result


@pytest.mark.parametrize(
    "later",
    ["mode: bogus", "mode: none", "version: STSv2", "max_age: soon", "max_age: 99999999999"],
)
def test_repeated_fields_after_the_first_are_ignored_unjudged(later: str) -> None:
    """RFC 8461 §3.2: "all entries except for the first SHALL be ignored". Judging them
    refused the whole policy, so a domain's enforce policy failed open."""
    policy = parse_policy(GOOD + later + "\n")
    assert (policy.mode, policy.max_age) == (Mode.ENFORCE, 86400)
    assert ("mode", "bogus") in parse_policy(GOOD + "mode: bogus\n").fields  # TLSRPT


@pytest.mark.parametrize("published", ["31557601", "9999999999"])
def test_max_age_over_the_maximum_is_clamped_with_a_note(published: str) -> None:
    """RFC 8461 §3.2 gives 31557600 as the maximum in prose, its ABNF allows ten digits;
    refusing the policy would fail open."""
    policy = parse_policy(GOOD.replace("86400", published))
    assert policy.max_age == MAX_AGE_LIMIT_S
    assert policy.notes == (f"max_age {published} clamped to 31557600 (RFC 8461 §3.2 maximum)",)
    assert parse_policy(GOOD.replace("86400", "31557600")).notes == ()


def _many_mx(count: int) -> str:
    return "version: STSv1\nmode: enforce\nmax_age: 86400\n" + "".join(
        f"mx: mx{n}.example.com\n" for n in range(count)
    )


def test_the_first_mx_patterns_are_kept_and_the_rest_dropped_with_a_note() -> None:
    text = _many_mx(MAX_MX_PATTERNS + 50) + "mx: MX0.example.com\n"  # a duplicate: not counted
    policy = parse_policy(text)
    assert policy.mx == tuple(f"mx{n}.example.com" for n in range(MAX_MX_PATTERNS))
    assert policy.mode is Mode.ENFORCE  # still in force: a dropped host is refused
    assert not policy.matches(f"mx{MAX_MX_PATTERNS}.example.com")
    assert policy.notes == (
        f"50 mx patterns beyond the first {MAX_MX_PATTERNS} ignored: "
        "MX hosts only they match are refused in enforce mode",
    )
    assert parse_policy(_many_mx(MAX_MX_PATTERNS)).notes == ()
    with pytest.raises(PolicySyntaxError, match="bad mx pattern"):
        parse_policy(_many_mx(MAX_MX_PATTERNS + 5) + "mx: 192.0.2.1\n")  # still checked


def test_thousands_of_distinct_mx_lines_keep_a_bounded_policy() -> None:
    """7,276 distinct mx lines took 296 ms when each was looked up in the list of those
    before it, and every query then matched its MX hosts against all of them."""
    policy = parse_policy(_many_mx(7276))
    assert len(policy.mx) == MAX_MX_PATTERNS
    assert policy.notes[0].startswith(f"{7276 - MAX_MX_PATTERNS} mx patterns beyond")


def test_a_policy_comes_back_from_its_fields_without_a_parse() -> None:
    policy = parse_policy(GOOD + "mx: *.example.net\n")
    again = from_fields(policy.mode.value, policy.max_age, list(policy.mx), policy.text)
    assert again == policy
    for mode, max_age, mx in [
        ("strict", 1, ["a.example"]),
        ("enforce", True, ["a.example"]),
        ("enforce", MAX_AGE_LIMIT_S + 1, ["a.example"]),
        ("enforce", 1, []),
        ("enforce", 1, [7]),
        ("enforce", 1, ["a.example"] * (MAX_MX_PATTERNS + 1)),
    ]:
        with pytest.raises(ValueError):
            from_fields(mode, max_age, mx, GOOD)
