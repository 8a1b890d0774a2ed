"""
Tests for L{upperecho.scripts.probe.stats}: table cases and hypothesis properties for the
percentiles, the histogram and the probe classification.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import assertNear
from upperecho.scripts.probe.stats import (
    BUCKET_BOUNDS,
    Distribution,
    Tally,
    Verdict,
    bucketBound,
    histogram,
    percentile,
)

durations = st.lists(
    st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False),
    max_size=300,
)

# events for the tally: ("send",), ("reply", seq, correct, inTime), ("timeout", seq)
events = st.lists(
    st.one_of(
        st.just(("send", 0, False, False)),
        st.tuples(st.just("reply"), st.integers(-2, 40), st.booleans(), st.booleans()),
        st.tuples(
            st.just("timeout"), st.integers(-2, 40), st.just(False), st.just(False)
        ),
    ),
    max_size=200,
)


class PercentileTests(SynchronousTestCase):
    """
    Nearest-rank percentiles.
    """

    def test_nearestRank(self) -> None:
        """
        The p-th percentile of n values is the value of rank ceil(p/100*n).
        """
        values = [float(v) for v in range(1, 11)]
        self.assertEqual(percentile(values, 50), 5.0)
        self.assertEqual(percentile(values, 90), 9.0)
        self.assertEqual(percentile(values, 99), 10.0)
        self.assertEqual(percentile(values, 100), 10.0)
        self.assertEqual(percentile([3.0], 50), 3.0)

    def test_empty(self) -> None:
        """
        No samples, no percentile: C{None} (JSON null).
        """
        self.assertIsNone(percentile([], 50))
        self.assertEqual(Distribution.fromSamples([]), Distribution())
        self.assertTrue(Distribution.fromSamples([]).empty)
        self.assertEqual(
            set(Distribution().asDict().values()),
            {None},
        )

    def test_summary(self) -> None:
        """
        min/avg/max/stddev of a small known set (population stddev).
        """
        d = Distribution.fromSamples([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
        self.assertEqual((d.min, d.avg, d.max, d.stddev), (2.0, 5.0, 9.0, 2.0))
        self.assertEqual(d.p50, 4.0)
        self.assertEqual(
            list(d.asDict()), ["min", "p50", "avg", "p90", "p99", "max", "stddev"]
        )

    @given(durations.filter(bool))
    def test_properties(self, samples: list[float]) -> None:
        """
        Percentiles are samples within min..max, monotone in p; the mean is
        within min..max; the standard deviation is not negative.
        """
        d = Distribution.fromSamples(samples)
        assert d.min is not None and d.max is not None and d.avg is not None
        assert d.p50 is not None and d.p90 is not None and d.p99 is not None
        assert d.stddev is not None
        self.assertEqual(d.min, min(samples))
        self.assertEqual(d.max, max(samples))
        self.assertTrue(d.min <= d.p50 <= d.p90 <= d.p99 <= d.max)
        self.assertTrue(d.min <= d.avg <= d.max)
        for p in (d.p50, d.p90, d.p99):
            self.assertIn(p, samples)
        self.assertGreaterEqual(d.stddev, 0.0)
        self.assertFalse(math.isnan(d.stddev))

    @given(st.floats(0, 1e6), st.integers(1, 50))
    def test_constant(self, value: float, n: int) -> None:
        """
        Identical samples: every statistic is that value, stddev 0.
        """
        d = Distribution.fromSamples([value] * n)
        self.assertEqual((d.min, d.p50, d.p99, d.max), (value,) * 4)
        self.assertEqual(d.avg, value)
        assert d.stddev is not None
        assertNear(self, d.stddev, 0.0, delta=abs(value) * 1e-9 + 1e-12)


class HistogramTests(SynchronousTestCase):
    """
    Log-spaced (1-2-5) buckets.
    """

    def test_bounds(self) -> None:
        """
        The bounds grow by the 1-2-5 series and a value lands in the smallest
        bucket whose bound is at least the value.
        """
        self.assertEqual(BUCKET_BOUNDS[:4], (0.001, 0.002, 0.005, 0.01))
        self.assertEqual(list(BUCKET_BOUNDS), sorted(BUCKET_BOUNDS))
        self.assertEqual(bucketBound(0.2), 0.2)
        self.assertEqual(bucketBound(0.2000001), 0.5)
        self.assertEqual(bucketBound(0.0), 0.001)
        self.assertEqual(bucketBound(1e9), BUCKET_BOUNDS[-1])

    def test_contiguous(self) -> None:
        """
        Empty buckets between the first and the last used one are kept.
        """
        self.assertEqual(
            histogram([0.15, 0.18, 3.0]),
            [(0.2, 2), (0.5, 0), (1.0, 0), (2.0, 0), (5.0, 1)],
        )
        self.assertEqual(histogram([]), [])

    @given(durations)
    def test_countsSum(self, samples: list[float]) -> None:
        """
        The counts add up to the number of samples, and every sample is at
        most its bucket's bound (except above the last bound).
        """
        buckets = histogram(samples)
        self.assertEqual(sum(c for _, c in buckets), len(samples))
        bounds = [b for b, _ in buckets]
        self.assertEqual(bounds, sorted(bounds))
        for value in samples:
            self.assertIn(bucketBound(value), bounds)
            if value <= BUCKET_BOUNDS[-1]:
                self.assertLessEqual(value, bucketBound(value))


class TallyTests(SynchronousTestCase):
    """
    Classification of probes and replies.
    """

    def test_story(self) -> None:
        """
        One of each: received, reordered, corrupted, duplicate, lost, late,
        stray.
        """
        t = Tally()
        for _ in range(5):
            t.send()
        self.assertEqual(t.reply(2, True, True), Verdict.RECEIVED)
        self.assertEqual(t.reply(1, True, True), Verdict.REORDERED)
        self.assertEqual(t.reply(3, False, True), Verdict.CORRUPTED)
        self.assertEqual(t.reply(3, True, True), Verdict.DUPLICATE)
        self.assertTrue(t.timeout(4))
        self.assertFalse(t.timeout(2))
        self.assertEqual(t.reply(4, True, True), Verdict.LATE)
        self.assertEqual(t.reply(5, True, False), Verdict.LATE)
        self.assertEqual(t.reply(9, True, True), Verdict.STRAY)
        self.assertEqual(
            (
                t.sent,
                t.received,
                t.corrupted,
                t.lost,
                t.late,
                t.duplicated,
                t.reordered,
                t.stray,
                t.pending,
            ),
            (5, 2, 1, 2, 2, 1, 1, 1, 0),
        )

    def test_reorderPerFlow(self) -> None:
        """
        Reordering is judged per socket: replies read socket by socket are
        not reordered by the path.
        """
        t = Tally()
        for _ in range(4):
            t.send()
        t.reply(2, True, True, flow=1)
        t.reply(4, True, True, flow=1)
        t.reply(1, True, True, flow=0)
        t.reply(3, True, True, flow=0)
        self.assertEqual(t.reordered, 0)
        t.send()
        t.send()
        t.reply(6, True, True, flow=1)
        t.reply(5, True, True, flow=0)
        self.assertEqual(t.reordered, 0)
        t.send()
        t.reply(7, True, True, flow=0)
        self.assertEqual(t.reordered, 0)

    @given(events)
    def test_invariants(self, steps: list[tuple[str, int, bool, bool]]) -> None:
        """
        Whatever happens: sent = received + corrupted + lost + pending, late
        <= lost, reordered <= received + corrupted, and no counter is
        negative; a timeout of everything leaves nothing pending.
        """
        t = Tally()
        for kind, seq, correct, inTime in steps:
            if kind == "send":
                t.send()
            elif kind == "reply":
                t.reply(seq, correct, inTime)
            else:
                t.timeout(seq)
            self.assertEqual(t.sent, t.received + t.corrupted + t.lost + t.pending)
            self.assertGreaterEqual(t.pending, 0)
            self.assertLessEqual(t.late, t.lost)
            self.assertLessEqual(t.reordered, t.received + t.corrupted)
        for seq in range(1, t.sent + 1):
            t.timeout(seq)
        self.assertEqual(t.pending, 0)
        self.assertEqual(t.sent, t.received + t.corrupted + t.lost)
