"""Open the TLSRPT store the configuration names (``tlsrpt.store.backend``)."""

from __future__ import annotations

from tlspolicy.config.tlsrpt import TlsrptConfig
from tlspolicy.tlsrpt.sqlite_backend import SqliteReportStore
from tlspolicy.tlsrpt.store import ReportStore


def open_store(config: TlsrptConfig) -> ReportStore:
    """The backend ``config`` names, not yet opened."""
    if config.store_backend == "postgres":
        assert config.store_url is not None  # settings.py requires it
        # asyncpg costs about 4 MB and 0.2 s to import: only for this backend.
        from tlspolicy.tlsrpt.postgres_backend import PostgresReportStore  # noqa: PLC0415

        return PostgresReportStore(config.store_url)
    return SqliteReportStore(config.store_path)
