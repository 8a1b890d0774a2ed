"""
Tests for the eager-send fast path of L{upperecho.tcp} (and the guard,
L{upperecho._compat.eagerSocket}): a real C{twisted.internet.tcp.Server}
on a loopback connection, with a L{MemoryReactor} standing in for the event
loop (so the test decides when queued bytes are flushed) and a socket whose
C{send()} can be told to write short or fail.  Each fast path must give
exactly the bytes, the order, the backpressure and the close behaviour of
the slow path it replaces, and step aside whenever its assumptions do not
hold.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error, main, protocol, tcp
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import (
    MemoryReactor,
    StringTransport,
)
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import upperecho._compat
import upperecho.allocator
import upperecho.tap
import upperecho.tcp
import upperecho.transform
import upperecho.udp
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol, eagerSocket
from upperecho.transform import Uppercaser

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

    def end(self) -> None:
        """
        After the peer's EOF, let the connection end as the reactor would:
        it is over already if the protocol closed it at once (nothing was
        queued), else C{doWrite} sends the rest and reports it done.
        """
        if not self.transport.disconnected:
            result = self.flush()
            assert result == main.CONNECTION_DONE, result
            self.transport.connectionLost(Failure(main.CONNECTION_DONE))

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
        c.proto.dataReceived(b"queued")  # EAGAIN: queued, so EOF waits for it
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
        With nothing queued, the held tail is sent at once on EOF and the
        connection ends at once, as a reactor ends one on the peer's EOF:
        C{connectionLost} with C{ConnectionDone}, the factory told, the
        socket closed after what the kernel holds.
        """
        c = self.connect()
        lost: list[Failure] = []

        def connectionLost(reason: Failure) -> None:
            lost.append(reason)

        c.proto.connectionLost = connectionLost  # type: ignore[method-assign,assignment]
        c.proto.dataReceived("straße \xe4".encode()[:-1])
        c.proto.readConnectionLost()
        self.assertTrue(c.transport.disconnected)
        self.assertNotIn(c.transport, c.reactor.writers)
        self.assertEqual([f.type for f in lost], [error.ConnectionDone])
        self.assertEqual(c.receive(10), b"STRASSE " + "\xe4".encode()[:1])
        self.assertEqual(c.client.recv(10), b"")

    def test_halfCloseDirectForgetsConnection(self) -> None:
        """
        A connection ended at once leaves the factory's table.
        """
        c = self.connect()
        c.proto.dataReceived(b"bye")
        self.assertEqual(c.factory.connections, {c.proto})
        c.proto.readConnectionLost()
        self.assertEqual(c.factory.connections, set())
        self.assertEqual(c.factory.bytesOutClosed, 3)

    def test_halfCloseWithoutPrivateNames(self) -> None:
        """
        If the transport's write-buffer attributes are gone (a Twisted that
        changed its internals), EOF closes through C{loseConnection}.
        """
        c = self.connect()
        c.proto.dataReceived(b"abc")
        del c.transport._tempDataLen
        c.proto.readConnectionLost()
        self.assertFalse(c.transport.disconnected)
        self.assertTrue(c.transport.disconnecting)
        self.assertIsNone(c.proto._sock)

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
            c.end()
            self.assertEqual(c.receive(len(expected) + 1), expected)
            self.assertEqual(c.client.recv(10), b"")  # and then EOF
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
