# -*- test-case-name: tests.unit.test_pktinfo -*-
"""
Replying from the address a datagram was sent to (C{IP_PKTINFO},
C{IPV6_RECVPKTINFO}).

A UDP socket bound to every address (C{0.0.0.0}, or C{::} dual-stack)
receives datagrams sent to any address of the host, but C{sendto} lets the
kernel pick the reply's source address by routing.  On a host with several
addresses (a second interface, a virtual IP, 127.0.0.2 on loopback) a
datagram sent to the second one is answered from the first, and a connected
UDP client (C{nc -u}, upperecho's own client and probe) drops that reply: a
network test then reports loss that is the server's fault.

With the option set, C{recvmsg} returns the datagram's destination as
ancillary data (C{in_pktinfo} or C{in6_pktinfo}), and passing the same
structure to C{sendmsg} makes that address the reply's source.  A socket
bound to one address needs none of this: its replies always come from that
address, so it keeps C{recvfrom}/C{sendto}.
"""

from __future__ import annotations

import socket
import sys

__all__ = [
    "ANCILLARY_SPACE",
    "IP_PKTINFO",
    "ReplySources",
    "enableDestinationInfo",
    "needsDestinationInfo",
]

#: C{IP_PKTINFO}: Python's socket module names it only from 3.13 on, and
#: only on some platforms; its value on Linux is fixed by the kernel ABI
IP_PKTINFO: int | None = getattr(
    socket, "IP_PKTINFO", 8 if sys.platform.startswith("linux") else None
)
IPV6_RECVPKTINFO: int | None = getattr(socket, "IPV6_RECVPKTINFO", None)

#: room for one C{in6_pktinfo} (20 bytes), which also fits C{in_pktinfo} (12)
ANCILLARY_SPACE = socket.CMSG_SPACE(20)

Ancillary = list[tuple[int, int, bytes]]


def needsDestinationInfo(sock: socket.socket) -> bool:
    """
    Whether C{sock} is bound to every address of its family, so that the
    kernel, not the binding, would choose its replies' source address.
    """
    try:
        host = sock.getsockname()[0]
    except OSError:
        return False
    return host in ("0.0.0.0", "::")


def enableDestinationInfo(sock: socket.socket) -> str | None:
    """
    Ask the kernel to report each datagram's destination address on
    C{sock} (an IPv4 or IPv6 UDP socket; an IPv6 one also reports the
    IPv4-mapped destination of IPv4 datagrams when it is dual-stack).

    @return: C{None} if it is on, else why not (for a log line).
    """
    try:
        if sock.family == socket.AF_INET:
            if IP_PKTINFO is None:
                return "this platform has no IP_PKTINFO"
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        elif sock.family == socket.AF_INET6:
            if IPV6_RECVPKTINFO is None:
                return "this platform has no IPV6_RECVPKTINFO"
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        else:
            return f"address family {sock.family!r} has no packet info"
    except OSError as e:
        return f"setting the packet-info option failed: {e}"
    return None


class ReplySources:
    """
    Where the reply to each datagram must come from, decided once per peer
    and destination, so that answering costs one dictionary lookup.

    Most replies need no help: the kernel routes the reply from the very
    address the peer asked (a host with one address, or a peer asking the
    address its route prefers).  For each peer host this asks the kernel
    once which source it would choose (C{connect} on a throw-away UDP
    socket makes the same route lookup as C{sendto}) and remembers, in
    L{routed}, the destination for which that is right: replies to it keep
    the plain C{sendto}.  Any other destination gets the ancillary data for
    C{sendmsg}, built once per destination (L{ancillary}) from the bytes
    received: the interface index is zeroed so the reply is routed as usual
    (an IPv6 link-local address keeps it: it only means something on its
    own link).

    Both tables are keyed by what the network sends, so both are bounded,
    and both are forgotten every L{lifetime} seconds, so that a route or an
    address that changes is learnt again.

    @ivar routed: peer host -> the received packet-info bytes for which the
        kernel's own choice of source is right (C{b""}: none yet).
    @ivar ancillary: received packet-info bytes -> the ancillary data to
        send the reply with.
    """

    #: seconds before the tables are learnt again
    lifetime = 60.0
    #: peers remembered at most (a flood of spoofed sources costs one route
    #: lookup each, and this many entries)
    maxPeers = 4096

    def __init__(self, family: int) -> None:
        self.family = family
        self.routed: dict[str, bytes] = {}
        self.ancillary: dict[bytes, Ancillary] = {}
        self.expires = 0.0

    def refresh(self, now: float) -> None:
        """
        Forget both tables if they are older than L{lifetime}.
        """
        if now >= self.expires:
            self.routed.clear()
            self.ancillary.clear()
            self.expires = now + self.lifetime

    def replyFor(self, received: Ancillary, host: str, port: int) -> Ancillary | None:
        """
        The ancillary data for the reply to a datagram from C{(host, port)}
        that arrived with C{received} (as C{recvmsg} returns it), or C{None}
        if C{sendto} already sends it from the right address.
        """
        for level, kind, raw in received:
            destination = _destination(level, kind, raw)
            if destination is None:
                continue
            routed = self.routed.get(host)
            if routed is None:
                if len(self.routed) >= self.maxPeers:
                    self.routed.clear()
                routed = self.routed[host] = (
                    raw if self._routedSource(host, port) == destination else b""
                )
            if routed == raw:
                return None
            found = self.ancillary.get(raw)
            if found is not None:
                return found
            if len(self.ancillary) >= self.maxPeers:
                self.ancillary.clear()
            reply = self.ancillary[raw] = _replyAncillary(level, kind, raw)
            return reply
        return None

    def _routedSource(self, host: str, port: int) -> bytes | None:
        """
        The address the kernel would send a reply to C{host} from, packed,
        or C{None} if it cannot say.
        """
        try:
            with socket.socket(self.family, socket.SOCK_DGRAM) as probe:
                probe.connect((host, port or 9))
                local = probe.getsockname()[0]
            return socket.inet_pton(self.family, local.partition("%")[0])
        except OSError:
            return None


def _destination(level: int, kind: int, raw: bytes) -> bytes | None:
    """
    The packed local address a datagram was sent to, from its packet info.
    """
    if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(raw) >= 12:
        # struct in_pktinfo {int ipi_ifindex; in_addr ipi_spec_dst, ipi_addr}:
        # ipi_spec_dst is the local address (sendmsg's source)
        return raw[4:8]
    if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(raw) >= 20:
        # struct in6_pktinfo {in6_addr ipi6_addr; unsigned ipi6_ifindex}
        return raw[:16]
    return None


def _replyAncillary(level: int, kind: int, raw: bytes) -> Ancillary:
    """
    The ancillary data that makes C{sendmsg} send from the address in the
    packet info C{raw} (which L{_destination} accepted).
    """
    if level == socket.IPPROTO_IP:
        return [(level, kind, b"\0\0\0\0" + raw[4:12])]
    linkLocal = raw[0] == 0xFE and raw[1] & 0xC0 == 0x80
    return [(level, kind, raw[:20] if linkLocal else raw[:16] + b"\0\0\0\0")]
