"""
Tests for L{upperecho.udp}: echo, loop guard, receive buffer and rate
limit over L{FakeDatagramTransport}; replies sent straight to a plain
port's socket and in bursts (L{UpperEchoPort}); and a hypothesis state
machine of datagrams from every kind of source.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from twisted.internet import protocol, udp
from twisted.internet.address import IPv4Address
from twisted.internet.error import MessageLengthError
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.task import Clock
from twisted.internet.testing import (
    FakeDatagramTransport,
    MemoryReactor,
    MemoryReactorClock,
)
from twisted.trial.unittest import SynchronousTestCase

import upperecho._compat
import upperecho.allocator
import upperecho.tap
import upperecho.tcp
import upperecho.transform
import upperecho.udp
from tests.helpers import requireCompiled
from upperecho.transform import upper
from upperecho.udp import (
    MAX_DATAGRAM,
    MAX_PAYLOAD_IPV4,
    UDP_RECEIVE_BUFFER,
    UpperEchoDatagramProtocol,
    directSocket,
    refusalReason,
)

CLIENT = ("192.0.2.7", 40000)


def make(
    **kwargs: object,
) -> tuple[UpperEchoDatagramProtocol, FakeDatagramTransport, Clock]:
    clock = Clock()
    proto = UpperEchoDatagramProtocol(clock=clock, **kwargs)  # type: ignore[arg-type]
    transport = FakeDatagramTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


class EchoTests(SynchronousTestCase):
    """
    One datagram in, one uppercased datagram out.
    """

    def test_reply(self) -> None:
        """
        The reply goes to the sender's address.
        """
        proto, transport, _ = make()
        proto.datagramReceived(b"hello", CLIENT)
        self.assertEqual(transport.written, [(b"HELLO", CLIENT)])

    def test_empty(self) -> None:
        """
        An empty datagram gets an empty reply.
        """
        proto, transport, _ = make()
        proto.datagramReceived(b"", CLIENT)
        self.assertEqual(transport.written, [(b"", CLIENT)])

    def test_independent(self) -> None:
        """
        Datagrams share no state: half a character stays half a character.
        """
        proto, transport, _ = make()
        proto.datagramReceived(b"a\xc3", CLIENT)
        proto.datagramReceived(b"\xa9b", CLIENT)
        self.assertEqual(transport.written, [(b"A\xc3", CLIENT), (b"\xa9B", CLIENT)])

    def test_unicode(self) -> None:
        """
        Non-ASCII text follows the transform.
        """
        proto, transport, _ = make(encoding="latin-1")
        proto.datagramReceived("ÿé".encode("latin-1"), CLIENT)
        self.assertEqual(transport.written, [("ÿÉ".encode("latin-1"), CLIENT)])

    def test_large(self) -> None:
        """
        A 60,000-byte datagram is answered whole.
        """
        proto, transport, _ = make()
        proto.datagramReceived(b"x" * 60000, CLIENT)
        ((reply, addr),) = transport.written
        self.assertEqual((reply == b"X" * 60000, addr), (True, CLIENT))

    def test_oversizeReply(self) -> None:
        """
        A reply that would not fit in one datagram is not sent, and counted.
        """
        proto, transport, _ = make()
        # "ŉ" is 2 bytes in UTF-8 and its uppercase "ʼN" is 3
        proto.datagramReceived("ŉ".encode() * 30000, CLIENT)
        self.assertEqual(len(transport.written), 0)
        self.assertGreater(len(upper("ŉ".encode() * 30000)), MAX_PAYLOAD_IPV4)
        self.assertEqual(proto.drops["oversize"], 1)

    def test_sendErrorSurvives(self) -> None:
        """
        A failing send is counted and does not escape the protocol.
        """
        proto, transport, _ = make()

        def fail(data: bytes, addr: object) -> None:
            raise MessageLengthError("too long")

        transport.write = fail  # type: ignore[method-assign,assignment]
        proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(proto.drops["send-error"], 1)
        proto.datagramReceived(b"y", CLIENT)
        self.assertEqual(proto.drops["send-error"], 2)


class LoopGuardTests(SynchronousTestCase):
    """
    No replies that could start an echo loop or reflect onto a third party.
    """

    REFUSED = [
        ("192.0.2.7", 0),
        ("192.0.2.7", 7),
        ("192.0.2.7", 19),
        ("192.0.2.7", 53),
        ("192.0.2.7", 123),
        ("192.0.2.7", 1023),
        ("192.0.2.7", 12001),
        ("224.0.0.1", 40000),
        ("239.255.255.250", 40000),
        ("255.255.255.255", 40000),
        ("0.0.0.0", 40000),
        ("0.1.2.3", 40000),
        ("::", 40000),
        ("ff02::1", 40000),
        ("::ffff:224.0.0.1", 40000),
        ("::ffff:255.255.255.255", 40000),
        ("::ffff:0.0.0.0", 40000),
    ]
    ALLOWED = [
        ("192.0.2.7", 1024),
        ("127.0.0.1", 40000),
        ("::1", 40000),
        ("::ffff:127.0.0.1", 40000),
        ("2001:db8::1", 65535),
        ("10.1.2.3", 12002),
    ]

    def test_table(self) -> None:
        """
        Every refused source gets no reply and is counted; every allowed
        source gets its reply.
        """
        proto, transport, _ = make(ownPorts=[12001])
        for addr in self.REFUSED:
            proto.datagramReceived(b"x", addr)
        self.assertEqual(transport.written, [])
        self.assertEqual(proto.drops["loop-guard"], len(self.REFUSED))
        for addr in self.ALLOWED:
            proto.datagramReceived(b"x", addr)
        self.assertEqual(transport.written, [(b"X", a) for a in self.ALLOWED])

    def test_reasons(self) -> None:
        """
        L{refusalReason} says why, and C{None} when a reply is fine.
        """
        self.assertEqual(refusalReason("192.0.2.7", 0), "source port 0")
        self.assertIn("privileged", refusalReason("192.0.2.7", 19) or "")
        self.assertIn("own", refusalReason("192.0.2.7", 5000, {5000}) or "")
        self.assertIn("multicast", refusalReason("224.0.0.1", 5000) or "")
        self.assertIsNone(refusalReason("127.0.0.1", 5000))

    def test_ownPortFromTransport(self) -> None:
        """
        The port actually bound is one of the server's own ports.
        """

        class Bound(FakeDatagramTransport):
            def getHost(self) -> object:

                return IPv4Address("UDP", "0.0.0.0", 5555)

        proto = UpperEchoDatagramProtocol(clock=Clock())
        transport = Bound()
        proto.makeConnection(transport)
        proto.datagramReceived(b"x", ("192.0.2.7", 5555))
        self.assertEqual(transport.written, [])


class ReceiveBufferTests(SynchronousTestCase):
    """
    The UDP socket gets a receive buffer large enough for bursts.
    """

    def test_enlarged(self) -> None:
        """
        On start, SO_RCVBUF of the transport's socket is set to
        L{UDP_RECEIVE_BUFFER}.
        """
        options: list[tuple[int, int, int]] = []

        class Handle:
            def setsockopt(self, level: int, name: int, value: int) -> None:
                options.append((level, name, value))

        class WithHandle(FakeDatagramTransport):
            def getHandle(self) -> Handle:
                return Handle()

        proto = UpperEchoDatagramProtocol(clock=Clock())
        proto.makeConnection(WithHandle())
        self.assertEqual(
            options, [(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)]
        )

    def test_refusedIsLogged(self) -> None:
        """
        A kernel that refuses the option does not stop the service.
        """

        class Handle:
            def setsockopt(self, level: int, name: int, value: int) -> None:
                raise PermissionError(1, "Operation not permitted")

        class WithHandle(FakeDatagramTransport):
            def getHandle(self) -> Handle:
                return Handle()

        proto = UpperEchoDatagramProtocol(clock=Clock())
        transport = WithHandle()
        proto.makeConnection(transport)
        proto.datagramReceived(b"still", CLIENT)
        self.assertEqual(transport.written, [(b"STILL", CLIENT)])


class RateLimitTests(SynchronousTestCase):
    """
    --udp-rate: a token bucket per source IP.
    """

    def test_burstThenRate(self) -> None:
        """
        With rate 50, 500 datagrams at once get 50 replies; a second later
        50 more are allowed.
        """
        proto, transport, clock = make(rate=50)
        for _ in range(500):
            proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 50)
        self.assertEqual(proto.drops["rate-limit"], 450)
        clock.advance(1)
        for _ in range(500):
            proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 100)

    def test_perSource(self) -> None:
        """
        One source over its limit does not affect another; the port is not
        part of the key.
        """
        proto, transport, _ = make(rate=5)
        for port in range(40000, 40010):
            proto.datagramReceived(b"x", ("192.0.2.7", port))
        proto.datagramReceived(b"y", ("192.0.2.8", 40000))
        self.assertEqual(len(transport.written), 6)
        self.assertEqual(transport.written[-1], (b"Y", ("192.0.2.8", 40000)))

    def test_belowOnePerSecond(self) -> None:
        """
        A rate below 1 still refills: at 0.5 per second, one datagram a
        second for 6 s gets a reply every other second.
        """
        proto, transport, clock = make(rate=0.5)
        for _ in range(6):
            proto.datagramReceived(b"x", CLIENT)
            clock.advance(1)
        self.assertEqual(len(transport.written), 3)

    def test_unlimited(self) -> None:
        """
        Rate 0 means no limit.
        """
        proto, transport, _ = make(rate=0)
        for _ in range(5000):
            proto.datagramReceived(b"x", CLIENT)
        self.assertEqual(len(transport.written), 5000)


class ByteRateTests(SynchronousTestCase):
    """
    --udp-byte-rate: a budget of reply bytes per second per source IP.
    """

    def test_default(self) -> None:
        """
        By default a source gets 1 MiB of replies a second: sixteen 65,507
        byte replies, not a thousand.
        """
        proto, transport, _ = make()
        for _ in range(100):
            proto.datagramReceived(b"a" * MAX_PAYLOAD_IPV4, CLIENT)
        self.assertEqual(len(transport.written), 1024 * 1024 // MAX_PAYLOAD_IPV4)
        self.assertEqual(proto.drops["byte-rate"], 100 - len(transport.written))
        self.assertEqual(proto.drops["rate-limit"], 0)

    def test_chargesTheReply(self) -> None:
        """
        The reply's bytes are charged, not the request's: 200 bytes of
        U+0390 come back as 600.
        """
        proto, transport, _ = make(byteRate=1000)
        proto.datagramReceived("\u0390".encode() * 100, CLIENT)
        self.assertEqual(len(transport.written[0][0]), 600)
        proto.datagramReceived("\u0390".encode() * 100, CLIENT)
        self.assertEqual(len(transport.written), 1)
        self.assertEqual(proto.drops["byte-rate"], 1)
        proto.datagramReceived(b"x" * 400, CLIENT)
        self.assertEqual(len(transport.written), 2)

    def test_afterRateLimitAndSize(self) -> None:
        """
        A datagram refused by the rate limit or the size check costs no
        bytes.
        """
        proto, transport, clock = make(rate=1, byteRate=100)
        proto.datagramReceived(b"x" * 10, CLIENT)
        proto.datagramReceived(b"x" * 90, CLIENT)
        self.assertEqual(proto.drops["rate-limit"], 1)
        clock.advance(1)
        proto.datagramReceived(b"x" * 90, CLIENT)
        self.assertEqual(len(transport.written), 2)
        self.assertEqual(proto.drops["byte-rate"], 0)

    def test_perSource(self) -> None:
        proto, transport, _ = make(byteRate=10)
        proto.datagramReceived(b"x" * 10, ("192.0.2.7", 40000))
        proto.datagramReceived(b"x" * 10, ("192.0.2.7", 40001))
        proto.datagramReceived(b"x" * 10, ("192.0.2.8", 40000))
        self.assertEqual(len(transport.written), 2)

    def test_unlimited(self) -> None:
        proto, transport, _ = make(byteRate=0)
        for _ in range(50):
            proto.datagramReceived(b"a" * MAX_PAYLOAD_IPV4, CLIENT)
        self.assertEqual(len(transport.written), 50)


class DirectDatagramTests(SynchronousTestCase):
    """
    Replies go straight to the socket of a plain C{udp.Port}, with the same
    results as C{udp.Port.write}.
    """

    def setUp(self) -> None:
        self.proto = UpperEchoDatagramProtocol(clock=Clock())
        self.port = udp.Port(
            0,
            self.proto,
            interface="127.0.0.1",
            maxPacketSize=MAX_DATAGRAM,
            reactor=MemoryReactor(),
        )
        self.port.startListening()
        self.addCleanup(self.port.connectionLost)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.settimeout(5)
        self.addCleanup(self.client.close)
        self.address = ("127.0.0.1", self.port.getHost().port)

    def exchange(self, payload: bytes) -> bytes:
        self.client.sendto(payload, self.address)
        self.port.doRead()
        return self.client.recv(70000)

    def test_detected(self) -> None:
        """
        A listening C{udp.Port} qualifies; its own socket is used.
        """
        self.assertIs(directSocket(self.port), self.port.socket)
        self.assertIs(self.proto._sock, self.port.socket)

    def test_replies(self) -> None:
        """
        Replies arrive intact, ASCII, UTF-8 and the largest datagram alike.
        """
        self.assertEqual(self.exchange(b"hello"), b"HELLO")
        self.assertEqual(self.exchange("straße".encode()), b"STRASSE")
        self.assertEqual(self.exchange(b"a" * 65507), b"A" * 65507)
        self.assertEqual(self.exchange(b""), b"")
        self.assertEqual(self.proto.datagramsOut, 4)

    def test_notQualified(self) -> None:
        """
        A test transport, a subclass and a connected port use C{write}.
        """

        class Custom(udp.Port):
            pass

        self.assertIsNone(directSocket(FakeDatagramTransport()))
        custom = Custom.__new__(Custom)
        custom.socket = self.port.socket
        custom._connectedAddr = None
        self.assertIsNone(directSocket(custom))
        self.port._connectedAddr = ("127.0.0.1", 9999)
        try:
            self.assertIsNone(directSocket(self.port))
        finally:
            self.port._connectedAddr = None

    def test_sendErrorCounted(self) -> None:
        """
        A failing send is counted as C{udp.Port.write}'s errors are, and does
        not escape.
        """
        sock = self.proto._sock
        assert sock is not None
        self.proto._write(b"x" * 70000, ("127.0.0.1", 40000))
        self.assertEqual(self.proto.drops["send-error"], 1)

    def test_refusedIgnored(self) -> None:
        """
        ECONNREFUSED from C{sendto} is ignored, as C{udp.Port.write} does.
        """

        class Refusing:
            def sendto(self, data: bytes, addr: object) -> int:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

        self.proto._sock = Refusing()  # type: ignore[assignment]
        self.proto.datagramReceived(b"x", ("127.0.0.1", 40000))
        self.assertEqual(self.proto.drops["send-error"], 0)


class _PosixListenUDP(MemoryReactorClock):
    """
    A L{MemoryReactor} whose C{listenUDP} is that of Twisted's POSIX
    reactors, as C{upperecho.udp.listenUDP} looks for.
    """

    listenUDP = PosixReactorBase.listenUDP


class _PlainEcho(protocol.DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.write(data, addr)


class BurstReplyTests(SynchronousTestCase):
    """
    L{UpperEchoPort} has the replies to one read event's datagrams sent back
    to back: the first at once, the rest when the read loop ends, in order,
    never more than C{MAX_HELD_REPLIES} held.
    """

    def setUp(self) -> None:
        self.transport = FakeDatagramTransport()
        self.proto = UpperEchoDatagramProtocol(clock=Clock())
        self.proto.makeConnection(self.transport)

    def receive(self, *payloads: bytes) -> None:
        for i, payload in enumerate(payloads):
            self.proto.datagramReceived(payload, ("127.0.0.1", 40000 + i))

    def test_firstAtOnceRestHeld(self) -> None:
        """
        While holding, only the first reply is written; the others follow,
        in order, when the burst ends, and replies go out at once again.
        """
        self.proto.holdReplies()
        self.receive(b"a", b"b", b"c")
        self.assertEqual(self.transport.written, [(b"A", ("127.0.0.1", 40000))])
        self.proto.sendHeldReplies()
        self.assertEqual(
            self.transport.written,
            [
                (b"A", ("127.0.0.1", 40000)),
                (b"B", ("127.0.0.1", 40001)),
                (b"C", ("127.0.0.1", 40002)),
            ],
        )
        self.receive(b"d")
        self.assertEqual(self.transport.written[-1], (b"D", ("127.0.0.1", 40000)))
        self.assertEqual(self.proto.datagramsOut, 4)

    def test_heldReplyCap(self) -> None:
        """
        Once C{MAX_HELD_REPLIES} are held they are sent without waiting for
        the end of the burst: a long burst holds bounded memory.
        """
        cap = upperecho.udp.MAX_HELD_REPLIES
        self.proto.holdReplies()
        self.receive(*[b"x"] * cap)
        self.assertEqual(len(self.transport.written), 1)
        self.receive(b"y")
        self.assertEqual(len(self.transport.written), cap + 1)
        self.receive(b"z")
        self.assertEqual(len(self.transport.written), cap + 1)
        self.proto.sendHeldReplies()
        self.assertEqual(
            [data for data, _ in self.transport.written],
            [b"X"] * cap + [b"Y", b"Z"],
        )

    def test_refusalsNotHeld(self) -> None:
        """
        A refused datagram holds nothing: the first reply of the burst still
        goes out at once.
        """
        self.proto.holdReplies()
        self.proto.datagramReceived(b"loop", ("127.0.0.1", 53))
        self.receive(b"a")
        self.assertEqual(self.transport.written, [(b"A", ("127.0.0.1", 40000))])
        self.proto.sendHeldReplies()
        self.assertEqual(self.proto.drops["loop-guard"], 1)

    def test_realPortBurst(self) -> None:
        """
        Over loopback, an L{UpperEchoPort} answers a burst read in one
        C{doRead} completely and in order, replying on its own socket, and
        ends the burst.
        """
        proto = UpperEchoDatagramProtocol(clock=Clock())
        port = upperecho.udp.UpperEchoPort(
            0, proto, "127.0.0.1", MAX_DATAGRAM, MemoryReactor()
        )
        port.startListening()
        self.addCleanup(port.connectionLost)
        self.assertIs(proto._sock, port.socket)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        self.addCleanup(client.close)
        address = ("127.0.0.1", port.getHost().port)
        payloads = [f"datagram {i} straße".encode() for i in range(100)]
        for payload in payloads:
            client.sendto(payload, address)
        port.doRead()
        self.assertIsNone(proto._held)
        replies = [client.recv(70000) for _ in payloads]
        self.assertEqual(replies, [upper(p) for p in payloads])
        self.assertEqual(proto.datagramsOut, 100)

    def test_realPortBurstEveryRead(self) -> None:
        """
        L{test_realPortBurst} with each way of reading a burst and sending
        its replies: the C accelerator's C{recv_datagrams} and
        C{send_datagrams} (where built) and Python's (C{recvfrom} through
        Twisted's loop, C{sendto}); and more datagrams than one compiled
        read takes, ending on a datagram too long for the port.
        """
        ways: list[Any] = [(None, None)]
        if upperecho.udp.RECV_DATAGRAMS is not None:
            ways.append((upperecho.udp.RECV_DATAGRAMS, upperecho.udp.SEND_DATAGRAMS))
            ways.append((upperecho.udp.RECV_DATAGRAMS, None))
        elif os.environ.get("UPPERECHO_REQUIRE_ACCEL", "") == "1":
            self.fail("the C accelerator's recv_datagrams is not built")
        for way, send in ways:
            self.patch(upperecho.udp, "RECV_DATAGRAMS", way)
            self.patch(upperecho.udp, "SEND_DATAGRAMS", send)
            proto = UpperEchoDatagramProtocol(clock=Clock())
            port = upperecho.udp.UpperEchoPort(
                0, proto, "127.0.0.1", 100, MemoryReactor()
            )
            port.startListening()
            self.addCleanup(port.connectionLost)
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client.settimeout(5)
            self.addCleanup(client.close)
            address = ("127.0.0.1", port.getHost().port)
            payloads = [b"burst %d" % i for i in range(3 * upperecho.udp.RECV_BURST)]
            for payload in [*payloads, b"x" * 150]:
                client.sendto(payload, address)
            port.doRead()
            replies = [client.recv(70000) for _ in range(len(payloads) + 1)]
            # the long one cut to maxPacketSize (100), as Twisted's recvfrom does
            self.assertEqual(replies, [p.upper() for p in payloads] + [b"X" * 100])
            self.assertEqual(proto.datagramsIn, len(payloads) + 1)
            if way is not None:
                self.assertEqual(
                    len(port._burstBuffer or b""), 100 * upperecho.udp.RECV_BURST
                )

    def test_shortBurstEndsTheRead(self) -> None:
        """
        A compiled read that fills fewer slots than it has ends the read
        loop: no further call only to learn that nothing is left.
        """
        real = requireCompiled(self, "recv_datagrams", upperecho.udp.RECV_DATAGRAMS)
        counts: list[int] = []

        def counting(fd: int, buffer: Any, size: int, space: int) -> Any:
            got = real(fd, buffer, size, space)
            counts.append(len(got))
            return got

        self.patch(upperecho.udp, "RECV_DATAGRAMS", counting)
        proto = UpperEchoDatagramProtocol(clock=Clock())
        port = upperecho.udp.UpperEchoPort(0, proto, "127.0.0.1", 100, MemoryReactor())
        port.startListening()
        self.addCleanup(port.connectionLost)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        address = ("127.0.0.1", port.getHost().port)
        burst = upperecho.udp.RECV_BURST
        for n in (3, burst + 4, burst):
            counts.clear()
            for i in range(n):
                client.sendto(b"%d" % i, address)
            port.doRead()
            expected = [n] if n < burst else [burst, n - burst]
            self.assertEqual(counts, expected, n)

    def test_heldRepliesLeftToSendto(self) -> None:
        """
        A held reply the compiled send leaves (one it does not take, or one
        the kernel refused) goes out through C{_send}, with its errors
        handled there, and the rest after it still go.
        """
        calls: list[int] = []

        def sendSome(fd: int, family: int, replies: list[Any], start: int) -> int:
            # takes every other reply, one at a time
            calls.append(start)
            return start if start % 2 else start + 1

        self.patch(upperecho.udp, "SEND_DATAGRAMS", sendSome)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        self.proto._sock = sock
        sent: list[bytes] = []
        self.patch(self.proto, "_send", lambda data, addr, source: sent.append(data))
        self.proto.holdReplies()
        for i in range(5):
            self.receive(b"r%d" % i)
        self.proto.sendHeldReplies()
        # r0 went at once (not held); of r1..r4, the fake took held[0] and
        # held[2], and _send the others
        self.assertEqual(sent, [b"R0", b"R2", b"R4"])
        self.assertEqual(calls, [0, 2])

    def test_otherProtocol(self) -> None:
        """
        With a protocol that is not upperecho's, the port is a plain
        C{udp.Port}.
        """
        port = upperecho.udp.UpperEchoPort(
            0, _PlainEcho(), "127.0.0.1", MAX_DATAGRAM, MemoryReactor()
        )
        port.startListening()
        self.addCleanup(port.connectionLost)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        self.addCleanup(client.close)
        client.sendto(b"same", ("127.0.0.1", port.getHost().port))
        port.doRead()
        self.assertEqual(client.recv(100), b"same")

    def test_serviceListensWithBurstPort(self) -> None:
        """
        The C{--udp} service of C{twistd upperecho} listens with
        L{upperecho.udp.listenUDP}, so it gets an L{UpperEchoPort}, and
        stops listening when it stops.
        """
        reactor = _PosixListenUDP()
        options = upperecho.tap.Options()
        options.parseOptions(["--udp", "0", "--interface", "127.0.0.1"])
        service = upperecho.tap.makeService(options, reactor=reactor)
        service.startService()
        (port,) = reactor.readers
        self.assertIs(type(port), upperecho.udp.UpperEchoPort)
        service.stopService()
        reactor.advance(0)
        self.assertEqual(reactor.readers, set())

    def test_listenUDP(self) -> None:
        """
        C{listenUDP} makes an L{UpperEchoPort} where the reactor's own
        C{listenUDP} is that of Twisted's POSIX reactors, and otherwise asks
        the reactor.
        """
        posix = _PosixListenUDP()
        port = upperecho.udp.listenUDP(
            posix, 0, UpperEchoDatagramProtocol(clock=Clock()), "127.0.0.1"
        )
        assert isinstance(port, upperecho.udp.UpperEchoPort)
        self.addCleanup(port.connectionLost)
        self.assertIn(port, posix.readers)

        class Other(MemoryReactor):
            def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
                self.asked = (args, kwargs)
                return "theirs"

        other = Other()
        proto = UpperEchoDatagramProtocol(clock=Clock())
        self.assertEqual(upperecho.udp.listenUDP(other, 7, proto), "theirs")
        self.assertEqual(
            other.asked, ((7, proto), {"interface": "", "maxPacketSize": MAX_DATAGRAM})
        )


#: text with multi-byte UTF-8 characters, including ones whose uppercase
#: form is longer (ß, ŉ, ﬁ) and ones with none (中)
TEXT = st.text(
    alphabet=st.sampled_from("aZ 9\nßŉﬁǆ中é€😀ıſ\x00") | st.characters(codec="utf-8"),
    max_size=40,
)


OWN_PORT = 12001


#: source hosts and whether a reply to them is allowed (docs/contract.rst, The UDP service)
HOSTS = {
    "127.0.0.1": True,
    "192.0.2.7": True,
    "10.1.2.3": True,
    "::1": True,
    "2001:db8::1": True,
    "::ffff:192.0.2.8": True,
    "0.0.0.0": False,
    "0.1.2.3": False,
    "224.0.0.1": False,
    "239.255.255.250": False,
    "255.255.255.255": False,
    "::": False,
    "ff02::1": False,
    "::ffff:224.0.0.5": False,
    "::ffff:255.255.255.255": False,
    "::ffff:0.0.0.0": False,
}


PORTS = st.sampled_from([0, 7, 19, 53, 123, 1023, 1024, OWN_PORT, 40000]) | (
    st.integers(min_value=0, max_value=65535)
)


RATE = 5


class DatagramMachine(RuleBasedStateMachine):
    """
    One L{UpperEchoDatagramProtocol} (rate limit 5 per second per source)
    fed datagrams from random sources, guarded and not, with time passing.
    A model token bucket per source says which datagrams get a reply.
    """

    @initialize()
    def start(self) -> None:
        self.clock = Clock()
        self.proto = UpperEchoDatagramProtocol(
            rate=RATE, ownPorts=[OWN_PORT], clock=self.clock
        )
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.tokens: dict[str, tuple[float, float]] = {}

    def allowedByRate(self, host: str) -> bool:
        """
        The model bucket: a burst of C{RATE}, then C{RATE} per second.
        """
        now = self.clock.seconds()
        tokens, then = self.tokens.get(host, (RATE, now))
        tokens = min(RATE, tokens + (now - then) * RATE)
        if tokens >= 1:
            self.tokens[host] = (tokens - 1, now)
            return True
        self.tokens[host] = (tokens, now)
        return False

    @rule(
        host=st.sampled_from(sorted(HOSTS)),
        port=PORTS,
        payload=st.binary(max_size=100) | TEXT.map(str.encode),
    )
    def datagram(self, host: str, port: int, payload: bytes) -> None:
        """
        One datagram: a reply, to the sender, equal to C{upper(payload)},
        if and only if the source passes the loop guard and its bucket.
        """
        before = len(self.transport.written)
        self.proto.datagramReceived(payload, (host, port))
        new = self.transport.written[before:]
        guarded = port < 1024 or port == OWN_PORT or not HOSTS[host]
        if not guarded and self.allowedByRate(host):
            assert new == [(upper(payload), (host, port))]
        else:
            assert new == []

    @rule(seconds=st.floats(min_value=0, max_value=2))
    def time(self, seconds: float) -> None:
        """
        Time passes; buckets refill.
        """
        self.clock.advance(seconds)

    @invariant()
    def counted(self) -> None:
        """
        Every datagram is either answered or counted as a drop.
        """
        if not hasattr(self, "proto"):
            return
        p = self.proto
        assert p.datagramsIn == p.datagramsOut + sum(p.drops.values())
        assert p.datagramsOut == len(self.transport.written)


DatagramMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)


TestDatagram = DatagramMachine.TestCase
