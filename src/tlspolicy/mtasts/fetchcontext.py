"""Which host a policy fetch resolves under the address guard (a context variable).

Kept apart from ``mtasts.resolver`` (which needs aiohttp) so that ``mtasts.fetch`` can set
it without importing aiohttp. A fetch names its policy host with ``resolving_for``; any
other name the HTTP client resolves meanwhile (a proxy the operator configured) is not the
policy host.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tlspolicy_mtasts_fetch", default=None
)


@contextlib.contextmanager
def resolving_for(host: str) -> Iterator[None]:
    """Within this block (this task), ``host`` is the guarded policy host."""
    token = _CURRENT.set(host)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def guarded(host: str) -> bool:
    """Is ``host`` the policy host of the fetch in progress (or is no fetch naming one)?"""
    current = _CURRENT.get()
    return current is None or current == host.rstrip(".")
