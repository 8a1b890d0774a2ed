"""
Tests for L{upperecho.tcp}: the protocol and the factory over
L{StringTransport} and L{Clock}; the eager-send fast path over a real
C{twisted.internet.tcp.Server} on a loopback connection, with a
L{MemoryReactor} standing in for the event loop (so the test decides when
queued bytes are flushed) and a socket whose C{send()} can be told to write
short or fail; and a hypothesis state machine of arbitrary reads, pauses
and half-closes.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet import main, protocol, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import (
    MemoryReactor,
    StringTransport,
)
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import upperecho._compat
import upperecho.allocator
import upperecho.tap
import upperecho.tcp
import upperecho.transform
import upperecho.udp
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol, eagerSocket
from upperecho.transform import Uppercaser, upper

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
        With a timeout of 0 no timer is ever scheduled.
        """
        factory = UpperEchoFactory(idleTimeout=0, clock=self.clock)
        _, transport = connect(factory)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10**6)
        self.assertFalse(transport.disconnecting)

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
        With no connection left, no sweep timer remains.
        """
        factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        lose(*connect(factory))
        self.assertEqual(self.clock.getDelayedCalls(), [])


#: the peer of the loopback connections of the eager-path tests
LOOPBACK_PEER = IPv4Address("TCP", "127.0.0.1", 40000)


class ScriptedSocket(socket.socket):
    """
    A connected TCP socket whose C{send()} follows a script, then behaves
    normally: an C{int} sends at most that many bytes, C{"eagain"} raises
    C{BlockingIOError}, C{"reset"} raises C{ConnectionResetError}.

    @ivar sends: the length of data offered to each C{send()} call.
    """

    def __init__(self, sock: socket.socket, script: Sequence[int | str]) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.script = list(script)
        self.sends: list[int] = []

    def send(self, data: Any, flags: int = 0) -> int:
        self.sends.append(len(data))
        if self.script:
            step = self.script.pop(0)
            if step == "eagain":
                raise BlockingIOError(errno.EAGAIN, "try again")
            if step == "reset":
                raise ConnectionResetError(errno.ECONNRESET, "reset")
            assert isinstance(step, int)
            data = memoryview(data)[:step]
        return super().send(data, flags)


def tcpPair() -> tuple[socket.socket, socket.socket]:
    """
    Two ends of a loopback TCP connection: (server side, client side).
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


class Connected:
    """
    An L{UpperEchoProtocol} on a real C{tcp.Server} transport, with the
    client end of the connection to read from.
    """

    def __init__(
        self, script: Sequence[int | str] = (), factory: UpperEchoFactory | None = None
    ) -> None:
        serverSide, self.client = tcpPair()
        self.client.settimeout(5)
        self.sock = ScriptedSocket(serverSide, list(script))
        self.reactor = MemoryReactor()
        self.factory = factory or UpperEchoFactory(clock=Clock())
        proto = self.factory.buildProtocol(LOOPBACK_PEER)
        assert isinstance(proto, UpperEchoProtocol)
        self.proto = proto
        self.transport = tcp.Server(
            self.sock,
            proto,
            ("127.0.0.1", 40000),
            None,  # type: ignore[arg-type]
            1,
            self.reactor,
        )
        proto.makeConnection(self.transport)

    def queued(self) -> int:
        """
        Bytes the transport holds, not yet given to the kernel.
        """
        t = self.transport
        return len(t.dataBuffer) - t.offset + t._tempDataLen

    def flush(self) -> object:
        """
        Run C{doWrite} as the reactor would, while the transport wants to.
        """
        result = None
        while self.transport in self.reactor.writers and result is None:
            result = self.transport.doWrite()
        return result

    def receive(self, n: int) -> bytes:
        """
        Read exactly C{n} bytes on the client side.
        """
        out = b""
        while len(out) < n:
            chunk = self.client.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def close(self) -> None:
        self.client.close()
        self.sock.close()


class EagerDetectionTests(SynchronousTestCase):
    """
    L{eagerSocket} picks the fast path only for a plain TCP server
    connection.
    """

    def setUp(self) -> None:
        self.c = Connected()
        self.addCleanup(self.c.close)

    def test_plainTCP(self) -> None:
        """
        A C{tcp.Server} qualifies: its own socket is returned.
        """
        self.assertIs(eagerSocket(self.c.transport), self.c.sock)
        self.assertIs(self.c.proto._sock, self.c.sock)

    def test_stringTransport(self) -> None:
        """
        The test transport has no socket: writes go through C{write}.
        """
        self.assertIsNone(eagerSocket(StringTransport()))
        proto = UpperEchoFactory(clock=Clock()).buildProtocol(LOOPBACK_PEER)
        assert isinstance(proto, UpperEchoProtocol)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertIsNone(proto._sock)
        proto.dataReceived(b"abc")
        self.assertEqual(transport.value(), b"ABC")

    def test_wrapped(self) -> None:
        """
        A wrapping transport (as C{haproxy:} and TLS use) does not qualify,
        even over a real TCP transport.
        """
        wrapper = ProtocolWrapper(WrappingFactory(protocol.Factory()), self.c.proto)
        wrapper.transport = self.c.transport
        self.assertIsNone(eagerSocket(wrapper))

    def test_tls(self) -> None:
        """
        A TLS transport does not qualify.
        """
        try:
            from twisted.protocols.tls import TLSMemoryBIOProtocol
        except ImportError:  # pragma: no cover
            raise self.skipTest("no TLS support installed") from None
        self.assertIsNone(
            eagerSocket(TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol))
        )

    def test_unixAndSubclasses(self) -> None:
        """
        Only the exact C{tcp.Server} class qualifies: not a UNIX socket
        server, not a subclass (which may override C{write}).
        """
        from twisted.internet import unix

        class Custom(tcp.Server):
            pass

        for cls in (unix.Server, Custom):
            t = cls.__new__(cls)
            t.socket = self.c.sock
            self.assertIsNone(eagerSocket(t), cls)

    def test_missingPrivateAttribute(self) -> None:
        """
        If Twisted no longer has an attribute the fast path reads, the fast
        path is not used.
        """
        self.patch(
            upperecho._compat,
            "TCP_SERVER_ATTRIBUTES",
            (*upperecho._compat.TCP_SERVER_ATTRIBUTES, "_noSuchAttribute"),
        )
        self.assertIsNone(eagerSocket(self.c.transport))

    def test_attributeVanishes(self) -> None:
        """
        If an attribute disappears after detection, the write still goes
        out (through C{transport.write}) and the fast path is switched off.
        """

        class Bare:
            written: list[bytes] = []
            producer: object = None

            def write(self, data: bytes) -> None:
                self.written.append(data)

            def registerProducer(self, producer: object, streaming: bool) -> None:
                self.producer = producer

        bare = Bare()
        self.c.proto.transport = bare  # type: ignore[assignment]
        self.c.proto.dataReceived(b"abc")
        self.assertEqual(bare.written, [b"ABC"])
        self.assertIsNone(self.c.proto._sock)
        # every write now goes through the transport: backpressure is on
        self.assertIs(bare.producer, bare)


class EagerWriteTests(SynchronousTestCase):
    """
    The eager write keeps the bytes, their order, backpressure and closing
    exactly as C{transport.write} alone would.
    """

    def connect(self, script: Sequence[int | str] = ()) -> Connected:
        c = Connected(script)
        self.addCleanup(c.close)
        return c

    def test_sentAtOnce(self) -> None:
        """
        With nothing queued the reply goes to the kernel inside
        C{dataReceived}: no write event is requested.
        """
        c = self.connect()
        c.proto.dataReceived(b"hello")
        self.assertEqual(c.sock.sends, [5])
        self.assertNotIn(c.transport, c.reactor.writers)
        self.assertEqual(c.queued(), 0)
        self.assertEqual(c.receive(5), b"HELLO")

    def test_shortWriteKeepsOrder(self) -> None:
        """
        What a short send leaves is queued; later replies queue behind it
        (no direct send while anything is queued), and all arrive in order.
        """
        c = self.connect([3])
        c.proto.dataReceived(b"abcdef")
        self.assertEqual(c.queued(), 3)
        self.assertIn(c.transport, c.reactor.writers)
        c.proto.dataReceived(b"ghi")
        c.proto.dataReceived(b"jkl")
        self.assertEqual(c.sock.sends, [6])
        self.assertIsNone(c.flush())
        self.assertNotIn(c.transport, c.reactor.writers)
        c.proto.dataReceived(b"mno")
        self.assertEqual(c.receive(15), b"ABCDEFGHIJKLMNO")
        self.assertEqual(c.sock.sends[-1], 3)

    def test_eagainQueuesAll(self) -> None:
        """
        A send that would block queues the whole reply.
        """
        c = self.connect(["eagain"])
        c.proto.dataReceived(b"abc")
        self.assertEqual(c.queued(), 3)
        c.proto.dataReceived(b"def")
        c.flush()
        self.assertEqual(c.receive(6), b"ABCDEF")

    def test_sendErrorLeftToReactor(self) -> None:
        """
        A send error other than EAGAIN does not escape C{dataReceived}: the
        reply is queued, and the reactor's own write finds the error.
        """
        c = self.connect(["reset", "reset"])
        c.proto.dataReceived(b"abc")
        self.assertEqual(c.queued(), 3)
        self.assertEqual(c.flush(), main.CONNECTION_LOST)

    def test_backpressure(self) -> None:
        """
        When the kernel takes nothing, the transport's buffer fills and the
        transport, its own producer, stops reading; draining resumes it.
        """
        c = self.connect(["eagain"] * 3)
        chunk = b"x" * 40000
        c.proto.dataReceived(chunk)
        self.assertFalse(c.transport.producerPaused)
        c.proto.dataReceived(chunk)
        self.assertTrue(c.transport.producerPaused)
        self.assertNotIn(c.transport, c.reactor.readers)
        c.client.settimeout(5)
        c.flush()
        self.assertFalse(c.transport.producerPaused)
        self.assertIn(c.transport, c.reactor.readers)
        self.assertEqual(c.receive(80000), b"X" * 80000)

    def test_registeredWhenQueued(self) -> None:
        """
        On the eager path the transport becomes its own producer only when a
        reply is first queued: an idle connection, or one whose replies all
        went straight out, costs no registration.
        """
        c = self.connect(["eagain"])
        self.assertIsNone(c.transport.producer)
        c.proto.dataReceived(b"abc")
        self.assertIs(c.transport.producer, c.transport)
        self.assertTrue(c.transport.streamingProducer)
        c.flush()
        c.proto.dataReceived(b"def")
        self.assertEqual(c.receive(6), b"ABCDEF")
        self.assertIs(c.transport.producer, c.transport)

    def test_neverRegisteredAfterEnd(self) -> None:
        """
        Once the connection is ending, a reply that has to be queued does not
        register the producer again: the close would then never finish.
        """
        c = self.connect(["eagain"])
        c.proto.readConnectionLost()
        self.assertTrue(c.transport.disconnecting)
        c.proto._write(b"late")
        self.assertIsNone(c.transport.producer)

    def test_halfCloseFlushes(self) -> None:
        """
        On the peer's EOF the held bytes of an incomplete character are sent
        after everything before them, then the connection closes.
        """
        c = self.connect([2])
        c.proto.dataReceived(b"abc\xe4\xb8")
        self.assertEqual(c.queued(), 1)
        c.proto.readConnectionLost()
        self.assertTrue(c.transport.disconnecting)
        self.assertEqual(c.flush(), main.CONNECTION_DONE)
        c.transport.connectionLost(Failure(main.CONNECTION_DONE))
        self.assertEqual(c.receive(10), b"ABC\xe4\xb8")
        self.assertEqual(c.client.recv(10), b"")

    def test_halfCloseDirect(self) -> None:
        """
        With nothing queued, the held tail is sent at once on EOF.
        """
        c = self.connect()
        c.proto.dataReceived("straße \xe4".encode()[:-1])
        c.proto.readConnectionLost()
        self.assertEqual(c.flush(), main.CONNECTION_DONE)
        self.assertEqual(c.receive(9), b"STRASSE " + "\xe4".encode()[:1])

    def test_tlsStartedLater(self) -> None:
        """
        If TLS were started on the transport, writes go through it.
        """
        c = self.connect()
        c.transport.TLS = True
        written: list[bytes] = []
        c.transport.write = written.append  # type: ignore[method-assign]
        c.proto.dataReceived(b"abc")
        self.assertEqual(written, [b"ABC"])
        self.assertEqual(c.sock.sends, [])

    def test_notConnected(self) -> None:
        """
        After the connection is gone, nothing is sent (as C{write} would).
        """
        c = self.connect()
        c.transport.connected = False
        c.proto.dataReceived(b"abc")
        self.assertEqual(c.sock.sends, [])

    @settings(max_examples=60, deadline=None)
    @given(
        pieces=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=12),
        script=st.lists(st.one_of(st.integers(0, 40), st.just("eagain")), max_size=12),
        flushes=st.lists(st.booleans(), max_size=12),
    )
    def test_anySplitAnySend(
        self, pieces: list[bytes], script: list[int | str], flushes: list[bool]
    ) -> None:
        """
        Whatever the reads, the short writes and the reactor's flushes, the
        client gets exactly C{transform(everything sent)}.
        """
        c = Connected(script)
        try:
            want = Uppercaser()
            expected = b""
            for i, piece in enumerate(pieces):
                c.proto.dataReceived(piece)
                expected += want.feed(piece)
                if i < len(flushes) and flushes[i]:
                    c.flush()
            c.proto.readConnectionLost()
            expected += want.flush()
            self.assertEqual(c.flush(), main.CONNECTION_DONE)
            self.assertEqual(c.receive(len(expected)), expected)
        finally:
            c.close()


class LazyUppercaserTests(SynchronousTestCase):
    """
    A connection makes its L{Uppercaser} only when non-ASCII data arrives.
    """

    def connect(
        self, encoding: str = "utf-8"
    ) -> tuple[UpperEchoProtocol, StringTransport]:
        factory = UpperEchoFactory(encoding=encoding, clock=Clock())
        proto = factory.buildProtocol(LOOPBACK_PEER)
        assert isinstance(proto, UpperEchoProtocol)
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_asciiNeedsNone(self) -> None:
        """
        ASCII traffic and EOF never create one.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"abc")
        proto.readConnectionLost()
        self.assertIsNone(proto._upper)
        self.assertEqual(transport.value(), b"ABC")

    def test_splitCharacterAfterAscii(self) -> None:
        """
        The first non-ASCII read creates it, and a split character is held.
        """
        proto, transport = self.connect()
        proto.dataReceived(b"a")
        proto.dataReceived(b"\xc3")
        self.assertIsNotNone(proto._upper)
        proto.dataReceived(b"\x9f!")
        self.assertEqual(transport.value(), b"ASS!")

    def test_asciiIncompatibleEncoding(self) -> None:
        """
        For an encoding where ASCII bytes are not ASCII text, the fast path
        is never taken.
        """
        proto, transport = self.connect("cp037")
        self.assertIsNotNone(proto._upper)
        proto.dataReceived("ab".encode("cp037"))
        self.assertEqual(transport.value(), "AB".encode("cp037"))


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
