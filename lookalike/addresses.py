"""Which network addresses Lookalike may connect to on someone else's behalf.

A URL from a crawled page or a search form must not make the server fetch from itself, the
local network or a cloud metadata endpoint. Host names are resolved first and every resolved
address is checked (``127.1``, ``0x7f000001`` and ``2130706433`` all resolve to loopback);
the caller then connects to an address that passed, never re-resolving the name. IPv6 forms
that carry an IPv4 address (IPv4-mapped and -compatible, 6to4, Teredo, NAT64) are judged by
the IPv4 addresses they carry: a relay or translator would deliver them there.

Refusals tell the person asking only that the address is not public: what an internal name
resolves to is for the server's log, not for strangers.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

log = logging.getLogger(__name__)

_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address is the last 32 bits
# RFC 8215 local-use NAT64: the IPv4 address sits where the operator's prefix length puts it.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (and ::, ::1)


class AddressRefused(ValueError):
    """The host resolves to an address Lookalike will not connect to (the message hides which)."""


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        embedded = embedded_ipv4(address)
        if embedded:
            return all(is_public(inner) for inner in embedded)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, that packets to it would end up at."""
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.sixtofour:
        return [address.sixtofour]
    if address.teredo:
        return list(address.teredo)  # (server, client): the client is the tunnel's far end
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    return []


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order; AddressRefused if none."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise AddressRefused(f"cannot resolve host {host!r}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_addresses(
    host: str, addresses: Iterable[IPAddress], allowed: Iterable[IPAddress] = ()
) -> None:
    """Raise AddressRefused unless every address is public or explicitly allowed."""
    permitted = set(allowed)
    for address in addresses:
        if address not in permitted and not is_public(address):
            log.warning("refused address %s for host %r (not public)", address, host)
            raise AddressRefused(f"refused: not a public address (host {host!r})")


def resolve_public(host: str, port: int, allowed: Iterable[IPAddress] = ()) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if all are public (or in ``allowed``)."""
    addresses = resolve(host, port)
    check_addresses(host, addresses, allowed)
    return addresses
