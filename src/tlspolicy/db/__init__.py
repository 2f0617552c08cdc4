"""Database plumbing shared by the cache and the TLSRPT store: the SQLite worker thread,
file opening and transactions, group commit, and PostgreSQL error mapping."""
