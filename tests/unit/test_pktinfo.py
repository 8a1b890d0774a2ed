"""
Tests for L{upperecho.pktinfo} and the read loop of L{UpperEchoPort} on a
socket bound to every address: each datagram is answered from the address
it was sent to (127.0.0.2 and 127.0.0.3 are on loopback), over IPv4,
IPv6 and dual-stack, in one process.
"""

from __future__ import annotations

import socket
from typing import cast

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import upperecho.udp
from tests.helpers import ipv6Loopback, requireCompiled
from upperecho import pktinfo
from upperecho.pktinfo import (
    IP_PKTINFO,
    ReplySources,
    enableDestinationInfo,
    needsDestinationInfo,
)
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol, UpperEchoPort

#: in_pktinfo as the kernel reports a datagram to 127.0.0.2 on lo (index 1)
TO_2 = b"\x01\0\0\0" + socket.inet_aton("127.0.0.2") * 2
TO_1 = b"\x01\0\0\0" + socket.inet_aton("127.0.0.1") * 2


class ReplySourcesTests(SynchronousTestCase):
    """
    The reply's source is decided once per peer and destination.
    """

    def setUp(self) -> None:
        self.sources = ReplySources(socket.AF_INET)
        self.lookups: list[str] = []

        def routed(host: str, port: int) -> bytes:
            self.lookups.append(host)
            return socket.inet_aton("127.0.0.1")

        self.sources._routedSource = routed  # type: ignore[method-assign]

    def test_routedNeedsNothing(self) -> None:
        """
        A datagram to the address the kernel would answer from anyway gets
        a plain C{sendto} (C{None}), and the peer is remembered.
        """
        got = self.sources.replyFor([(0, 8, TO_1)], "127.0.0.1", 40000)
        self.assertIsNone(got)
        self.assertEqual(self.sources.routed, {"127.0.0.1": TO_1})

    def test_otherAddress(self) -> None:
        """
        A datagram to another address gets C{in_pktinfo} with that address
        as C{ipi_spec_dst} and the interface index zeroed, built once.
        """
        first = self.sources.replyFor([(0, 8, TO_2)], "127.0.0.1", 40000)
        self.assertEqual(first, [(0, 8, b"\0\0\0\0" + TO_2[4:])])
        again = self.sources.replyFor([(0, 8, bytes(TO_2))], "127.0.0.1", 40001)
        self.assertIs(again, first)
        self.assertEqual(self.lookups, ["127.0.0.1"])

    def test_ipv6(self) -> None:
        """
        C{in6_pktinfo}: the interface index is zeroed, except for a
        link-local address, which needs it.
        """
        sources = ReplySources(socket.AF_INET6)
        sources._routedSource = lambda host, port: None  # type: ignore[method-assign]
        six = socket.IPPROTO_IPV6, socket.IPV6_PKTINFO
        loop = socket.inet_pton(socket.AF_INET6, "::1") + b"\x01\0\0\0"
        local = socket.inet_pton(socket.AF_INET6, "fe80::1") + b"\x02\0\0\0"
        self.assertEqual(
            sources.replyFor([(*six, loop)], "::1", 40000),
            [(*six, loop[:16] + b"\0\0\0\0")],
        )
        self.assertEqual(
            sources.replyFor([(*six, local)], "fe80::2", 40000), [(*six, local)]
        )

    def test_unknownAncillary(self) -> None:
        """
        Ancillary data that is not packet info is ignored.
        """
        self.assertIsNone(self.sources.replyFor([(1, 99, b"x")], "127.0.0.1", 1))
        self.assertEqual(self.lookups, [])

    def test_bounded(self) -> None:
        """
        A flood of spoofed peers costs at most C{maxPeers} entries.
        """
        self.sources.maxPeers = 10
        for i in range(25):
            self.sources.replyFor([(0, 8, TO_2)], f"198.51.100.{i}", 40000)
        self.assertLessEqual(len(self.sources.routed), 10)

    def test_refresh(self) -> None:
        """
        The tables are learnt again every C{lifetime} seconds, so a route
        that changed is followed.
        """
        self.sources.refresh(0.0)
        self.sources.replyFor([(0, 8, TO_1)], "127.0.0.1", 40000)
        self.sources.refresh(self.sources.lifetime - 1)
        self.assertEqual(len(self.sources.routed), 1)
        self.sources.refresh(self.sources.lifetime)
        self.assertEqual(self.sources.routed, {})
        self.assertEqual(self.sources.ancillary, {})

    def test_routedSourceAsksTheKernel(self) -> None:
        """
        Without a stand-in, the route lookup gives the loopback address for
        a loopback peer; an address it cannot route gives C{None}.
        """
        sources = ReplySources(socket.AF_INET)
        self.assertEqual(
            sources._routedSource("127.0.0.1", 40000), socket.inet_aton("127.0.0.1")
        )
        self.assertIsNone(sources._routedSource("::1", 40000))


class BindingTests(SynchronousTestCase):
    """
    Only a socket bound to every address needs packet info.
    """

    def test_needs(self) -> None:
        for host, family, needed in [
            ("0.0.0.0", socket.AF_INET, True),
            ("127.0.0.1", socket.AF_INET, False),
        ]:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.bind((host, 0))
                self.assertEqual(needsDestinationInfo(s), needed)

    def test_unavailable(self) -> None:
        """
        Where the platform has no C{IP_PKTINFO}, it says so.
        """
        self.patch(pktinfo, "IP_PKTINFO", None)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            self.assertIn("no IP_PKTINFO", enableDestinationInfo(s) or "")

    def test_otherFamily(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            self.assertIn("no packet info", enableDestinationInfo(s) or "")

    def test_refused(self) -> None:
        """
        A C{setsockopt} that fails is reported, not raised.
        """

        class Failing:
            family = socket.AF_INET

            def setsockopt(self, *args: object) -> None:
                raise OSError(92, "Protocol not available")

        why = enableDestinationInfo(Failing())  # type: ignore[arg-type]
        self.assertIn("Protocol not available", why or "")


class WildcardPortTests(SynchronousTestCase):
    """
    An L{UpperEchoPort} bound to every address answers from the address
    asked, so a connected client accepts the reply.  These tests read with
    the C accelerator's C{recv_datagrams} where it is built;
    L{RecvmsgWildcardPortTests} runs them again with C{recvmsg}.
    """

    #: whether the port reads with the compiled burst read
    compiled = True

    def setUp(self) -> None:
        if self.compiled:
            requireCompiled(self, "recv_datagrams", upperecho.udp.RECV_DATAGRAMS)
        else:
            self.patch(upperecho.udp, "RECV_DATAGRAMS", None)

    def listen(
        self, interface: str, family: int = socket.AF_INET
    ) -> tuple[UpperEchoDatagramProtocol, UpperEchoPort]:
        proto = UpperEchoDatagramProtocol(clock=Clock())
        port = UpperEchoPort(0, proto, interface, MAX_DATAGRAM, MemoryReactor())
        port.startListening()
        self.addCleanup(port.connectionLost)
        return proto, port

    def client(self, family: int, host: str, port: int) -> socket.socket:
        c = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(c.close)
        c.settimeout(5)
        c.connect((host, port))
        return c

    def test_connectedClients(self) -> None:
        """
        Clients connected to 127.0.0.2, 127.0.0.3 and 127.0.0.1 each get
        their reply, from the address they asked.
        """
        if IP_PKTINFO is None:
            raise SkipTest("no IP_PKTINFO here")
        proto, port = self.listen("0.0.0.0")
        self.assertIsNotNone(port.replySources)
        number = port.getHost().port
        clients = [
            self.client(socket.AF_INET, f"127.0.0.{i}", number) for i in (2, 3, 1)
        ]
        for i, c in enumerate(clients):
            c.send(b"hello %d" % i)
        port.doRead()
        for i, c in enumerate(clients):
            self.assertEqual(c.recv(100), b"HELLO %d" % i)
        self.assertEqual(proto.datagramsOut, 3)
        self.assertIsNone(proto._source)

    def test_sameClientTwoAddresses(self) -> None:
        """
        One unconnected socket asking two addresses gets each reply from
        the address it asked.
        """
        if IP_PKTINFO is None:
            raise SkipTest("no IP_PKTINFO here")
        _, port = self.listen("0.0.0.0")
        number = port.getHost().port
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(c.close)
        c.settimeout(5)
        c.bind(("127.0.0.1", 0))
        for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"):
            c.sendto(b"x", (host, number))
            port.doRead()
            self.assertEqual(c.recvfrom(10), (b"X", (host, number)))

    def test_dualStack(self) -> None:
        """
        Bound to C{::}, an IPv4 client asking 127.0.0.2 and an IPv6 client
        asking ::1 are both answered from the address they asked.
        """
        if not ipv6Loopback():
            raise SkipTest("no IPv6 loopback")
        _, port = self.listen("::")
        self.assertIsNotNone(port.replySources)
        number = port.getHost().port
        four = self.client(socket.AF_INET, "127.0.0.2", number)
        six = self.client(socket.AF_INET6, "::1", number)
        four.send(b"four")
        six.send(b"six")
        port.doRead()
        self.assertEqual(four.recv(10), b"FOUR")
        self.assertEqual(six.recv(10), b"SIX")

    def test_boundToOneAddress(self) -> None:
        """
        Bound to one address, the port keeps C{recvfrom}/C{sendto}.
        """
        _, port = self.listen("127.0.0.2")
        self.assertIsNone(port.replySources)
        c = self.client(socket.AF_INET, "127.0.0.2", port.getHost().port)
        c.send(b"x")
        port.doRead()
        self.assertEqual(c.recv(10), b"X")

    def test_fallbackLoggedOnce(self) -> None:
        """
        Where packet info cannot be had, replies work as before and start-up
        says why, once.
        """
        self.patch(upperecho.udp, "enableDestinationInfo", lambda sock: "not here")
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        _, port = self.listen("0.0.0.0")
        self.assertIsNone(port.replySources)
        warnings = [e for e in events if e.get("why") == "not here"]
        self.assertEqual(len(warnings), 1)
        c = self.client(socket.AF_INET, "127.0.0.1", port.getHost().port)
        c.send(b"x")
        port.doRead()
        self.assertEqual(c.recv(10), b"X")

    def test_impairedReplyKeepsItsSource(self) -> None:
        """
        A reply the impairment sends later still comes from the address its
        own datagram asked, whatever datagram is being handled then.
        """
        if IP_PKTINFO is None:
            raise SkipTest("no IP_PKTINFO here")
        later: list[tuple[object, bytes, object]] = []

        class Later:
            def send(self, write: object, data: bytes, addr: object) -> None:
                later.append((write, data, addr))

        proto = UpperEchoDatagramProtocol(clock=Clock(), impairment=Later())
        port = UpperEchoPort(0, proto, "0.0.0.0", MAX_DATAGRAM, MemoryReactor())
        port.startListening()
        self.addCleanup(port.connectionLost)
        c = self.client(socket.AF_INET, "127.0.0.3", port.getHost().port)
        c.send(b"late")
        port.doRead()
        self.assertEqual(len(later), 1)
        write, data, addr = later[0]
        proto._source = None
        write(data, addr)  # type: ignore[operator]
        self.assertEqual(c.recv(10), b"LATE")
        self.assertIsNone(proto._source)


class RecvmsgWildcardPortTests(WildcardPortTests):
    """
    L{WildcardPortTests} reading with Python's C{recvmsg}: what runs where
    the C accelerator is not built.
    """

    compiled = False
