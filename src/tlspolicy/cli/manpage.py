"""tlspolicy(8) in roff, with every command and option read from the argparse definitions.

The command part is generated (``scripts/generate-docs`` writes man/tlspolicy.8 and a unit
test fails when the committed file differs), so a new option appears in the man page
without an edit here; the sections around it (exit status, signals, files, environment,
examples) are written below. Pure: the parser in, text out.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from tlspolicy.config import CONFIG_ENV, DEFAULT_CONFIG_PATH
from tlspolicy.config.reference import roff_text

EXIT_STATUS = (
    ("0", "success; for query, a policy was found (OK)"),
    ("1", "query: no policy (NOTFOUND); cache show: not cached; override remove: nothing"
          " stored; check-config: Postfix would defer mail with this configuration"),
    ("2", "a usage error"),
    ("75", "a temporary failure (EX_TEMPFAIL): query answered TEMP, the cache or a"
           " delivery failed"),
    ("78", "a configuration error (EX_CONFIG); query answered PERM. systemd's"
           " RestartPreventExitStatus=78 keeps an invalid file from a restart loop"),
    ("141", "the output pipe closed early (as if killed by SIGPIPE)"),
)  # fmt: skip
CHECK_STATUS = "check: 0 all good, 1 warnings, 2 errors, 3 the check could not run."
SIGNALS = (
    ("SIGHUP", "re-read the configuration file; an invalid one is refused and the running"
               " configuration stays"),
    ("SIGTERM, SIGINT", "stop: finish the answers in flight, then exit"),
    ("SIGUSR2", "with server.workers of 2 or more: a rolling restart, one worker at a time,"
                " new one first"),
)  # fmt: skip
ENVIRONMENT = (
    (CONFIG_ENV, f"the configuration file when -c is not given (default {DEFAULT_CONFIG_PATH})"),
    ("STATE_DIRECTORY", "systemd's StateDirectory=: where the default cache file lives"),
    ("LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES", "systemd socket activation"),
    ("NOTIFY_SOCKET, WATCHDOG_USEC", "systemd readiness and watchdog notifications"),
)
FILES = (
    (DEFAULT_CONFIG_PATH, "the configuration file, see tlspolicy.yml(5)"),
    ("/var/lib/tlspolicy/cache.sqlite3", "the default cache (as root, without STATE_DIRECTORY)"),
    ("/var/lib/tlspolicy/tlsrpt.sqlite3", "the default TLSRPT store, beside the cache"),
)
EXAMPLES = (
    ("Explain the answer for one domain:", "tlspolicy query example.com"),
    ("Audit a domain's inbound MTA-STS, DANE and TLSRPT:", "tlspolicy check example.com"),
    ("Answer may for a broken partner for one day:",
     "tlspolicy override add partner.example may \\-\\-until 1d \\-\\-reason \"ticket 4711\""),
    ("The cached answers, in Postfix texthash format:", "tlspolicy cache export"),
    ("Another configuration file, in any position:",
     "tlspolicy cache show example.com \\-c /srv/tlspolicy.yml"),
)  # fmt: skip


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every runnable command: its path, parser and one-line help."""
    for action in parser._actions:  # argparse has no public walk
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, child in action.choices.items():
                below = list(commands(child, (*path, name)))
                if below:
                    yield from below
                else:
                    yield (*path, name), child, helps.get(name, "")
            return
    return


def _synopsis(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    words = ["\\fBtlspolicy\\fR", *(f"\\fB{roff_text(p)}\\fR" for p in path)]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "config":
            continue
        if action.option_strings:
            text = f"\\fB{roff_text(action.option_strings[0])}\\fR"
            if action.nargs != 0:
                text += f" \\fI{roff_text(_metavar(action))}\\fR"
            words.append(text if action.required else f"[{text}]")
        else:
            name = f"\\fI{roff_text(_metavar(action))}\\fR"
            words.append(f"[{name}]" if action.nargs == "?" else name)
    return " ".join(words)


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    return action.dest.upper()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.dest == "config":
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{roff_text(o)}\\fR" for o in action.option_strings)
            if action.nargs != 0:
                names += f" \\fI{roff_text(_metavar(action))}\\fR"
        else:
            names = f"\\fI{roff_text(_metavar(action))}\\fR"
        out += [".TP", names, roff_text(action.help or "")]
    return out


def _items(pairs: tuple[tuple[str, str], ...], font: str = "B") -> list[str]:
    out: list[str] = []
    for name, text in pairs:
        out += [".TP", f".{font} {roff_text(name)}", roff_text(text)]
    return out


def manpage(parser: argparse.ArgumentParser, version: str) -> str:
    out = [
        f'.TH TLSPOLICY 8 "" "tlspolicy {roff_text(version)}" "System Administration"',
        '.\\" Generated by scripts/generate-docs from src/tlspolicy/cli/: do not edit.',
        ".SH NAME",
        "tlspolicy \\- Postfix TLS policy socketmap server: DANE first, then MTA\\-STS",
        ".SH SYNOPSIS",
        "\\fBtlspolicy\\fR [\\fB\\-c\\fR \\fIFILE\\fR] \\fICOMMAND\\fR [\\fIACTION\\fR]"
        " [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        roff_text(
            "tlspolicy answers Postfix's smtp_tls_policy_maps over the socketmap protocol:"
            " for each next-hop domain it looks up DANE (RFC 7672) first and MTA-STS"
            " (RFC 8461) when DANE does not apply, caches the result, and answers the TLS"
            " security level Postfix should enforce. It also collects Postfix's TLSRPT"
            " results and sends the daily reports (RFC 8460), checks a domain's own setup,"
            " and lets the operator override answers per domain."
        ),
        ".PP",
        roff_text(
            f"Every command reads one configuration file: -c FILE, else ${CONFIG_ENV}, else"
            f" {DEFAULT_CONFIG_PATH}; see tlspolicy.yml(5). -c is accepted before the"
            " command, after it, and after its action. The commands that read or write the"
            " cache or the TLSRPT store name the file and the storage they used on standard"
            " error."
        ),
        ".SH OPTIONS",
        ".TP",
        "\\fB\\-c\\fR, \\fB\\-\\-config\\fR \\fIFILE\\fR",
        roff_text(f"the configuration file (default: ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH})"),
        ".TP",
        "\\fB\\-h\\fR, \\fB\\-\\-help\\fR",
        "show the help of tlspolicy, a command or an action",
        ".TP",
        "\\fB\\-\\-version\\fR",
        "print the version",
        ".SH COMMANDS",
    ]
    for path, child, help_text in commands(parser):
        out += [".SS " + '"' + roff_text("tlspolicy " + " ".join(path)) + '"']
        out += [_synopsis(path, child), ".PP", roff_text(child.description or help_text)]
        out += _options(child)
    out += [".SH EXIT STATUS", *_items(EXIT_STATUS), ".PP", roff_text(CHECK_STATUS)]
    out += [".SH SIGNALS", roff_text("serve handles:"), *_items(SIGNALS)]
    out += [".SH ENVIRONMENT", *_items(ENVIRONMENT)]
    out += [".SH FILES", *_items(FILES, "I")]
    out.append(".SH EXAMPLES")
    for text, command in EXAMPLES:
        out += [".PP", roff_text(text), ".RS", ".EX", command, ".EE", ".RE"]
    out += [
        ".SH SEE ALSO",
        ".BR tlspolicy.yml (5),",
        ".BR postconf (5),",
        ".BR smtp (8),",
        ".BR unbound (8)",
        "",
    ]
    return "\n".join(out)
