"""The Debian package, built the Debian way and installed with apt, serves a real Postfix 3.10.

``scripts/build-deb`` builds ``postfix-tlspolicy_<version>_all.deb`` in a clean Debian 13 root
(cached: rebuilt only when the packaged sources change) and runs lintian there;
``tests.lab.debroot`` installs it with ``apt-get install ./…deb`` into a copy of the Postfix
3.10 root (dependencies from Debian's archive; cached per .deb). Then, in the lab's private
network and mount namespace (``tests.lab.postfix310``: an overlay over that root):

* the unit's ``ExecStart`` runs as the packaged user ``_tlspolicy`` with the shipped
  configuration, which listens on 127.0.0.1:8642 and asks the resolver on 127.0.0.1: inside
  the namespace that is a forwarder to the lab's validating Unbound. Only what a lab needs is
  added to the file: the lab CA and private addresses for the MTA-STS policy host (forwarded
  into the namespace too) and lab names for the resolver self-check;
* Postfix delivers to a DANE and an MTA-STS lab domain through
  ``socketmap:inet:127.0.0.1:8642:QUERYwithTLSRPT``, logs "Verified TLS", and sends the
  TLSRPT datagram of the right policy type.

Without the lab: ``systemd-analyze verify`` (the host's systemd, ``--root`` at the installed
root) accepts the units; an upgrade (reinstall) keeps the operator's edit and the cache; purge
leaves no file outside dpkg's and apt's own records. Cold run (nothing cached): about 4 minutes
(mmdebstrap of the build root, the build, apt-get install); cached: well under a minute.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.postfixlab import DatagramCapture, host_address
from tests.lab.debroot import (
    FILE_LIST,
    PACKAGE,
    build_deb,
    ensure_installed_root,
    run_in_overlay,
)
from tests.lab.mxsinks import MxSinks
from tests.lab.netns import Forwarder
from tests.lab.netutil import Daemon, wait_until
from tests.lab.postfix310 import CA_FILE, Delivery, Postfix310
from tests.lab.scenario import Lab
from tests.lab.smtpcases import EXPERIMENTS, GOOD_MX, SINKS, STS_MX
from tests.lab.trixie import ensure_root

pytestmark = [pytest.mark.integration, pytest.mark.postfix310]

POLICY_MAP = "socketmap:inet:127.0.0.1:8642:QUERYwithTLSRPT"
SERVICE = "/usr/lib/systemd/system/tlspolicy.service"
SOCKET = "/usr/lib/systemd/system/tlspolicy.socket"
CONFIG = "/etc/tlspolicy/tlspolicy.yml"
USER = "_tlspolicy"
START_TIMEOUT_S = 30.0
POLICY_TLSA, POLICY_STS = 1, 2  # libtlsrpt policy-type codes
# What may differ after purge: dpkg's and apt's records, logs, caches, the shadow files'
# backups written by adduser/deluser, ld.so's cache, and /run (a tmpfs, emptied at boot:
# adduser leaves its lock file there); /dev and /proc are mounts.
PURGE_ALLOWED = re.compile(
    r"^\./(var/lib/dpkg|var/lib/apt|var/cache|var/log|run)(/|$)|^\./(dev|proc)/"
    r"|^\./etc/(passwd|group|shadow|gshadow)-$|^\./etc/ld\.so\.cache$"
)


@dataclass(frozen=True)
class Package:
    deb: Path
    lintian: str
    installed: Path  # the cached directory of tests.lab.debroot (root/, before.txt)

    @property
    def root(self) -> Path:
        return self.installed / "root"


@pytest.fixture(scope="module")
def package() -> Package:
    if shutil.which("mmdebstrap") is None or shutil.which("unshare") is None:
        pytest.fail("mmdebstrap and unshare are needed (scripts/test installs them)")
    deb, lintian = build_deb()
    return Package(deb, lintian, ensure_installed_root(deb))


def _deb_field(deb: Path, field: str) -> str:
    done = subprocess.run(
        ["dpkg-deb", "--field", str(deb), field], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_lintian_reports_no_errors(package: Package) -> None:
    tags = [line for line in package.lintian.splitlines() if re.match(r"^[EWIPXO]: ", line)]
    errors = [line for line in tags if line.startswith("E: ")]
    assert not errors, package.lintian
    warnings = [line for line in tags if line.startswith("W: ")]
    # Each remaining warning is explained in debian/ (lintian-overrides or README.Debian).
    assert not warnings, package.lintian


def test_package_depends_on_debians_python_libraries(package: Package) -> None:
    assert package.deb.name.endswith("_all.deb")
    depends = _deb_field(package.deb, "Depends")
    for name in ("h11", "aiohappyeyeballs", "aiohttp", "yaml", "idna", "cryptography"):
        assert f"python3-{name}" in depends, depends
    assert "python3-prometheus-client" in depends, depends
    assert "python3-uvloop" in _deb_field(package.deb, "Recommends")
    suggests = _deb_field(package.deb, "Suggests")
    for name in ("redis", "asyncpg", "aiosmtplib", "dkim"):
        assert f"python3-{name}" in suggests, suggests
    contents = subprocess.run(
        ["dpkg-deb", "--contents", str(package.deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = {line.split()[5].removeprefix(".") for line in contents.splitlines()}
    for path in ("/usr/bin/tlspolicy", SERVICE, SOCKET, CONFIG):
        assert path in paths, contents
    assert "/usr/share/doc/postfix-tlspolicy/README.Debian" in paths
    vendored = [p for p in paths if re.search(r"dist-packages/(aiohttp|h11|yaml)/", p)]
    assert not vendored, vendored


def test_apt_installed_the_package_with_its_user_and_state_directory(package: Package) -> None:
    passwd = (package.root / "etc/passwd").read_text()
    assert re.search(rf"^{USER}:x:\d+:\d+:.*:/var/lib/tlspolicy:/usr/sbin/nologin$", passwd, re.M)
    state = package.root / "var/lib/tlspolicy"
    assert state.is_dir()
    assert state.stat().st_mode & 0o777 == 0o750
    conffiles = (package.root / f"var/lib/dpkg/info/{PACKAGE}.conffiles").read_text()
    assert CONFIG in conffiles.split()
    done = run_in_overlay(
        package.root, "in_root tlspolicy --version\nin_root python3 -c 'import uvloop'\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tlspolicy "), done.stdout


def test_systemd_analyze_verify_accepts_the_units(package: Package) -> None:
    """The host's systemd-analyze with ``--root`` at an overlay of the installed root.

    The root runs no systemd, so the host's own unit files (``sysinit.target`` and the rest)
    are copied into the overlay first, without replacing any of the root's.
    """
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd; scripts/test installs it)")
    script = f"""
cp -an /usr/lib/systemd/system/. "$merged/usr/lib/systemd/system/"
exec {analyze} verify --root="$merged" {SERVICE} {SOCKET}
"""
    done = run_in_overlay(package.root, script)
    assert done.returncode == 0, done.stderr
    assert not done.stderr.strip(), done.stderr


def test_upgrade_keeps_edits_and_cache_and_purge_removes_everything(package: Package) -> None:
    """Reinstall (an upgrade to the same version) keeps edits and cache; purge cleans up.

    After the purge the dependencies apt installed for the package are purged too (apt's
    ``--autoremove`` keeps those that the root's Postfix recommends, such as python3), so
    the root's file list can be compared with the one from before the installation.
    """
    q = shlex.quote
    base = ensure_root()
    installed_before = subprocess.run(
        ["dpkg-query", f"--admindir={base}/var/lib/dpkg", "-W", "-f", "${Package}\\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    script = f"""
echo '# an operator edit' >>"$merged{CONFIG}"
echo cached >"$merged/var/lib/tlspolicy/cache.sqlite3"
cp {q(str(package.deb))} "$merged/tmp/p.deb"
in_root dpkg -i /tmp/p.deb >/dev/null
rm "$merged/tmp/p.deb"
echo "edit: $(tail -n 1 "$merged{CONFIG}")"
echo "cache: $(cat "$merged/var/lib/tlspolicy/cache.sqlite3")"
in_root apt-get -q -y purge {PACKAGE} >/dev/null
echo "user: $(grep -c '^{USER}:' "$merged/etc/passwd" "$merged/etc/group" | tr '\\n' ' ')"
echo "status: $(in_root dpkg-query -W -f '${{db:Status-Abbrev}}' {PACKAGE} 2>&1 || true)"
printf %s {q(installed_before)} | LC_ALL=C sort >"$merged/tmp/before"
in_root dpkg-query -W -f '${{Package}}\\n' | LC_ALL=C sort \\
    | LC_ALL=C comm -13 "$merged/tmp/before" - >"$merged/tmp/new"
in_root xargs -r apt-get -q -y purge </"$merged/tmp/new" >/dev/null
rm "$merged/tmp/before" "$merged/tmp/new"
echo "--- files"
cd "$merged" && {FILE_LIST}
"""
    done = run_in_overlay(package.root, script)
    assert done.returncode == 0, done.stderr
    report, _, listing = done.stdout.partition("--- files\n")
    assert "edit: # an operator edit" in report, report
    assert "cache: cached" in report, report
    assert re.search(r"user: \S*passwd:0 \S*group:0 ", report), report
    assert "no packages found matching" in report, report
    before = set((package.installed / "before.txt").read_text().splitlines())
    after = set(listing.splitlines())
    left = sorted(p for p in after - before if not PURGE_ALLOWED.search(p))
    assert not left, left
    removed = sorted(p for p in before - after if not PURGE_ALLOWED.search(p))
    assert not removed, removed


# -- Postfix 3.10 through the packaged server -------------------------------------------


@dataclass
class PackagedLab:
    postfix: Postfix310
    server: Daemon
    sinks: MxSinks
    capture: DatagramCapture

    def deliver(self, domain: str) -> tuple[Delivery, list[dict[str, object]]]:
        self.capture.barrier()
        before = len(self.capture.for_domain(domain))
        rcpt = self.postfix.new_rcpt(domain)
        self.postfix.send(rcpt)
        delivery = self.postfix.wait_delivery(rcpt)
        self.capture.barrier()
        return delivery, self.capture.for_domain(domain)[before:]


def _exec_start(unit: Path) -> list[str]:
    for line in unit.read_text().splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise AssertionError(f"no ExecStart in {unit}")


def _ids(merged_etc: Path, user: str) -> tuple[int, int]:
    for line in (merged_etc / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise AssertionError(f"no user {user}")


@pytest.fixture(scope="module")
def plab(
    package: Package, lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PackagedLab]:
    workdir = tmp_path_factory.mktemp("debian-package")
    with contextlib.ExitStack() as stack:
        postfix = Postfix310(workdir, package.root)
        stack.callback(postfix.stop)
        ns = postfix.start_namespace()
        https = (lab.https.address, lab.https.port)
        for forwarder in (
            Forwarder(ns, ("127.0.0.1", 53), lab.resolver, udp=True),
            Forwarder(ns, https, https),  # the MTA-STS policy hosts
        ):
            stack.callback(forwarder.start().stop)
        addresses = {sink.host: host_address(lab, sink.host) for sink in SINKS}
        sinks = MxSinks(
            workdir, ns, addresses, lab.catalogue.mx_keys,
            ca=lab.https.ca, untrusted_ca=lab.https.untrusted_ca,
        )  # fmt: skip
        stack.callback(sinks.stop)
        sinks.start()
        capture = DatagramCapture(postfix.tlsrpt_socket)
        stack.callback(capture.stop)
        capture.start()
        postfix.configure(
            policy_map=POLICY_MAP,
            ca_pem=lab.ca_file.read_bytes(),
            static={domain: answer for domain, (_, answer) in EXPERIMENTS.items()},
        )
        # The shipped file, pointed at the lab: the lab CA and private addresses for the
        # policy host, lab names for the resolver self-check. Listen and resolver unchanged.
        config_file = postfix.file(CONFIG)
        config = yaml.safe_load(config_file.read_text())
        assert config["server"]["listen"] == ["127.0.0.1:8642"]
        assert config["dns"]["nameservers"] == ["127.0.0.1"]
        config["mta_sts"] = {"ca_file": CA_FILE, "allow_private_addresses": True}
        config["dns"] |= {
            "selfcheck_secure_name": "dane-only.lab",
            "selfcheck_bogus_name": "bogus.lab",
        }
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        uid, gid = _ids(postfix.file("/etc"), USER)
        argv = [
            "chroot", f"--userspec={uid}:{gid}", "--groups=", str(postfix.merged),
            "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
            "HOME=/var/lib/tlspolicy", "STATE_DIRECTORY=/var/lib/tlspolicy",
            *_exec_start(postfix.file(SERVICE)),
        ]  # fmt: skip
        server = Daemon("tlspolicy-deb", ns.command(argv), workdir / "tlspolicy.log")
        stack.callback(server.stop)
        server.start()

        def listening() -> bool:
            try:
                ns.connect(("127.0.0.1", 8642), timeout=1.0).close()
            except OSError:
                return False
            return True

        wait_until(listening, timeout=START_TIMEOUT_S, what="the packaged server", alive=server)
        postfix.start()
        stack.callback(postfix.master.stop)
        yield PackagedLab(postfix, server, sinks, capture)


def test_the_packaged_server_runs_as_its_user(plab: PackagedLab) -> None:
    merged = str(plab.postfix.merged)
    ps = plab.postfix.ns.run(["chroot", merged, "ps", "-o", "user:20=,args=", "-C", "tlspolicy"])
    ps_out = ps.stdout.decode()
    assert re.search(rf"^{USER}\s+/usr/bin/python3 /usr/bin/tlspolicy serve", ps_out, re.M), ps_out
    answer = plab.postfix.ns.run(
        ["chroot", merged, "postmap", "-q", "rpt-dane.lab", POLICY_MAP]
    ).stdout.decode()
    assert answer.startswith("dane-only"), answer
    assert (plab.postfix.file("/var/lib/tlspolicy")).stat().st_uid == _ids(
        plab.postfix.file("/etc"), USER
    )[0]


@pytest.mark.parametrize(
    ("domain", "mx", "policy_type"),
    [("rpt-dane.lab", GOOD_MX, POLICY_TLSA), ("rpt-sts.lab", STS_MX, POLICY_STS)],
)
def test_postfix_delivers_through_the_packaged_server(
    plab: PackagedLab, domain: str, mx: str, policy_type: int
) -> None:
    delivery, datagrams = plab.deliver(domain)
    assert delivery.status == "sent", delivery.line
    assert delivery.relay.startswith(f"{mx}["), delivery.line
    verified = plab.postfix.log_lines(rf"Verified TLS connection established to {re.escape(mx)}\[")
    assert verified, plab.postfix.log()[-3000:]
    assert plab.sinks.for_rcpt(delivery.rcpt)[0].tls
    assert len(datagrams) == 1, datagrams
    (policy,) = datagrams[0]["policies"]  # type: ignore[index]
    assert (policy["policy-type"], policy["f"]) == (policy_type, 0), policy
    assert not plab.postfix.log_lines(r"TLS configuration problem|socketmap server")
