# -*- test-case-name: tests.unit.test_probe_stats -*-
"""
Pure statistics for the probe mode: latency distributions, log-spaced
histograms and the bookkeeping that classifies every probe.

Nothing here touches the network or the clock, so every rule can be tested
with property tests, and the probe code only has to feed events in.

Percentiles use the B{nearest-rank} method: the p-th percentile of n sorted
samples is the sample of rank C{ceil(p / 100 * n)} (1-based).  It always
returns one of the measured values (never an interpolation between two), is
monotone in p, and is what ping-like tools and wrk2 report.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "BUCKET_BOUNDS",
    "Distribution",
    "Tally",
    "Verdict",
    "bucketBound",
    "histogram",
    "percentile",
]


def percentile(ordered: Sequence[float], p: float) -> float | None:
    """
    The nearest-rank C{p}-th percentile of already sorted samples.

    @param ordered: samples in ascending order.
    @param p: the percentile, 0 < p <= 100 (0 is treated as the minimum).
    @return: one of the samples, or C{None} when there are none.
    """
    n = len(ordered)
    if n == 0:
        return None
    rank = math.ceil(p / 100.0 * n)
    return ordered[min(max(rank, 1), n) - 1]


@dataclass(frozen=True)
class Distribution:
    """
    The summary of a set of durations, in the unit they were given in
    (milliseconds for the probe).  Every field is C{None} when there were no
    samples, which the JSON output shows as C{null}.

    The standard deviation is the population one (like ping's C{mdev}): the
    samples are all the probes, not an estimate from a subset.
    """

    min: float | None = None
    p50: float | None = None
    avg: float | None = None
    p90: float | None = None
    p99: float | None = None
    max: float | None = None
    stddev: float | None = None

    @classmethod
    def fromSamples(cls, samples: Iterable[float]) -> Distribution:
        """
        Summarise C{samples} (any order).
        """
        ordered = sorted(samples)
        n = len(ordered)
        if n == 0:
            return cls()
        lo, hi = ordered[0], ordered[-1]
        # fsum keeps the mean exact enough; the clamp removes the last ulp
        # of doubt so that min <= avg <= max always holds.
        mean = min(max(math.fsum(ordered) / n, lo), hi)
        variance = math.fsum((x - mean) ** 2 for x in ordered) / n
        return cls(
            min=lo,
            p50=percentile(ordered, 50),
            avg=mean,
            p90=percentile(ordered, 90),
            p99=percentile(ordered, 99),
            max=hi,
            stddev=math.sqrt(variance),
        )

    @property
    def empty(self) -> bool:
        """
        Whether there were no samples.
        """
        return self.min is None

    def asDict(self) -> dict[str, float | None]:
        """
        The fields as a dict in display order (min, p50, avg, p90, p99, max,
        stddev), for JSON.
        """
        return asdict(self)

    def values(self) -> tuple[float | None, ...]:
        """
        The fields in display order.
        """
        return (self.min, self.p50, self.avg, self.p90, self.p99, self.max, self.stddev)


def _bounds() -> tuple[float, ...]:
    out = []
    for exponent in range(-3, 6):
        for mantissa in (1, 2, 5):
            out.append(float(f"{mantissa}e{exponent}"))
    out.append(1e6)
    return tuple(out)


#: Upper bounds of the histogram buckets: the 1-2-5 series from 1 microsecond
#: to 1,000 seconds (in milliseconds).  Log-spaced buckets keep a 0.1 ms
#: loopback and a 300 ms satellite path equally readable with a few lines.
BUCKET_BOUNDS: tuple[float, ...] = _bounds()


def bucketBound(value: float) -> float:
    """
    The upper bound of the bucket C{value} falls in: the smallest bound that
    is at least C{value}.  Values above the last bound go in the last bucket.
    """
    i = bisect.bisect_left(BUCKET_BOUNDS, value)
    return BUCKET_BOUNDS[min(i, len(BUCKET_BOUNDS) - 1)]


def histogram(samples: Iterable[float]) -> list[tuple[float, int]]:
    """
    Count C{samples} into the L{BUCKET_BOUNDS} buckets.

    @return: C{(upper bound, count)} pairs for every bucket from the first
        non-empty one to the last non-empty one (empty buckets in between are
        kept, so the shape of the distribution shows); C{[]} when there are
        no samples.
    """
    counts = [0] * len(BUCKET_BOUNDS)
    last = len(BUCKET_BOUNDS) - 1
    left = bisect.bisect_left
    for value in samples:
        counts[min(left(BUCKET_BOUNDS, value), last)] += 1
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return []
    return [(BUCKET_BOUNDS[i], counts[i]) for i in range(used[0], used[-1] + 1)]


class Verdict(enum.Enum):
    """
    What one reply turned out to be.
    """

    #: the first reply to a probe, correct and in time
    RECEIVED = "received"
    #: like L{RECEIVED}, but a later probe had already been answered
    REORDERED = "reordered"
    #: the first reply to a probe, in time, but not the expected bytes
    CORRUPTED = "corrupted"
    #: a further reply to a probe that already had one
    DUPLICATE = "duplicate"
    #: the first reply to a probe, after its timeout
    LATE = "late"
    #: a reply that matches no probe sent
    STRAY = "stray"


_NONE, _PENDING, _RECEIVED, _CORRUPTED, _LOST, _LATE = range(6)


class Tally:
    """
    The classification bookkeeping for one run of probes.

    Every probe ends in exactly one of three states: B{received} (its first
    reply was correct and came within the timeout), B{corrupted} (its first
    reply came in time with the right sequence number but other bytes) or
    B{lost} (no reply within the timeout).  So, once nothing is pending,
    C{sent == received + corrupted + lost}.

    The other counters are about replies, not probes: B{late} counts lost
    probes whose first reply came after the timeout (a subset of lost),
    B{duplicated} counts replies beyond the first, and B{reordered} counts
    in-time first replies that arrived after the reply to a later probe (a
    subset of received plus corrupted).  B{stray} counts replies that match
    no probe sent.

    The state is one byte per probe, so a long load run stays small.

    @ivar sent: probes sent.
    @ivar received: probes answered correctly in time.
    @ivar corrupted: probes answered in time with wrong bytes.
    @ivar lost: probes with no reply within the timeout.
    @ivar late: lost probes whose reply came after the timeout.
    @ivar duplicated: replies beyond the first to one probe.
    @ivar reordered: in-time replies that came after a later probe's reply.
    @ivar stray: replies matching no probe.
    """

    def __init__(self) -> None:
        # index = sequence number; 0 is never used (sequence numbers start
        # at 1, as in ping)
        self._states = bytearray(1)
        #: per flow, the highest sequence number answered in time so far
        self._highest: dict[int, int] = {}
        self.sent = 0
        self.received = 0
        self.corrupted = 0
        self.lost = 0
        self.late = 0
        self.duplicated = 0
        self.reordered = 0
        self.stray = 0

    @property
    def pending(self) -> int:
        """
        Probes sent and still waiting for a reply or their timeout.
        """
        return self.sent - self.received - self.corrupted - self.lost

    def send(self) -> int:
        """
        Record a new probe.

        @return: its sequence number (1, 2, 3 ...).
        """
        self._states.append(_PENDING)
        self.sent += 1
        return self.sent

    def isPending(self, seq: int) -> bool:
        """
        Whether probe C{seq} is still waiting for its first reply.
        """
        return 0 < seq < len(self._states) and self._states[seq] == _PENDING

    def reply(self, seq: int, correct: bool, inTime: bool, flow: int = 0) -> Verdict:
        """
        Record a reply to probe C{seq}.

        @param correct: whether it equals the expected reply.
        @param inTime: whether it came within the probe's timeout.
        @param flow: the socket the probe went out on.  Reordering is judged
            per flow: replies on two sockets are read in separate batches,
            which would otherwise look like reordering that the path never
            did.
        """
        states = self._states
        if not 0 < seq < len(states):
            self.stray += 1
            return Verdict.STRAY
        state = states[seq]
        if state == _PENDING:
            if not inTime:
                states[seq] = _LATE
                self.lost += 1
                self.late += 1
                return Verdict.LATE
            highest = self._highest
            reordered = seq < highest.get(flow, 0)
            if reordered:
                self.reordered += 1
            else:
                highest[flow] = seq
            if correct:
                states[seq] = _RECEIVED
                self.received += 1
                return Verdict.REORDERED if reordered else Verdict.RECEIVED
            states[seq] = _CORRUPTED
            self.corrupted += 1
            return Verdict.CORRUPTED
        if state == _LOST:
            states[seq] = _LATE
            self.late += 1
            return Verdict.LATE
        self.duplicated += 1
        return Verdict.DUPLICATE

    def timeout(self, seq: int) -> bool:
        """
        Probe C{seq}'s timeout has passed.

        @return: C{True} if it had no reply, and so is now lost.
        """
        if self.isPending(seq):
            self._states[seq] = _LOST
            self.lost += 1
            return True
        return False
