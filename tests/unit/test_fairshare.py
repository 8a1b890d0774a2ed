"""
Tests for L{upperecho.fairshare}, alone and in L{UpperEchoFactory} over
L{StringTransport} and L{Clock}: no source can lock another out.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from typing import cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import upperecho
from upperecho.fairshare import MAX_CONNECTIONS, PER_SOURCE, FairShare
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol


class Conn:
    """
    A connection as the fair share sees it: hashable, active or not, with
    the source the fair share gives it.
    """

    source = ""

    def __init__(self, name: str, active: bool = False) -> None:
        self.name = name
        self.active = active

    def __repr__(self) -> str:
        return self.name


def share(limit: int, perSource: int = 0) -> FairShare[Conn]:
    return FairShare(limit, perSource, lambda c: c.active)


class FairShareTests(SynchronousTestCase):
    def fill(self, fs: FairShare[Conn], source: str, n: int) -> list[Conn]:
        conns = [Conn(f"{source}{i}") for i in range(n)]
        for c in conns:
            self.assertEqual(fs.admit(source), (None, None))
            fs.add(c, source)
        return conns

    def test_oneSourceMayTakeAll(self) -> None:
        """
        While nobody else asks, one source gets every slot; one more is
        refused.
        """
        fs = share(3)
        self.fill(fs, "a", 3)
        self.assertEqual(len(fs), 3)
        self.assertEqual(fs.admit("a"), (MAX_CONNECTIONS, None))

    def test_smallerSourceEvictsLongestSilent(self) -> None:
        """
        A source holding fewer than the largest holder gets a slot; the
        largest holder's first connection that has not read since the last
        sweep is given up (and forgotten at once).
        """
        fs = share(3)
        a0, a1, a2 = self.fill(fs, "a", 3)
        a0.active = True
        self.assertEqual(fs.admit("b"), (None, a1))
        self.assertEqual(fs.held("a"), 2)
        self.assertEqual(len(fs), 2)
        # a0 read since the sweep: it went to the back
        self.assertEqual(list(fs._held["a"]), [a2, a0])

    def test_tiedRefused(self) -> None:
        """
        A source tied with the largest holder is refused; one below it is
        admitted.
        """
        fs = share(4)
        self.fill(fs, "a", 2)
        self.fill(fs, "b", 2)
        self.assertEqual(fs.admit("a"), (MAX_CONNECTIONS, None))
        self.assertEqual(fs.admit("b"), (MAX_CONNECTIONS, None))
        reason, victim = fs.admit("c")
        self.assertIsNone(reason)
        self.assertIsNotNone(victim)

    def test_allActive(self) -> None:
        """
        If every connection of the largest holder read since the last sweep,
        the one seen active longest ago goes.
        """
        fs = share(2)
        a0, a1 = self.fill(fs, "a", 2)
        a0.active = a1.active = True
        self.assertEqual(fs.admit("b"), (None, a0))

    def test_seenOrders(self) -> None:
        """
        The sweep's L{FairShare.seen} moves a connection to the back, so the
        front is the one seen active longest ago.
        """
        fs = share(3)
        a0, a1, _ = self.fill(fs, "a", 3)
        fs.seen(a0)
        fs.seen(Conn("unknown"))
        self.assertEqual(fs.admit("b"), (None, a1))

    def test_largestTracked(self) -> None:
        """
        The largest holding follows adds and removes without a scan.
        """
        fs = share(10)
        a = self.fill(fs, "a", 3)
        b = self.fill(fs, "b", 2)
        self.assertEqual(fs.largest(), 3)
        fs.remove(a[0])
        fs.remove(a[1])
        self.assertEqual(fs.largest(), 2)
        for c in b:
            fs.remove(c)
        self.assertEqual(fs.largest(), 1)
        self.assertTrue(fs.remove(a[2]))
        self.assertFalse(fs.remove(a[2]))
        self.assertEqual((fs.largest(), len(fs)), (0, 0))
        self.assertEqual(fs._bySize, {})
        self.assertEqual(fs._held, {})

    def test_addTwice(self) -> None:
        fs = share(3)
        c = Conn("c")
        fs.add(c, "a")
        fs.add(c, "a")
        self.assertEqual(len(fs), 1)

    def test_perSource(self) -> None:
        """
        With a cap, connection N+1 from one source is refused, even with
        slots free; others are not affected.
        """
        fs = share(100, perSource=2)
        self.fill(fs, "a", 2)
        self.assertEqual(fs.admit("a"), (PER_SOURCE, None))
        self.assertEqual(fs.admit("b"), (None, None))

    def test_move(self) -> None:
        """
        A connection re-counted under the source its PROXY header names;
        refused if that source holds its cap already.
        """
        fs = share(10, perSource=1)
        (p0, p1) = (Conn("p0"), Conn("p1"))
        fs.add(p0, "proxy")
        fs.add(p1, "proxy2")
        self.assertIsNone(fs.move(p0, "client"))
        self.assertIsNone(fs.move(p0, "client"))
        self.assertEqual(p0.source, "client")
        self.assertEqual((fs.held("proxy"), fs.held("client")), (0, 1))
        self.assertEqual(fs.move(p1, "client"), PER_SOURCE)
        self.assertEqual(len(fs), 1)
        # a connection already given up is not counted again
        self.assertIsNone(fs.move(p1, "other"))
        self.assertEqual((len(fs), fs.held("other")), (1, 0))
        self.assertEqual(p1.source, "other")

    def test_iterateAndContain(self) -> None:
        """
        The fair share is a collection of the connections it holds, each
        carrying the source it was added under.
        """
        fs = share(10)
        a = self.fill(fs, "a", 2)
        (b,) = self.fill(fs, "b", 1)
        self.assertEqual(sorted(fs, key=repr), [*a, b])
        self.assertEqual([c.source for c in [*a, b]], ["a", "a", "b"])
        self.assertIn(b, fs)
        fs.remove(b)
        self.assertNotIn(b, fs)
        self.assertNotIn(Conn("stranger"), fs)
        self.assertEqual(len(fs), 2)


PEER_A = "192.0.2.7"
PEER_B = "198.51.100.9"


class FactoryTests(SynchronousTestCase):
    """
    The factory admits, evicts and refuses as the fair share says, counts
    and logs it.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.port = 40000

    def connect(
        self, factory: UpperEchoFactory, host: str
    ) -> tuple[UpperEchoProtocol | None, StringTransport]:
        self.port += 1
        cls = IPv6Address if ":" in host else IPv4Address
        peer = cls("TCP", host, self.port)
        proto = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        if proto is not None:
            assert isinstance(proto, UpperEchoProtocol)
            proto.makeConnection(transport)
        return proto, transport

    def test_oneSourceCannotLockOthersOut(self) -> None:
        """
        Three idle connections from A fill C{--max-connections 3}; B is
        still admitted and A's longest-silent connection is aborted, with
        nothing written to it; a fourth from A is refused.
        """
        factory = UpperEchoFactory(maxConnections=3, clock=self.clock)
        a = [self.connect(factory, PEER_A) for _ in range(2)]
        self.clock.advance(factory.sweepInterval)
        # a[2] opens after the sweep, a[0] talks: a[1] is silent longest
        a.append(self.connect(factory, PEER_A))
        a[0][0].dataReceived(b"still here")  # type: ignore[union-attr]
        proto, _ = self.connect(factory, PEER_B)
        self.assertIsNotNone(proto)
        victims = [t for _, t in a if t.disconnected]
        self.assertEqual(victims, [a[1][1]])
        self.assertEqual(a[1][1].value(), b"")
        self.assertEqual(factory.evicted, 1)
        proto, _ = self.connect(factory, PEER_A)
        self.assertIsNone(proto)
        self.assertEqual(factory.refused, 1)
        logged = [e for e in self.events if "make room" in e["log_format"]]
        self.assertEqual(len(logged), 1)
        self.assertEqual(logged[0]["source"], PEER_A)

    def test_evictedGoneFromCount(self) -> None:
        """
        The evicted connection's slot is free at once; its later
        C{connectionLost} does not count it twice.
        """
        factory = UpperEchoFactory(maxConnections=2, clock=self.clock)
        a = [self.connect(factory, PEER_A) for _ in range(2)]
        self.connect(factory, PEER_B)
        self.assertEqual(len(factory.fairShare), 2)
        # given up but not closed yet: still an open connection
        self.assertEqual(len(factory.connections), 3)
        for proto, transport in a:
            if transport.disconnected:
                assert proto is not None
                proto.connectionLost()
        self.assertEqual(len(factory.fairShare), 2)
        self.assertEqual(len(factory.connections), 2)

    def test_ipv6HostIsOneSource(self) -> None:
        """
        Addresses of one IPv6 /64 share one holding.
        """
        factory = UpperEchoFactory(maxConnections=10, maxPerSource=2, clock=self.clock)
        self.connect(factory, "2001:db8::1")
        self.connect(factory, "2001:db8::2")
        proto, _ = self.connect(factory, "2001:db8::3")
        self.assertIsNone(proto)
        proto, _ = self.connect(factory, "2001:db8:0:1::1")
        self.assertIsNotNone(proto)

    def test_perSourceRefused(self) -> None:
        """
        C{--max-connections-per-source}: refused, counted and logged like
        the global limit.
        """
        factory = UpperEchoFactory(maxPerSource=2, clock=self.clock)
        self.connect(factory, PEER_A)
        self.connect(factory, PEER_A)
        proto, _ = self.connect(factory, PEER_A)
        self.assertIsNone(proto)
        self.assertEqual((factory.refusedPerSource, factory.refused), (1, 0))
        logged = [
            e
            for e in self.events
            if e.get("option") == "--max-connections-per-source" and e["limit"] == 2
        ]
        self.assertEqual(len(logged), 1)

    def test_proxiedMovesSource(self) -> None:
        """
        A PROXY header's client becomes the connection's source; over the
        cap, the factory says so and counts it.
        """
        factory = UpperEchoFactory(maxPerSource=1, clock=self.clock)
        p1, _ = self.connect(factory, PEER_A)
        p2, _ = self.connect(factory, "127.0.0.9")
        assert p1 is not None and p2 is not None
        client = IPv4Address("TCP", PEER_B, 1)
        self.assertTrue(factory.proxied(p1, client))
        self.assertEqual(p1.source, PEER_B)
        self.assertFalse(factory.proxied(p2, client))
        self.assertEqual(factory.refusedPerSource, 1)

    def test_sweepFeedsOrder(self) -> None:
        """
        Without an idle timeout the sweep still runs and tells the fair
        share who read, so the victim is the one silent longest.
        """
        factory = UpperEchoFactory(maxConnections=3, idleTimeout=0, clock=self.clock)
        a = [self.connect(factory, PEER_A) for _ in range(3)]
        self.clock.advance(factory.sweepInterval)
        a[0][0].dataReceived(b"x")  # type: ignore[union-attr]
        a[2][0].dataReceived(b"x")  # type: ignore[union-attr]
        self.clock.advance(factory.sweepInterval)
        # a[1] has been silent longest
        self.connect(factory, PEER_B)
        self.assertEqual([t.disconnected for _, t in a], [False, True, False])

    def test_oneEntryPerConnection(self) -> None:
        """
        What upperecho's own code allocates per connection (beyond the
        protocol instance and its transport) is one entry in the fair
        share: no second table of sources, no set of open connections
        beside it (they cost about 130 bytes more per connection).
        """
        n = 4000
        factory = UpperEchoFactory(maxConnections=2 * n, clock=self.clock)
        peer = IPv4Address("TCP", PEER_A, 1)
        transports = [StringTransport(peerAddress=peer) for _ in range(n)]
        protocols = []
        gc.collect()
        tracemalloc.start()
        self.addCleanup(tracemalloc.stop)
        before = tracemalloc.take_snapshot()
        for transport in transports:
            proto = factory.buildProtocol(peer)
            assert proto is not None
            proto.makeConnection(transport)
            protocols.append(proto)
        gc.collect()
        after = tracemalloc.take_snapshot()
        ours = [tracemalloc.Filter(True, os.path.dirname(upperecho.__file__) + "/*")]
        grown = after.filter_traces(ours).compare_to(
            before.filter_traces(ours), "filename"
        )
        perConnection = sum(stat.size_diff for stat in grown) / n
        self.assertEqual(len(factory.connections), n)
        self.assertLess(perConnection, 100)
