"""Recipient domains from Postfix logs (``tlspolicy cache warm --from-maillog``)."""

from __future__ import annotations

import gzip
import io

import pytest

from tlspolicy.postfix.maillog import read_lines, recent_domains, recipient_domain

SENT = (
    "Dec  2 01:00:00 mx postfix/smtp[1234]: 4F3A12: to=<alice@Example.COM.>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, "
    "status=sent (250 2.0.0 Ok)"
)


@pytest.mark.parametrize(
    ("line", "domain"),
    [
        (SENT, "example.com"),
        (SENT.replace("postfix/smtp", "postfix-out/smtp"), "example.com"),
        (
            "2026-12-02T01:00:00.123456+00:00 mx postfix/smtp[9]: AB: to=<b@c.example>, "
            "orig_to=<x@y.example>, relay=none, delay=30, dsn=4.4.1, status=deferred "
            "(connect to c.example[192.0.2.9]:25: Connection timed out)",
            "c.example",
        ),
        (SENT.replace("status=sent", "status=bounced"), None),
        (SENT.replace("postfix/smtp", "postfix/local"), None),
        (SENT.replace("postfix/smtp", "postfix/lmtp"), None),
        (SENT.replace("alice@Example.COM.", "alice@[192.0.2.7]"), None),
        (SENT.replace("alice@Example.COM.", "postmaster"), None),
        ("Dec  2 01:00:00 mx postfix/qmgr[1]: 4F3A12: from=<a@b.example>, size=1", None),
        ("garbage", None),
    ],
)
def test_recipient_domain(line: str, domain: str | None) -> None:
    assert recipient_domain(line) == domain


def test_recent_domains_are_distinct_most_recent_first_and_limited() -> None:
    lines = [SENT.replace("Example.COM", d) for d in ("a.example", "b.example", "a.example")]
    assert recent_domains(lines) == ["a.example", "b.example"]
    assert recent_domains(lines, limit=1) == ["a.example"]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_read_lines_plain_and_gzip_by_content(compress: bool) -> None:
    data = (SENT + "\n" + "second line\n").encode()
    stream = io.BufferedReader(io.BytesIO(gzip.compress(data) if compress else data))
    assert list(read_lines(stream)) == [SENT, "second line"]
