"""
Tests for L{upperecho.throttle}: the per-source token bucket and the log
throttle, driven by L{Clock}.  (The flood-scale checks of both tables are
in C{tests/integration/test_abuse.py}.)
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upperecho.throttle import LogThrottle, SourceRateLimiter


class SourceRateLimiterTests(SynchronousTestCase):
    """
    L{SourceRateLimiter}: a burst of C{rate}, then C{rate} per second.
    """

    def test_burstThenRate(self) -> None:
        """
        A new source may send C{rate} at once, then one more per 1/C{rate}
        seconds.
        """
        clock = Clock()
        limiter = SourceRateLimiter(5, clock)
        self.assertEqual([limiter.allow("a") for _ in range(6)], [True] * 5 + [False])
        clock.advance(0.2)
        self.assertEqual([limiter.allow("a"), limiter.allow("a")], [True, False])

    def test_sourcesApart(self) -> None:
        """
        One source's bucket does not touch another's.
        """
        limiter = SourceRateLimiter(1, Clock())
        self.assertEqual(
            [limiter.allow("a"), limiter.allow("a"), limiter.allow("b")],
            [True, False, True],
        )

    def test_rateBelowOne(self) -> None:
        """
        A rate below 1 still allows one request every 1/C{rate} seconds.
        """
        clock = Clock()
        limiter = SourceRateLimiter(0.5, clock)
        self.assertEqual([limiter.allow("a"), limiter.allow("a")], [True, False])
        clock.advance(2)
        self.assertTrue(limiter.allow("a"))

    def test_cost(self) -> None:
        """
        As a byte budget: each request takes its cost; one that does not fit
        whole takes nothing, and one larger than the burst never fits.
        """
        clock = Clock()
        limiter = SourceRateLimiter(100, clock)
        self.assertTrue(limiter.allow("a", 60))
        self.assertFalse(limiter.allow("a", 60))
        self.assertTrue(limiter.allow("a", 40))
        clock.advance(0.5)
        self.assertTrue(limiter.allow("a", 50))
        self.assertFalse(limiter.allow("b", 101))
        clock.advance(100)
        self.assertFalse(limiter.allow("b", 101))
        self.assertTrue(limiter.allow("b", 100))

    def test_bounded(self) -> None:
        """
        The table forgets its oldest source when full.
        """
        limiter = SourceRateLimiter(1, Clock(), maxSources=3)
        for source in "abcd":
            limiter.allow(source)
        self.assertEqual(len(limiter), 3)
        self.assertTrue(limiter.allow("a"))

    def test_rateMustBePositive(self) -> None:
        """
        A rate of 0 is refused (0 means no limiter at all, decided above).
        """
        self.assertRaises(ValueError, SourceRateLimiter, 0, Clock())


class LogThrottleTests(SynchronousTestCase):
    """
    L{LogThrottle}: one line per key per interval, and a cap over all keys.
    """

    def test_oncePerInterval(self) -> None:
        """
        A key is ready again only after C{interval} seconds.
        """
        clock = Clock()
        throttle = LogThrottle(clock, interval=60)
        self.assertEqual([throttle.ready("k"), throttle.ready("k")], [True, False])
        clock.advance(59)
        self.assertFalse(throttle.ready("k"))
        clock.advance(1)
        self.assertTrue(throttle.ready("k"))

    def test_totalCap(self) -> None:
        """
        At most C{maxLines} keys are ready per interval; the rest are
        counted as suppressed.
        """
        throttle = LogThrottle(Clock(), maxLines=2)
        self.assertEqual(
            [throttle.ready(i) for i in range(4)], [True, True, False, False]
        )
        self.assertEqual(throttle.suppressed, 2)

    def test_bounded(self) -> None:
        """
        The table of keys never holds more than C{maxKeys}.
        """
        throttle = LogThrottle(Clock(), maxKeys=3, maxLines=100)
        for i in range(10):
            throttle.ready(i)
        self.assertLessEqual(len(throttle), 3)
