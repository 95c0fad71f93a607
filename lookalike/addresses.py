"""Which network addresses Lookalike may connect to on someone else's behalf.

A URL from a crawled page or a search form must not make the server fetch from itself, the
local network or a cloud metadata endpoint. Host names are resolved first and every resolved
address is checked (``127.1``, ``0x7f000001`` and ``2130706433`` all resolve to loopback);
the caller then connects to an address that passed, never re-resolving the name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(ValueError):
    """The host resolves to an address Lookalike will not connect to; the message says which."""


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return is_public(address.ipv4_mapped)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


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
            raise AddressRefused(f"refused address {address} for host {host!r} (not public)")


def resolve_public(host: str, port: int, allowed: Iterable[IPAddress] = ()) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses if all are public (or in ``allowed``)."""
    addresses = resolve(host, port)
    check_addresses(host, addresses, allowed)
    return addresses
