# -*- test-case-name: tests.unit.test_udp -*-
"""
The UDP side of upperecho: one datagram in, one uppercased datagram out.

UDP has no connection: every datagram carries its sender's address, and the
reply is addressed back to it.  That is also what makes a UDP echo dangerous
on an open network (a spoofed source turns it into a reflector, or into one
end of an endless echo loop), so the protocol guards every reply.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, Protocol

from twisted.internet.error import MessageLengthError
from twisted.internet.interfaces import IListeningPort, IReactorTime, IUDPTransport
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.udp import Port as _UDPPort
from twisted.logger import Logger
from twisted.python import log

from upperecho._compat import unconnectedUDPSocket
from upperecho._globalreactor import reactorOr
from upperecho.compiled import compiled
from upperecho.pktinfo import (
    ANCILLARY_SPACE,
    Ancillary,
    ReplySources,
    enableDestinationInfo,
    needsDestinationInfo,
)
from upperecho.throttle import LogThrottle, SourceRateLimiter
from upperecho.transform import (
    checkEncoding,
    isAsciiCompatible,
    upper,
    upperAscii,
)

__all__ = [
    "BYTE_RATE",
    "MAX_DATAGRAM",
    "MAX_HELD_REPLIES",
    "MAX_PAYLOAD_IPV4",
    "MAX_PAYLOAD_IPV6",
    "UDP_RECEIVE_BUFFER",
    "UpperEchoDatagramProtocol",
    "UpperEchoPort",
    "listenUDP",
    "refusalReason",
]

#: read size for the UDP port: large enough that no datagram is truncated
#: (Twisted's default C{maxPacketSize} is 8,192 bytes)
MAX_DATAGRAM = 65535
#: the largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes)
MAX_PAYLOAD_IPV4 = 65507
#: the largest UDP payload over IPv6 without jumbograms (65,535 - 8)
MAX_PAYLOAD_IPV6 = 65527

#: the UDP socket's receive buffer: the default (about 208 KiB) overflows
#: when a burst of datagrams arrives while one reactor pass is busy, and the
#: kernel then drops them silently; the kernel caps this at net.core.rmem_max
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024

#: the default --udp-byte-rate: reply bytes per second to one source IP
BYTE_RATE = 1024 * 1024

#: replies held back during one read event (L{UpperEchoPort}) before they are
#: sent anyway: bounds the memory and the delay a burst can cause
MAX_HELD_REPLIES = 64

_LIMITED_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")

Address = tuple[Any, ...]


class ReplyWriter(Protocol):
    """
    What sends a reply once the protocol has decided one is due: by default
    the transport's C{write}; L{upperecho.impair} substitutes a lossy one.
    """

    def send(
        self, write: Callable[[bytes, Address], object], data: bytes, addr: Address
    ) -> None:
        """
        Send C{data} to C{addr} with C{write}, now, later or not at all.
        """


def refusalReason(host: str, port: int, ownPorts: Iterable[int] = ()) -> str | None:
    """
    The loop guard: why a datagram from C{(host, port)} must get no reply.

    @return: C{None} if a reply is allowed, else a short reason.
    """
    if port == 0:
        return "source port 0"
    if port < 1024:
        return f"privileged source port {port}"
    if port in ownPorts:
        return f"source port {port} is one of this server's own"
    return _addressReason(host)


def _addressReason(host: str) -> str | None:
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            host.partition("%")[0]
        )
    except ValueError:
        return f"source {host!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast:
        return "multicast source address"
    if ip.is_unspecified or (
        isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK
    ):
        return "unspecified source address"
    if ip == _LIMITED_BROADCAST:
        return "broadcast source address"
    return None


def directSocket(transport: object) -> socket.socket | None:
    """
    The socket that L{UpperEchoDatagramProtocol} may C{sendto()} on
    directly, or C{None} when replies must go through C{transport.write}.

    C{udp.Port.write} checks, on every datagram, that the address is an IP
    address of the port's family (two or three C{inet_pton} calls).  A reply
    goes to the address a datagram just came from on the same socket, so
    that check can never fail here, and skipping it is a good part of the
    cost of a datagram.  Only a plain, unconnected C{udp.Port} qualifies
    (or an L{UpperEchoPort}; not another subclass, not multicast, not a test
    transport).
    """
    return unconnectedUDPSocket(transport, (_UDPPort, UpperEchoPort))


class UpperEchoDatagramProtocol(DatagramProtocol):
    """
    Uppercase echo over UDP, guarded against loops and reflection.

    Each datagram is transformed on its own (no state between datagrams).  A
    reply is sent only if the source passes the loop guard (L{refusalReason})
    and its per-IP rate limit, only if it fits in one datagram, and only if
    it fits, whole, in its source's byte budget (so a spoofed source cannot
    turn the server into a 65 MB/s reflector).

    @ivar datagramsIn: datagrams received.
    @ivar datagramsOut: replies handed to the transport (or to the impairment).
    @ivar drops: datagrams that got no reply, by reason.
    """

    _log = Logger()
    noisy = False
    transport: IUDPTransport
    #: the socket to send replies on directly (L{directSocket})
    _sock: socket.socket | None = None
    #: where the reply to the datagram being handled must come from: the
    #: ancillary data for C{sendmsg} (set by L{UpperEchoPort} on a socket
    #: bound to every address), or C{None} to let the kernel choose
    _source: Ancillary | None = None
    #: replies held back until the port's read loop ends (L{holdReplies});
    #: C{None} when replies go out as they are made
    _held: list[tuple[bytes, Address, Ancillary | None]] | None = None
    #: a reply has gone out since L{holdReplies}
    _answered = False

    def __init__(
        self,
        encoding: str = "utf-8",
        rate: float = 1000,
        byteRate: float = BYTE_RATE,
        ownPorts: Iterable[int] = (),
        clock: IReactorTime | None = None,
        impairment: ReplyWriter | None = None,
    ) -> None:
        checkEncoding(encoding)
        clock = reactorOr(clock)
        self.encoding = encoding
        self.ownPorts = set(ownPorts)
        self.impairment = impairment
        self.datagramsIn = 0
        self.datagramsOut = 0
        self.drops = {
            "loop-guard": 0,
            "rate-limit": 0,
            "oversize": 0,
            "byte-rate": 0,
            "send-error": 0,
        }
        self._clock = clock
        self._ascii = isAsciiCompatible(encoding)
        self._limiter = SourceRateLimiter(rate, clock) if rate > 0 else None
        self._byteLimiter = SourceRateLimiter(byteRate, clock) if byteRate > 0 else None
        self._logThrottle = LogThrottle(clock)
        # host -> loop-guard verdict for the address part; bounded below
        self._verdicts: dict[str, str | None] = {}

    def startProtocol(self) -> None:
        """
        Listening starts: find the socket to reply on, and learn this port's
        number for the loop guard.
        """
        self._sock = directSocket(self.transport)
        getHost = getattr(self.transport, "getHost", None)
        if getHost is not None:
            port = getattr(getHost(), "port", None)
            if port:
                self.ownPorts.add(port)
        getHandle = getattr(self.transport, "getHandle", None)
        if getHandle is not None:
            try:
                getHandle().setsockopt(
                    socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER
                )
            except OSError as e:
                self._log.warn("could not enlarge the UDP receive buffer: {e}", e=e)

    def datagramReceived(self, data: bytes, addr: Address) -> None:
        self.datagramsIn += 1
        host, port = addr[0], addr[1]
        if port < 1024 or port in self.ownPorts:
            self._refuse("loop-guard", host, refusalReason(host, port, self.ownPorts))
            return
        try:
            reason = self._verdicts[host]
        except KeyError:
            if len(self._verdicts) >= 4096:
                self._verdicts.clear()
            reason = self._verdicts[host] = _addressReason(host)
        if reason is not None:
            self._refuse("loop-guard", host, reason)
            return
        if self._limiter is not None and not self._limiter.allow(host):
            self._refuse("rate-limit", host, "over --udp-rate")
            return
        # the fast path of transform.upper, inlined: this is the hot loop
        reply = upperAscii(data) if self._ascii else None
        if reply is None:
            reply = upper(data, self.encoding)
        if len(reply) > MAX_PAYLOAD_IPV4:
            limit = (
                MAX_PAYLOAD_IPV6
                if ":" in host and "." not in host
                else MAX_PAYLOAD_IPV4
            )
            if len(reply) > limit:
                self._refuse(
                    "oversize", host, f"reply of {len(reply)} bytes exceeds {limit}"
                )
                return
        if self._byteLimiter is not None and not self._byteLimiter.allow(
            host, len(reply)
        ):
            self._refuse("byte-rate", host, "over --udp-byte-rate")
            return
        self.datagramsOut += 1
        if self.impairment is None:
            self._write(reply, addr)
        else:
            source = self._source
            self.impairment.send(
                self._write if source is None else partial(self._writeFrom, source),
                reply,
                addr,
            )

    def holdReplies(self) -> None:
        """
        A burst of datagrams is about to be read (L{UpperEchoPort}): send the
        first reply at once and hold the rest until L{sendHeldReplies}.

        Each C{sendto} to a peer asleep in C{recv} or C{epoll_wait} makes the
        kernel wake it; replies sent one by one between reads wake a busy
        client once per datagram, and on a virtual machine each wake-up is an
        expensive inter-processor interrupt.  Sent back to back, the replies
        to one burst wake it about once.  The first reply is not held, so a
        lone request is answered exactly as fast as before.
        """
        self._held = []
        self._answered = False

    def sendHeldReplies(self) -> None:
        """
        The burst has been read: send the replies held since L{holdReplies},
        in order, and send replies as they are made again.
        """
        held = self._held
        self._held = None
        if not held:
            return
        sock = self._sock
        sendAll = SEND_DATAGRAMS
        if sendAll is None or sock is None:
            for data, addr, source in held:
                self._send(data, addr, source)
            return
        # in as few system calls as it takes (upperecho/_accel.c); a reply
        # it leaves (an address or source it does not take, or one the
        # kernel refused) goes through _send, which handles its error
        fd, family, start = sock.fileno(), sock.family, 0
        while start < len(held):
            start = sendAll(fd, family, held, start)
            if start < len(held):
                self._send(*held[start])
                start += 1

    def _write(self, data: bytes, addr: Address) -> None:
        source = self._source
        held = self._held
        if held is not None:
            if self._answered:
                held.append((data, addr, source))
                if len(held) >= MAX_HELD_REPLIES:
                    self.sendHeldReplies()
                    self._held = []
                return
            self._answered = True
        self._send(data, addr, source)

    def _writeFrom(self, source: Ancillary, data: bytes, addr: Address) -> None:
        """
        L{_write} for a reply the impairment sends later, when the datagram
        being handled is another one: from the address its own datagram
        was sent to.
        """
        current, self._source = self._source, source
        try:
            self._write(data, addr)
        finally:
            self._source = current

    def _send(self, data: bytes, addr: Address, source: Ancillary | None) -> None:
        sock = self._sock
        try:
            if sock is None:
                self.transport.write(data, addr)
            elif source is None:
                sock.sendto(data, addr)
            else:
                sock.sendmsg((data,), source, 0, addr)
        except ConnectionRefusedError:
            # what udp.Port.write does too: on an unconnected socket this
            # reports an earlier datagram's ICMP error, not this one's
            pass
        except (MessageLengthError, OSError) as e:
            self._refuse("send-error", addr[0], f"send failed: {e}")

    def _refuse(self, kind: str, host: str, why: str | None) -> None:
        self.drops[kind] += 1
        if self._logThrottle.ready((kind, host)):
            self._log.info(
                "no UDP reply to {host} ({why}); further {kind} drops for it "
                "are counted, not logged, for a minute",
                host=host,
                why=why,
                kind=kind,
            )


#: the compiled burst read (upperecho/_accel.c: C{recvmmsg}), or C{None}
#: (L{upperecho.compiled}): a datagram then costs a C{recvmsg} call
RECV_DATAGRAMS: (
    Callable[[int, Any, int, int], list[tuple[bytes, Ancillary, Address]]] | None
) = compiled("recv_datagrams")

#: the compiled burst send (upperecho/_accel.c: C{sendmmsg}) of the replies
#: held during a burst (L{UpperEchoDatagramProtocol.sendHeldReplies}), or
#: C{None}: each then costs a C{sendto} call
SEND_DATAGRAMS: Callable[[int, int, list[Any], int], int] | None = compiled(
    "send_datagrams"
)

#: how many datagrams one L{RECV_DATAGRAMS} call reads at most: a burst of
#: replies to a few dozen clients in one or two calls.  Its buffer is
#: C{RECV_BURST * maxPacketSize} bytes (1 MiB for upperecho's 65,535), one
#: per port; larger bursts read no faster here (a 4 MiB buffer was slower)
RECV_BURST = 16

#: C{recvmsg} errors that end a read loop quietly (as C{udp.Port.doRead}):
#: nothing more to read, or an earlier datagram's ICMP error
_READ_ENDS = frozenset(
    {errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED}
)


class UpperEchoPort(_UDPPort):
    """
    A UDP port that tells an L{UpperEchoDatagramProtocol} when a burst of
    datagrams starts and ends, so that the replies to a burst go out
    together (L{UpperEchoDatagramProtocol.holdReplies}), and, bound to every
    address, answers each datagram from the address it was sent to
    (L{upperecho.pktinfo}).

    Twisted's port already reads every datagram waiting on one read event in
    a loop (up to C{maxThroughput} bytes); this wraps that loop, reads a
    burst of datagrams per system call where the C accelerator can
    (L{RECV_DATAGRAMS}), and on a socket bound to every address reads each
    datagram's destination with it (C{recvmsg} where the accelerator
    cannot).  With any other protocol it is a plain C{udp.Port}.

    @ivar replySources: the reply's source for each destination seen, or
        C{None} where the binding already fixes it (or the platform cannot
        tell).
    """

    _log = Logger()
    replySources: ReplySources | None = None
    #: what L{RECV_DATAGRAMS} reads into: L{RECV_BURST} datagrams of
    #: C{maxPacketSize} bytes (made at the first read)
    _burstBuffer: bytearray | None = None

    def startListening(self) -> None:
        super().startListening()
        proto = self.protocol
        if not isinstance(proto, UpperEchoDatagramProtocol):
            return
        if not needsDestinationInfo(self.socket):
            return
        why = enableDestinationInfo(self.socket)
        if why is None and proto._sock is None:
            why = "replies go through Twisted's transport, which cannot set it"
        if why is not None:
            self._log.warn(
                "UDP replies come from the address the kernel routes by, not "
                "always the one each datagram was sent to: {why}",
                why=why,
            )
            return
        self.replySources = ReplySources(self.socket.family)

    def doRead(self) -> None:
        proto = self.protocol
        if not isinstance(proto, UpperEchoDatagramProtocol):
            super().doRead()
            return
        proto.holdReplies()
        try:
            if self.replySources is None and (
                RECV_DATAGRAMS is None
                # a connected port (or a Twisted without the name: as if)
                or getattr(self, "_connectedAddr", True) is not None
            ):
                super().doRead()
            else:
                self._readFrom(proto, self.replySources)
        finally:
            proto._source = None
            proto.sendHeldReplies()

    def _readFrom(
        self, proto: UpperEchoDatagramProtocol, sources: ReplySources | None
    ) -> None:
        """
        C{udp.Port.doRead}, reading a burst of datagrams per system call
        where the C accelerator has L{RECV_DATAGRAMS} (else one C{recvmsg}
        each), and, given C{sources}, with each datagram's destination: it
        is handed to C{proto} with the source its reply must come from in
        C{proto._source}.

        As Twisted's, it stops once C{maxThroughput} bytes are read, checked
        before each call: a burst read in one call may take it past that by
        up to L{RECV_BURST} - 1 datagrams.
        """
        size = self.maxPacketSize
        received = proto.datagramReceived
        ipv6 = self.addressFamily == socket.AF_INET6
        space = 0 if sources is None else ANCILLARY_SPACE
        routed: dict[str, bytes] = {}
        if sources is not None:
            sources.refresh(proto._clock.seconds())
            routed = sources.routed
        read = 0
        readBurst = RECV_DATAGRAMS
        if readBurst is None:
            readBurst = _recvOne(self.socket)
        elif self._burstBuffer is None or len(self._burstBuffer) != RECV_BURST * size:
            self._burstBuffer = bytearray(RECV_BURST * size)
        fd = self.socket.fileno()
        buffer = self._burstBuffer
        # a compiled read that fills fewer slots than it has found the
        # socket drained: another would only fail (a system call per burst);
        # a datagram that comes after is reported by the next poll
        full = RECV_BURST if readBurst is RECV_DATAGRAMS else 1
        while read < self.maxThroughput:
            try:
                burst = readBurst(fd, buffer, size, space)
            except OSError as e:
                if e.errno in _READ_ENDS:
                    return
                raise
            if not burst:
                return
            for data, ancillary, addr in burst:
                read += len(data)
                if ipv6:
                    # as udp.Port does: (host, port), without flow and scope
                    addr = addr[:2]
                if sources is not None:
                    if not ancillary or routed.get(addr[0]) == ancillary[0][2]:
                        proto._source = None
                    else:
                        proto._source = sources.replyFor(ancillary, addr[0], addr[1])
                try:
                    received(data, addr)
                except BaseException:
                    log.err()
            if len(burst) < full:
                return


def _recvOne(
    sock: socket.socket,
) -> Callable[[int, Any, int, int], list[tuple[bytes, Ancillary, Address]]]:
    """
    L{RECV_DATAGRAMS}'s pure-Python stand-in: one C{recvmsg} per call, the
    same result (a list of one datagram, or none when none is waiting).
    """

    def readOne(
        fd: int, buffer: Any, size: int, space: int
    ) -> list[tuple[bytes, Ancillary, Address]]:
        try:
            data, ancillary, _, addr = sock.recvmsg(size, space)
        except BlockingIOError:
            return []
        return [(data, ancillary, addr)]

    return readOne


def listenUDP(
    reactor: Any,
    port: int,
    protocol: DatagramProtocol,
    interface: str = "",
    maxPacketSize: int = MAX_DATAGRAM,
) -> IListeningPort:
    """
    C{reactor.listenUDP}, with an L{UpperEchoPort}.

    That is what C{listenUDP} of Twisted's POSIX reactors (epoll, poll,
    select, asyncio ...) does with a plain C{udp.Port}; any other reactor,
    or one that provides its own C{listenUDP}, is asked as usual.
    """
    if getattr(type(reactor), "listenUDP", None) is PosixReactorBase.listenUDP:
        listening = UpperEchoPort(port, protocol, interface, maxPacketSize, reactor)
        listening.startListening()
        return listening
    result: IListeningPort = reactor.listenUDP(
        port, protocol, interface=interface, maxPacketSize=maxPacketSize
    )
    return result
