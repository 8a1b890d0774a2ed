"""
Tests for L{upperecho.proxyprotocol}: the PROXY-protocol wrapper over
L{StringTransport}.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.proxyheader import proxyV1, proxyV2
from upperecho.proxyprotocol import (
    HalfCloseableHAProxyFactory,
    HalfCloseableHAProxyWrapper,
)
from upperecho.source import TrustedProxies, network
from upperecho.tcp import UpperEchoFactory


class HAProxyWrapperTests(SynchronousTestCase):
    """
    L{HalfCloseableHAProxyWrapper} over a L{StringTransport}: no sockets.
    """

    def connect(
        self, maxConnections: int = 10
    ) -> tuple[HalfCloseableHAProxyWrapper, StringTransport, list[dict[str, Any]]]:
        factory = HalfCloseableHAProxyFactory(
            UpperEchoFactory(maxConnections=maxConnections, clock=Clock())
        )
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(wrapper, HalfCloseableHAProxyWrapper)
        events: list[dict[str, Any]] = []
        wrapper._log = Logger(observer=cast(ILogObserver, events.append))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        wrapper.makeConnection(transport)
        return wrapper, transport, events

    def test_interface(self) -> None:
        """
        The wrapper tells the transport it can take a half-close.
        """
        wrapper, _, _ = self.connect()
        self.assertTrue(verifyObject(IHalfCloseableProtocol, wrapper))

    def test_halfCloseV1(self) -> None:
        """
        After a v1 header, the real client is the peer; on the proxy's
        half-close the held bytes of an incomplete character are sent as
        they are and the connection closes.
        """
        wrapper, transport, events = self.connect()
        wrapper.dataReceived(proxyV1("203.0.113.7", 5555) + b"hello \xc3")
        self.assertEqual(wrapper.getPeer(), IPv4Address("TCP", "203.0.113.7", 5555))
        self.assertEqual(transport.value(), b"HELLO ")
        self.assertFalse(transport.disconnecting)
        wrapper.readConnectionLost()
        self.assertEqual(transport.value(), b"HELLO \xc3")
        self.assertTrue(transport.disconnecting)
        (event,) = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["client"], "203.0.113.7:5555")
        self.assertEqual(event["proxy"], "127.0.0.1:40000")

    def test_halfCloseV2SplitHeader(self) -> None:
        """
        A v2 header split across reads works too, and the stream after it is
        uppercased.
        """
        wrapper, transport, events = self.connect()
        data = proxyV2("198.51.100.9", 6000) + b"abc"
        for i in range(0, len(data), 5):
            wrapper.dataReceived(data[i : i + 5])
        self.assertEqual(wrapper.getPeer(), IPv4Address("TCP", "198.51.100.9", 6000))
        wrapper.readConnectionLost()
        self.assertEqual(transport.value(), b"ABC")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(events[0]["client"], "198.51.100.9:6000")

    def test_headerOnlyNotLogged(self) -> None:
        """
        A connection with a header and no data (a health check) is not
        logged; its first data is, once.
        """
        wrapper, transport, events = self.connect()
        wrapper.dataReceived(proxyV1("203.0.113.7", 5555))
        self.assertEqual(events, [])
        wrapper.dataReceived(b"a")
        wrapper.dataReceived(b"b")
        self.assertEqual(len(events), 1)
        self.assertEqual(transport.value(), b"AB")

    def test_notProxy(self) -> None:
        """
        A stream that does not start with a PROXY header is closed unanswered.
        """
        wrapper, transport, _ = self.connect()
        wrapper.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_writeConnectionLost(self) -> None:
        """
        When the peer reads no more, the connection is closed.
        """
        wrapper, transport, _ = self.connect()
        wrapper.writeConnectionLost()
        self.assertTrue(transport.disconnecting)

    def test_refusedByMaxConnections(self) -> None:
        """
        When the wrapped factory refuses (C{--max-connections}), the wrapping
        factory refuses too, instead of wrapping C{None}.
        """
        factory = HalfCloseableHAProxyFactory(
            UpperEchoFactory(maxConnections=1, clock=Clock())
        )
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        first = factory.buildProtocol(addr)
        first.makeConnection(StringTransport())
        self.assertIsNone(factory.buildProtocol(addr))


PROXY = IPv4Address("TCP", "127.0.0.1", 40000)


class TrustAndSourceTests(SynchronousTestCase):
    """
    C{--proxy-from} and the per-source limits behind a proxy.
    """

    def test_untrustedRefused(self) -> None:
        """
        A peer outside C{--proxy-from} is refused before any header is read,
        and the factory counts it; a trusted one is served.
        """
        inner = UpperEchoFactory(clock=Clock())
        factory = HalfCloseableHAProxyFactory(
            inner,
            TrustedProxies([network("10.0.0.0/8")]),
            inner.untrustedProxy,
        )
        self.assertIsNone(factory.buildProtocol(PROXY))
        self.assertEqual(inner.refusedProxy, 1)
        self.assertIsNotNone(
            factory.buildProtocol(IPv4Address("TCP", "10.1.2.3", 40000))
        )
        self.assertEqual(len(inner.fairShare), 1)

    def test_anyPeerWithoutProxyFrom(self) -> None:
        factory = HalfCloseableHAProxyFactory(UpperEchoFactory(clock=Clock()))
        self.assertIsNotNone(
            factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
        )

    def connect(
        self, factory: HalfCloseableHAProxyFactory, client: str
    ) -> StringTransport:
        wrapper = factory.buildProtocol(PROXY)
        assert wrapper is not None
        transport = StringTransport(peerAddress=PROXY)
        wrapper.makeConnection(transport)
        wrapper.dataReceived(proxyV1(client, 5555) + b"hi")
        return transport

    def test_perSourceAfterHeader(self) -> None:
        """
        Behind a proxy the source is the header's client: the per-source cap
        applies to it once the header is read, not to the proxy.
        """
        inner = UpperEchoFactory(maxPerSource=2, clock=Clock())
        factory = HalfCloseableHAProxyFactory(inner)
        a = [self.connect(factory, "203.0.113.7") for _ in range(3)]
        b = self.connect(factory, "203.0.113.8")
        self.assertEqual([t.value() for t in a], [b"HI", b"HI", b""])
        self.assertEqual([t.disconnecting for t in a], [False, False, True])
        self.assertEqual(b.value(), b"HI")
        self.assertEqual(inner.refusedPerSource, 1)
        self.assertEqual(inner.fairShare.held("203.0.113.7"), 2)
        self.assertEqual(inner.fairShare.held("127.0.0.1"), 0)

    def test_fairShareBehindProxy(self) -> None:
        """
        Connections count under their clients, so at the global limit a
        new client still gets in by evicting from the largest client.
        """
        inner = UpperEchoFactory(maxConnections=2, clock=Clock())
        factory = HalfCloseableHAProxyFactory(inner)
        a = [self.connect(factory, "203.0.113.7") for _ in range(2)]
        b = self.connect(factory, "203.0.113.8")
        self.assertEqual(b.value(), b"HI")
        self.assertEqual(sum(t.disconnected for t in a), 1)
        self.assertEqual(inner.evicted, 1)
