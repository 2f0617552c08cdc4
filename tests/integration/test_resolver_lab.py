"""The resolver self-check against real resolvers, and contrib/unbound-tlspolicy.conf at work.

A small loopback lab (tests/lab): NSD serves ``lab`` (signed, the trust anchor) and
``bogus.lab`` (every signature corrupted). Three resolvers are asked:
* the lab's validating Unbound: the self-check passes;
* Unbound run from contrib/unbound-tlspolicy.conf (only addresses, paths and the trust anchor
  swapped for lab ones): the self-check passes, so the shipped config validates;
* the same config with validation switched off: the self-check flags it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import pytest

from tests.lab.dnslab import RETRY_ON, Nsd, Unbound, query
from tests.lab.netutil import LOOPBACK, Daemon, free_port, wait_until
from tests.lab.zones import ALL_TYPES, ZoneSet, ZoneSpec
from tlspolicy.dnsstub.client import ResolverClient
from tlspolicy.dnsstub.selfcheck import ResolverMonitor, check_resolver
from tlspolicy.metrics.registry import Metrics

pytestmark = pytest.mark.integration  # nsd and unbound come with scripts/test: never skipped

CONTRIB = Path(__file__).parents[2] / "contrib" / "unbound-tlspolicy.conf"
SECURE_NAME = "ns.lab"  # the signed A record every lab zone has (tests/lab/zones.py)
BOGUS_NAME = "bogus.lab"  # the lab zone with every signature broken
START_TIMEOUT_S = 10.0
START_ATTEMPTS = 3
DNS_TIMEOUT_S = 2.0


@dataclass
class MiniLab:
    dir: Path
    zones: ZoneSet
    nsd: Nsd


@pytest.fixture(scope="module")
def minilab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MiniLab]:
    workdir = tmp_path_factory.mktemp("resolver-lab")
    zones = ZoneSet(
        [ZoneSpec("lab"), ZoneSpec("bogus.lab", corrupt=frozenset({ALL_TYPES}))], serial=1
    )
    (workdir / "nsd").mkdir()
    nsd = Nsd(workdir / "nsd", zones)
    nsd.start()
    try:
        yield MiniLab(workdir, zones, nsd)
    finally:
        nsd.stop()


def render_contrib(lab: MiniLab, workdir: Path, port: int, *, validating: bool) -> str:
    """contrib/unbound-tlspolicy.conf with lab addresses, paths and trust anchor."""
    anchor = workdir / "root.key"
    anchor.write_text(lab.zones.trust_anchor())
    text = CONTRIB.read_text()
    swaps = [
        (r"(?m)^    interface: ::1\n", ""),  # the lab is IPv4 only
        (r"(?m)^    port: 53$", f"    port: {port}"),
        (r'(?m)^    auto-trust-anchor-file: ".*"$', f'    auto-trust-anchor-file: "{anchor}"'),
    ]
    if not validating:
        swaps.append(
            (r'(?m)^    module-config: "validator iterator"$', '    module-config: "iterator"')
        )
    for pattern, replacement in swaps:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"contrib config no longer has {pattern!r}"
    stubs = "".join(
        f'stub-zone:\n    name: "{origin}"\n    stub-addr: {LOOPBACK}@{lab.nsd.port}\n'
        for origin in [*lab.zones.specs, "."]
    )
    return f"""{text}
# --- test-only: run unprivileged from a temp dir and ask the lab's NSD ---
server:
    username: ""
    chroot: ""
    directory: "{workdir}"
    pidfile: "{workdir}/unbound.pid"
    use-syslog: no
    logfile: ""
    do-not-query-localhost: no
    do-ip6: no
{stubs}"""


@pytest.fixture
def contrib_unbound(
    minilab: MiniLab, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[int]:
    validating = request.param
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        conf = tmp_path / "unbound.conf"
        conf.write_text(render_contrib(minilab, tmp_path, port, validating=validating))
        check = subprocess.run(
            ["unbound-checkconf", str(conf)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        daemon = Daemon("unbound", ["unbound", "-d", "-c", str(conf)], tmp_path / "unbound.log")
        daemon.start()
        try:
            wait_until(
                lambda p=port: query("lab.", "SOA", p).rcode() == 0,  # type: ignore[misc]
                timeout=START_TIMEOUT_S,
                what="contrib Unbound to answer",
                alive=daemon,
                retry_on=RETRY_ON,
            )
        except RuntimeError:
            daemon.stop()
            if attempt == START_ATTEMPTS - 1:
                raise
            continue
        try:
            yield port
        finally:
            daemon.stop()
        return


@pytest.fixture
def lab_unbound(minilab: MiniLab) -> Iterator[int]:
    workdir = minilab.dir / "unbound"
    workdir.mkdir(exist_ok=True)
    unbound = Unbound(workdir, minilab.zones, minilab.nsd.port)
    unbound.start()
    try:
        yield unbound.port
    finally:
        unbound.stop()


def client(port: int) -> ResolverClient:
    return ResolverClient([(LOOPBACK, port)], timeout=DNS_TIMEOUT_S)


async def test_check_resolver_lab_validating_unbound_passes(lab_unbound: int) -> None:
    metrics = Metrics()
    monitor = ResolverMonitor(
        client(lab_unbound), secure_name=SECURE_NAME, bogus_name=BOGUS_NAME, metrics=metrics
    )
    result = await monitor.start()
    await monitor.aclose()
    assert result.ok, result.reason
    assert metrics.registry.get_sample_value("tlspolicy_resolver_validating") == 1


@pytest.mark.parametrize("contrib_unbound", [True], indirect=True, ids=["validating"])
async def test_contrib_unbound_config_validates(contrib_unbound: int) -> None:
    # the lab data behaves as the self-check expects from this resolver
    assert query(SECURE_NAME, "A", contrib_unbound).flags & dns.flags.AD
    result = await check_resolver(
        client(contrib_unbound), secure_name=SECURE_NAME, bogus_name=BOGUS_NAME
    )
    assert result.ok, result.reason


@pytest.mark.parametrize("contrib_unbound", [False], indirect=True, ids=["not-validating"])
async def test_check_resolver_lab_flags_non_validating_resolver(contrib_unbound: int) -> None:
    result = await check_resolver(
        client(contrib_unbound), secure_name=SECURE_NAME, bogus_name=BOGUS_NAME
    )
    assert result.ok is False
    assert result.reason == f"resolver does not set the AD flag for {SECURE_NAME}: not validating"


async def test_check_resolver_lab_unreachable_resolver() -> None:
    result = await check_resolver(
        ResolverClient([(LOOPBACK, free_port())], timeout=0.5),
        secure_name=SECURE_NAME,
        bogus_name=BOGUS_NAME,
    )
    assert result.ok is False
    assert result.reason.startswith("resolver unreachable: ")
