"""The configuration reference, the sample file and tlspolicy.yml(5), from the schema.

Every key's type, default and one-line description live on its dataclass field
(``config/keydoc.py``); this module turns them into docs/configuration.md,
contrib/tlspolicy.yml and man/tlspolicy.yml.5. ``scripts/generate-docs`` writes the files and
a unit test fails when a committed file differs, so the three cannot drift from the code or
from each other. Pure: text in, text out.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import MISSING, Field, dataclass, fields
from enum import Enum
from typing import Any

from tlspolicy.config.keydoc import EXAMPLE, NAME, SAMPLE, UNSET, YAML, doc_of
from tlspolicy.config.load import CONFIG_ENV, DEFAULT_CONFIG_PATH
from tlspolicy.config.overrides import Override
from tlspolicy.config.schema import (
    CacheConfig,
    DaneConfig,
    DnsConfig,
    MapProfile,
    MtaStsConfig,
    PostfixConfig,
    ServerConfig,
    default_maps,
)
from tlspolicy.config.tlsrpt import TlsrptConfig

NOT_SET = UNSET
SAMPLE_WIDTH = 92  # comment lines of the sample file wrap here
_PLAIN_YAML = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@+-]*$")  # strings YAML reads as written
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


@dataclass(frozen=True, slots=True)
class Section:
    """One top-level section of the file; ``entry`` names the key of a mapping section
    (``maps: NAME: {...}``)."""

    name: str
    schema: type[Any]
    intro: str
    entry: str = ""


SECTIONS = (
    Section(
        "server",
        ServerConfig,
        "Where Postfix connects, connection limits, logging, the metrics listener and the"
        " user the server runs as.",
    ),
    Section(
        "dns",
        DnsConfig,
        "The resolver. It must be a local validating one (RFC 7672 §2.1.1): DANE trusts the"
        " AD flag of its answers. docs/resolver.md shows an Unbound set-up.",
    ),
    Section("mta_sts", MtaStsConfig, "Fetching and re-checking MTA-STS policies (RFC 8461)."),
    Section("dane", DaneConfig, "DANE lookups (RFC 7672) and how long their results are kept."),
    Section(
        "cache",
        CacheConfig,
        "Where policies are kept. Servers and the admin commands (cache, override) that read"
        " the same file share it.",
    ),
    Section(
        "maps",
        MapProfile,
        "The socketmap name in Postfix's map (socketmap:inet:127.0.0.1:8642:NAME) selects a"
        " profile, matched exactly, then case-insensitively. Without a maps: section the two"
        " profiles of the sample exist.",
        entry="NAME",
    ),
    Section(
        "postfix",
        PostfixConfig,
        "How check-config and serve ask the Postfix beside them for its version and maps.",
    ),
    Section(
        "tlsrpt",
        TlsrptConfig,
        "TLSRPT (RFC 8460): the collector of Postfix's TLS results, the store, the daily"
        " reports. Without a collector_socket and with reporter false, TLSRPT is off.",
    ),
    Section(
        "overrides",
        Override,
        "Per-domain answers kept with the configuration (also: tlspolicy override add)."
        " The file is re-read on every reload, so until takes a date, not a duration.",
        entry="DOMAIN",
    ),
)


@dataclass(frozen=True, slots=True)
class Key:
    """One documented key of a section, as the outputs show it."""

    name: str  # as written in YAML, dotted for nested mappings (``store.backend``)
    doc: str
    default: str  # YAML text, or NOT_SET, or "required"
    sample: str | None  # YAML text the sample sets; None: shown commented with ``example``
    example: str | None


def keys(section: Section) -> Iterator[Key]:
    """The documented keys of ``section``; fields without a description are internal."""
    for item in fields(section.schema):
        doc = doc_of(item)
        if doc is None:
            continue
        meta = item.metadata
        default = _default_text(item)
        sample = meta.get(SAMPLE) or (None if default in (NOT_SET, "required") else default)
        if meta.get(EXAMPLE) is not None and meta.get(SAMPLE) is None:
            sample = None
        yield Key(meta.get(NAME) or item.name, doc, default, sample, meta.get(EXAMPLE))


def undocumented(schema: type[Any]) -> list[str]:
    """Fields of a section's dataclass without a description (the drift test's list)."""
    return [item.name for item in fields(schema) if doc_of(item) is None]


def _default_text(item: Field[Any]) -> str:
    if item.metadata.get(YAML) is not None:
        return str(item.metadata[YAML])
    if item.default is MISSING:
        return "required"
    if item.default is None:
        return NOT_SET
    return yaml_value(item.default)


def yaml_value(value: Any) -> str:
    """A value as YAML flow text (what the sample file writes)."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    text = str(value)
    if _PLAIN_YAML.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text)  # a JSON string is a YAML string


# --- docs/configuration.md -----------------------------------------------------------


def markdown() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/generate-docs from src/tlspolicy/config/: do not edit. -->",
        "",
        f"tlspolicy reads one YAML file: the one `-c FILE` names, else the one `${CONFIG_ENV}`"
        f" names, else `{DEFAULT_CONFIG_PATH}`. When the default file does not exist, every key"
        " has its embedded default, and every command says so on stderr. Every key is"
        " optional; unknown keys are errors, so a typo never falls back to a default silently."
        " Check a file with `tlspolicy check-config`; `serve` re-reads it on SIGHUP (an"
        " invalid file is refused and the running configuration stays).",
        "",
        "contrib/tlspolicy.yml is a commented sample with every key; the man page is"
        " tlspolicy.yml(5).",
        "",
    ]
    for section in SECTIONS:
        where = f"{section.name}.{section.entry}" if section.entry else section.name
        out += [f"## {section.name}", "", section.intro, "", "| key | default | meaning |"]
        out.append("|---|---|---|")
        for k in keys(section):
            default = k.default if k.default in (NOT_SET, "required") else f"`{k.default}`"
            out.append(f"| `{where}.{k.name}` | {default} | {_md_cell(k.doc)} |")
        out.append("")
    return "\n".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


# --- contrib/tlspolicy.yml -------------------------------------------------------------


def sample() -> str:
    out = [
        f"# {DEFAULT_CONFIG_PATH}: the configuration of tlspolicy, every key with its",
        "# default (or, commented out, an example where a key is unset by default).",
        "# Generated by scripts/generate-docs from src/tlspolicy/config/: edit a copy.",
        "# Reference: docs/configuration.md, man 5 tlspolicy.yml.",
        f"# Check: tlspolicy check-config -c {DEFAULT_CONFIG_PATH}",
        "# Reload a running server: systemctl reload tlspolicy (SIGHUP).",
        "",
    ]
    for section in SECTIONS:
        out += _comment(section.intro, "")
        if section.name == "maps":
            out += _maps_sample()
        elif section.name == "overrides":
            out += _overrides_sample(section)
        else:
            out.append(f"{section.name}:")
            out += _keys_sample(list(keys(section)), "  ")
        out.append("")
    return "\n".join(out)


def _keys_sample(items: list[Key], indent: str, *, commented: bool = False) -> list[str]:
    out: list[str] = []
    nested: dict[str, list[Key]] = {}
    for k in items:
        head, dot, rest = k.name.partition(".")
        if dot:
            if head not in nested:
                nested[head] = []
                out.append(f"{indent}{'# ' if commented else ''}{head}:")
                out.append(f"<nested {head}>")
            nested[head].append(Key(rest, k.doc, k.default, k.sample, k.example))
            continue
        out += _comment(k.doc, indent)
        if k.sample is not None and not commented:
            out.append(f"{indent}{k.name}: {k.sample}")
        else:
            value = k.example if k.example is not None else k.sample or "null"
            out.append(f"{indent}# {k.name}: {value}")
    expanded: list[str] = []
    for line in out:
        if line.startswith("<nested "):
            expanded += _keys_sample(nested[line[8:-1]], indent + "  ", commented=commented)
        else:
            expanded.append(line)
    return expanded


def _maps_sample() -> list[str]:
    profiles = list(keys(next(s for s in SECTIONS if s.name == "maps")))
    out = ["maps:"]
    defaults = {k.name: k.default for k in profiles}
    for number, (name, profile) in enumerate(default_maps().items()):
        out.append(f"  {name}:")
        for k in profiles:
            value = yaml_value(getattr(profile, k.name))
            if number == 0:
                out += _comment(k.doc, "    ")
                out.append(f"    {k.name}: {value}")
            elif value != defaults[k.name]:
                out.append(f"    {k.name}: {value}")
    return out


def _overrides_sample(section: Section) -> list[str]:
    out = ["# overrides:", "#   partner.example:"]
    for k in keys(section):
        out += _comment(k.doc, "#     ")
        out.append(f"#     {k.name}: {k.example if k.example is not None else k.default}")
    return out


def _comment(text: str, indent: str) -> list[str]:
    prefix = f"{indent}# "
    width = max(SAMPLE_WIDTH - len(prefix), 40)
    return [prefix + line for line in textwrap.wrap(text, width)]


# --- man/tlspolicy.yml.5 ---------------------------------------------------------------


def roff_text(text: str) -> str:
    """Text for a roff line: backslashes and hyphens escaped, no leading control dot."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    if escaped.startswith((".", "'")):
        escaped = "\\&" + escaped
    return escaped


def manpage(version: str) -> str:
    out = [
        f'.TH TLSPOLICY.YML 5 "" "tlspolicy {roff_text(version)}" "File Formats"',
        '.\\" Generated by scripts/generate-docs from src/tlspolicy/config/: do not edit.',
        ".SH NAME",
        "tlspolicy.yml \\- configuration file of the tlspolicy Postfix TLS policy server",
        ".SH SYNOPSIS",
        f".B {roff_text(DEFAULT_CONFIG_PATH)}",
        ".SH DESCRIPTION",
        roff_text(
            f"tlspolicy reads one YAML file: the one -c FILE names, else the one ${CONFIG_ENV}"
            f" names, else {DEFAULT_CONFIG_PATH}. When the default file does not exist, every"
            " key has its embedded default, and every command says so on its standard error."
        ),
        ".PP",
        roff_text(
            "Every key is optional; unknown keys are errors. tlspolicy check-config checks a"
            " file; serve re-reads it on SIGHUP and keeps the running configuration when the"
            " new one is invalid."
        ),
    ]
    for section in SECTIONS:
        where = f"{section.name}.{section.entry}" if section.entry else section.name
        out += [f".SH {section.name.upper()}", roff_text(section.intro)]
        for k in keys(section):
            out += [
                ".TP",
                f".B {roff_text(where + '.' + k.name)}",
                roff_text(f"{k.doc}. Default: {k.default}."),
            ]
    out += [
        ".SH FILES",
        ".TP",
        f".I {roff_text(DEFAULT_CONFIG_PATH)}",
        "the configuration file",
        ".TP",
        ".I /usr/share/doc/postfix\\-tlspolicy/examples/tlspolicy.yml",
        "a commented sample with every key (contrib/tlspolicy.yml in the source)",
        ".SH SEE ALSO",
        ".BR tlspolicy (8),",
        ".BR postconf (5),",
        ".BR unbound.conf (5)",
        "",
    ]
    return "\n".join(out)
