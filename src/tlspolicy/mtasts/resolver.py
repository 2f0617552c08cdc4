"""The aiohttp resolver behind ``PolicyFetcher``: our ``DnsClient`` plus the address guard.

The policy host is resolved through the validating resolver, never the system one, and its
non-public addresses are refused unless ``allow_private`` (see ``mtasts.addresses``). A
fetch names its policy host with ``resolving_for`` (``mtasts.fetchcontext``); any other
name asked for (a proxy the operator configured) is resolved without the guard.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from tlspolicy.dnsclient import DnsClient
from tlspolicy.dnsdata import AddressRecord
from tlspolicy.errors import DnsError, FetchError
from tlspolicy.mtasts.addresses import is_public_address
from tlspolicy.mtasts.fetchcontext import guarded


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that asks our ``DnsClient`` and applies the address guard."""

    def __init__(self, dns: DnsClient, *, allow_private: bool, connect_port: int | None) -> None:
        self._dns = dns
        self._allow_private = allow_private
        self._connect_port = connect_port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        # Anything but a proxy named by the operator is treated as the policy host.
        is_guarded = guarded(host)
        rdtypes = {socket.AF_INET: ("A",), socket.AF_INET6: ("AAAA",)}.get(family, ("A", "AAAA"))
        answers = await asyncio.gather(
            *(self._dns.query(host.rstrip("."), t) for t in rdtypes),
            return_exceptions=True,
        )
        addresses: list[str] = []
        failures: list[str] = []
        for answer in answers:
            if isinstance(answer, DnsError):
                failures.append(str(answer))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                addresses += [r.address for r in answer.records if isinstance(r, AddressRecord)]
        if not addresses:
            detail = "; ".join(failures) if failures else "no A/AAAA records"
            raise FetchError("dns", f"cannot resolve {host}: {detail}")
        if is_guarded and not self._allow_private:
            public = [a for a in addresses if is_public_address(a)]
            if not public:
                shown = ", ".join(addresses[:4])
                raise FetchError(
                    "private-address",
                    f"refused to connect to a private address: {host} has no public address "
                    f"({shown}; mta_sts.allow_private_addresses is off)",
                )
            addresses = public
        if is_guarded and self._connect_port is not None:
            port = self._connect_port
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        return None  # the DnsClient belongs to the caller
