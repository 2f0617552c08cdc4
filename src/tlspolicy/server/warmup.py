"""Everything the server loads lazily, loaded before the privilege drop, and checked after.

Python imports some modules on first use: aiohttp and cryptography load parts of
themselves on first use; the codec machinery loads ``encodings.idna`` on the first
international name. When the installation (a virtualenv
under ``/root``, a clone in a 0700 directory, or the interpreter's own standard library) is
not readable by ``server.user``, such an import after the drop fails, and every lookup
would answer ``TEMP internal error``. So ``preload`` imports all of it while still root,
``check_access`` makes sure the new user can use what is read at run time (CA file, cache
directory), and ``LateImportWatch`` logs any import that still happens after the drop, so
a missing entry in this list shows in the log instead of as deferred mail.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from tlspolicy.config import Config
from tlspolicy.errors import ConfigError

log = logging.getLogger("tlspolicy.warmup")

# Imported lazily by libraries on first use; listed by name so a missing one fails loudly.
LAZY_MODULES = (
    "encodings.idna",
    "encodings.punycode",
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.utf_8",
    "idna",
    "idna.codec",
    "idna.core",
    "idna.idnadata",
    "idna.intranges",
    "idna.uts46data",
    "stringprep",
    "unicodedata",
    "ssl",
    "gzip",
    "zlib",
    "json",
    "json.decoder",
    "json.encoder",
    "h11",
    "aiohappyeyeballs",
    "tlspolicy.mtasts.http_client",  # mtasts/fetch.py imports it on the first fetch
    "cryptography.x509",  # dane/tlsa.py, for Full TLSA records only
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.serialization",
    "concurrent.futures.thread",
    "traceback",
    "linecache",
    "tokenize",
)
# Imported only when ``server.metrics_listen`` is set (``cli/serve.py`` ``_metrics``).
METRICS_MODULES = (
    "aiohttp.web",
    "prometheus_client",
    "prometheus_client.exposition",
    "tlspolicy.metrics.registry",
    "tlspolicy.server.http",
)
# Imported only when ``tlsrpt.reporter`` is on (HTTPS reports are sent with aiohttp).
REPORTER_MODULES = (
    "http.cookies",
    "email.utils",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.connector",
    "aiohttp.resolver",
    "aiohttp.abc",
    "tlspolicy.tlsrpt.reporter",
    "tlspolicy.tlsrpt.deliver",
    "tlspolicy.tlsrpt.mail",
)
# Imported when mail reports are on (the [mail] extra; tlsrpt/deliver.py, tlsrpt/mail.py).
MAIL_MODULES = ("aiosmtplib", "email.policy", "email.generator")
DKIM_MODULES = ("dkim", "dkim.crypto", "dkim.util")
# Imported only by the cache backend in use.
BACKEND_MODULES = {
    "sqlite": ("sqlite3",),
    "redis": ("redis.asyncio", "redis.asyncio.sentinel", "redis.asyncio.retry", "hiredis"),
    "postgres": ("asyncpg", "asyncpg.pgproto.pgproto", "asyncpg.protocol"),
}


def preload(config: Config) -> list[str]:
    """Import everything the server may need later (as root, before the drop).

    Returns the import path's directories as seen now, for ``verify_after_drop``. Optional
    modules (``hiredis``) may be missing; their absence is no error.
    """
    missing = [name for name in modules_for(config) if _import(name) is None]
    "ok".encode("idna")  # the codec registry caches its lookup: do the lookup now
    if missing:
        log.debug("not installed, not preloaded: %s", ", ".join(missing))
    return installation_dirs()


def modules_for(config: Config) -> list[str]:
    """The modules ``preload`` imports for ``config``: what it can use, and nothing more."""
    names = [*LAZY_MODULES, *BACKEND_MODULES.get(config.cache.backend, ())]
    if config.server.metrics_listen is not None:
        names += METRICS_MODULES
    if config.tlsrpt.reporter:
        names += REPORTER_MODULES
        if config.tlsrpt.mail_reports:
            names += MAIL_MODULES
        if config.tlsrpt.dkim_key is not None:
            names += DKIM_MODULES
    if config.tlsrpt.store_backend == "postgres":  # tlsrpt/backend.py imports it lazily
        names += [*BACKEND_MODULES["postgres"], "tlspolicy.tlsrpt.postgres_backend"]
    return names


def verify_after_drop(config: Config, dirs: Sequence[str]) -> None:
    """Refuse to serve when the new user cannot use what the server needs; note what it
    cannot read but no longer needs; watch for imports that ``preload`` missed.

    Raises:
        ConfigError: naming every file or directory the server user cannot use.
    """
    problems = check_access(config)
    if problems:
        raise ConfigError(
            f"server.user {config.server.user} cannot use what the server needs: "
            + "; ".join(problems)
        )
    LateImportWatch(dirs).install()
    reload_note = reload_problem(config)
    if reload_note:
        log.warning("%s", reload_note)
    hidden = unreadable(dirs)
    if hidden:
        log.info(
            "not readable by %s (everything needed was loaded before the drop): %s",
            config.server.user,
            ", ".join(hidden),
        )


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def check_access(config: Config) -> list[str]:
    """What the current (dropped) user cannot use but the server will need; empty if fine.

    Checked with the real uid after the drop: the CA file must be readable (it is read
    again on reload) and the sqlite cache directory writable (new WAL and journal files).
    """
    problems: list[str] = []
    ca_file = config.mta_sts.ca_file
    if ca_file is not None and not os.access(ca_file, os.R_OK):
        problems.append(f"mta_sts.ca_file {ca_file} is not readable")
    if config.cache.backend == "sqlite":
        state_dir = Path(config.cache.path).parent
        if not os.access(state_dir, os.W_OK | os.X_OK):
            problems.append(f"cache directory {state_dir} is not writable")
        cache_file = Path(config.cache.path)
        if cache_file.exists() and not os.access(cache_file, os.R_OK | os.W_OK):
            problems.append(f"cache file {cache_file} is not readable and writable")
    return problems


def reload_problem(config: Config) -> str | None:
    """Why a SIGHUP reload will fail for the current user (not fatal: it keeps the running
    configuration), or None."""
    source = config.source
    if source.startswith("<") or os.access(source, os.R_OK):
        return None
    return f"configuration file {source} is not readable: SIGHUP reloads will be refused"


def installation_dirs() -> list[str]:
    """The import path's directories, taken before the drop (afterwards a private one
    cannot even be seen to exist)."""
    return [p for p in sys.path if p and os.path.isdir(p)]


def unreadable(dirs: Sequence[str]) -> list[str]:
    """Those of ``dirs`` the current user cannot list and enter."""
    return [p for p in dirs if not os.access(p, os.R_OK | os.X_OK)]


class LateImportWatch(importlib.abc.MetaPathFinder):
    """Logs, once per name, a module imported after the privilege drop.

    It asks the finders behind it, so imports go on as before; it only makes a gap in
    ``preload`` visible: a module found after the drop, or one whose directory the server
    user cannot read (that import fails). Names that do not exist anywhere (libraries
    probe for optional modules) are not worth a line.
    """

    def __init__(self, dirs: Sequence[str] = ()) -> None:
        self.seen: set[str] = set()
        self.dirs = tuple(dirs)  # the import directories that existed before the drop

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in self.seen:
            return None
        self.seen.add(fullname)
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                log.warning("module %s imported after the privilege drop", fullname)
                return spec
        searched = list(path) if path is not None else sys.path
        hidden = unreadable([p for p in searched if self._known(p)])
        if hidden:
            log.error(
                "module %s cannot be imported after the privilege drop: %s not readable",
                fullname,
                ", ".join(hidden),
            )
        return None

    def _known(self, path: str) -> bool:
        return any(path == d or path.startswith(d.rstrip("/") + "/") for d in self.dirs)

    def install(self) -> None:
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)
