"""Which IP addresses a policy fetch may connect to: the SSRF guard's judgement, pure.

A hostile domain must not make us GET from our own network, so only globally routable
unicast addresses count as public. ``mtasts.resolver`` applies the guard.
"""

from __future__ import annotations

import ipaddress

# RFC 6052 §2.1 well-known NAT64 prefix: the low 32 bits are an IPv4 address.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# IANA IPv4/IPv6 Special-Purpose Address Registries (RFC 6890 and updates) that are not
# globally reachable. Listed explicitly because ``ip.is_global`` differs between Python
# patch releases (3.11.10 and 3.12.4 changed it).
NON_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",  # RFC 6598 shared address space (CGNAT)
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
        "::/127",  # unspecified and loopback
        "::/96",  # deprecated IPv4-compatible addresses
        "64:ff9b:1::/48",  # RFC 8215 local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments (Teredo, ORCHID, ...)
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique-local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)


def is_public_address(address: str) -> bool:
    """True when ``address`` is a globally routable unicast IP address.

    IPv4-mapped, NAT64 (64:ff9b::/96) and 6to4 addresses are judged by the IPv4 address
    they carry. Anything that is not an IP address is not public.
    """
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(str(ip.ipv4_mapped))
        if ip in NAT64_PREFIX:
            return is_public_address(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.sixtofour is not None:
            return is_public_address(str(ip.sixtofour))
    if any(ip in net for net in NON_PUBLIC_NETWORKS):
        return False
    return ip.is_global and not (
        ip.is_multicast
        or ip.is_private
        or ip.is_reserved
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_unspecified
    )
