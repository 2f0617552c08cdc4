"""Build the running parts from a ``Config``: DNS client, fetcher, cache, service.

The CLI commands and the tests use this one assembly, so ``tlspolicy query`` decides with
exactly the code the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tlspolicy import __version__
from tlspolicy.cache.backend import open_backend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import CacheConfig, Config
from tlspolicy.dnsclient import ResolverClient, system_nameservers
from tlspolicy.mtasts.fetch import PolicyFetcher
from tlspolicy.service import PolicyService


@dataclass
class App:
    config: Config
    dns: ResolverClient
    fetcher: PolicyFetcher
    cache: PolicyCache
    service: PolicyService

    async def aclose(self) -> None:
        await self.service.aclose()
        await self.cache.aclose()
        await self.fetcher.aclose()
        await self.dns.aclose()


def nameservers(config: Config) -> list[tuple[str, int]]:
    return list(config.dns.nameservers) or system_nameservers()


async def build_app(config: Config, *, cache_config: CacheConfig | None = None) -> App:
    """Open everything; ``cache_config`` overrides the cache (``query`` uses memory)."""
    dns = ResolverClient(
        nameservers(config), timeout=config.dns.timeout, udp_size=config.dns.udp_size
    )
    fetcher = PolicyFetcher(
        dns=dns,
        ca_file=config.mta_sts.ca_file,
        allow_private_addresses=config.mta_sts.allow_private_addresses,
        timeout=config.mta_sts.timeout,
        user_agent=f"postfix-tlspolicy/{__version__}",
    )
    cache_cfg = cache_config or config.cache
    cache = PolicyCache(
        open_backend(cache_cfg), hot_entries=cache_cfg.hot_entries, hot_ttl=cache_cfg.hot_ttl
    )
    await cache.open()
    service = PolicyService(config, dns=dns, fetcher=fetcher, cache=cache)
    return App(config, dns, fetcher, cache, service)


def memory_cache(config: Config) -> CacheConfig:
    return replace(config.cache, backend="memory", refresh_ahead=False)
