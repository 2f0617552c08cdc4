"""Fixtures for the integration suite: one loopback lab per pytest session.

``lab`` (session scope) runs NSD, Unbound, the blackhole resolver and the HTTPS policy hosts
for the whole session and stops them at the end, also when tests fail. Tests that change DNS
data or policy-host behaviour should use ``fresh_lab`` (function scope), which resets the
catalogue after the test so the next one sees the documented data.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.lab.scenario import Lab, start_lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with start_lab(tmp_path_factory.mktemp("lab")) as running:
        yield running


@pytest.fixture
def fresh_lab(lab: Lab) -> Iterator[Lab]:
    """The session lab, reset to the catalogue after the test (DNS, HTTPS, request log)."""
    lab.https.clear_requests()
    try:
        yield lab
    finally:
        lab.reset()
