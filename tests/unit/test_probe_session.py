"""
Tests for L{upperecho.scripts.probe.session}: how replies to probes over
a fake UDP socket are judged, driven by L{Clock}.
"""

from __future__ import annotations

import io
import random

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from upperecho.scripts.probe import (
    PingDriver,
    ProbeDatagramProtocol,
    ProbeSession,
    TextObserver,
)
from upperecho.scripts.probe.stats import Verdict
from upperecho.transform import upper

TARGET = "127.0.0.1:12001"


class UDPHarness:
    """
    A probe session over one fake UDP socket, with a ping driver.
    """

    def __init__(
        self, count: int = 3, interval: float = 1.0, timeout: float = 1.0
    ) -> None:
        self.clock = Clock()
        self.out = io.StringIO()
        self.session = ProbeSession(
            self.clock,
            size=64,
            timeout=timeout,
            timer=self.clock.seconds,
            rng=random.Random(7),
            observer=TextObserver(self.out, TARGET),
        )
        self.proto = ProbeDatagramProtocol(self.session)
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.driver = PingDriver(
            self.clock,
            lambda: self.proto.sendProbe(self.clock.seconds()),
            count,
            interval,
        )

    def probe(self, i: int) -> bytes:
        """
        The i-th datagram sent (from 0).
        """
        data: bytes = self.transport.written[i][0]
        return data

    def answer(self, i: int, reply: bytes | None = None) -> None:
        """
        Deliver the correct reply (or C{reply}) to the i-th probe.
        """
        data = upper(self.probe(i)) if reply is None else reply
        self.proto.datagramReceived(data, ("127.0.0.1", 12001))

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


class PingUDPTests(SynchronousTestCase):
    """
    Ping mode over UDP.
    """

    def test_received(self) -> None:
        """
        A correct reply gives a ping-style line with its round-trip time.
        """
        h = UDPHarness(count=3)
        h.driver.start()
        h.clock.advance(0.0002)
        h.answer(0)
        self.assertEqual(h.lines(), [f"64 bytes from {TARGET}: seq=1 time=0.200 ms"])
        self.assertEqual(list(h.session.rtts), [0.2 * 1000 / 1000])

    def test_interval(self) -> None:
        """
        Probes go out every INTERVAL seconds, COUNT of them, then the driver
        is done.
        """
        h = UDPHarness(count=3, interval=0.5)
        done: list[bool] = []
        h.driver.onDone = lambda: done.append(True)
        h.driver.start()
        self.assertEqual(len(h.transport.written), 1)
        h.clock.advance(0.499)
        self.assertEqual(len(h.transport.written), 1)
        h.clock.advance(0.001)
        self.assertEqual(len(h.transport.written), 2)
        h.clock.advance(0.5)
        self.assertEqual(len(h.transport.written), 3)
        self.assertEqual(done, [True])
        h.clock.advance(5)
        self.assertEqual(len(h.transport.written), 3)

    def test_timeoutExactly(self) -> None:
        """
        A probe with no reply times out at exactly TIMEOUT, not before.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.clock.advance(0.999)
        self.assertEqual(h.lines(), [])
        self.assertEqual(h.session.tally.lost, 0)
        h.clock.advance(0.001)
        self.assertEqual(h.lines(), ["seq=1 timeout"])
        self.assertEqual(h.session.tally.lost, 1)

    def test_late(self) -> None:
        """
        A reply after the timeout is late: counted lost (and late), never
        received, and its time is not a sample.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.clock.advance(1.5)
        h.answer(0)
        t = h.session.tally
        self.assertEqual((t.received, t.lost, t.late), (0, 1, 1))
        self.assertEqual(list(h.session.rtts), [])
        self.assertEqual(
            h.lines(), ["seq=1 timeout", "seq=1 late reply (after the timeout)"]
        )

    def test_lateBeforeSweep(self) -> None:
        """
        A reply judged by its own time: past the deadline it is late even if
        the timeout timer has not run yet.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.session.stop()  # no timer: only the reply's time decides
        h.clock.advance(1.001)
        self.assertEqual(h.session.reply(1, upper(h.probe(0))), Verdict.LATE)
        self.assertEqual(h.session.tally.received, 0)

    def test_duplicate(self) -> None:
        """
        A second reply to one probe is a duplicate.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.answer(0)
        h.answer(0)
        t = h.session.tally
        self.assertEqual((t.received, t.duplicated), (1, 1))
        self.assertEqual(h.lines()[1], "seq=1 duplicate")

    def test_reordered(self) -> None:
        """
        A reply arriving after a later probe's reply is reordered (and still
        received).
        """
        h = UDPHarness(count=3, interval=0.1)
        h.driver.start()
        h.clock.advance(0.2)
        h.answer(1)
        h.answer(0)
        h.answer(2)
        t = h.session.tally
        self.assertEqual((t.received, t.reordered), (3, 1))
        self.assertTrue(h.lines()[1].endswith("seq=1 time=200.000 ms (reordered)"))

    def test_corrupted(self) -> None:
        """
        A plain echo (right sequence number, bytes not uppercased) is
        corrupted, not received.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.answer(0, h.probe(0))
        t = h.session.tally
        self.assertEqual((t.received, t.corrupted, t.lost), (0, 1, 0))
        self.assertEqual(h.lines(), ["seq=1 corrupted"])

    def test_stray(self) -> None:
        """
        A datagram that is no reply to any probe is counted apart.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.proto.datagramReceived(b"HELLO", ("127.0.0.1", 12001))
        self.assertEqual(h.session.tally.stray, 1)
        self.assertEqual(h.session.tally.pending, 1)

    def test_refused(self) -> None:
        """
        ICMP port unreachable on the connected socket is a fatal error.
        """
        h = UDPHarness(count=1)
        idle: list[bool] = []
        h.session.onIdle = lambda: idle.append(True)
        h.proto.connectionRefused()
        self.assertIn("refused", h.session.error or "")
        self.assertEqual(idle, [True])

    def test_portClosedUnasked(self) -> None:
        """
        The port closing by itself (how the epoll reactor reports an ICMP
        port unreachable) is a refusal; closing it on purpose is not.
        """
        h = UDPHarness(count=1)
        h.proto.stopProtocol()
        self.assertIn("refused", h.session.error or "")
        other = UDPHarness(count=1)
        other.proto._closing = True
        other.proto.stopProtocol()
        self.assertIsNone(other.session.error)

    def test_stopEarly(self) -> None:
        """
        C{stopSending} (SIGINT) stops the schedule; probes in flight still
        get their reply or timeout.
        """
        h = UDPHarness(count=0, interval=1.0)
        h.driver.start()
        h.clock.advance(1.0)
        h.driver.stopSending()
        h.clock.advance(10)
        self.assertEqual(len(h.transport.written), 2)
        self.assertEqual(h.session.tally.lost, 2)
