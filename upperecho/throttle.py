# -*- test-case-name: tests.unit.test_throttle -*-
"""
Bounded per-source bookkeeping: the UDP rate and byte limits and log-line
throttling.

Both are keyed by a peer address that an attacker controls (a UDP source is
trivially spoofed), so both keep a hard cap on how many sources they remember:
a flood of distinct addresses costs a fixed amount of memory, never more.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from twisted.internet.interfaces import IReactorTime

__all__ = ["LogThrottle", "SourceRateLimiter"]


class SourceRateLimiter:
    """
    A token bucket per source: C{rate} tokens per second, at most C{rate}
    saved (so a burst of C{rate} is allowed, then C{rate} per second); a
    rate below 1 saves one token, so it allows one reply every 1/C{rate} s.

    The UDP service keeps two: one counts replies (C{--udp-rate}), the
    other bytes (C{--udp-byte-rate}: each reply costs its length, and one
    larger than C{rate} is never allowed).

    When the table is full the oldest-inserted source is forgotten.  A
    forgotten source starts again with a full bucket, so under a flood of
    spoofed sources each one still gets at most one burst.  (Refusals are
    counted by the caller, with its other drops.)
    """

    def __init__(
        self, rate: float, clock: IReactorTime, maxSources: int = 65536
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        # at least one whole token must fit, or a rate below 1/s would allow
        # one reply and then never another
        self.burst = max(self.rate, 1.0)
        self.maxSources = maxSources
        self._clock = clock
        # source -> [tokens, time of last update]; a list so it updates in
        # place.  An OrderedDict, not a dict: evicting the oldest entry of a
        # dict with next(iter(d)) scans past every slot freed by earlier
        # evictions, so a flood of new sources cost ~50 us each at 65,536
        # entries; OrderedDict.popitem(last=False) is O(1).
        self._buckets: OrderedDict[Hashable, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source: Hashable, cost: float = 1.0) -> bool:
        """
        Take C{cost} tokens for C{source} (one request, or, for a budget in
        bytes, the size of a reply), or none if it has fewer.

        @return: C{True} if the request may be served.
        """
        now = self._clock.seconds()
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= self.maxSources:
                self._buckets.popitem(last=False)
            if cost > self.burst:
                self._buckets[source] = [self.burst, now]
                return False
            self._buckets[source] = [self.burst - cost, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens >= cost:
            bucket[0] = tokens - cost
            return True
        bucket[0] = tokens
        return False


class LogThrottle:
    """
    Decide whether an event deserves a log line: at most one per key (for
    example C{("rate-limit", "192.0.2.7")}) per C{interval} seconds, so the
    log can never become an amplifier for whoever floods the service.

    The table is bounded like L{SourceRateLimiter}'s, and so is the total:
    at most C{maxLines} lines per C{interval} over all keys, so a flood from
    a million spoofed sources still writes a bounded log.

    @ivar suppressed: events not logged because of the overall budget.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float = 60.0,
        maxKeys: int = 4096,
        maxLines: int = 100,
    ) -> None:
        self.interval = interval
        self.maxKeys = maxKeys
        self.maxLines = maxLines
        self.suppressed = 0
        self._clock = clock
        self._last: dict[Hashable, float] = {}
        self._windowStart = float("-inf")
        self._windowLines = 0

    def __len__(self) -> int:
        return len(self._last)

    def ready(self, key: Hashable) -> bool:
        """
        Whether an event for C{key} should be logged now; if so, the next one
        is suppressed for C{interval} seconds.
        """
        now = self._clock.seconds()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        if now - self._windowStart >= self.interval:
            self._windowStart = now
            self._windowLines = 0
        if self._windowLines >= self.maxLines:
            self.suppressed += 1
            return False
        self._windowLines += 1
        if last is None and len(self._last) >= self.maxKeys:
            self._prune(now)
        self._last[key] = now
        return True

    def _prune(self, now: float) -> None:
        stale = [k for k, t in self._last.items() if now - t >= self.interval]
        for k in stale:
            del self._last[k]
        while len(self._last) >= self.maxKeys:
            del self._last[next(iter(self._last))]
