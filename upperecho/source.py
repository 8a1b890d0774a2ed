# -*- test-case-name: tests.unit.test_source -*-
"""
Who a peer is, for the per-source limits: its I{source}.

One host usually holds one IPv4 address but a whole IPv6 /64, so an IPv6
source is its /64 prefix (counting each address of it separately would let
one host take every slot); an IPv4-mapped IPv6 address (a dual-stack
socket's view of an IPv4 client) is that IPv4 address.  Every UNIX-socket
peer is local and anonymous, so they are all one source.

Also here: the networks trusted to send a PROXY header (C{--proxy-from}).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

__all__ = ["UNIX_SOURCE", "TrustedProxies", "network", "sourceOf"]

#: the one source of every UNIX-socket peer (and of any peer without a host)
UNIX_SOURCE = "unix"

_MAPPED = b"\0" * 10 + b"\xff\xff"
_ZEROS = b"\0" * 8


def sourceOf(address: object) -> str:
    """
    The source of a peer C{address} (an C{IPv4Address}, C{IPv6Address} or
    C{UNIXAddress}, or anything with a C{host}): C{"192.0.2.7"},
    C{"2001:db8:1:2::/64"}, or L{UNIX_SOURCE}.
    """
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return UNIX_SOURCE
    if ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return host
    if packed[:12] == _MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + _ZEROS) + "/64"


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    C{value} (an address, or a network in CIDR notation) as a network; host
    bits are dropped, so C{127.0.0.1/8} is C{127.0.0.0/8}.

    @raise ValueError: if it is neither.
    """
    return ipaddress.ip_network(value, strict=False)


class TrustedProxies:
    """
    The peers allowed to send a PROXY header (C{--proxy-from NET}, repeatable).

    A UNIX-socket peer is local, so it is always trusted; an IPv4-mapped
    IPv6 peer is judged as the IPv4 address it carries.
    """

    def __init__(
        self, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]
    ) -> None:
        self.networks = tuple(networks)

    def __contains__(self, address: object) -> bool:
        host = getattr(address, "host", None)
        if not isinstance(host, str):
            return True
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def __str__(self) -> str:
        return " ".join(str(net) for net in self.networks)
