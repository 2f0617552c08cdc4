"""``tlspolicy check DOMAIN``: audit a domain's inbound MTA-STS, DANE and TLSRPT, live.

Builds the app exactly as ``query`` does (the configured validating resolver, the server's
fetcher, a memory cache) and hands it to ``check.run``. Exit status: 0 all good, 1 warnings,
2 errors, 3 the check could not run (also for ``--monitoring``: OK/WARNING/CRITICAL/UNKNOWN).

``--ca-file`` replaces the trust store for both the SMTP certificates and the policy fetch
(default: the system store for SMTP, ``mta_sts.ca_file`` or the system store for HTTPS).
``--port`` connects to another SMTP port (labs, networks that block port 25 but forward
another); the TLSA records are still those of port 25.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tlspolicy.config import Config
from tlspolicy.dane.lookup import SMTP_PORT
from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.selfcheck import check_resolver, describe
from tlspolicy.socketmap.keys import normalize_key

if TYPE_CHECKING:
    from tlspolicy.check.findings import Report

DEFAULT_TIMEOUT_S = 10.0  # per SMTP connection attempt
EXIT_USAGE = 2


def add_parser(sub: Any) -> None:
    check = sub.add_parser(
        "check",
        help="audit a domain's MTA-STS, DANE and TLSRPT setup, live",
        description="Check DNS, the MTA-STS policy, each MX host over SMTP STARTTLS, DANE "
        "and TLSRPT for DOMAIN, and say what senders will do. Exit status: 0 all good, "
        "1 warnings, 2 errors, 3 the check could not run.",
    )
    check.add_argument("domain", metavar="DOMAIN", help="the mail domain to check")
    check.add_argument("--map", default=None, help="socketmap name (profile); default: first map")
    out = check.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument(
        "--monitoring", action="store_true", help="one Nagios/Icinga status line with perfdata"
    )
    check.add_argument("-v", "--verbose", action="store_true", help="show the evidence")
    check.add_argument("--ca-file", metavar="PEM", help="trust these CAs instead of the system's")
    check.add_argument(
        "--port", type=int, default=SMTP_PORT, help=f"SMTP port to probe (default {SMTP_PORT})"
    )
    check.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds per SMTP connection (default {DEFAULT_TIMEOUT_S:g})",
    )
    family = check.add_mutually_exclusive_group()
    family.add_argument("-4", "--ipv4", action="store_true", help="probe IPv4 addresses only")
    family.add_argument("-6", "--ipv6", action="store_true", help="probe IPv6 addresses only")
    check.add_argument(
        "--no-smtp", action="store_true", help="DNS and HTTPS only (no outbound port 25)"
    )


async def run(config: Config, args: argparse.Namespace) -> int:
    # Imported here: cryptography and the audit's modules cost every other command
    # (``serve`` above all) memory and start-up time they never use.
    from tlspolicy.check.findings import Report  # noqa: PLC0415
    from tlspolicy.check.probe import SmtpProber  # noqa: PLC0415
    from tlspolicy.check.run import FAMILIES, CheckOptions, run_check  # noqa: PLC0415
    from tlspolicy.server.app import build_app, memory_cache  # noqa: PLC0415

    parsed = normalize_key(args.domain)
    if parsed.domain is None or args.domain.startswith("["):
        print(
            f"tlspolicy check: {args.domain!r} is not a mail domain ({parsed.why})", file=sys.stderr
        )
        return EXIT_USAGE
    if args.timeout <= 0 or not 0 < args.port < 65536:
        print("tlspolicy check: --timeout must be positive, --port 1..65535", file=sys.stderr)
        return EXIT_USAGE
    if args.ca_file:
        config = replace(config, mta_sts=replace(config.mta_sts, ca_file=args.ca_file))
    families = ("IPv4",) if args.ipv4 else ("IPv6",) if args.ipv6 else FAMILIES
    options = CheckOptions(
        families=families,
        map_name=args.map,
        trust_source=args.ca_file or "system store",
    )
    prober = None
    if not args.no_smtp:
        prober = SmtpProber(ca_file=args.ca_file, timeout=args.timeout, port=args.port)
    app = await build_app(config, cache_config=memory_cache(config))
    try:
        problem = await resolver_problem(app.dns, config)
        if problem is not None:  # DANE findings would be wrong: the check does not run
            report = Report.build(
                parsed.domain, [], unknown=f"resolver self-check failed: {problem}"
            )
        else:
            now = datetime.datetime.now(datetime.UTC)
            report = await run_check(app, parsed.domain, options, prober=prober, now=now)
    finally:
        await app.aclose()
    print(_render(report, args))
    return int(report.exit_status)


async def resolver_problem(dns: DnsClient, config: Config) -> str | None:
    """The resolver self-check, run before anything is looked up (``dns.selfcheck``): a
    resolver that does not validate makes every DANE domain look unsigned, so ``check``
    and ``query`` refuse to judge through it (so do probe names it cannot resolve). None
    when it passed, is turned off, or the resolver did not answer (``check`` reports that
    itself as "could not run", and ``query`` answers TEMP)."""
    if not config.dns.selfcheck:
        return None
    result = await check_resolver(
        dns, secure_name=config.dns.selfcheck_secure_name,
        bogus_name=config.dns.selfcheck_bogus_name,
    )  # fmt: skip
    if result.ok or not (result.not_validating or result.probe_failed):
        return None  # passed, or unreachable: the check itself reports that (exit 3)
    return describe(result)


def _render(report: Report, args: argparse.Namespace) -> str:
    from tlspolicy.check.render import render_human, render_json, render_monitoring  # noqa: PLC0415

    if args.json:
        return render_json(report)
    if args.monitoring:
        return render_monitoring(report)
    return render_human(report, verbose=args.verbose)
