# -*- test-case-name: tests.test_probe -*-
"""
Probe mode of the client: measure a path through an upperecho server.

C{upperecho-client --probe} sends probes whose uppercase reply is known in
advance, so every answer is checked, not merely counted: a reply is
B{received} only if it equals C{transform(probe)}.  A plain echo server or a
middlebox that rewrites payloads shows up as B{corrupted}.

Probe framing
=============

A probe of SIZE bytes (at least L{MIN_SIZE}) is the sequence number modulo
10**8 in eight zero-padded ASCII digits, one space, then SIZE - 9 random
lowercase ASCII letters::

    00000003 qhzkwmdoeal...

Digits and the space are their own uppercase, so the reply carries the same
sequence number and, for any ASCII-compatible encoding, has the same length.
UDP replies are matched by that number; a TCP connection is an ordered byte
stream, so its replies are matched by position and split by the length of
the expected reply (fixed-size framing, no delimiter needed).

Two modes
=========

  - B{ping mode} (L{PingDriver}): COUNT probes, one every INTERVAL seconds,
    one ping-style line each, then a summary.
  - B{load mode} (L{LoadDriver}): R probes per second for S seconds, B{open
    loop}: probe k is scheduled at C{start + k / R} whatever happened before,
    and its latency is measured from that scheduled time, so a stalled server
    (or a client that falls behind) cannot hide the stall ("coordinated
    omission").  All probes due are sent in one timer callback.

Round-trip times use a monotonic timer (C{time.perf_counter}); timers are
set on an injected L{IReactorTime}, so tests drive everything with a
L{twisted.internet.task.Clock} (passing its C{seconds} as the timer too).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import socket
import sys
import time
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from typing import Protocol as Protocol_

from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectError,
    ConnectionRefusedError,
    MessageLengthError,
    TimeoutError,
)
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Protocol,
    connectionDone,
)
from twisted.python import usage
from twisted.python.failure import Failure

from upperecho.address import hostPort
from upperecho.stats import Distribution, Tally, Verdict, histogram, percentile
from upperecho.transform import checkEncoding, isAsciiCompatible, upper

__all__ = [
    "MIN_SIZE",
    "LoadDriver",
    "PingDriver",
    "ProbeDatagramProtocol",
    "ProbeOptions",
    "ProbeResult",
    "ProbeSession",
    "ProbeStreamProtocol",
    "formatText",
    "main",
    "makeProbe",
    "probeSequence",
]

#: bytes of the header: eight digits and a space
HEADER_SIZE = 9
#: the smallest probe: the header and at least one letter, so that a reply
#: that was not uppercased can be told from one that was
MIN_SIZE = HEADER_SIZE + 1
#: the largest probe: the largest UDP payload over IPv4
MAX_SIZE = 65507
_SEQ_MOD = 100_000_000
#: maps any byte to a lowercase letter (a cheap way to draw random letters)
_LETTERS = bytes(ord("a") + i % 26 for i in range(256))
#: at most this many probes are sent in one timer callback, so that a client
#: catching up after a stall still reads replies in between
MAX_BURST = 2000


def makeProbe(seq: int, size: int, rng: random.Random) -> bytes:
    """
    Build probe number C{seq}: header plus random lowercase letters, exactly
    C{size} bytes.
    """
    return b"%08d " % (seq % _SEQ_MOD) + rng.randbytes(size - HEADER_SIZE).translate(
        _LETTERS
    )


def probeSequence(data: bytes) -> int | None:
    """
    The sequence number (modulo 10**8) in a probe or a reply, or C{None} if
    C{data} does not start with a probe header.
    """
    head = data[:8]
    if len(data) < HEADER_SIZE or data[8:9] != b" " or not head.isdigit():
        return None
    return int(head)


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
    @ivar error: the first fatal error (connection refused or lost).
    """

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
        self.sendErrors = 0
        self.error: str | None = None
        #: how the target is named in messages
        self.targetName = "the target"
        self.onIdle: Callable[[], None] | None = None
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
        sequence number in it.
        """
        short = probeSequence(data)
        if short is None:
            return self.reply(0, data, flow)
        # the full sequence number closest below the newest probe
        newest = self.tally.sent
        return self.reply(newest - (newest - short) % _SEQ_MOD, data, flow)

    def reply(self, seq: int, data: bytes, flow: int = 0) -> Verdict:
        """
        Judge a reply to probe C{seq} that came back on socket or connection
        C{flow}.
        """
        now = self.timer()
        entry = self._outstanding.pop(seq, None)
        if entry is None:
            # already answered, timed out, or never sent
            verdict = self.tally.reply(seq, False, False)
            rtt = math.nan
        else:
            expected, origin, deadline = entry
            rtt = (now - origin) * 1000.0
            verdict = self.tally.reply(seq, data == expected, now <= deadline, flow)
            if verdict is Verdict.RECEIVED or verdict is Verdict.REORDERED:
                self.rtts.append(rtt)
        if self.observer is not None:
            self.observer.replied(
                seq, verdict, rtt, len(data), self._connectMs.pop(seq, None)
            )
        if entry is not None and not self._outstanding and self.onIdle is not None:
            self.onIdle()
        return verdict

    def fail(self, message: str) -> None:
        """
        A fatal error: remember the first one and let the run end.
        """
        if self.error is None:
            self.error = message
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


class _DatagramTransport(Protocol_):
    """
    What L{ProbeDatagramProtocol} needs of its transport: a UDP port that
    can be connected to one peer.
    """

    def write(self, data: bytes) -> None: ...
    def connect(self, host: str, port: int) -> None: ...
    def stopListening(self) -> object: ...


class _StreamTransport(Protocol_):
    """
    What L{ProbeStreamProtocol} needs of its transport.
    """

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...


class ProbeChannel(Protocol_):
    """
    Something that can send the next probe: a UDP socket or a TCP connection.
    """

    def sendProbe(self, origin: float) -> None:
        """
        Create the next probe with RTT origin C{origin} and send it.
        """


class ProbeDatagramProtocol(DatagramProtocol):
    """
    One connected UDP socket sending probes and passing replies to the
    session.  Connected, so that only the target's datagrams come in and an
    ICMP "port unreachable" is reported as a refused connection.
    """

    transport: _DatagramTransport  # type: ignore[assignment]

    def __init__(self, session: ProbeSession, flow: int = 0) -> None:
        """
        @param flow: this socket's number, for per-socket reordering.
        """
        self.session = session
        self.flow = flow
        self._closing = False

    def sendProbe(self, origin: float) -> None:
        """
        Send the next probe.
        """
        probe = self.session.newProbe(origin)[1]
        if self.transport is None:
            self.session.sendErrors += 1
            return
        try:
            self.transport.write(probe)
        except (OSError, MessageLengthError):
            # counted as sent: it will time out and be lost, which is the
            # truth about this probe (the socket buffer was full, say)
            self.session.sendErrors += 1

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """
        A reply: the session finds its probe by the sequence number.
        """
        self.session.datagramReply(data, self.flow)

    def connectionRefused(self) -> None:
        """
        The target answered with ICMP "port unreachable": nothing listens.
        """
        self.session.fail(
            f"connection refused (no UDP service at {self.session.targetName})"
        )

    def stopProtocol(self) -> None:
        """
        The port closed.  Unless we closed it, that is the kernel reporting
        an ICMP "port unreachable" on the connected socket: Twisted's epoll
        reactor sees the socket error as a lost connection and closes the
        port instead of calling L{connectionRefused}.
        """
        if not self._closing:
            self.connectionRefused()

    def close(self) -> None:
        """
        Close on purpose (the run is over).
        """
        self._closing = True
        if self.transport is not None:
            self.transport.stopListening()


class ProbeStreamProtocol(Protocol):
    """
    One TCP connection carrying probes.  Replies come back in order, so the
    next C{n} bytes answer the oldest unanswered probe, whose expected reply
    is C{n} bytes long.

    @ivar oneShot: close after the first reply (C{--new-connection}).
    """

    transport: _StreamTransport  # type: ignore[assignment]

    def __init__(self, session: ProbeSession, oneShot: bool = False) -> None:
        self.session = session
        self.oneShot = oneShot
        self.connected = False
        self._fifo: deque[tuple[int, int]] = deque()
        self._buffer = bytearray()
        self._closing = False
        self.onConnect: Callable[[ProbeStreamProtocol], None] | None = None

    def connectionMade(self) -> None:
        """
        Connected: tell whoever is waiting to start sending.
        """
        self.connected = True
        if self.onConnect is not None:
            self.onConnect(self)

    def sendProbe(self, origin: float) -> None:
        """
        Send the next probe on this connection.
        """
        seq, probe, replyLength = self.session.newProbe(origin)
        self.sendPrepared(seq, probe, replyLength)

    def sendPrepared(self, seq: int, probe: bytes, replyLength: int) -> None:
        """
        Send probe C{seq}, already created by the session.
        """
        self._fifo.append((seq, replyLength))
        self.transport.write(probe)

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into replies by the expected lengths, oldest probe
        first, and hand each to the session.
        """
        buf = self._buffer
        buf += data
        fifo = self._fifo
        pos = 0
        while fifo and len(buf) - pos >= fifo[0][1]:
            seq, n = fifo.popleft()
            self.session.reply(seq, bytes(buf[pos : pos + n]))
            pos += n
        del buf[:pos]
        if buf and not fifo:
            # bytes nobody asked for
            self.session.tally.stray += 1
            buf.clear()
        if self.oneShot and not fifo and pos:
            self._closing = True
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        A connection we did not close is an error for the whole run.
        """
        self.connected = False
        if not self._closing:
            self.session.fail("connection lost: " + reason.getErrorMessage())

    def close(self) -> None:
        """
        Close on purpose (the run is over).
        """
        self._closing = True
        if self.connected:
            self.transport.loseConnection()


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


class PingDriver(_Schedule):
    """
    Ping mode: one probe every C{interval} seconds, C{count} of them (0 =
    until L{stopSending}).  Send times are anchored to the start, so the
    interval does not drift.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[], None],
        count: int,
        interval: float,
    ) -> None:
        self.clock = clock
        self.send = send
        self.count = count
        self.interval = interval
        self.sent = 0
        self._start = 0.0

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
        self.sent = 0
        self.unsent = 0
        self.start = 0.0
        self.lastSend = 0.0
        self.stoppedAt = 0.0
        self.interrupted = False

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


@dataclass
class ProbeResult:
    """
    Everything the summary and the JSON object say about one run.
    """

    target: str
    protocol: str
    tally: Tally
    elapsed: float
    rtt: Distribution
    connect: Distribution | None
    histogram: list[tuple[float, int]]
    rate: float | None = None
    achievedRate: float | None = None
    sustained: bool = True
    scheduled: int = 0
    unsent: int = 0
    sendErrors: int = 0

    @classmethod
    def fromSession(
        cls,
        session: ProbeSession,
        target: str,
        protocol: str,
        elapsed: float,
        load: LoadDriver | None = None,
    ) -> ProbeResult:
        """
        Summarise a finished session.
        """
        result = cls(
            target=target,
            protocol=protocol,
            tally=session.tally,
            elapsed=elapsed,
            rtt=Distribution.fromSamples(session.rtts),
            connect=(
                Distribution.fromSamples(session.connects)
                if protocol == "tcp"
                else None
            ),
            histogram=histogram(session.rtts),
            sendErrors=session.sendErrors,
        )
        if load is not None:
            result.rate = load.rate
            result.achievedRate = load.achievedRate
            result.sustained = load.sustained
            result.scheduled = load.scheduled
            result.unsent = load.unsent
        return result

    @property
    def exitCode(self) -> int:
        """
        0 when every probe got a correct reply, else 1 (errors are 2, decided
        by the caller).
        """
        t = self.tally
        return 1 if t.lost or t.corrupted or t.sent == 0 else 0

    def asJSON(self) -> dict[str, Any]:
        """
        The C{--json} object, with exactly the keys of SPEC section 9.1.
        """
        t = self.tally
        return {
            "target": self.target,
            "protocol": self.protocol,
            "sent": t.sent,
            "received": t.received,
            "lost": t.lost,
            "corrupted": t.corrupted,
            "duplicated": t.duplicated,
            "reordered": t.reordered,
            "late": t.late,
            "elapsed_s": round(self.elapsed, 6),
            "rtt_ms": _rounded(self.rtt),
            "connect_ms": None if self.connect is None else _rounded(self.connect),
            "histogram": [[bound, count] for bound, count in self.histogram],
            "achieved_rate": self.achievedRate,
        }


def _rounded(d: Distribution) -> dict[str, float | None]:
    """
    The fields of C{d} rounded to 0.1 microsecond (they are milliseconds):
    finer digits are timer noise.
    """
    return {k: None if v is None else round(v, 4) for k, v in d.asDict().items()}


def _ms(values: Sequence[float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.3f}" for v in values)


def formatHistogram(buckets: Sequence[tuple[float, int]], width: int = 40) -> list[str]:
    """
    A small text histogram: one line per log-spaced bucket.
    """
    if not buckets:
        return []
    top = max(count for _, count in buckets)
    lines = ["rtt histogram (ms):"]
    for bound, count in buckets:
        bar = "#" * (math.ceil(count * width / top) if count else 0)
        lines.append(f"  <= {bound:<8g} {count:>9d} {bar}".rstrip())
    return lines


def formatText(result: ProbeResult) -> str:
    """
    The summary, ping style, then the histogram.
    """
    t = result.tally
    lostPct = 100.0 * t.lost / t.sent if t.sent else 0.0
    lines = [
        f"--- {result.target} {result.protocol} probe statistics ---",
        f"{t.sent} sent, {t.received} received, {lostPct:.1f}% lost, "
        f"{t.corrupted} corrupted, {t.duplicated} duplicated, "
        f"{t.reordered} reordered, time {result.elapsed:.1f} s",
    ]
    if not result.rtt.empty:
        lines.append(
            f"rtt min/p50/avg/p90/p99/max/stddev = {_ms(result.rtt.values())} ms"
        )
    if result.connect is not None and not result.connect.empty:
        lines.append(
            "connect min/p50/avg/p90/p99/max/stddev = "
            f"{_ms(result.connect.values())} ms"
        )
    if t.late:
        lines.append(f"{t.late} late (replies after the timeout, counted as lost)")
    if t.stray:
        lines.append(f"{t.stray} replies matched no probe")
    if result.sendErrors:
        lines.append(f"{result.sendErrors} probes could not be sent (counted as lost)")
    if result.rate is not None and result.achievedRate is not None:
        if result.sustained:
            lines.append(
                f"rate {result.rate:g}/s requested, {result.achievedRate:.1f}/s achieved"
            )
        else:
            lines.append(
                f"rate {result.rate:g}/s NOT sustained: {result.achievedRate:.1f}/s "
                f"achieved, {result.unsent} of {result.scheduled} scheduled probes "
                "not sent"
            )
    lines.extend(formatHistogram(result.histogram))
    return "\n".join(lines) + "\n"


class TextObserver:
    """
    Writes one ping-style line per probe.

    @ivar onBroken: called once if the output goes away (C{| head}): there
        is no one left to tell, so the run should end.
    """

    def __init__(self, out: TextIO, target: str) -> None:
        self.out = out
        self.target = target
        self.broken = False
        self.onBroken: Callable[[], None] | None = None

    def _print(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except OSError:  # BrokenPipeError: the reader went away
            self.broken = True
            if self.onBroken is not None:
                self.onBroken()

    def replied(
        self,
        seq: int,
        verdict: Verdict,
        rttMs: float,
        size: int,
        connectMs: float | None,
    ) -> None:
        if verdict is Verdict.RECEIVED or verdict is Verdict.REORDERED:
            connect = "" if connectMs is None else f" connect={connectMs:.3f} ms"
            line = f"{size} bytes from {self.target}: seq={seq}{connect} time={rttMs:.3f} ms"
            if verdict is Verdict.REORDERED:
                line += " (reordered)"
        elif verdict is Verdict.CORRUPTED:
            line = f"seq={seq} corrupted"
        elif verdict is Verdict.DUPLICATE:
            line = f"seq={seq} duplicate"
        elif verdict is Verdict.LATE:
            line = f"seq={seq} late reply (after the timeout)"
        else:
            line = f"{size} bytes from {self.target} matching no probe"
        self._print(line)

    def timedOut(self, seq: int) -> None:
        self._print(f"seq={seq} timeout")


def _positive(
    kind: type[int] | type[float], name: str, low: float
) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, not {value!r}") from None
        if not number >= low or math.isinf(number):
            raise ValueError(f"{name} must be at least {low:g}, not {value!r}")
        return number

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


class ProbeOptions(usage.Options):
    """
    The command line of C{upperecho-client --probe}.
    """

    synopsis = (
        "Usage: upperecho-client --probe [--udp] [-c COUNT] [-i INTERVAL] [-s SIZE] [-W TIMEOUT] "
        "[--new-connection] [--json] [HOST] [PORT]\n"
        "       upperecho-client --probe --rate R --duration S [--concurrency C] [--udp] [--json] "
        "[HOST] [PORT]"
    )
    longdesc = (
        "Measure the path to an upperecho server with probes whose uppercase "
        "replies are checked.  Exit status: 0 every probe got a correct reply, "
        "1 some were lost or corrupted, 2 error."
    )
    optFlags = [
        ["probe", None, "Probe mode (accepted and ignored here)."],
        ["udp", None, "Probe over UDP instead of TCP."],
        ["new-connection", None, "TCP: open a new connection for every probe."],
        ["json", None, "Print one JSON object at the end instead of text."],
    ]
    optParameters = [
        [
            "count",
            "c",
            10,
            "Probes to send; 0 = until SIGINT.",
            _positive(int, "--count", 0),
        ],
        [
            "interval",
            "i",
            1.0,
            "Seconds between probes.",
            _positive(float, "--interval", 0.001),
        ],
        [
            "size",
            "s",
            64,
            f"Bytes per probe ({MIN_SIZE}..{MAX_SIZE}).",
            _positive(int, "--size", MIN_SIZE),
        ],
        [
            "timeout",
            "W",
            1.0,
            "Seconds to wait for each reply.",
            _positive(float, "--timeout", 0.001),
        ],
        [
            "rate",
            None,
            None,
            "Load mode: probes per second (open loop).",
            _positive(float, "--rate", 0.001),
        ],
        [
            "duration",
            None,
            None,
            "Load mode: seconds to run (default 10).",
            _positive(float, "--duration", 0.001),
        ],
        [
            "concurrency",
            None,
            1,
            "Load mode: TCP connections or UDP sockets.",
            _positive(int, "--concurrency", 1),
        ],
        ["encoding", None, "utf-8", "Encoding the server uppercases with."],
    ]

    def parseArgs(self, host: str = "localhost", port: str = "12000") -> None:
        """
        HOST (default localhost) and PORT (default 12000).
        """
        self["host"] = host
        try:
            self["port"] = usage.portCoerce(port)
        except ValueError as e:
            raise usage.UsageError(f"bad PORT {port!r}: {e}") from None

    def postOptions(self) -> None:
        """
        Check the options against each other and fill in load defaults.
        """
        if self["size"] > MAX_SIZE:
            raise usage.UsageError(
                f"--size must be at most {MAX_SIZE}, not {self['size']}"
            )
        try:
            checkEncoding(self["encoding"])
        except ValueError as e:
            raise usage.UsageError(f"--encoding: {e}") from None
        load = self["rate"] is not None
        if not load:
            if self["duration"] is not None:
                raise usage.UsageError("--duration needs --rate (load mode)")
            if self["concurrency"] != 1:
                raise usage.UsageError("--concurrency needs --rate (load mode)")
        else:
            if self["duration"] is None:
                self["duration"] = 10.0
            if self["new-connection"]:
                raise usage.UsageError("--new-connection is for ping mode, not --rate")
            if self["concurrency"] > 1000:
                raise usage.UsageError("--concurrency must be at most 1000")
        if self["udp"] and self["new-connection"]:
            raise usage.UsageError("--new-connection is for TCP, not --udp")


class ResolveError(Exception):
    """
    A host name that does not resolve to an IP address.
    """


def resolve(host: str, port: int, udp: bool) -> tuple[int, str]:
    """
    Resolve C{host} to one address, IPv4 first (the server listens on IPv4
    by default, and C{localhost} often lists C{::1} first).

    @return: address family and IP address.
    @raise ResolveError: if it cannot be resolved.
    """
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, kind)
    except (OSError, UnicodeError) as e:
        raise ResolveError(f"unknown host {host!r}: {e}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    for family, _, _, _, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return family, str(address[0])
    raise ResolveError(f"unknown host {host!r}")


#: socket buffer size asked for on probe sockets: a load run must not lose
#: replies in its own receive buffer while the reactor is busy sending
SOCKET_BUFFER = 4 * 1024 * 1024


def _enlargeBuffers(transport: object) -> None:
    """
    Ask for large send and receive buffers (the kernel caps them at
    C{net.core.rmem_max}/C{wmem_max}; a refusal is harmless).
    """
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class _StreamFactory(ClientFactory):
    """
    Builds one L{ProbeStreamProtocol} and reports a failed connect.
    """

    noisy = False

    def __init__(
        self,
        session: ProbeSession,
        oneShot: bool,
        onConnect: Callable[[ProbeStreamProtocol], None],
        onFail: Callable[[Failure], None],
    ) -> None:
        self.session = session
        self.oneShot = oneShot
        self.onConnect = onConnect
        self.onFail = onFail

    def buildProtocol(self, addr: Any) -> ProbeStreamProtocol:
        """
        The connection's protocol, wired to the session.
        """
        proto = ProbeStreamProtocol(self.session, self.oneShot)
        proto.onConnect = self.onConnect
        return proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """
        Refused, unreachable or timed out.
        """
        self.onFail(reason)


def _connectError(reason: Failure, target: str) -> str:
    if reason.check(ConnectionRefusedError):
        return f"connection refused by {target}"
    if reason.check(TimeoutError):
        return f"timed out connecting to {target}"
    if reason.check(ConnectError):
        return f"cannot connect to {target}: {reason.getErrorMessage()}"
    return f"cannot connect to {target}: {reason.getErrorMessage()}"


class ProbeRun:
    """
    One run of the probe command against a real reactor: opens the sockets
    or connections, drives a L{PingDriver} or a L{LoadDriver}, and prints the
    result.

    @ivar done: fires with the exit status.
    """

    def __init__(
        self,
        config: ProbeOptions,
        reactor: Any,
        family: int,
        ip: str,
        out: TextIO,
        err: TextIO,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.family = family
        self.ip = ip
        self.port: int = config["port"]
        self.out = out
        self.err = err
        self.timer = timer
        self.target = hostPort(ip, self.port)
        self.protocol = "udp" if config["udp"] else "tcp"
        self.load = config["rate"] is not None
        self.json = bool(config["json"])
        observer = None if self.load or self.json else TextObserver(out, self.target)
        #: the output's reader went away; the run ends with status 1
        self.outputBroken = False
        if observer is not None:
            observer.onBroken = self._outputGone
        self.session = ProbeSession(
            reactor,
            size=config["size"],
            timeout=config["timeout"],
            encoding=config["encoding"],
            timer=timer,
            observer=observer,
            sweepGranularity=0.005 if self.load else 0.0,
        )
        self.session.onIdle = self._maybeFinish
        self.session.targetName = self.target
        self.done: Deferred[int] = Deferred()
        self._driver: PingDriver | LoadDriver | None = None
        self._channels: list[Any] = []
        self._start = 0.0
        self._finished = False
        self._interrupted = 0
        self._progressCall: IDelayedCall | None = None

    # -- starting

    def start(self) -> Deferred[int]:
        """
        Open the channels, then start sending.
        """
        self._start = self.timer()
        if self.config["udp"]:
            self._startUDP()
        elif self.config["new-connection"]:
            self._header()
            self._startDriver()
        else:
            self._startTCP()
        return self.done

    def _header(self) -> None:
        if self.json:
            return
        c = self.config
        if self.load:
            unit = "socket(s)" if c["udp"] else "connection(s)"
            self._say(
                f"LOAD {self.target} {self.protocol}: {c['rate']:g} probes/s for "
                f"{c['duration']:g} s over {c['concurrency']} {unit}, "
                f"{c['size']} bytes per probe\n"
            )
        else:
            self._say(
                f"PROBE {c['host']} ({self.target}) {self.protocol}: "
                f"{c['size']} bytes per probe\n"
            )

    def _say(self, text: str) -> None:
        """
        Write to the output, unless its reader has gone away (C{| head}):
        then end the run instead of raising out of a reactor callback.
        """
        if self.outputBroken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:  # BrokenPipeError
            self._outputGone()

    def _startUDP(self) -> None:
        interface = "::" if self.family == socket.AF_INET6 else ""
        try:
            for flow in range(self.config["concurrency"]):
                proto = ProbeDatagramProtocol(self.session, flow)
                self.reactor.listenUDP(
                    0, proto, interface=interface, maxPacketSize=65535
                )
                proto.transport.connect(self.ip, self.port)
                _enlargeBuffers(proto.transport)
                self._channels.append(proto)
        except Exception as e:
            self._fatal(f"cannot open a UDP socket: {e}")
            return
        self._header()
        self._startDriver()

    def _startTCP(self) -> None:
        wanted = self.config["concurrency"]
        self._header()
        began = self.timer()

        def connected(proto: ProbeStreamProtocol) -> None:
            self.session.connects.append((self.timer() - began) * 1000.0)
            self._channels.append(proto)
            if len(self._channels) == wanted:
                if not self.json and not self.load:
                    self._say(
                        f"connected to {self.target} in {self.session.connects[0]:.3f} ms\n"
                    )
                self._startDriver()

        def failed(reason: Failure) -> None:
            self._fatal(_connectError(reason, self.target))

        factory = _StreamFactory(self.session, False, connected, failed)
        for _ in range(wanted):
            self.reactor.connectTCP(
                self.ip, self.port, factory, timeout=max(self.config["timeout"], 1.0)
            )

    def _startDriver(self) -> None:
        if self._finished:
            return
        if self.load:
            load = LoadDriver(
                self.reactor,
                self.timer,
                self._channels,
                self.config["rate"],
                self.config["duration"],
                grace=max(1.0, self.config["timeout"]),
            )
            load.onDone = self._maybeFinish
            self._driver = load
            self._start = self.timer()
            load.begin()
            if self.err.isatty():
                self._progressCall = self.reactor.callLater(1.0, self._progress)
        else:
            send: Callable[[], None]
            if self.config["new-connection"]:
                send = self._sendNewConnection
            else:
                channel = self._channels[0]

                def send() -> None:
                    channel.sendProbe(self.timer())

            ping = PingDriver(
                self.reactor, send, self.config["count"], self.config["interval"]
            )
            ping.onDone = self._maybeFinish
            self._driver = ping
            self._start = self.timer()
            ping.start()

    def _sendNewConnection(self) -> None:
        """
        C{--new-connection}: this probe's own connection, timed on its own.
        """
        began = self.timer()
        seq, probe, replyLength = self.session.newProbe(began)

        def connected(proto: ProbeStreamProtocol) -> None:
            if not self.session.tally.isPending(seq):
                proto.close()
                return
            self.session.exchangeStarted(seq, (self.timer() - began) * 1000.0)
            proto.sendPrepared(seq, probe, replyLength)

        def failed(reason: Failure) -> None:
            if reason.check(TimeoutError):
                return  # the probe times out on its own
            self.session.fail(_connectError(reason, self.target))

        factory = _StreamFactory(self.session, True, connected, failed)
        self.reactor.connectTCP(
            self.ip, self.port, factory, timeout=self.config["timeout"]
        )

    # -- progress and the end

    def _progress(self) -> None:
        """
        Refresh the progress line on the terminal (load mode).
        """
        load = self._driver
        if self._finished or not isinstance(load, LoadDriver):
            return
        elapsed = self.timer() - self._start
        t = self.session.tally
        resolved = t.received + t.corrupted + t.lost
        loss = 100.0 * t.lost / resolved if resolved else 0.0
        # at most ~20,000 evenly spread samples: sorting a long run's whole
        # history every second would steal the time the probes need
        rtts = self.session.rtts
        ordered = sorted(rtts[:: len(rtts) // 20000 + 1])
        p50, p99 = (percentile(ordered, p) for p in (50, 99))
        p50s = "-" if p50 is None else f"{p50:.3f}"
        p99s = "-" if p99 is None else f"{p99:.3f}"
        rate = load.sent / elapsed if elapsed > 0 else 0.0
        self.err.write(
            f"\r{min(elapsed, load.duration):.0f}/{load.duration:g} s  "
            f"{rate:.0f} probes/s  loss {loss:.2f}%  "
            f"p50 {p50s} ms  p99 {p99s} ms\x1b[K"
        )
        self.err.flush()
        self._progressCall = self.reactor.callLater(1.0, self._progress)

    def interrupt(self) -> None:
        """
        SIGINT: the first one stops sending and waits for the probes in
        flight (at most one timeout); a second one stops waiting.
        """
        self._interrupted += 1
        if self._interrupted > 1:
            self.session.abandon()
            self._finish()
            return
        if self._driver is None:
            self._finish()
        elif isinstance(self._driver, LoadDriver):
            self._driver.interrupt()
        else:
            self._driver.stopSending()

    def _fatal(self, message: str) -> None:
        self.session.fail(message)
        self._finish()

    def _maybeFinish(self) -> None:
        """
        End the run on an error, or once sending is over and nothing is
        outstanding.
        """
        if self.session.error is not None:
            self._finish()
            return
        driver = self._driver
        if driver is not None and driver.done and self.session.tally.pending == 0:
            self._finish()

    def _finish(self) -> None:
        """
        Stop everything, print the summary or JSON and fire L{done}.
        """
        if self._finished:
            return
        self._finished = True
        if self._progressCall is not None and self._progressCall.active():
            self._progressCall.cancel()
            self.err.write("\r\x1b[K")
        if self._driver is not None:
            self._driver.stopSending()
        self.session.abandon()
        for channel in self._channels:
            channel.close()
        elapsed = self.timer() - self._start
        code = 2 if self.session.error is not None else 0
        if self.session.tally.sent:
            load = self._driver if isinstance(self._driver, LoadDriver) else None
            result = ProbeResult.fromSession(
                self.session, self.target, self.protocol, elapsed, load
            )
            if self.json:
                self._say(json.dumps(result.asJSON()) + "\n")
            else:
                self._say(formatText(result))
            if load is not None and not result.sustained and self.json:
                self.err.write(
                    f"upperecho-client: rate {load.rate:g}/s not sustained "
                    f"({result.achievedRate:.1f}/s achieved)\n"
                )
            if code == 0:
                code = result.exitCode
        elif code == 0:
            code = 1
        if self.outputBroken and code == 0:
            code = 1
        if self.session.error is not None:
            self.err.write(f"upperecho-client: {self.session.error}\n")
        self.err.flush()
        self.done.callback(code)

    def _outputGone(self) -> None:
        """
        Nobody reads the output any more: stop, once this callback is over.
        """
        self.outputBroken = True
        self.reactor.callLater(0, self._finish)


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """
    Run C{upperecho-client --probe ...}.

    @param argv: the arguments without the program name (C{--probe} may be
        among them).
    @return: the exit status: 0 all correct, 1 lost or corrupted, 2 error.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    config = ProbeOptions()
    try:
        config.parseOptions(argv)
    except usage.UsageError as e:
        err.write(f"upperecho-client: {e}\n")
        return 2
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else 0
    try:
        family, ip = resolve(config["host"], config["port"], bool(config["udp"]))
    except ResolveError as e:
        err.write(f"upperecho-client: {e}\n")
        return 2

    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    run = ProbeRun(config, reactor, family, ip, out, err)
    codes: list[int] = []

    def begin() -> None:
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(run.interrupt))
        d = run.start()
        d.addCallback(codes.append)

        def crashed(failure: Failure) -> None:
            err.write(f"upperecho-client: {failure.getErrorMessage()}\n")
            codes.append(2)

        d.addErrback(crashed)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(begin)
    reactor.run()
    if run.outputBroken and out is sys.stdout:
        # as the Python docs advise: no "Exception ignored" at exit when the
        # interpreter flushes a stdout whose reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return codes[0] if codes else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
