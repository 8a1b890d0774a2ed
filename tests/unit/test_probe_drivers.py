"""
Tests for L{upperecho.scripts.probe.drivers}: the open-loop load
schedule, driven by L{Clock}.
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import assertNear
from upperecho.scripts.probe import (
    LoadDriver,
    ProbeDatagramProtocol,
    ProbeResult,
    ProbeSession,
    formatText,
)
from upperecho.transform import upper

TARGET = "127.0.0.1:12001"


class LoadTests(SynchronousTestCase):
    """
    Open-loop load mode.
    """

    def load(
        self,
        rate: float,
        duration: float,
        stall: tuple[float, float] | None = None,
        step: float = 0.001,
        channels: int = 1,
    ) -> tuple[ProbeSession, LoadDriver, list[FakeDatagramTransport]]:
        """
        Run a load against a fake server that answers every datagram at the
        end of each clock step, except during C{stall} (start, end), when it
        holds them and answers all at its end.
        """
        clock = Clock()
        session = ProbeSession(
            clock, timeout=1.0, timer=clock.seconds, rng=random.Random(5)
        )
        protos = []
        transports = []
        for _ in range(channels):
            proto = ProbeDatagramProtocol(session)
            transport = FakeDatagramTransport()
            proto.makeConnection(transport)
            protos.append(proto)
            transports.append(transport)
        driver = LoadDriver(clock, clock.seconds, protos, rate, duration)
        driver.begin()
        answered = [0] * channels
        while clock.seconds() < duration + 1.5:
            clock.advance(step)
            now = clock.seconds()
            if stall and stall[0] <= now < stall[1] - 1e-9:
                continue
            for i, (proto, transport) in enumerate(
                zip(protos, transports, strict=True)
            ):
                for packet, _ in transport.written[answered[i] :]:
                    proto.datagramReceived(upper(packet), ("127.0.0.1", 1))
                answered[i] = len(transport.written)
        return session, driver, transports

    def test_openLoop(self) -> None:
        """
        R probes per second for S seconds, spread over the sockets, sent in
        batches per timer callback; the rate is sustained.
        """
        session, driver, transports = self.load(1000, 1.0, step=0.01, channels=2)
        self.assertEqual(driver.sent, 1000)
        self.assertEqual([len(t.written) for t in transports], [500, 500])
        self.assertEqual(session.tally.received, 1000)
        self.assertTrue(driver.sustained)
        assertNear(self, driver.achievedRate, 1000, delta=1)
        # one timer callback per 10 ms step: about 10 probes per batch,
        # latency measured from each probe's scheduled time (<= one step)
        self.assertLessEqual(max(session.rtts), 10.0 + 1e-6)

    def test_stallRaisesLatency(self) -> None:
        """
        A server stalled for 200 ms raises the latencies of the probes
        scheduled during the stall by up to that stall: the probe due at the
        stall's start waits the whole 200 ms (no coordinated omission).
        """
        quiet, _, _ = self.load(1000, 1.0)
        stalled, _, _ = self.load(1000, 1.0, stall=(0.3, 0.5))
        self.assertLessEqual(max(quiet.rtts), 1.0 + 1e-6)
        assertNear(self, max(stalled.rtts), 200.0, delta=1.0)
        slow = [r for r in stalled.rtts if r > 1.0 + 1e-6]
        # every probe scheduled in the 200 ms stall waited for its end
        assertNear(self, len(slow), 200, delta=2)
        assertNear(self, sum(slow) / len(slow), 100.0, delta=2.0)
        self.assertEqual(stalled.tally.received, 1000)

    def test_interrupted(self) -> None:
        """
        SIGINT in load mode: the achieved rate is over the time actually
        run, so stopping early is not mistaken for falling behind.
        """
        clock = Clock()
        session = ProbeSession(clock, timer=clock.seconds)
        proto = ProbeDatagramProtocol(session)
        proto.makeConnection(FakeDatagramTransport())
        driver = LoadDriver(clock, clock.seconds, [proto], 100, 10.0)
        driver.begin()
        for _ in range(50):
            clock.advance(0.01)
        driver.interrupt()
        clock.advance(1.0)
        self.assertTrue(driver.done)
        self.assertEqual(driver.sent, 51)
        assertNear(self, driver.achievedRate, 102, 0.5)
        self.assertTrue(driver.sustained)

    def test_notSustained(self) -> None:
        """
        A client too slow for the rate is reported as such; the rate is not
        lowered silently.
        """
        clock = Clock()
        session = ProbeSession(clock, timer=clock.seconds)

        class Slow:
            def sendProbe(self, origin: float) -> None:
                session.newProbe(origin)
                clock.advance(0.002)  # each send takes 2 ms: 500/s at most

        driver = LoadDriver(clock, clock.seconds, [Slow()], 1000, 1.0, grace=0.5)
        driver.begin()
        for _ in range(3000):
            if driver.done:
                break
            clock.advance(0.001)
        self.assertTrue(driver.done)
        self.assertFalse(driver.sustained)
        self.assertGreater(driver.unsent, 0)
        self.assertLess(driver.achievedRate, 600)
        result = ProbeResult.fromSession(session, TARGET, "udp", 1.5, driver)
        self.assertIn("rate 1000/s NOT sustained", formatText(result))
