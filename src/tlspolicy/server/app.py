"""Build the running parts from a ``Config``: DNS client, fetcher, cache, service.

The CLI commands and the tests use this one assembly, so ``tlspolicy query`` decides with
exactly the code the server runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tlspolicy import __version__
from tlspolicy.cache.factory import open_backend
from tlspolicy.cache.store import PolicyCache
from tlspolicy.config import BackendName, CacheConfig, Config
from tlspolicy.control.store import OverrideStore
from tlspolicy.dnsstub.client import DnsClient, ResolverClient, system_nameservers
from tlspolicy.dnsstub.share import SharedAnswers
from tlspolicy.metrics.sink import NULL_METRICS, MetricsSink, NullMetrics
from tlspolicy.mtasts.fetch import PolicyFetcher
from tlspolicy.server.answers import Answerer
from tlspolicy.service.instrument import CountingDns, CountingFetcher
from tlspolicy.service.service import PolicyService


@dataclass
class App:
    config: Config
    dns: DnsClient
    fetcher: PolicyFetcher
    cache: PolicyCache
    service: PolicyService
    answers: Answerer

    def reconfigure(self, config: Config) -> None:
        """Apply what can change without a restart (a reload): the service's maps,
        overrides, timeouts and cache rules, the policy fetcher's ``mta_sts`` settings.
        Raises ``ConfigError`` (an unreadable CA file) before anything changed."""
        sts = config.mta_sts
        self.fetcher.reconfigure(
            ca_file=sts.ca_file, allow_private_addresses=sts.allow_private_addresses,
            timeout=sts.timeout,
        )  # fmt: skip
        self.service.reconfigure(config)
        self.config = config

    async def aclose(self) -> None:
        await self.service.aclose()
        await self.cache.aclose()
        await self.fetcher.aclose()
        await self.dns.aclose()


def nameservers(config: Config) -> list[tuple[str, int]]:
    return list(config.dns.nameservers) or system_nameservers()


async def build_app(
    config: Config,
    *,
    cache_config: CacheConfig | None = None,
    metrics: MetricsSink = NULL_METRICS,
    recover_cache: bool = True,
    open_cache: bool = True,
) -> App:
    """Build everything; ``cache_config`` overrides the cache (``query`` uses memory).

    ``open_cache=False`` leaves the cache for the caller to open: the server builds the app
    (CA files, modules) as root, drops privileges, then opens the cache as the new user.
    """
    resolver = ResolverClient(
        nameservers(config), timeout=config.dns.timeout, udp_size=config.dns.udp_size
    )
    # Counted by outcome for the metrics; with the null sink (no metrics_listen) there is
    # nothing to count, and every query saves a layer.
    dns: DnsClient = resolver if type(metrics) is NullMetrics else CountingDns(resolver, metrics)
    # Lookups share questions in flight and reuse answers for seconds (dnsshare.py); the
    # resolver self-check and `tlspolicy check` keep asking ``dns`` itself.
    shared_dns = SharedAnswers(dns)
    policy_fetcher = PolicyFetcher(
        dns=shared_dns,
        ca_file=config.mta_sts.ca_file,
        allow_private_addresses=config.mta_sts.allow_private_addresses,
        timeout=config.mta_sts.timeout,
        user_agent=f"postfix-tlspolicy/{__version__}",
    )
    fetcher = CountingFetcher(policy_fetcher, metrics)
    cache_cfg = cache_config or config.cache
    backend = open_backend(cache_cfg, recover=recover_cache)
    cache = PolicyCache(backend, hot_entries=cache_cfg.hot_entries, hot_ttl=cache_cfg.hot_ttl)
    if open_cache:
        await cache.open()
    # Overrides live in the same backend, re-read every hot_ttl (overrides.store).
    overrides = OverrideStore(backend, config.overrides, interval=cache_cfg.hot_ttl)
    service = PolicyService(
        config, dns=shared_dns, fetcher=fetcher, cache=cache, metrics=metrics, overrides=overrides
    )
    return App(config, dns, policy_fetcher, cache, service, Answerer(service, metrics=metrics))


def memory_cache(config: Config) -> CacheConfig:
    return replace(config.cache, backend=BackendName.MEMORY, refresh_ahead=False)
