# -*- test-case-name: tests.unit.test_probe_drivers -*-
"""
When probes are sent: the two schedules of the probe command.

  - B{ping mode} (L{PingDriver}): COUNT probes, one every INTERVAL seconds.
  - B{load mode} (L{LoadDriver}): R probes per second for S seconds, B{open
    loop}: probe k is scheduled at C{start + k / R} whatever happened before,
    and its latency is measured from that scheduled time, so a stalled server
    (or a client that falls behind) cannot hide the stall ("coordinated
    omission").  All probes due are sent in one timer callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from upperecho.scripts.probe.channels import ProbeChannel

__all__ = ["MAX_BURST", "LoadDriver", "PingDriver"]

#: at most this many probes are sent in one timer callback, so that a client
#: catching up after a stall still reads replies in between
MAX_BURST = 2000


class _Schedule:
    """
    What both send schedules share: one pending timer, and a way to stop
    that tells C{onDone} exactly once.
    """

    done = False
    onDone: Callable[[], None] | None = None
    _call: IDelayedCall | None = None

    def stopSending(self) -> None:
        """
        Send no more probes.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if not self.done:
            self.done = True
            if self.onDone is not None:
                self.onDone()


@dataclass(eq=False)
class PingDriver(_Schedule):
    """
    Ping mode: one probe every C{interval} seconds, C{count} of them (0 =
    until L{stopSending}).  Send times are anchored to the start, so the
    interval does not drift.

    @ivar send: sends the next probe.
    """

    clock: IReactorTime
    send: Callable[[], None]
    count: int
    interval: float
    sent = 0
    _start = 0.0

    def start(self) -> None:
        """
        Send the first probe now.
        """
        self._start = self.clock.seconds()
        self._tick()

    def _tick(self) -> None:
        """
        Send one probe and set the timer for the next.
        """
        self._call = None
        self.sent += 1
        self.send()
        if self.done:
            return
        if self.count and self.sent >= self.count:
            self.stopSending()
            return
        due = self._start + self.sent * self.interval
        self._call = self.clock.callLater(
            max(due - self.clock.seconds(), 0.0), self._tick
        )


class LoadDriver(_Schedule):
    """
    Load mode, open loop: probe C{k} (from 0) is due at C{start + k / rate},
    spread round-robin over the channels, and its latency counts from that
    time.  One timer callback sends every probe due (at most L{MAX_BURST}),
    then sleeps until the next one is due.

    Sending ends when all C{ceil(rate * duration)} probes are sent, or, if
    the client has fallen so far behind that it is still sending C{grace}
    seconds after the end, there; the rest are counted as L{unsent}.

    @ivar sent: probes sent.
    @ivar unsent: scheduled probes abandoned at the end.
    @ivar lastSend: timer value of the last send.
    """

    sent = 0
    unsent = 0
    start = 0.0
    lastSend = 0.0
    stoppedAt = 0.0
    interrupted = False

    def __init__(
        self,
        clock: IReactorTime,
        timer: Callable[[], float],
        channels: Sequence[ProbeChannel],
        rate: float,
        duration: float,
        grace: float = 1.0,
    ) -> None:
        self.clock = clock
        self.timer = timer
        self.channels = list(channels)
        self.rate = rate
        self.duration = duration
        self.grace = grace
        self.scheduled = max(1, math.ceil(rate * duration - 1e-9))

    def begin(self) -> None:
        """
        Start the schedule now.
        """
        self.start = self.lastSend = self.timer()
        self._tick()

    def _tick(self) -> None:
        """
        Send every probe due by now (at most L{MAX_BURST}), then sleep
        until the next one is due.
        """
        self._call = None
        now = self.timer()
        start, rate = self.start, self.rate
        due = min(self.scheduled, int((now - start) * rate) + 1)
        end = min(due, self.sent + MAX_BURST)
        channels = self.channels
        width = len(channels)
        for k in range(self.sent, end):
            channels[k % width].sendProbe(start + k / rate)
        if end > self.sent:
            self.sent = end
            self.lastSend = self.timer()
        if self.sent >= self.scheduled:
            self.stopSending()
            return
        now = self.timer()
        if now > start + self.duration + self.grace:
            self.unsent = self.scheduled - self.sent
            self.stopSending()
            return
        delay = start + self.sent / rate - now
        self._call = self.clock.callLater(max(delay, 0.0), self._tick)

    @property
    def achievedRate(self) -> float:
        """
        Probes sent per second over the sending window: the requested rate
        when the schedule was kept, less when the client fell behind.  When
        the run was cut short (SIGINT), the window ends there.
        """
        if self.interrupted:
            window = max(self.stoppedAt - self.start, 1.0 / self.rate)
        else:
            window = max(self.duration, self.lastSend - self.start)
        return self.sent / window if window > 0 else 0.0

    def interrupt(self) -> None:
        """
        Stop early on the user's request (not a failure to keep up).
        """
        if not self.done:
            self.interrupted = True
            self.stoppedAt = self.timer()
        self.stopSending()

    @property
    def sustained(self) -> bool:
        """
        Whether every scheduled probe was sent and the achieved rate is within
        1% of the requested one.
        """
        return self.unsent == 0 and self.achievedRate >= 0.99 * self.rate
