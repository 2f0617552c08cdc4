"""Which map profile fits the Postfix beside us (docs/protocol-notes.md §2.4)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tlspolicy.config.schema import MapProfile
from tlspolicy.postfix.advice import (
    PostfixFacts,
    Severity,
    advise,
    parse_version,
    read_postfix,
    socketmap_names,
)

MAPS = {"QUERY": MapProfile(), "QUERYwithTLSRPT": MapProfile(tlsrpt=True)}


def facts(version: str, maps: str) -> PostfixFacts:
    return PostfixFacts(parse_version(version), version, maps)


@pytest.mark.parametrize(
    ("text", "version"),
    [("3.10.5", (3, 10, 5)), ("3.7.11", (3, 7, 11)), ("3.11-20250101", (3, 11)), ("x", ())],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert parse_version(text) == version


def test_socketmap_names() -> None:
    value = (
        "texthash:/etc/postfix/tls, socketmap:inet:127.0.0.1:8642:QUERYwithTLSRPT "
        "socketmap:unix:/run/tlspolicy.sock:QUERY,hash:/etc/postfix/x"
    )
    assert socketmap_names(value) == ["QUERYwithTLSRPT", "QUERY"]


@pytest.mark.parametrize(
    ("version", "map_name", "severity", "words"),
    [
        ("3.10.5", "QUERY", Severity.WARNING, "cannot check MX names"),
        ("3.10.2", "QUERY", Severity.WARNING, "reports MTA-STS deliveries as no-policy-found"),
        ("3.7.11", "QUERYwithTLSRPT", Severity.ERROR, "invalid attribute name: policy_type"),
        ("3.3.1", "QUERY", Severity.ERROR, "servername"),
    ],
)
def test_advise_per_version(version: str, map_name: str, severity: Severity, words: str) -> None:
    (item,) = advise(facts(version, f"socketmap:inet:127.0.0.1:8642:{map_name}"), MAPS)
    assert item.severity is severity
    assert words in item.text and map_name in item.text


@pytest.mark.parametrize(("version", "name"), [("3.10.5", "QUERYwithTLSRPT"), ("3.7.11", "QUERY")])
def test_advise_nothing_when_the_map_fits(version: str, name: str) -> None:
    assert advise(facts(version, f"socketmap:inet:127.0.0.1:8642:{name}"), MAPS) == []


def test_advise_when_no_map_of_ours_is_used() -> None:
    (item,) = advise(facts("3.10.5", "hash:/etc/postfix/tls_policy"), MAPS)
    assert item.severity is Severity.INFO and "names none of this server's maps" in item.text


def test_read_postfix_from_a_postconf(tmp_path: Path) -> None:
    fake = tmp_path / "postconf"
    fake.write_text('#!/bin/sh\nprintf "3.10.5\\nsocketmap:inet:127.0.0.1:8642:QUERY\\n"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    assert read_postfix(str(fake)) == facts("3.10.5", "socketmap:inet:127.0.0.1:8642:QUERY")
    assert read_postfix(str(tmp_path / "missing")) is None
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    assert read_postfix(str(broken)) is None
