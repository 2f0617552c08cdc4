"""One class per cache backend, whole: memory, SQLite, Redis, PostgreSQL."""
