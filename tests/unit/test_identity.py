"""
Tests for L{upperecho.identity}: C{--identify} on TCP and UDP, and the
names it accepts.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.error import MessageLengthError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from upperecho import identity
from upperecho.impair import Impairment
from upperecho.tcp import UpperEchoFactory
from upperecho.udp import MAX_PAYLOAD_IPV4, UpperEchoDatagramProtocol


class FakeDatagramTransport:
    """
    Records what the protocol writes.
    """

    def __init__(self) -> None:
        self.written: list[tuple[bytes, Any]] = []

    def write(self, data: bytes, addr: Any) -> None:
        if len(data) > MAX_PAYLOAD_IPV4:
            raise MessageLengthError("message too long")
        self.written.append((data, addr))


class NameTests(SynchronousTestCase):
    """
    The default name and the names allowed.
    """

    def test_default(self) -> None:
        """
        $POD_NAME when set, else the host name.
        """
        self.assertEqual(identity.defaultName({"POD_NAME": "echo-7f9c"}), "echo-7f9c")
        import socket

        self.assertEqual(identity.defaultName({}), socket.gethostname())
        self.assertEqual(identity.defaultName({"POD_NAME": ""}), socket.gethostname())

    def test_invalid(self) -> None:
        """
        Names that could not be told from the reply are refused.
        """
        for good in ("a", "echo-0.node_1", "x" * 253):
            self.assertIsNone(identity.invalidName(good), good)
        for bad in ("", "a b", "a:b", "a\nb", "é", "x" * 254):
            self.assertIsNotNone(identity.invalidName(bad), bad)


class StreamTests(SynchronousTestCase):
    """
    A TCP connection begins with the greeting, then the transform.
    """

    def connect(self, greeting: bytes) -> tuple[Any, StringTransport]:
        factory = UpperEchoFactory(clock=Clock())
        factory.greeting = greeting
        proto = factory.buildProtocol(None)
        assert proto is not None
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_greeting(self) -> None:
        """
        With a greeting, it comes first, once; the replies follow unchanged.
        """
        proto, transport = self.connect(identity.greeting("pod-1"))
        self.assertEqual(transport.value(), b"upperecho pod-1\n")
        proto.dataReceived(b"hello")
        proto.dataReceived(b" world")
        self.assertEqual(transport.value(), b"upperecho pod-1\nHELLO WORLD")

    def test_noGreeting(self) -> None:
        """
        By default the stream is the transform alone.
        """
        proto, transport = self.connect(b"")
        proto.dataReceived(b"hello")
        self.assertEqual(transport.value(), b"HELLO")


class DatagramTests(SynchronousTestCase):
    """
    A UDP reply begins with the name, then the transform.
    """

    def test_prefix(self) -> None:
        """
        Every reply gets the prefix.
        """
        writer = identity.PrefixWriter(identity.replyPrefix("pod-1"))
        proto = UpperEchoDatagramProtocol(rate=0, clock=Clock(), impairment=writer)
        proto.transport = FakeDatagramTransport()  # type: ignore[assignment]
        proto.datagramReceived(b"hello", ("127.0.0.1", 40000))
        self.assertEqual(
            proto.transport.written,  # type: ignore[attr-defined]
            [(b"pod-1: HELLO", ("127.0.0.1", 40000))],
        )

    def test_tooLarge(self) -> None:
        """
        A reply the name makes too large for a datagram is not sent, and is
        counted as a send error.
        """
        writer = identity.PrefixWriter(identity.replyPrefix("pod-1"))
        proto = UpperEchoDatagramProtocol(rate=0, clock=Clock(), impairment=writer)
        proto.transport = FakeDatagramTransport()  # type: ignore[assignment]
        proto.datagramReceived(b"x" * MAX_PAYLOAD_IPV4, ("127.0.0.1", 40000))
        self.assertEqual(proto.transport.written, [])  # type: ignore[attr-defined]
        self.assertEqual(proto.drops["send-error"], 1)

    def test_thenImpairment(self) -> None:
        """
        With an impairment, the prefixed reply goes through it.
        """
        clock = Clock()
        impairment = Impairment(clock, delay=10, seed=1)
        writer = identity.PrefixWriter(identity.replyPrefix("n"), impairment)
        proto = UpperEchoDatagramProtocol(rate=0, clock=clock, impairment=writer)
        proto.transport = FakeDatagramTransport()  # type: ignore[assignment]
        proto.datagramReceived(b"x", ("127.0.0.1", 40000))
        self.assertEqual(proto.transport.written, [])  # type: ignore[attr-defined]
        clock.advance(0.011)
        self.assertEqual(
            proto.transport.written,  # type: ignore[attr-defined]
            [(b"n: X", ("127.0.0.1", 40000))],
        )
