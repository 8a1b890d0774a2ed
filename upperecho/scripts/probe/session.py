# -*- test-case-name: tests.unit.test_probe_session -*-
"""
The probes of one run, judged: what was sent, what is outstanding, what
came back, whether it was right and how long it took.

Round-trip times use a monotonic timer (C{time.perf_counter}); timers are
set on an injected L{IReactorTime}, so tests drive everything with a
L{twisted.internet.task.Clock} (passing its C{seconds} as the timer too).
"""

from __future__ import annotations

import math
import random
import time
from array import array
from collections import deque
from collections.abc import Callable
from typing import Any
from typing import Protocol as Protocol_

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from upperecho.scripts._common import ExitStatus, describe, statusOf
from upperecho.scripts.probe.framing import (
    SEQ_MOD,
    makeProbe,
    probeSequence,
    splitIdentity,
)
from upperecho.scripts.probe.stats import Tally, Verdict
from upperecho.transform import isAsciiCompatible, upper

__all__ = ["ProbeObserver", "ProbeSession"]


class ProbeObserver(Protocol_):
    """
    Who is told about each probe as it resolves (the ping-style lines).
    """

    def replied(
        self,
        seq: int,
        verdict: Verdict,
        rttMs: float,
        size: int,
        connectMs: float | None,
    ) -> None:
        """
        A reply to probe C{seq} arrived.
        """

    def timedOut(self, seq: int) -> None:
        """
        Probe C{seq} got no reply within its timeout.
        """


class ProbeSession:
    """
    The probes of one run: what was sent, what is outstanding, what came
    back and how long it took.

    The transports (L{ProbeDatagramProtocol}, L{ProbeStreamProtocol}) only
    move bytes; every judgement is made here, identically for UDP and TCP.
    Timeouts need no timer per probe: deadlines grow with the sequence
    number, so one timer for the earliest deadline does (L{_sweep}).

    @ivar tally: the classification counters.
    @ivar rtts: round-trip times of received probes, in milliseconds.
    @ivar connects: TCP connect times, in milliseconds.
    @ivar sendErrors: probes whose send failed locally (they time out).
    @ivar onIdle: called whenever nothing is outstanding any more.
    @ivar error: the first fatal error (connection refused or lost), in
        words.
    @ivar errorStatus: the exit status that error calls for.
    @ivar identify: replies carry the name of the instance that sent them
        (C{--identify}); one without it is corrupted.
    @ivar instances: replies per instance name, with C{identify}.
    """

    sendErrors = 0
    error: str | None = None
    errorStatus = ExitStatus.OK
    #: how the target is named in messages
    targetName = "the target"
    onIdle: Callable[[], None] | None = None
    identify = False

    def __init__(
        self,
        clock: IReactorTime,
        size: int = 64,
        timeout: float = 1.0,
        encoding: str = "utf-8",
        timer: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        observer: ProbeObserver | None = None,
        sweepGranularity: float = 0.0,
    ) -> None:
        """
        @param clock: sets the timeout timer.
        @param timer: reads the time for round trips and deadlines; in tests
            C{clock.seconds}.
        @param sweepGranularity: the least delay between two timeout sweeps;
            0 for exact timeouts (ping mode), a few milliseconds in load mode
            so that the sweep is not rescheduled for every probe.  It never
            changes a verdict: a reply is judged by its own time.
        """
        self.clock = clock
        self.size = size
        self.timeout = timeout
        self.encoding = encoding
        self.timer = timer
        self.observer = observer
        self.tally = Tally()
        self.rtts = array("d")
        self.connects = array("d")
        self.instances: dict[str, int] = {}
        self._rng = rng if rng is not None else random.Random()
        self._ascii = isAsciiCompatible(encoding)
        self._granularity = sweepGranularity
        #: seq -> [expected reply, RTT origin, deadline]
        self._outstanding: dict[int, list[Any]] = {}
        #: connect time per outstanding probe (--new-connection)
        self._connectMs: dict[int, float] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._sweepCall: IDelayedCall | None = None

    def newProbe(self, origin: float) -> tuple[int, bytes, int]:
        """
        Create the next probe and start waiting for it.

        @param origin: the time its round trip (and timeout) is measured
            from: the send time in ping mode, the scheduled time in load
            mode.
        @return: its sequence number, its bytes, and the length of the
            expected reply.
        """
        seq = self.tally.send()
        probe = makeProbe(seq, self.size, self._rng)
        expected = probe.upper() if self._ascii else upper(probe, self.encoding)
        deadline = origin + self.timeout
        self._outstanding[seq] = [expected, origin, deadline]
        self._deadlines.append((deadline, seq))
        if self._sweepCall is None:
            self._scheduleSweep(self.timer())
        return seq, probe, len(expected)

    def exchangeStarted(self, seq: int, connectMs: float) -> None:
        """
        Probe C{seq}'s own connection is up (C{--new-connection}): record the
        connect time and measure the round trip from now on.  The timeout
        still counts from the start of the connection attempt.
        """
        self.connects.append(connectMs)
        entry = self._outstanding.get(seq)
        if entry is not None:
            entry[1] = self.timer()
            self._connectMs[seq] = connectMs

    def datagramReply(self, data: bytes, flow: int = 0) -> Verdict:
        """
        A datagram came back on socket C{flow}: find its probe by the
        sequence number in it (after the instance's name, with
        C{identify}).
        """
        instance = None
        if self.identify:
            instance, data = splitIdentity(data)
        short = probeSequence(data)
        if short is None:
            return self.reply(0, data, flow, instance)
        # the full sequence number closest below the newest probe
        newest = self.tally.sent
        return self.reply(newest - (newest - short) % SEQ_MOD, data, flow, instance)

    def reply(
        self, seq: int, data: bytes, flow: int = 0, instance: str | None = None
    ) -> Verdict:
        """
        Judge a reply to probe C{seq} that came back on socket or connection
        C{flow}, from the instance named C{instance} (C{identify}).
        """
        now = self.timer()
        if instance is not None:
            self.instances[instance] = self.instances.get(instance, 0) + 1
        entry = self._outstanding.pop(seq, None)
        if entry is None:
            # already answered, timed out, or never sent
            verdict = self.tally.reply(seq, False, False)
            rtt = math.nan
        else:
            expected, origin, deadline = entry
            rtt = (now - origin) * 1000.0
            correct = data == expected and (instance is not None or not self.identify)
            verdict = self.tally.reply(seq, correct, now <= deadline, flow)
            if verdict is Verdict.RECEIVED or verdict is Verdict.REORDERED:
                self.rtts.append(rtt)
        if self.observer is not None:
            self.observer.replied(
                seq, verdict, rtt, len(data), self._connectMs.pop(seq, None)
            )
        if entry is not None and not self._outstanding and self.onIdle is not None:
            self.onIdle()
        return verdict

    def fail(self, reason: Failure) -> None:
        """
        A fatal error: remember the first one, in words and as the exit
        status it calls for, and let the run end.
        """
        if self.error is None:
            self.error = describe(reason, self.targetName)
            self.errorStatus = statusOf(reason)
        if self.onIdle is not None:
            self.onIdle()

    def abandon(self) -> None:
        """
        Stop waiting: every outstanding probe is lost now.
        """
        for seq in list(self._outstanding):
            del self._outstanding[seq]
            self.tally.timeout(seq)
        self._deadlines.clear()
        self.stop()

    def stop(self) -> None:
        """
        Cancel the timeout timer.
        """
        if self._sweepCall is not None and self._sweepCall.active():
            self._sweepCall.cancel()
        self._sweepCall = None

    def _scheduleSweep(self, now: float) -> None:
        if self._deadlines:
            delay = max(self._deadlines[0][0] - now, self._granularity, 0.0)
            self._sweepCall = self.clock.callLater(delay, self._sweep)

    def _sweep(self) -> None:
        """
        Expire every probe whose deadline has passed.
        """
        self._sweepCall = None
        now = self.timer()
        deadlines = self._deadlines
        outstanding = self._outstanding
        expired = False
        while deadlines and deadlines[0][0] <= now:
            seq = deadlines.popleft()[1]
            if outstanding.pop(seq, None) is not None:
                expired = True
                self.tally.timeout(seq)
                self._connectMs.pop(seq, None)
                if self.observer is not None:
                    self.observer.timedOut(seq)
        self._scheduleSweep(now)
        if expired and not outstanding and self.onIdle is not None:
            self.onIdle()
