"""Where a policy fetch connects: addresses from our ``DnsClient``, the policy host guarded.

The policy host is resolved through the validating resolver, never the system one, and its
non-public addresses are refused unless ``allow_private`` (an SSRF guard: a hostile domain
must not make us GET from our own network; see ``mtasts.addresses``). A proxy the operator
configured is resolved without the guard (the operator chose it); an IP-literal proxy is
used as given. The result is in ``getaddrinfo``'s shape, A records first, for
aiohappyeyeballs to connect to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohappyeyeballs import AddrInfoType

from tlspolicy.dnsstub.client import DnsClient
from tlspolicy.dnsstub.data import AddressRecord
from tlspolicy.errors import DnsError, FetchError
from tlspolicy.mtasts.addresses import is_public_address


async def connect_addresses(
    dns: DnsClient,
    host: str,
    port: int,
    *,
    refuse_private: bool,
    setting: str = "mta_sts.allow_private_addresses",
) -> list[AddrInfoType]:
    """The addresses to try for ``host``; ``refuse_private``: drop the non-public ones (the
    policy host, unless ``allow_private_addresses``; ``setting`` names that key in the
    error, for the TLSRPT reporter's own).

    Raises:
        FetchError: ``dns`` (no address, or the lookups failed), ``private-address``.
    """
    if is_ip(host):  # a proxy named by its address (a policy host never is)
        addresses = [host.strip("[]")]
    else:
        addresses = await _resolve(dns, host)
    if refuse_private:
        public = [a for a in addresses if is_public_address(a)]
        if not public:
            shown = ", ".join(addresses[:4])
            raise FetchError(
                "private-address",
                f"refused to connect to a private address: {host} has no public address "
                f"({shown}; {setting} is off)",
            )
        addresses = public
    return [_addrinfo(address, port) for address in addresses]


async def _resolve(dns: DnsClient, host: str) -> list[str]:
    """A and AAAA of ``host``; one failing family is enough if the other answers."""
    answers = await asyncio.gather(
        dns.query(host.rstrip("."), "A"), dns.query(host.rstrip("."), "AAAA"),
        return_exceptions=True,
    )  # fmt: skip
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
    return addresses


def is_ip(host: str) -> bool:
    """An IP address literal, bracketed or not (``[::1]``, ``192.0.2.1``)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _addrinfo(address: str, port: int) -> AddrInfoType:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
