"""
Tests for L{upperecho.scripts.probe.channels}: probes over a TCP
connection played by L{StringTransport}.
"""

from __future__ import annotations

import io
import random

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from upperecho.scripts.probe import (
    ProbeSession,
    ProbeStreamProtocol,
    TextObserver,
)
from upperecho.transform import upper

TARGET = "127.0.0.1:12001"


class StreamTests(SynchronousTestCase):
    """
    Probes over one TCP connection, replies split by length.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.session = ProbeSession(
            self.clock, size=20, timer=self.clock.seconds, rng=random.Random(3)
        )
        self.proto = ProbeStreamProtocol(self.session)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_anySplit(self) -> None:
        """
        However the replies are cut into reads, each is matched to its probe.
        """
        for _ in range(3):
            self.proto.sendProbe(self.clock.seconds())
        reply = upper(self.transport.value())
        self.assertEqual(len(reply), 60)
        for cut in (1, 7, 19, 20, 21, 13):
            self.proto.dataReceived(reply[:cut])
            reply = reply[cut:]
        self.proto.dataReceived(reply)
        self.assertEqual(self.session.tally.received, 3)
        self.assertEqual(self.session.tally.pending, 0)

    def test_echoCorrupted(self) -> None:
        """
        A plain echo server's replies are all corrupted.
        """
        for _ in range(2):
            self.proto.sendProbe(self.clock.seconds())
        self.proto.dataReceived(self.transport.value())
        self.assertEqual(self.session.tally.corrupted, 2)
        self.assertEqual(self.session.tally.received, 0)

    def test_lateOnStream(self) -> None:
        """
        A TCP reply after its timeout is late, and the framing of the next
        reply still holds.
        """
        self.proto.sendProbe(self.clock.seconds())
        self.clock.advance(1.0)
        self.proto.sendProbe(self.clock.seconds())
        reply = upper(self.transport.value())
        self.proto.dataReceived(reply)
        t = self.session.tally
        self.assertEqual((t.lost, t.late, t.received), (1, 1, 1))

    def test_lostConnection(self) -> None:
        """
        The server closing the connection is an error; closing it ourselves
        is not.
        """
        self.proto.connectionLost()
        self.assertIn("connection lost", self.session.error or "")
        other = ProbeSession(self.clock, timer=self.clock.seconds)
        proto = ProbeStreamProtocol(other)
        proto.makeConnection(StringTransport())
        proto.close()
        proto.connectionLost()
        self.assertIsNone(other.error)

    def test_oneShot(self) -> None:
        """
        C{--new-connection}: the connection closes after its one reply, and
        the connect time is reported on the probe's line.
        """
        out = io.StringIO()
        self.session.observer = TextObserver(out, TARGET)
        proto = ProbeStreamProtocol(self.session, oneShot=True)
        transport = StringTransport()
        seq, probe, n = self.session.newProbe(self.clock.seconds())
        self.clock.advance(0.003)
        proto.makeConnection(transport)
        self.session.exchangeStarted(seq, 3.0)
        proto.sendPrepared(seq, probe, n)
        self.clock.advance(0.001)
        proto.dataReceived(upper(transport.value()))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            out.getvalue(),
            f"20 bytes from {TARGET}: seq=1 connect=3.000 ms time=1.000 ms\n",
        )
        self.assertEqual(list(self.session.connects), [3.0])
