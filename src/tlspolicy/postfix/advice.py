"""Which map profile suits the Postfix beside us: read ``postconf``, advise.

On Postfix 3.10 and later the TLSRPT attributes are part of MTA-STS enforcement, not only of
reporting: without ``mx_host_pattern`` Postfix has nothing to check
``smtp_tls_enforce_sts_mx_patterns`` against (an MX the policy does not cover still gets
mail when its certificate matches a ``match=`` name), and it reports every enforced MTA-STS
delivery as no-policy-found. Before 3.10 the same attributes make Postfix defer the mail
("invalid attribute name: policy_type"), and before 3.4 ``servername`` does. So the
profile of each map that ``smtp_tls_policy_maps`` names must fit the Postfix version
(docs/protocol-notes.md §2.4).

``advise`` is pure (facts in, advice out); ``read_postfix`` runs ``postconf`` where the
server runs beside Postfix and returns None when there is no Postfix to ask.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from tlspolicy.config.schema import MapProfile

POSTCONF_TIMEOUT_S = 5.0
TLSRPT_ATTRIBUTES_SINCE = (3, 10)
STS_MX_PATTERNS_SINCE = (3, 10, 5)
SERVERNAME_SINCE = (3, 4)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class PostfixFacts:
    version: tuple[int, ...]
    version_text: str
    policy_maps: str  # the value of smtp_tls_policy_maps


@dataclass(frozen=True, slots=True)
class Advice:
    severity: Severity
    text: str


def parse_version(text: str) -> tuple[int, ...]:
    """``3.10.5`` → (3, 10, 5); a suffix such as ``-RC1`` or ``-20250101`` is ignored."""
    numbers = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    if numbers is None:
        return ()
    return tuple(int(part) for part in numbers.group(1).split("."))


def socketmap_names(policy_maps: str) -> list[str]:
    """The map names of the socketmap tables in an ``smtp_tls_policy_maps`` value.

    Tables are separated by commas or white space; ``socketmap:inet:HOST:PORT:NAME`` and
    ``socketmap:unix:PATH:NAME`` carry the name after the last colon.
    """
    tables = re.split(r"[\s,]+", policy_maps)
    return [
        table.rsplit(":", 1)[1]
        for table in tables
        if table.startswith(("socketmap:inet:", "socketmap:unix:")) and table.count(":") >= 3
    ]


def advise(facts: PostfixFacts, maps: Mapping[str, MapProfile]) -> list[Advice]:
    """What to change so that the maps Postfix uses fit its version."""
    version, shown = facts.version, facts.version_text
    used = [name for name in socketmap_names(facts.policy_maps) if name in maps]
    advice: list[Advice] = []
    if not used:
        advice.append(
            Advice(
                Severity.INFO,
                f"Postfix {shown}: smtp_tls_policy_maps names none of this server's maps "
                f"({', '.join(maps)})",
            )
        )
        return advice
    for name in used:
        profile = maps[name]
        if version < TLSRPT_ATTRIBUTES_SINCE and profile.tlsrpt:
            advice.append(
                Advice(
                    Severity.ERROR,
                    f"Postfix {shown} rejects the TLSRPT attributes of map {name} "
                    '("invalid attribute name: policy_type") and defers mail to MTA-STS '
                    "domains: use a map with tlsrpt: false before Postfix 3.10",
                )
            )
        if version < SERVERNAME_SINCE and profile.servername:
            advice.append(
                Advice(
                    Severity.ERROR,
                    f"Postfix {shown} rejects servername= in answers of map {name}: "
                    "set servername: false before Postfix 3.4",
                )
            )
        if version >= TLSRPT_ATTRIBUTES_SINCE and not profile.tlsrpt:
            checks = (
                "cannot check MX names against the MTA-STS policy "
                "(smtp_tls_enforce_sts_mx_patterns) and "
                if version >= STS_MX_PATTERNS_SINCE
                else ""
            )
            advice.append(
                Advice(
                    Severity.WARNING,
                    f"Postfix {shown} {checks}reports MTA-STS deliveries as no-policy-found "
                    f"through map {name}: use a map with tlsrpt: true (e.g. QUERYwithTLSRPT)",
                )
            )
    return advice


def read_postfix(postconf: str, config_directory: str | None = None) -> PostfixFacts | None:
    """Ask ``postconf`` for the version and the policy maps; None without a usable postconf."""
    command = [postconf]
    if config_directory:
        command += ["-c", config_directory]
    command += ["-h", "mail_version", "smtp_tls_policy_maps"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=POSTCONF_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2:
        return None
    version = parse_version(lines[0])
    if not version:
        return None
    return PostfixFacts(version, lines[0].strip(), lines[1].strip())
