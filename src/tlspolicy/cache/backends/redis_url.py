"""The ``cache.url`` forms redis-py does not parse itself, and URLs safe to log.

redis-py reads ``redis://``, ``rediss://`` and ``unix://``; ``redis+sentinel://`` is ours:

``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]
[?sentinel_password=PW]``: the sentinels (port 26379 unless given; IPv6 in brackets) are
asked for the master of ``service``; ``user``/``password`` authenticate to that master,
``sentinel_password`` to the sentinels.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from tlspolicy.errors import CacheError

SENTINEL_DEFAULT_PORT = 26379  # redis.io/docs/management/sentinel


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL (see the module docstring for the grammar)."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``redis+sentinel://[[user]:password@]h1[:p1][,h2[:p2]...]/service[/db][?...]``.

    Raises:
        CacheError: the URL does not follow that grammar.
    """
    scheme = "redis+sentinel://"
    if not url.startswith(scheme):
        raise CacheError(f"not a {scheme} URL")
    rest, _, query = url[len(scheme) :].partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        hostlist = netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_parse_host_port(item) for item in hostlist.split(","))
    parts = [unquote(p) for p in path.split("/")] if slash else []
    if not parts or not parts[0] or len(parts) > 2:
        raise CacheError("redis+sentinel URL needs /service_name[/db] after the hosts")
    db = 0
    if len(parts) == 2 and parts[1]:
        if not parts[1].isdigit():
            raise CacheError(f"redis+sentinel URL: database {parts[1]!r} is not a number")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise CacheError(f"redis+sentinel URL: unknown option {unknown[0]!r}")
    sentinel_password = options["sentinel_password"][0] if "sentinel_password" in options else None
    return SentinelUrl(sentinels, parts[0], db, username, password, sentinel_password)


def _parse_host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, bracket, tail = item[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise CacheError(f"redis+sentinel URL: bad host {item!r}")
        port_text = tail[1:]
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise CacheError(f"redis+sentinel URL: empty host in {item!r}")
    if not port_text:
        return host, SENTINEL_DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CacheError(f"redis+sentinel URL: bad port in {item!r}")
    return host, int(port_text)


def redact_url(url: str) -> str:
    """The URL without its password or query (which may hold one), for messages."""
    scheme, sep, rest = url.partition("?")[0].partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return f"{scheme}{sep}{rest}"
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + ':***' if user else '***'}@{host}"
