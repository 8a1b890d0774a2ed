# -*- test-case-name: tests.unit.test_impair -*-
"""
UDP impairment: make a loopback path behave like a bad network.

On loopback, UDP never loses, duplicates or reorders a datagram, so the
textbook's warnings about UDP stay invisible.  L{Impairment} sits between the
datagram protocol's decision to reply and the socket: it drops some replies,
sends some twice and holds others back for a (jittered) while, so that replies
overtake each other.  Its random choices come from one seeded
C{random.Random}, so a run with the same seed and the same input makes the
same choices again.

It is off by default, and when it is off it is not there at all:
L{upperecho.tap.makeService} passes C{impairment=None} to the protocol, which
then costs one C{is None} check per datagram.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from upperecho.udp import Address

__all__ = ["MAX_PENDING", "MAX_PENDING_BYTES", "Impairment"]

#: delayed replies held at once, at most; more are dropped (and counted), so
#: that C{--udp-delay} cannot be turned into a memory attack
MAX_PENDING = 10000
#: and at most this many bytes of them: 10,000 replies of 64 KiB would
#: otherwise hold 640 MiB
MAX_PENDING_BYTES = 64 * 1024 * 1024

Write = Callable[[bytes, Address], object]


class Impairment(Service):
    """
    A lossy, duplicating, delaying and reordering way to send UDP replies
    (an L{upperecho.udp.ReplyWriter}).

    For each reply handed to L{send}, in this order:

      1. with probability C{loss} percent it is dropped (L{lost});
      2. otherwise, with probability C{duplicate} percent it is sent twice
         (L{duplicated}); a lost reply is never duplicated, so a client sees
         exactly C{loss} percent of its requests go unanswered;
      3. each copy is sent after C{delay} plus a uniform random 0..C{jitter}
         milliseconds, drawn for each copy on its own: the two copies of a
         duplicated reply get independent delays, as two datagrams crossing a
         real network would, and may arrive in either order or far apart.
         With no delay and no jitter, copies are written at once.

    At most C{maxPending} copies, of C{maxPendingBytes} bytes in all, wait at
    once; a copy that would exceed either is dropped and counted in
    L{droppedPending}.

    It is a L{Service} so that it can sit next to the UDP service in
    C{twistd}: starting it logs one line saying replies are impaired (with
    the values and the seed, so the run can be repeated), and stopping it
    cancels every pending reply, so shutdown leaves no delayed call behind.
    Used without a service parent, it works all the same; call
    L{stopService} to cancel what is pending.

    @ivar lost: replies dropped by C{loss}.
    @ivar duplicated: replies sent twice.
    @ivar delayed: copies scheduled for later (C{delay} or C{jitter} > 0).
    @ivar droppedPending: delayed copies dropped because C{maxPending}
        copies or C{maxPendingBytes} bytes were waiting (or because the
        impairment was stopped).
    @ivar written: copies handed to the C{write} callable.
    @ivar seed: the seed of the random choices (drawn at random when none was
        given, and reported, so that any run can be repeated).
    """

    _log = Logger()
    lost = 0
    duplicated = 0
    delayed = 0
    droppedPending = 0
    written = 0

    def __init__(
        self,
        clock: IReactorTime,
        loss: float = 0.0,
        duplicate: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        seed: int | None = None,
        maxPending: int = MAX_PENDING,
        maxPendingBytes: int = MAX_PENDING_BYTES,
    ) -> None:
        """
        @param clock: schedules delayed replies (the reactor; a C{Clock} in
            tests).
        @param loss: percent of replies to drop, 0..100.
        @param duplicate: percent of replies to send twice, 0..100.
        @param delay: milliseconds to hold every reply back, >= 0.
        @param jitter: at most this many milliseconds more, uniformly
            random per copy, >= 0.
        @param seed: seed of the random choices; C{None} picks one at random.
        @param maxPending: the most copies allowed to wait at once.
        @param maxPendingBytes: the most bytes of copies allowed to wait at
            once.
        """
        for name, value in (("loss", loss), ("duplicate", duplicate)):
            if not 0 <= value <= 100:
                raise ValueError(f"{name} must be a percentage 0..100, not {value}")
        for name, value in (("delay", delay), ("jitter", jitter)):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a number of ms >= 0, not {value}")
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        self.loss = loss
        self.duplicate = duplicate
        self.delay = delay
        self.jitter = jitter
        self.seed = seed
        self.maxPending = maxPending
        self.maxPendingBytes = maxPendingBytes
        self._clock = clock
        self._random = random.Random(seed)
        # fractions and seconds, computed once: send() is on the hot path
        self._loss = loss / 100
        self._duplicate = duplicate / 100
        self._delay = delay / 1000
        self._jitter = jitter / 1000
        self._later = delay > 0 or jitter > 0
        self._stopped = False
        self._nextKey = 0
        self._pending: dict[int, IDelayedCall] = {}
        self._pendingBytes = 0

    @property
    def pending(self) -> int:
        """
        How many copies are waiting to be sent now.
        """
        return len(self._pending)

    def describe(self) -> str:
        """
        The settings, in the words of the command line.
        """
        return (
            f"--udp-loss {self.loss:g} --udp-duplicate {self.duplicate:g} "
            f"--udp-delay {self.delay:g} --udp-jitter {self.jitter:g} "
            f"--udp-seed {self.seed}"
        )

    def send(self, write: Write, data: bytes, addr: Address) -> None:
        """
        Send C{data} to C{addr} with C{write}: now, later, twice or never.
        """
        rnd = self._random.random
        if self._loss and rnd() < self._loss:
            self.lost += 1
            return
        if self._duplicate and rnd() < self._duplicate:
            self.duplicated += 1
            self._sendCopy(write, data, addr)
        self._sendCopy(write, data, addr)

    def _sendCopy(self, write: Write, data: bytes, addr: Address) -> None:
        """
        Write one copy now, or schedule it with its own random delay, unless
        too much is pending already.
        """
        if not self._later:
            self.written += 1
            write(data, addr)
            return
        size = len(data)
        if (
            self._stopped
            or len(self._pending) >= self.maxPending
            or self._pendingBytes + size > self.maxPendingBytes
        ):
            self.droppedPending += 1
            return
        seconds = self._delay
        if self._jitter:
            seconds += self._random.random() * self._jitter
        key = self._nextKey
        self._nextKey += 1
        self.delayed += 1
        self._pendingBytes += size
        self._pending[key] = self._clock.callLater(
            seconds, self._deliver, key, write, data, addr
        )

    def _deliver(self, key: int, write: Write, data: bytes, addr: Address) -> None:
        """
        A delayed copy is due: forget it as pending and write it.
        """
        del self._pending[key]
        self._pendingBytes -= len(data)
        self.written += 1
        write(data, addr)

    def startService(self) -> None:
        """
        Say, in one log line, that UDP replies are impaired and how.
        """
        super().startService()
        self._stopped = False
        self._log.warn(
            "UDP replies are impaired: {loss:g}% lost, {duplicate:g}% duplicated, "
            "delayed {delay:g} ms + jitter 0..{jitter:g} ms, seed {seed} "
            "(at most {maxPending} replies or {maxPendingMiB:g} MiB pending); "
            "TCP is not impaired",
            loss=self.loss,
            duplicate=self.duplicate,
            delay=self.delay,
            jitter=self.jitter,
            seed=self.seed,
            maxPending=self.maxPending,
            maxPendingMiB=self.maxPendingBytes / 2**20,
        )

    def stopService(self) -> None:
        """
        Cancel every pending reply, so that shutdown leaves nothing scheduled,
        and log what the impairment did.
        """
        super().stopService()
        self._stopped = True
        cancelled = len(self._pending)
        pending, self._pending = self._pending, {}
        self._pendingBytes = 0
        for call in pending.values():
            call.cancel()
        self._log.info(
            "UDP impairment stopped: {lost} lost, {duplicated} duplicated, "
            "{delayed} delayed, {droppedPending} dropped over the pending limit, "
            "{cancelled} pending cancelled",
            lost=self.lost,
            duplicated=self.duplicated,
            delayed=self.delayed,
            droppedPending=self.droppedPending,
            cancelled=cancelled,
        )
