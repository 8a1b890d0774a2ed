"""
Tests for L{upperecho.impair}, driven through the real datagram protocol,
L{FakeDatagramTransport} and L{Clock}: no sockets, no sleeps, and a seeded
random source, so every count below is the same on every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from upperecho.impair import MAX_PENDING, Impairment
from upperecho.udp import UpperEchoDatagramProtocol

N = 10000


@contextmanager
def capturedEvents() -> Iterator[list[LogEvent]]:
    """
    Collect the log events emitted inside the block.
    """
    events: list[LogEvent] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)


class FastClock(Clock):
    """
    A L{Clock} that keeps its calls sorted by checking only the newest one:
    L{Clock} re-sorts all of them on every call, which makes 10,000 pending
    calls take seconds.  Valid as long as calls are added only by
    C{callLater} (appended, then checked here) and never C{reset}.
    """

    def _sortCalls(self) -> None:
        calls = self.calls
        if len(calls) > 1 and calls[-1].getTime() < calls[-2].getTime():
            super()._sortCalls()


def make(
    rate: float = 0, clock: Clock | None = None, **kwargs: Any
) -> tuple[UpperEchoDatagramProtocol, FakeDatagramTransport, Clock, Impairment]:
    """
    A datagram protocol (rate limit off unless asked) with an impairment.
    """
    if clock is None:
        clock = Clock()
    impairment = Impairment(clock, **kwargs)
    proto = UpperEchoDatagramProtocol(clock=clock, rate=rate, impairment=impairment)
    transport = FakeDatagramTransport()
    proto.makeConnection(transport)
    return proto, transport, clock, impairment


def client(i: int) -> tuple[str, int]:
    """
    The address of the C{i}th of many clients on one host.
    """
    return ("192.0.2.7", 1024 + i % 60000)


def payload(i: int) -> bytes:
    return b"probe %d" % (i,)


def reply(i: int) -> bytes:
    return b"PROBE %d" % (i,)


def sendMany(proto: UpperEchoDatagramProtocol, n: int = N) -> None:
    for i in range(n):
        proto.datagramReceived(payload(i), client(i))


class LossTests(SynchronousTestCase):
    """
    C{loss} drops that percent of replies, the same ones for the same seed.
    """

    def test_twentyPercent(self) -> None:
        """
        Of 10,000 replies at 20 % loss, 2,000 +- 150 are lost (the binomial
        standard deviation is 40), and every other one is sent, once, in
        order, uppercased.
        """
        proto, transport, _, impairment = make(loss=20, seed=1)
        sendMany(proto)
        self.assertTrue(1850 <= impairment.lost <= 2150, impairment.lost)
        self.assertEqual(len(transport.written), N - impairment.lost)
        self.assertEqual(impairment.written, N - impairment.lost)
        self.assertEqual(proto.datagramsOut, N)
        sent = [int(data.split()[1]) for data, _ in transport.written]
        self.assertEqual(sent, sorted(set(sent)))
        for data, addr in transport.written:
            i = int(data.split()[1])
            self.assertEqual((data, addr), (reply(i), client(i)))

    def test_repeatable(self) -> None:
        """
        The same seed loses exactly the same replies; another seed, others.
        """
        runs = []
        for seed in (7, 7, 8):
            proto, transport, _, _ = make(loss=20, seed=seed)
            sendMany(proto, 1000)
            runs.append(transport.written)
        self.assertEqual(runs[0], runs[1])
        self.assertNotEqual(runs[0], runs[2])

    def test_extremes(self) -> None:
        """
        0 % loses nothing; 100 % loses everything.
        """
        proto, transport, _, impairment = make(loss=0, duplicate=0, seed=1)
        sendMany(proto, 100)
        self.assertEqual((len(transport.written), impairment.lost), (100, 0))
        proto, transport, _, impairment = make(loss=100, seed=1)
        sendMany(proto, 100)
        self.assertEqual((transport.written, impairment.lost), ([], 100))

    def test_randomSeedReported(self) -> None:
        """
        Without a seed one is drawn at random and kept, so that the run can
        be repeated with it.
        """
        seeds = {Impairment(Clock(), loss=1).seed for _ in range(5)}
        self.assertGreater(len(seeds), 1)
        seed = Impairment(Clock(), loss=1).seed
        self.assertIsInstance(seed, int)
        self.assertIn(
            f"--udp-seed {seed}", Impairment(Clock(), loss=1, seed=seed).describe()
        )


class DuplicateTests(SynchronousTestCase):
    """
    C{duplicate} sends that percent of replies twice.
    """

    def test_thirtyPercent(self) -> None:
        """
        Of 10,000 replies at 30 % duplication, 3,000 +- 200 are sent twice
        (the standard deviation is 46), the two copies back to back.
        """
        proto, transport, _, impairment = make(duplicate=30, seed=2)
        sendMany(proto)
        self.assertTrue(2800 <= impairment.duplicated <= 3200, impairment.duplicated)
        self.assertEqual(len(transport.written), N + impairment.duplicated)
        counts: dict[bytes, int] = {}
        for data, _ in transport.written:
            counts[data] = counts.get(data, 0) + 1
        self.assertEqual(set(counts), {reply(i) for i in range(N)})
        self.assertEqual(
            sum(1 for c in counts.values() if c == 2), impairment.duplicated
        )
        self.assertEqual(max(counts.values()), 2)

    def test_repeatable(self) -> None:
        """
        The same seed duplicates the same replies.
        """
        runs = []
        for _ in range(2):
            proto, transport, _, _ = make(duplicate=30, loss=10, seed=3)
            sendMany(proto, 1000)
            runs.append(transport.written)
        self.assertEqual(runs[0], runs[1])

    def test_lostIsNeverDuplicated(self) -> None:
        """
        Loss is decided first: at 50 % loss and 100 % duplication, every
        reply comes twice or not at all.
        """
        proto, transport, _, impairment = make(loss=50, duplicate=100, seed=4)
        sendMany(proto, 1000)
        self.assertEqual(impairment.duplicated, 1000 - impairment.lost)
        self.assertEqual(len(transport.written), 2 * impairment.duplicated)

    def test_afterLoopGuardAndRateLimit(self) -> None:
        """
        A datagram the protocol refuses gets no reply, not even a duplicated
        one: the impairment only sees replies that are due.
        """
        proto, transport, _, impairment = make(rate=1, duplicate=100, seed=5)
        proto.datagramReceived(b"echo loop", ("192.0.2.9", 7))
        proto.datagramReceived(b"broadcast", ("255.255.255.255", 4000))
        self.assertEqual(transport.written, [])
        proto.datagramReceived(b"first", ("192.0.2.9", 4000))
        proto.datagramReceived(b"over the rate", ("192.0.2.9", 4000))
        self.assertEqual(
            transport.written,
            [(b"FIRST", ("192.0.2.9", 4000))] * 2,
        )
        self.assertEqual(proto.drops["loop-guard"], 2)
        self.assertEqual(proto.drops["rate-limit"], 1)
        self.assertEqual(impairment.duplicated, 1)


class DelayTests(SynchronousTestCase):
    """
    C{delay} holds every reply back; C{jitter} adds a random extra, which
    reorders them.
    """

    def test_exactDelay(self) -> None:
        """
        With no jitter, each reply is sent exactly C{delay} ms after its
        datagram arrived, in arrival order.
        """
        proto, transport, clock, impairment = make(delay=50, seed=1)
        proto.datagramReceived(b"a", client(1))
        clock.advance(0.010)
        proto.datagramReceived(b"b", client(2))
        self.assertEqual(
            [round(c.getTime(), 9) for c in clock.getDelayedCalls()], [0.05, 0.06]
        )
        clock.advance(0.039)
        self.assertEqual(transport.written, [])
        clock.advance(0.001)
        self.assertEqual(transport.written, [(b"A", client(1))])
        clock.advance(0.010)
        self.assertEqual(transport.written, [(b"A", client(1)), (b"B", client(2))])
        self.assertEqual((impairment.delayed, impairment.pending), (2, 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_jitterRangeAndReordering(self) -> None:
        """
        With jitter, each delay lies in [delay, delay + jitter]; replies sent
        at once then arrive out of order, all of them.
        """
        proto, transport, clock, impairment = make(delay=10, jitter=20, seed=6)
        sendMany(proto, 1000)
        times = [c.getTime() for c in clock.getDelayedCalls()]
        self.assertEqual(len(times), 1000)
        self.assertTrue(all(0.010 <= t <= 0.030 for t in times))
        self.assertGreater(max(times) - min(times), 0.019)
        clock.advance(0.0099)
        self.assertEqual(transport.written, [])
        clock.advance(0.0201)
        order = [int(data.split()[1]) for data, _ in transport.written]
        self.assertEqual(sorted(order), list(range(1000)))
        overtaken = sum(1 for a, b in pairwise(order) if a > b)
        self.assertGreater(overtaken, 100)
        self.assertEqual(impairment.pending, 0)

    def test_jitterRepeatable(self) -> None:
        """
        The same seed gives the same arrival order.
        """
        orders = []
        for _ in range(2):
            proto, transport, clock, _ = make(jitter=5, seed=9)
            sendMany(proto, 200)
            clock.advance(1)
            orders.append(transport.written)
        self.assertEqual(orders[0], orders[1])
        self.assertNotEqual(orders[0], sorted(orders[0], key=lambda w: w[0]))

    def test_duplicateGetsItsOwnDelay(self) -> None:
        """
        The two copies of a duplicated, jittered reply are delayed
        independently.
        """
        proto, transport, clock, impairment = make(
            duplicate=100, delay=10, jitter=10, seed=1
        )
        proto.datagramReceived(b"twice", client(1))
        first, second = sorted(c.getTime() for c in clock.getDelayedCalls())
        self.assertNotEqual(first, second)
        self.assertTrue(0.010 <= first < second <= 0.020)
        clock.advance(first)
        self.assertEqual(transport.written, [(b"TWICE", client(1))])
        clock.advance(second - first)
        self.assertEqual(transport.written, [(b"TWICE", client(1))] * 2)
        self.assertEqual((impairment.duplicated, impairment.delayed), (1, 2))

    def test_pendingBound(self) -> None:
        """
        At most 10,000 replies wait; the 10,001st is dropped and counted, and
        once the queue drains, replies are delayed again.
        """
        self.assertEqual(MAX_PENDING, 10000)
        proto, transport, clock, impairment = make(
            delay=1000, seed=1, clock=FastClock()
        )
        sendMany(proto, MAX_PENDING + 1)
        self.assertEqual(impairment.pending, MAX_PENDING)
        self.assertEqual(len(clock.getDelayedCalls()), MAX_PENDING)
        self.assertEqual((impairment.delayed, impairment.droppedPending), (N, 1))
        clock.advance(1)
        self.assertEqual(len(transport.written), MAX_PENDING)
        self.assertNotIn(reply(MAX_PENDING), {data for data, _ in transport.written})
        proto.datagramReceived(b"again", client(1))
        self.assertEqual((impairment.pending, impairment.droppedPending), (1, 1))

    def test_pendingBytesBound(self) -> None:
        """
        The bytes waiting are bounded too: big replies hit that bound first.
        """
        proto, transport, clock, impairment = make(
            delay=5, seed=1, maxPendingBytes=250_000
        )
        for i in range(5):
            proto.datagramReceived(b"x" * 60_000, client(i))
        self.assertEqual((impairment.pending, impairment.droppedPending), (4, 1))
        clock.advance(0.005)
        self.assertEqual(len(transport.written), 4)
        proto.datagramReceived(b"x" * 60_000, client(9))
        self.assertEqual(impairment.pending, 1)

    def test_stopCancelsPending(self) -> None:
        """
        Stopping the impairment cancels every pending reply: nothing is left
        scheduled and nothing is sent afterwards.
        """
        proto, transport, clock, impairment = make(delay=100, seed=1)
        impairment.startService()
        sendMany(proto, 10)
        self.assertEqual(len(clock.getDelayedCalls()), 10)
        with capturedEvents() as events:
            impairment.stopService()
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(impairment.pending, 0)
        proto.datagramReceived(b"late", client(1))
        clock.advance(1)
        self.assertEqual(transport.written, [])
        self.assertEqual(impairment.droppedPending, 1)
        self.assertIn("10 pending cancelled", formatEvent(events[-1]))


class ConfigurationTests(SynchronousTestCase):
    """
    Values are checked, and starting says loudly that replies are impaired.
    """

    def test_badValues(self) -> None:
        """
        Percentages outside 0..100 and negative or infinite delays are
        refused.
        """
        for kwargs in (
            {"loss": -1},
            {"loss": 101},
            {"duplicate": 100.5},
            {"delay": -1},
            {"jitter": float("inf")},
            {"delay": float("nan")},
        ):
            with self.assertRaises(ValueError, msg=str(kwargs)):
                Impairment(Clock(), **kwargs)

    def test_startLogsOneLine(self) -> None:
        """
        Starting logs exactly one line with every value and the seed.
        """
        impairment = Impairment(
            Clock(), loss=10, duplicate=2.5, delay=3, jitter=5, seed=42
        )
        with capturedEvents() as events:
            impairment.startService()
        self.assertEqual(len(events), 1)
        text = formatEvent(events[0])
        self.assertNotIn("\n", text)
        for part in (
            "UDP replies are impaired",
            "10% lost",
            "2.5% duplicated",
            "delayed 3 ms",
            "jitter 0..5 ms",
            "seed 42",
        ):
            self.assertIn(part, text)

    def test_immediateWithoutDelay(self) -> None:
        """
        Without delay or jitter nothing is scheduled: replies are written at
        once.
        """
        proto, transport, clock, impairment = make(loss=50, duplicate=50, seed=1)
        sendMany(proto, 100)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(impairment.delayed, 0)
        self.assertEqual(len(transport.written), impairment.written)
