"""
Tests for L{upperecho.tcp}: the protocol and the factory over
L{StringTransport} and L{Clock}, and a hypothesis state machine of
arbitrary reads, pauses and half-closes.  (The eager-send fast path has its
own module, C{test_tcp_eager}.)
"""

from __future__ import annotations

from typing import cast

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import (
    StringTransport,
)
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol
from upperecho.transform import upper

PEER = IPv4Address("TCP", "192.0.2.7", 40000)


def connect(
    factory: UpperEchoFactory, peer: IPv4Address = PEER
) -> tuple[UpperEchoProtocol, StringTransport]:
    """
    Build a protocol from C{factory} and connect it to a fresh
    L{StringTransport}, as the reactor would on C{accept()}.
    """
    proto = factory.buildProtocol(peer)
    assert isinstance(proto, UpperEchoProtocol)
    transport = StringTransport(peerAddress=peer)
    proto.makeConnection(transport)
    return proto, transport


def lose(proto: UpperEchoProtocol, transport: StringTransport) -> None:
    """
    Finish a connection the way the reactor does after C{loseConnection}.
    """
    transport.unregisterProducer()
    proto.connectionLost()


class ProtocolTests(SynchronousTestCase):
    """
    Stream semantics, chunking, half-close and backpressure.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = UpperEchoFactory(clock=self.clock)
        self.proto, self.transport = connect(self.factory)

    def test_interface(self) -> None:
        """
        The protocol is half-closeable, so EOF does not discard the answer.
        """
        self.assertTrue(verifyObject(IHalfCloseableProtocol, self.proto))

    def test_answersWithoutNewline(self) -> None:
        """
        The textbook client sends a sentence with no newline: it is answered
        at once.
        """
        self.proto.dataReceived(b"hello world")
        self.assertEqual(self.transport.value(), b"HELLO WORLD")

    def test_streamOfLines(self) -> None:
        """
        Each read is answered as it arrives, in order.
        """
        self.proto.dataReceived(b"one\n")
        self.proto.dataReceived(b"two\nthr")
        self.proto.dataReceived(b"ee\n")
        self.assertEqual(self.transport.value(), b"ONE\nTWO\nTHREE\n")

    def test_splitCharacter(self) -> None:
        """
        A UTF-8 character split across reads is held, not mangled.
        """
        data = "straße ǆ".encode()
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        self.assertEqual(self.transport.value(), "STRASSE Ǆ".encode())

    def test_halfClose(self) -> None:
        """
        After the peer's EOF, held bytes are sent as they are, the producer is
        unregistered and the connection is closed (after flushing).
        """
        self.proto.dataReceived(b"bye \xe4\xb8")
        self.assertEqual(self.transport.value(), b"BYE ")
        self.proto.readConnectionLost()
        self.assertEqual(self.transport.value(), b"BYE \xe4\xb8")
        self.assertIsNone(self.transport.producer)
        self.assertTrue(self.transport.disconnecting)

    def test_selfProducer(self) -> None:
        """
        The transport is its own streaming producer: when its write buffer
        fills, the transport stops reading from the peer.
        """
        self.assertIs(self.transport.producer, self.transport)
        self.assertTrue(self.transport.streaming)

    def test_pauseResume(self) -> None:
        """
        Pausing (buffer full) and resuming (buffer drained) go to the
        transport, and nothing is lost across a pause.
        """
        self.proto.dataReceived(b"abc")
        producer = self.transport.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.proto.dataReceived(b"def")
        self.assertEqual(self.transport.value(), b"ABCDEF")

    def test_writeConnectionLost(self) -> None:
        """
        If the peer can no longer receive, the connection is closed.
        """
        self.proto.writeConnectionLost()
        self.assertTrue(self.transport.disconnecting)
        self.assertIsNone(self.transport.producer)

    def test_encoding(self) -> None:
        """
        The factory's encoding is used.
        """
        factory = UpperEchoFactory(encoding="latin-1", clock=self.clock)
        proto, transport = connect(factory)
        proto.dataReceived("ÿé".encode("latin-1"))
        self.assertEqual(transport.value(), "ÿÉ".encode("latin-1"))

    def test_badEncoding(self) -> None:
        """
        A factory cannot be built with an unknown encoding.
        """
        self.assertRaises(ValueError, UpperEchoFactory, encoding="nope")


class LimitTests(SynchronousTestCase):
    """
    --max-connections and --idle-timeout.
    """

    def setUp(self) -> None:
        self.clock = Clock()

    def test_maxConnections(self) -> None:
        """
        Connection N+1 is refused (no protocol: the reactor closes it at
        once) and counted; when one closes, a new one is accepted.
        """
        factory = UpperEchoFactory(maxConnections=2, clock=self.clock)
        first = connect(factory)
        connect(factory)
        self.assertIsNone(factory.buildProtocol(PEER))
        self.assertEqual(factory.refused, 1)
        lose(*first)
        self.assertIsInstance(factory.buildProtocol(PEER), UpperEchoProtocol)

    def test_maxConnectionsLogged(self) -> None:
        """
        A refusal is logged with the peer address, once per peer per minute.
        """
        factory = UpperEchoFactory(maxConnections=1, clock=self.clock)
        connect(factory)
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        for _ in range(5):
            factory.buildProtocol(PEER)
        refusals = [e for e in events if e.get("peer") == "192.0.2.7:40000"]
        self.assertEqual(len(refusals), 1)
        self.assertEqual(factory.refused, 5)

    def test_idleClosed(self) -> None:
        """
        A connection silent since it opened is closed no sooner than the
        idle timeout and no later than one sweep interval after it.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        _, transport = connect(factory)
        self.clock.pump([0.5] * 21)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.5)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(factory.idleClosed, 1)

    def test_activeNotClosed(self) -> None:
        """
        A connection that keeps sending is never closed, and one that stops
        is closed within the timeout plus one sweep interval of its last
        byte, never before the timeout.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        proto, transport = connect(factory)
        for _ in range(100):
            self.clock.advance(3)
            proto.dataReceived(b"x")
        self.assertFalse(transport.disconnecting)
        lastByte = self.clock.seconds()
        while not transport.disconnecting:
            self.clock.advance(0.5)
        silent = self.clock.seconds() - lastByte
        self.assertGreaterEqual(silent, 10)
        self.assertLessEqual(silent, 10 + factory.sweepInterval + 0.5)

    def test_idleTimeoutOff(self) -> None:
        """
        With a timeout of 0 no connection is ever closed for silence; the
        sweep still runs, every 5 s, for the fair share's sake.
        """
        factory = UpperEchoFactory(idleTimeout=0, clock=self.clock)
        _, transport = connect(factory)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [5.0])
        self.clock.pump([5.0] * 1000)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(factory.idleClosed, 0)

    def test_idleStuckPeerAborted(self) -> None:
        """
        An idle connection that cannot finish closing (its peer reads
        nothing) is aborted one sweep later.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        _, transport = connect(factory)
        self.clock.pump([1.0] * 11)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(factory.sweepInterval)
        self.assertTrue(transport.disconnected)

    def test_halfClosedThenIdle(self) -> None:
        """
        A connection that half-closed and then went silent (its peer reads
        nothing) is ended by the idle sweep without unregistering the
        producer twice, which a real transport may refuse.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        proto, transport = connect(factory)
        proto.dataReceived(b"owed")
        proto.readConnectionLost()
        self.assertIsNone(transport.producer)
        # StringTransport raises on a second unregisterProducer
        self.clock.pump([1.0] * 12)
        self.assertTrue(transport.disconnected)

    def test_idleCloseLogThrottled(self) -> None:
        """
        Idle closes are logged at most once per peer address per minute, so a
        swarm of silent connections cannot flood the log.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        for port in range(40000, 40005):
            connect(factory, IPv4Address("TCP", "192.0.2.7", port))
        connect(factory, IPv4Address("TCP", "192.0.2.8", 40000))
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.clock.pump([1.0] * 11)
        self.assertEqual(factory.idleClosed, 6)
        logged = sorted(str(e["peer"]) for e in events if "timeout" in e)
        self.assertEqual(len(logged), 2)
        self.assertTrue(logged[0].startswith("192.0.2.7:"))
        self.assertEqual(logged[1], "192.0.2.8:40000")

    def test_sweepStopsWhenEmpty(self) -> None:
        """
        With no connection left, the sweep timer runs out at its next turn
        and is not scheduled again; a new connection schedules it anew.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        lose(*connect(factory))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(factory.sweepInterval)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connect(factory)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)


#: text with multi-byte UTF-8 characters, including ones whose uppercase
#: form is longer (ß, ŉ, ﬁ) and ones with none (中)
TEXT = st.text(
    alphabet=st.sampled_from("aZ 9\nßŉﬁǆ中é€😀ıſ\x00") | st.characters(codec="utf-8"),
    max_size=40,
)


#: held bytes at most: the tail of one incomplete UTF-8 character
MAX_HELD = 3


class LenientTransport(StringTransport):
    """
    A L{StringTransport} that, like Twisted's real stream transports (TCP,
    TLS), accepts C{unregisterProducer} when no producer is registered: the
    idle sweep may close a connection that has already half-closed.
    """

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class StreamMachine(RuleBasedStateMachine):
    """
    One L{UpperEchoProtocol} over a L{StringTransport}: data in random
    chunks (random bytes, UTF-8 text cut inside characters), the transport
    pausing and resuming itself, the idle sweep, half-close and loss.
    """

    @initialize()
    def connect(self) -> None:
        self.clock = Clock()
        self.factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        proto = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4000))
        assert isinstance(proto, UpperEchoProtocol)
        self.proto = proto
        self.transport = LenientTransport()
        self.proto.makeConnection(self.transport)
        self.sent = b""
        self.halfClosed = False
        self.lost = False

    def open(self) -> bool:
        """
        Whether the peer can still send: not half-closed, lost or closing.
        """
        return not (self.halfClosed or self.lost or self.transport.disconnecting)

    def feed(self, data: bytes) -> None:
        self.sent += data
        self.proto.dataReceived(data)

    @precondition(open)
    @rule(data=st.binary(max_size=64))
    def randomBytes(self, data: bytes) -> None:
        """
        Any bytes at all, valid UTF-8 or not.
        """
        self.feed(data)

    @precondition(open)
    @rule(text=TEXT, cut=st.integers(min_value=0, max_value=200))
    def splitText(self, text: str, cut: int) -> None:
        """
        UTF-8 text in two reads, cut anywhere, often inside a character.
        """
        data = text.encode()
        cut = cut % (len(data) + 1)
        self.feed(data[:cut])
        self.feed(data[cut:])

    @precondition(open)
    @rule(text=TEXT)
    def bytewise(self, text: str) -> None:
        """
        UTF-8 text one byte per read.
        """
        for b in text.encode():
            self.feed(bytes([b]))

    @precondition(lambda self: not (self.lost or self.transport.disconnecting))
    @rule()
    def pause(self) -> None:
        """
        The transport's buffer passed its high-water mark: it pauses itself.
        """
        self.transport.pauseProducing()

    @precondition(lambda self: not (self.lost or self.transport.disconnecting))
    @rule()
    def resume(self) -> None:
        """
        The transport's buffer drained: it resumes.
        """
        self.transport.resumeProducing()

    @rule(seconds=st.floats(min_value=0, max_value=8))
    def time(self, seconds: float) -> None:
        """
        Time passes; the idle sweep may ask the connection to close.
        """
        self.clock.advance(seconds)

    @precondition(open)
    @rule()
    def halfClose(self) -> None:
        """
        The peer shuts its sending side: everything owed is sent.
        """
        self.proto.readConnectionLost()
        self.halfClosed = True
        assert self.transport.value() == upper(self.sent)
        assert self.transport.disconnecting
        assert self.transport.producer is None

    @precondition(lambda self: not self.lost)
    @rule()
    def lose(self) -> None:
        """
        The connection is gone, cleanly or not.
        """
        self.transport.unregisterProducer()
        self.proto.connectionLost(Failure(ConnectionLost()))
        self.lost = True
        assert self.proto not in self.factory.connections

    @invariant()
    def prefixOfTransform(self) -> None:
        """
        The output is C{upper(input)} minus at most a held tail, which is
        the input's own last few bytes (an incomplete character).
        """
        if not hasattr(self, "proto"):
            return
        out = self.transport.value()
        whole = upper(self.sent)
        assert whole.startswith(out), (self.sent, out)
        held = len(whole) - len(out)
        assert 0 <= held <= MAX_HELD, (self.sent, out)
        if held:
            assert whole[len(out) :] == self.sent[-held:]
        if self.halfClosed:
            assert held == 0

    @invariant()
    def selfProducer(self) -> None:
        """
        While the connection is open the transport is its own producer.
        """
        if not hasattr(self, "proto"):
            return
        if self.open():
            assert self.transport.producer is self.transport
            assert self.proto in self.factory.connections


StreamMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)


TestStream = StreamMachine.TestCase
