"""Operator overrides: per-domain answers that win over lookups until they expire.

``model`` (the value and its text forms), ``book`` (pure matching and decisions),
``settings`` (the ``overrides:`` configuration section), ``store`` (the running set,
re-read from the cache backend every ``cache.hot_ttl``).
"""
