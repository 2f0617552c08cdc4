"""libtlsrpt datagrams: the shapes libtlsrpt writes parse; anything else is DatagramError."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.tlsrpt.helpers import MISMATCH, NO_POLICY_OK, RECORD, datagram, sts_policy
from tlspolicy.errors import DatagramError
from tlspolicy.tlsrpt.datagram import (
    MAX_DATAGRAM_BYTES,
    MAX_FAILURE_DETAILS,
    FailureDetail,
    PolicyType,
    parse_datagram,
    result_type_name,
)

# TLSPOLICY_FUZZ_EXAMPLES=1000000 runs the property tests for a long fuzz session.
FUZZ_EXAMPLES = int(os.environ.get("TLSPOLICY_FUZZ_EXAMPLES", "300"))


def test_datagram_sts_failure_parses_every_field() -> None:
    detail = {**MISMATCH, "h": "helo.example.com", "a": "https://x.example/", "f": "reason"}
    got = parse_datagram(datagram(sts_policy(failed=True, details=[detail])))
    assert got.version == "1"
    assert got.domain == "example.com"
    assert got.record == RECORD
    (policy,) = got.policies
    assert policy.policy_type is PolicyType.STS
    assert policy.policy_domain == "example.com"
    assert policy.mx_hosts == ("mx.example.com",)
    assert policy.policy_strings[1] == "mode: enforce"
    assert policy.failed
    assert policy.failures == (
        FailureDetail(
            result_type="certificate-host-mismatch",
            sending_mta_ip="192.0.2.1",
            receiving_mx_hostname="mx.example.com",
            receiving_mx_helo="helo.example.com",
            receiving_ip="198.51.100.7",
            additional_information="https://x.example/",
            failure_reason_code="reason",
        ),
    )


def test_datagram_minimal_no_policy_found_has_empty_optional_parts() -> None:
    (policy,) = parse_datagram(datagram(NO_POLICY_OK)).policies
    assert policy.policy_type is PolicyType.NO_POLICY_FOUND
    assert policy.policy_domain is None
    assert (policy.policy_strings, policy.mx_hosts, policy.failures) == ((), (), ())
    assert not policy.failed


def test_datagram_exact_libtlsrpt_bytes() -> None:
    # Written the way libtlsrpt.c fprintf()s it: a space after some colons, none after others.
    raw = (
        b'{"dpv": "1","d": "Example.NET.","pr": "v=TLSRPTv1;rua=mailto:a@example.net",'
        b'"policies":[{"policy-type":1,"policy-domain": "_25._tcp.mx.example.net",'
        b'"policy-string":["3 1 1 AABB"],"failure-details":[{"c":304,"f": '
        b'"all-TLSA-records-unusable"}],"t":1,"f":1}]}'
    )
    got = parse_datagram(raw)
    assert got.domain == "example.net"
    (policy,) = got.policies
    assert policy.policy_type is PolicyType.TLSA
    assert policy.failures[0].result_type == "tlsa-invalid"
    assert policy.failures[0].failure_reason_code == "all-TLSA-records-unusable"


def test_datagram_without_dpv_is_version_0() -> None:
    body = json.loads(datagram(NO_POLICY_OK))
    del body["dpv"]
    assert parse_datagram(json.dumps(body).encode()).version == "0"


def test_datagram_unknown_fields_are_ignored() -> None:
    body = json.loads(datagram(sts_policy(failed=True, details=[{**MISMATCH, "z": 1}])))
    body["new-top"] = {"x": [1]}
    body["policies"][0]["new-policy-key"] = True
    assert parse_datagram(json.dumps(body).encode()).policies[0].failed


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (201, "starttls-not-supported"),
        (203, "certificate-not-trusted"),
        (204, "certificate-expired"),
        (205, "validation-failure"),
        (301, "sts-policy-fetch-error"),
        (302, "sts-policy-invalid"),
        (303, "sts-webpki-invalid"),
        (305, "dnssec-invalid"),
        (306, "dane-required"),
        (999, None),
    ],
)
def test_datagram_result_codes_map_to_rfc_names(code: int, name: str | None) -> None:
    assert result_type_name(code) == name


def test_datagram_unknown_code_is_validation_failure_with_the_code() -> None:
    details = [{"c": 999, "f": "new-thing"}, {"c": 998}]
    policy = parse_datagram(datagram(sts_policy(failed=True, details=details))).policies[0]
    assert [(d.result_type, d.failure_reason_code) for d in policy.failures] == [
        ("validation-failure", "unknown-result-code-999: new-thing"),
        ("validation-failure", "unknown-result-code-998"),
    ]


def test_datagram_invalid_utf8_and_nul_become_replacement_characters() -> None:
    raw = datagram(NO_POLICY_OK, record="v=TLSRPTv1; rua=mailto:x@y\\u0000\\ud800").replace(
        b"x@y", b"x@\xff"
    )
    record = parse_datagram(raw).record
    assert "\0" not in record and "\ufffd" in record
    record.encode("utf-8")  # storable


P9 = '"policy-type":9'


def _raw(policies: str, top: str = '"dpv":"1","d":"a.b","pr":""') -> bytes:
    """A datagram with ``top`` fields and the ``policies`` JSON array text."""
    return ("{" + top + ',"policies":' + policies + "}").encode()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1]", id="not-object"),
        pytest.param(_raw(f'[{{{P9},"f":0}}]', '"dpv":"2","d":"a.b","pr":""'), id="dpv-2"),
        pytest.param(_raw(f'[{{{P9},"f":0}}]', '"dpv":"1","pr":""'), id="no-d"),
        pytest.param(_raw(f'[{{{P9},"f":0}}]', '"dpv":"1","d":"a b","pr":""'), id="bad-d"),
        pytest.param(_raw(f'[{{{P9},"f":0}}]', '"dpv":"1","d":"a.b"'), id="no-pr"),
        pytest.param(_raw("[]"), id="no-policies"),
        pytest.param(_raw('[{"policy-type":3,"f":0}]'), id="type-3"),
        pytest.param(_raw('[{"policy-type":"2","f":0}]'), id="type-str"),
        pytest.param(_raw(f'[{{{P9},"f":2}}]'), id="f-2"),
        pytest.param(_raw(f'[{{{P9},"f":true}}]'), id="f-bool"),
        pytest.param(_raw(f"[{{{P9}}}]"), id="no-f"),
        pytest.param(_raw(f'[{{{P9},"f":0,"mx-host":"x"}}]'), id="mx-str"),
        pytest.param(_raw(f'[{{{P9},"f":1,"failure-details":[{{"s":"x"}}]}}]'), id="no-c"),
        pytest.param(_raw(f'[{{{P9},"f":1,"failure-details":[{{"c":201,"n":5}}]}}]'), id="n-int"),
        pytest.param(b"[" * 100000 + b"]" * 100000, id="deep"),
        pytest.param(b'{"d":' + b"9" * 5000 + b"}", id="huge-int"),
        pytest.param(b'{"d": NaN}', id="nan"),
    ],
)
def test_datagram_invalid_raises_datagram_error(raw: bytes) -> None:
    with pytest.raises(DatagramError):
        parse_datagram(raw)


def test_datagram_oversize_is_refused() -> None:
    raw = datagram(sts_policy()).replace(b"mode: enforce", b"x" * MAX_DATAGRAM_BYTES)
    with pytest.raises(DatagramError, match="exceeds"):
        parse_datagram(raw)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        *("dpv", "d", "pr", "policies", "policy-type", "policy-domain", "policy-string"),
        *("mx-host", "failure-details", "t", "f", "c", "s", "n"),
    ]
)


def _shaped() -> st.SearchStrategy[bytes]:
    """Dicts with the right keys and random values: they get past the first checks."""
    policy = st.dictionaries(KEYS, JSON_VALUES | st.sampled_from([1, 2, 9, 0, 201]), max_size=8)
    top = st.fixed_dictionaries(
        {
            "dpv": st.sampled_from(["1", "0", 1]),
            "d": st.sampled_from(["a.b", "A.", "", 5]),
            "pr": st.text(max_size=5),
            "policies": st.lists(policy, max_size=3),
        }
    )
    return top.map(lambda v: json.dumps(v).encode())


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(
    st.one_of(st.binary(max_size=200), JSON_VALUES.map(lambda v: json.dumps(v).encode()), _shaped())
)
def test_datagram_property_only_datagram_error(raw: bytes) -> None:
    with contextlib.suppress(DatagramError):
        parse_datagram(raw)


def test_failure_details_beyond_the_cap_are_dropped_and_counted() -> None:
    """A datagram's failure details are capped (issue 27); its sessions still count."""
    details = [{"c": 202, "n": f"mx{n}.example"} for n in range(MAX_FAILURE_DETAILS + 30)]
    parsed = parse_datagram(datagram(sts_policy(failed=True, details=details)))
    (policy,) = parsed.policies
    assert policy.failed and policy.dropped_details == 30
    assert [f.receiving_mx_hostname for f in policy.failures] == [
        f"mx{n}.example" for n in range(MAX_FAILURE_DETAILS)
    ]
    two = parse_datagram(
        datagram(
            sts_policy(failed=True, details=details[:60]),
            sts_policy(failed=True, details=details[60:120]),
        )
    )
    assert [(len(p.failures), p.dropped_details) for p in two.policies] == [(60, 0), (40, 20)]
