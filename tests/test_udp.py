"""
Tests for L{upperecho.udp}, driven through L{FakeDatagramTransport} and
L{Clock}: no sockets, no sleeps.
"""

from __future__ import annotations

import socket

from twisted.internet.error import MessageLengthError
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from upperecho.transform import upper
from upperecho.udp import (
    MAX_PAYLOAD_IPV4,
    UDP_RECEIVE_BUFFER,
    UpperEchoDatagramProtocol,
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
                from twisted.internet.address import IPv4Address

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
