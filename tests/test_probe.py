"""
Tests for L{upperecho.probe}, driven by L{Clock}, L{StringTransport} and
L{FakeDatagramTransport}: no sockets, no sleeps.  The clock's C{seconds} is
also the session's timer, so round-trip times are exact.
"""

from __future__ import annotations

import contextlib
import io
import json
import random

from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import PROBE_JSON_KEYS, assertNear
from upperecho.scripts.probe import (
    MIN_SIZE,
    LoadDriver,
    PingDriver,
    ProbeDatagramProtocol,
    ProbeOptions,
    ProbeResult,
    ProbeSession,
    ProbeStreamProtocol,
    TextObserver,
    formatText,
    main,
    makeProbe,
    probeSequence,
)
from upperecho.scripts.probe.stats import Tally, Verdict
from upperecho.transform import upper

TARGET = "127.0.0.1:12001"


class UDPHarness:
    """
    A probe session over one fake UDP socket, with a ping driver.
    """

    def __init__(
        self, count: int = 3, interval: float = 1.0, timeout: float = 1.0
    ) -> None:
        self.clock = Clock()
        self.out = io.StringIO()
        self.session = ProbeSession(
            self.clock,
            size=64,
            timeout=timeout,
            timer=self.clock.seconds,
            rng=random.Random(7),
            observer=TextObserver(self.out, TARGET),
        )
        self.proto = ProbeDatagramProtocol(self.session)
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.driver = PingDriver(
            self.clock,
            lambda: self.proto.sendProbe(self.clock.seconds()),
            count,
            interval,
        )

    def probe(self, i: int) -> bytes:
        """
        The i-th datagram sent (from 0).
        """
        data: bytes = self.transport.written[i][0]
        return data

    def answer(self, i: int, reply: bytes | None = None) -> None:
        """
        Deliver the correct reply (or C{reply}) to the i-th probe.
        """
        data = upper(self.probe(i)) if reply is None else reply
        self.proto.datagramReceived(data, ("127.0.0.1", 12001))

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


class ProbeFormatTests(SynchronousTestCase):
    """
    The probe framing.
    """

    def test_layout(self) -> None:
        """
        Eight digits, a space, lowercase letters; exactly SIZE bytes.
        """
        rng = random.Random(1)
        for size in (MIN_SIZE, 64, 1500):
            p = makeProbe(42, size, rng)
            self.assertEqual(len(p), size)
            self.assertEqual(p[:9], b"00000042 ")
            self.assertTrue(p[9:].isalpha() and p[9:].islower())
        self.assertEqual(probeSequence(makeProbe(123456789, 20, rng)), 23456789)

    def test_sequenceOfReply(self) -> None:
        """
        The uppercase reply carries the same sequence number; garbage has none.
        """
        p = makeProbe(7, 30, random.Random(2))
        self.assertEqual(probeSequence(upper(p)), 7)
        self.assertIsNone(probeSequence(b"hello world"))
        self.assertIsNone(probeSequence(b"0000007"))


class PingUDPTests(SynchronousTestCase):
    """
    Ping mode over UDP.
    """

    def test_received(self) -> None:
        """
        A correct reply gives a ping-style line with its round-trip time.
        """
        h = UDPHarness(count=3)
        h.driver.start()
        h.clock.advance(0.0002)
        h.answer(0)
        self.assertEqual(h.lines(), [f"64 bytes from {TARGET}: seq=1 time=0.200 ms"])
        self.assertEqual(list(h.session.rtts), [0.2 * 1000 / 1000])

    def test_interval(self) -> None:
        """
        Probes go out every INTERVAL seconds, COUNT of them, then the driver
        is done.
        """
        h = UDPHarness(count=3, interval=0.5)
        done: list[bool] = []
        h.driver.onDone = lambda: done.append(True)
        h.driver.start()
        self.assertEqual(len(h.transport.written), 1)
        h.clock.advance(0.499)
        self.assertEqual(len(h.transport.written), 1)
        h.clock.advance(0.001)
        self.assertEqual(len(h.transport.written), 2)
        h.clock.advance(0.5)
        self.assertEqual(len(h.transport.written), 3)
        self.assertEqual(done, [True])
        h.clock.advance(5)
        self.assertEqual(len(h.transport.written), 3)

    def test_timeoutExactly(self) -> None:
        """
        A probe with no reply times out at exactly TIMEOUT, not before.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.clock.advance(0.999)
        self.assertEqual(h.lines(), [])
        self.assertEqual(h.session.tally.lost, 0)
        h.clock.advance(0.001)
        self.assertEqual(h.lines(), ["seq=1 timeout"])
        self.assertEqual(h.session.tally.lost, 1)

    def test_late(self) -> None:
        """
        A reply after the timeout is late: counted lost (and late), never
        received, and its time is not a sample.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.clock.advance(1.5)
        h.answer(0)
        t = h.session.tally
        self.assertEqual((t.received, t.lost, t.late), (0, 1, 1))
        self.assertEqual(list(h.session.rtts), [])
        self.assertEqual(
            h.lines(), ["seq=1 timeout", "seq=1 late reply (after the timeout)"]
        )

    def test_lateBeforeSweep(self) -> None:
        """
        A reply judged by its own time: past the deadline it is late even if
        the timeout timer has not run yet.
        """
        h = UDPHarness(count=1, timeout=1.0)
        h.driver.start()
        h.session.stop()  # no timer: only the reply's time decides
        h.clock.advance(1.001)
        self.assertEqual(h.session.reply(1, upper(h.probe(0))), Verdict.LATE)
        self.assertEqual(h.session.tally.received, 0)

    def test_duplicate(self) -> None:
        """
        A second reply to one probe is a duplicate.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.answer(0)
        h.answer(0)
        t = h.session.tally
        self.assertEqual((t.received, t.duplicated), (1, 1))
        self.assertEqual(h.lines()[1], "seq=1 duplicate")

    def test_reordered(self) -> None:
        """
        A reply arriving after a later probe's reply is reordered (and still
        received).
        """
        h = UDPHarness(count=3, interval=0.1)
        h.driver.start()
        h.clock.advance(0.2)
        h.answer(1)
        h.answer(0)
        h.answer(2)
        t = h.session.tally
        self.assertEqual((t.received, t.reordered), (3, 1))
        self.assertTrue(h.lines()[1].endswith("seq=1 time=200.000 ms (reordered)"))

    def test_corrupted(self) -> None:
        """
        A plain echo (right sequence number, bytes not uppercased) is
        corrupted, not received.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.answer(0, h.probe(0))
        t = h.session.tally
        self.assertEqual((t.received, t.corrupted, t.lost), (0, 1, 0))
        self.assertEqual(h.lines(), ["seq=1 corrupted"])

    def test_stray(self) -> None:
        """
        A datagram that is no reply to any probe is counted apart.
        """
        h = UDPHarness(count=1)
        h.driver.start()
        h.proto.datagramReceived(b"HELLO", ("127.0.0.1", 12001))
        self.assertEqual(h.session.tally.stray, 1)
        self.assertEqual(h.session.tally.pending, 1)

    def test_refused(self) -> None:
        """
        ICMP port unreachable on the connected socket is a fatal error.
        """
        h = UDPHarness(count=1)
        idle: list[bool] = []
        h.session.onIdle = lambda: idle.append(True)
        h.proto.connectionRefused()
        self.assertIn("refused", h.session.error or "")
        self.assertEqual(idle, [True])

    def test_portClosedUnasked(self) -> None:
        """
        The port closing by itself (how the epoll reactor reports an ICMP
        port unreachable) is a refusal; closing it on purpose is not.
        """
        h = UDPHarness(count=1)
        h.proto.stopProtocol()
        self.assertIn("refused", h.session.error or "")
        other = UDPHarness(count=1)
        other.proto._closing = True
        other.proto.stopProtocol()
        self.assertIsNone(other.session.error)

    def test_stopEarly(self) -> None:
        """
        C{stopSending} (SIGINT) stops the schedule; probes in flight still
        get their reply or timeout.
        """
        h = UDPHarness(count=0, interval=1.0)
        h.driver.start()
        h.clock.advance(1.0)
        h.driver.stopSending()
        h.clock.advance(10)
        self.assertEqual(len(h.transport.written), 2)
        self.assertEqual(h.session.tally.lost, 2)


class StreamTests(SynchronousTestCase):
    """
    Probes over one TCP connection, replies split by length.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.session = ProbeSession(
            self.clock, size=20, timer=self.clock.seconds, rng=random.Random(3)
        )
        self.proto = ProbeStreamProtocol(self.session)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_anySplit(self) -> None:
        """
        However the replies are cut into reads, each is matched to its probe.
        """
        for _ in range(3):
            self.proto.sendProbe(self.clock.seconds())
        reply = upper(self.transport.value())
        self.assertEqual(len(reply), 60)
        for cut in (1, 7, 19, 20, 21, 13):
            self.proto.dataReceived(reply[:cut])
            reply = reply[cut:]
        self.proto.dataReceived(reply)
        self.assertEqual(self.session.tally.received, 3)
        self.assertEqual(self.session.tally.pending, 0)

    def test_echoCorrupted(self) -> None:
        """
        A plain echo server's replies are all corrupted.
        """
        for _ in range(2):
            self.proto.sendProbe(self.clock.seconds())
        self.proto.dataReceived(self.transport.value())
        self.assertEqual(self.session.tally.corrupted, 2)
        self.assertEqual(self.session.tally.received, 0)

    def test_lateOnStream(self) -> None:
        """
        A TCP reply after its timeout is late, and the framing of the next
        reply still holds.
        """
        self.proto.sendProbe(self.clock.seconds())
        self.clock.advance(1.0)
        self.proto.sendProbe(self.clock.seconds())
        reply = upper(self.transport.value())
        self.proto.dataReceived(reply)
        t = self.session.tally
        self.assertEqual((t.lost, t.late, t.received), (1, 1, 1))

    def test_lostConnection(self) -> None:
        """
        The server closing the connection is an error; closing it ourselves
        is not.
        """
        self.proto.connectionLost()
        self.assertIn("connection lost", self.session.error or "")
        other = ProbeSession(self.clock, timer=self.clock.seconds)
        proto = ProbeStreamProtocol(other)
        proto.makeConnection(StringTransport())
        proto.close()
        proto.connectionLost()
        self.assertIsNone(other.error)

    def test_oneShot(self) -> None:
        """
        C{--new-connection}: the connection closes after its one reply, and
        the connect time is reported on the probe's line.
        """
        out = io.StringIO()
        self.session.observer = TextObserver(out, TARGET)
        proto = ProbeStreamProtocol(self.session, oneShot=True)
        transport = StringTransport()
        seq, probe, n = self.session.newProbe(self.clock.seconds())
        self.clock.advance(0.003)
        proto.makeConnection(transport)
        self.session.exchangeStarted(seq, 3.0)
        proto.sendPrepared(seq, probe, n)
        self.clock.advance(0.001)
        proto.dataReceived(upper(transport.value()))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(
            out.getvalue(),
            f"20 bytes from {TARGET}: seq=1 connect=3.000 ms time=1.000 ms\n",
        )
        self.assertEqual(list(self.session.connects), [3.0])


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


class OutputTests(SynchronousTestCase):
    """
    The summary, the histogram and the JSON object.
    """

    def result(self) -> ProbeResult:
        clock = Clock()
        session = ProbeSession(clock, timer=clock.seconds, rng=random.Random(9))
        for i in range(4):
            seq, probe, _ = session.newProbe(clock.seconds())
            clock.advance(0.0001 * (i + 1))
            if i < 3:
                session.reply(seq, upper(probe))
        clock.advance(2)
        return ProbeResult.fromSession(session, TARGET, "udp", 9.94)

    def test_text(self) -> None:
        """
        The summary lines are those of SPEC section 9.1, then a histogram.
        """
        lines = formatText(self.result()).splitlines()
        self.assertEqual(lines[0], f"--- {TARGET} udp probe statistics ---")
        self.assertEqual(
            lines[1],
            "4 sent, 3 received, 25.0% lost, 0 corrupted, 0 duplicated, "
            "0 reordered, time 9.9 s",
        )
        self.assertEqual(
            lines[2],
            "rtt min/p50/avg/p90/p99/max/stddev = "
            "0.100/0.200/0.200/0.300/0.300/0.300/0.082 ms",
        )
        self.assertEqual(lines[3], "rtt histogram (ms):")
        self.assertTrue(lines[4].startswith("  <= 0.1 "))
        self.assertTrue(lines[4].endswith("1 " + "#" * 20))

    def test_jsonKeys(self) -> None:
        """
        The JSON object has exactly the SPEC's keys; UDP has no connect
        times; ping mode has no achieved rate.
        """
        obj = json.loads(json.dumps(self.result().asJSON()))
        self.assertEqual(list(obj), PROBE_JSON_KEYS)
        self.assertEqual(
            list(obj["rtt_ms"]), ["min", "p50", "avg", "p90", "p99", "max", "stddev"]
        )
        self.assertIsNone(obj["connect_ms"])
        self.assertIsNone(obj["achieved_rate"])
        self.assertEqual(sum(c for _, c in obj["histogram"]), 3)
        self.assertEqual(obj["lost"], 1)

    def test_noSamples(self) -> None:
        """
        With nothing received, the RTT values are null.
        """
        result = ProbeResult.fromSession(ProbeSession(Clock()), TARGET, "tcp", 1.0)
        obj = result.asJSON()
        self.assertEqual(set(obj["rtt_ms"].values()), {None})
        self.assertEqual(set(obj["connect_ms"].values()), {None})
        self.assertEqual(obj["histogram"], [])

    def test_exitCode(self) -> None:
        """
        0 only when every probe got a correct reply.
        """
        self.assertEqual(self.result().exitCode, 1)
        t = Tally()
        t.reply(t.send(), True, True)
        ok = ProbeResult(TARGET, "udp", t, 1.0, self.result().rtt, None, [])
        self.assertEqual(ok.exitCode, 0)
        t.reply(t.send(), False, True)
        self.assertEqual(ok.exitCode, 1)


class OptionsTests(SynchronousTestCase):
    """
    The command line.
    """

    def parse(self, *args: str) -> ProbeOptions:
        o = ProbeOptions()
        o.parseOptions(list(args))
        return o

    def test_defaults(self) -> None:
        """
        SPEC defaults: TCP to localhost:12000, 10 probes of 64 bytes, one per
        second, 1 s timeout; C{--probe} itself is accepted.
        """
        o = self.parse("--probe")
        self.assertEqual(
            (o["host"], o["port"], o["count"], o["interval"], o["size"]),
            ("localhost", 12000, 10, 1.0, 64),
        )
        self.assertEqual((o["timeout"], o["rate"], o["concurrency"]), (1.0, None, 1))
        self.assertFalse(o["udp"])

    def test_load(self) -> None:
        """
        C{--rate} alone runs 10 s.
        """
        o = self.parse("--rate", "500", "--udp", "--concurrency", "4", "h", "7")
        self.assertEqual((o["rate"], o["duration"], o["concurrency"]), (500, 10, 4))
        self.assertEqual((o["host"], o["port"]), ("h", 7))

    def test_bad(self) -> None:
        """
        Bad values are usage errors naming the option.
        """
        for args, word in [
            (["-c", "-1"], "--count"),
            (["-s", "5"], "--size"),
            (["-s", "70000"], "--size"),
            (["-W", "x"], "--timeout"),
            (["--duration", "3"], "--rate"),
            (["--concurrency", "3"], "--rate"),
            (["--udp", "--new-connection"], "--new-connection"),
            (["--encoding", "nope"], "--encoding"),
            (["h", "70000"], "PORT"),
        ]:
            with self.assertRaises(usage.UsageError) as e:
                self.parse(*args)
            self.assertIn(word, str(e.exception))

    def test_mainBadOption(self) -> None:
        """
        C{main} turns a bad option into exit status 2 and one line on stderr.
        """
        err = io.StringIO()
        self.assertEqual(main(["--probe", "-s", "1"], io.StringIO(), err), 2)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertIn("--size", err.getvalue())

    def test_mainHelp(self) -> None:
        """
        C{--help} prints the usage and returns 0 instead of raising
        C{SystemExit} into the caller.
        """
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["--probe", "--help"]), 0)
        self.assertIn("Usage: upperecho-client --probe", out.getvalue())
