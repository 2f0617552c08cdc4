"""Postfix as a client of our socketmap server, through ``postmap -q`` (Debian postfix 3.7).

``postmap`` prints only the value of an ``OK`` reply and exits 0. Everything else exits 1:
``NOTFOUND`` silently, a ``TEMP``/``PERM``/``TIMEOUT`` reply or a connection problem with a
message on stderr. ``PostmapResult.kind`` tells these apart from that message, the same words
an operator sees in the mail log. Every non-NOTFOUND failure costs 1 s: postmap sleeps before
a fatal exit. ``postmap`` refuses to run without a ``main.cf``: an empty one
in a private config directory is enough (``-c DIR``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

MAIN_CF_AGE_S = 3600  # backdate our main.cf by this much
POSTMAP_TIMEOUT_S = 60.0  # postmap's own socketmap timeout is 100 s (socketmap_table(5))


class PostmapKind(StrEnum):
    FOUND = "found"  # OK reply: stdout holds the value
    NOTFOUND = "notfound"  # NOTFOUND reply
    TEMP = "temp"  # TEMP reply ("socketmap server temporary error")
    PERM = "perm"  # PERM reply ("socketmap server permanent error")
    TIMEOUT = "timeout"  # TIMEOUT reply ("socketmap server timeout error")
    ERROR = "error"  # anything else postmap calls fatal: refused, timeout, garbage


@dataclass(frozen=True, slots=True)
class PostmapResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def value(self) -> str:
        """The looked-up value without the trailing newline."""
        return self.stdout.rstrip("\n")

    @property
    def kind(self) -> PostmapKind:
        if self.returncode == 0:
            return PostmapKind.FOUND
        if "socketmap server temporary error" in self.stderr:
            return PostmapKind.TEMP
        if "socketmap server permanent error" in self.stderr:
            return PostmapKind.PERM
        if "socketmap server timeout error" in self.stderr:
            return PostmapKind.TIMEOUT
        if "fatal:" in self.stderr or "warning:" in self.stderr:
            return PostmapKind.ERROR
        return PostmapKind.NOTFOUND


def socketmap_inet(host: str, port: int, name: str = "QUERY") -> str:
    """``socketmap:inet:HOST:PORT:NAME``, the form ``smtp_tls_policy_maps`` uses."""
    return f"socketmap:inet:{host}:{port}:{name}"


def socketmap_unix(path: str | Path, name: str = "QUERY") -> str:
    """``socketmap:unix:PATH:NAME``; the socket must be writable by the caller."""
    return f"socketmap:unix:{path}:{name}"


_CONFIG_DIR: Path | None = None


def postfix_config_dir() -> Path:
    """A private directory holding an empty ``main.cf`` (created once per process)."""
    global _CONFIG_DIR
    if _CONFIG_DIR is None or not (_CONFIG_DIR / "main.cf").exists():
        _CONFIG_DIR = Path(tempfile.mkdtemp(prefix="tlspolicy-postfix-"))
        main_cf = _CONFIG_DIR / "main.cf"
        main_cf.write_text("")
        # Postfix waits up to ~2 s for a main.cf modified in the last second to "settle".
        settled = time.time() - MAIN_CF_AGE_S
        os.utime(main_cf, (settled, settled))
        atexit.register(shutil.rmtree, _CONFIG_DIR, True)
    return _CONFIG_DIR


def postmap_query(
    key: str,
    map_spec: str,
    *,
    config_dir: Path | None = None,
    timeout: float = POSTMAP_TIMEOUT_S,
) -> PostmapResult:
    """Run ``postmap -c DIR -q KEY MAP`` and return what it printed.

    Raises:
        subprocess.TimeoutExpired: postmap did not finish within ``timeout`` seconds.
    """
    directory = config_dir or postfix_config_dir()
    done = subprocess.run(
        ["postmap", "-c", str(directory), "-q", key, map_spec],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PostmapResult(done.returncode, done.stdout, done.stderr)


def postmap_query_many(
    keys: list[str],
    map_spec: str,
    *,
    config_dir: Path | None = None,
    timeout: float = POSTMAP_TIMEOUT_S,
) -> PostmapResult:
    """``postmap -q - MAP`` with one key per stdin line; stdout has ``key<TAB>value`` lines.

    Postfix looks the keys up over one connection, in order; NOTFOUND keys print nothing.
    """
    directory = config_dir or postfix_config_dir()
    done = subprocess.run(
        ["postmap", "-c", str(directory), "-q", "-", map_spec],
        input="".join(f"{k}\n" for k in keys),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PostmapResult(done.returncode, done.stdout, done.stderr)
