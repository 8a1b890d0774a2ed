"""
Correctness of every fast path in upperecho: each one must give exactly the
bytes, the order, the backpressure and the close behaviour of the slow path
it replaces, and must step aside whenever its assumptions do not hold.

The TCP tests drive a real C{twisted.internet.tcp.Server} over a real
loopback TCP connection, with a L{MemoryReactor} standing in for the event
loop (so the test decides when queued bytes are flushed) and a socket whose
C{send()} can be told to write short or fail.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import error, main, protocol, tcp, udp
from twisted.internet.address import IPv4Address
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.task import Clock
from twisted.internet.testing import (
    FakeDatagramTransport,
    MemoryReactor,
    MemoryReactorClock,
    StringTransport,
)
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import upperecho.allocator
import upperecho.tap
import upperecho.tcp
import upperecho.transform
import upperecho.udp
from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol, eagerSocket
from upperecho.transform import Uppercaser, upper
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol, directSocket

PEER = IPv4Address("TCP", "127.0.0.1", 40000)


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
        proto = self.factory.buildProtocol(PEER)
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
        proto = UpperEchoFactory(clock=Clock()).buildProtocol(PEER)
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
            upperecho.tcp,
            "_EAGER_ATTRIBUTES",
            (*upperecho.tcp._EAGER_ATTRIBUTES, "_noSuchAttribute"),
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
        proto = factory.buildProtocol(PEER)
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


class RealReactorTests(SynchronousTestCase):
    """
    The fast path under a real epoll reactor (a private one, iterated by
    the test): a stream of replies that the client reads only after the
    server had to stop reading.
    """

    def test_backpressureAndHalfClose(self) -> None:
        """
        The client sends 8 MiB without reading: the server pauses (its queue
        stays bounded); once the client reads, everything arrives in order,
        and the server closes after the client's EOF.
        """
        from twisted.internet.epollreactor import EPollReactor

        reactor: Any = EPollReactor()
        self.addCleanup(reactor._uninstallHandler)
        self.addCleanup(reactor.disconnectAll)
        factory = UpperEchoFactory(clock=reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        payload = b"abcdefghij\xc3\x9f" * (8 * 1024 * 1024 // 12)
        expected = payload.decode().upper().encode()
        # small kernel buffers, so that the server's own queue must fill
        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        client.connect(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        shrunk: set[int] = set()
        sent = peak = paused = eager = 0
        out: list[bytes] = []
        eof = False
        deadline = time.monotonic() + 60
        while not eof and time.monotonic() < deadline:
            reactor.iterate(0.001)
            transports: list[Any] = [p.transport for p in factory.connections]
            for t in transports:
                if id(t) not in shrunk:
                    shrunk.add(id(t))
                    t.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
                peak = max(peak, len(t.dataBuffer) - t.offset + t._tempDataLen)
            if sent < len(payload):
                with contextlib.suppress(BlockingIOError):
                    sent += client.send(payload[sent : sent + 262144])
                if sent == len(payload):
                    client.shutdown(socket.SHUT_WR)
            eager += any(p._sock is not None for p in factory.connections)
            nowPaused = any(t.producerPaused for t in transports)
            paused += nowPaused
            if nowPaused or sent == len(payload):
                try:
                    while chunk := client.recv(1 << 20):
                        out.append(chunk)
                    eof = True
                except BlockingIOError:
                    pass
        self.assertTrue(eof)
        self.assertEqual(b"".join(out), expected)
        self.assertGreater(paused, 0)
        self.assertGreater(eager, 0)
        # never much more than one read's reply beyond the 64 KiB mark
        self.assertLess(peak, 4 * 65536)
        self.assertEqual(factory.connections, set())


class DirectDatagramTests(SynchronousTestCase):
    """
    Replies go straight to the socket of a plain C{udp.Port}, with the same
    results as C{udp.Port.write}.
    """

    def setUp(self) -> None:
        self.proto = UpperEchoDatagramProtocol(clock=Clock())
        self.port = udp.Port(
            0,
            self.proto,
            interface="127.0.0.1",
            maxPacketSize=MAX_DATAGRAM,
            reactor=MemoryReactor(),
        )
        self.port.startListening()
        self.addCleanup(self.port.connectionLost)
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.settimeout(5)
        self.addCleanup(self.client.close)
        self.address = ("127.0.0.1", self.port.getHost().port)

    def exchange(self, payload: bytes) -> bytes:
        self.client.sendto(payload, self.address)
        self.port.doRead()
        return self.client.recv(70000)

    def test_detected(self) -> None:
        """
        A listening C{udp.Port} qualifies; its own socket is used.
        """
        self.assertIs(directSocket(self.port), self.port.socket)
        self.assertIs(self.proto._sock, self.port.socket)

    def test_replies(self) -> None:
        """
        Replies arrive intact, ASCII, UTF-8 and the largest datagram alike.
        """
        self.assertEqual(self.exchange(b"hello"), b"HELLO")
        self.assertEqual(self.exchange("straße".encode()), b"STRASSE")
        self.assertEqual(self.exchange(b"a" * 65507), b"A" * 65507)
        self.assertEqual(self.exchange(b""), b"")
        self.assertEqual(self.proto.datagramsOut, 4)

    def test_notQualified(self) -> None:
        """
        A test transport, a subclass and a connected port use C{write}.
        """

        class Custom(udp.Port):
            pass

        self.assertIsNone(directSocket(FakeDatagramTransport()))
        custom = Custom.__new__(Custom)
        custom.socket = self.port.socket
        custom._connectedAddr = None
        self.assertIsNone(directSocket(custom))
        self.port._connectedAddr = ("127.0.0.1", 9999)
        try:
            self.assertIsNone(directSocket(self.port))
        finally:
            self.port._connectedAddr = None

    def test_sendErrorCounted(self) -> None:
        """
        A failing send is counted as C{udp.Port.write}'s errors are, and does
        not escape.
        """
        sock = self.proto._sock
        assert sock is not None
        self.proto._write(b"x" * 70000, ("127.0.0.1", 40000))
        self.assertEqual(self.proto.drops["send-error"], 1)

    def test_refusedIgnored(self) -> None:
        """
        ECONNREFUSED from C{sendto} is ignored, as C{udp.Port.write} does.
        """

        class Refusing:
            def sendto(self, data: bytes, addr: object) -> int:
                raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")

        self.proto._sock = Refusing()  # type: ignore[assignment]
        self.proto.datagramReceived(b"x", ("127.0.0.1", 40000))
        self.assertEqual(self.proto.drops["send-error"], 0)


class _PosixListenUDP(MemoryReactorClock):
    """
    A L{MemoryReactor} whose C{listenUDP} is that of Twisted's POSIX
    reactors, as C{upperecho.udp.listenUDP} looks for.
    """

    listenUDP = PosixReactorBase.listenUDP


class _PlainEcho(protocol.DatagramProtocol):
    def datagramReceived(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.transport.write(data, addr)


class BurstReplyTests(SynchronousTestCase):
    """
    L{UpperEchoPort} has the replies to one read event's datagrams sent back
    to back: the first at once, the rest when the read loop ends, in order,
    never more than C{MAX_HELD_REPLIES} held.
    """

    def setUp(self) -> None:
        self.transport = FakeDatagramTransport()
        self.proto = UpperEchoDatagramProtocol(clock=Clock())
        self.proto.makeConnection(self.transport)

    def receive(self, *payloads: bytes) -> None:
        for i, payload in enumerate(payloads):
            self.proto.datagramReceived(payload, ("127.0.0.1", 40000 + i))

    def test_firstAtOnceRestHeld(self) -> None:
        """
        While holding, only the first reply is written; the others follow,
        in order, when the burst ends, and replies go out at once again.
        """
        self.proto.holdReplies()
        self.receive(b"a", b"b", b"c")
        self.assertEqual(self.transport.written, [(b"A", ("127.0.0.1", 40000))])
        self.proto.sendHeldReplies()
        self.assertEqual(
            self.transport.written,
            [
                (b"A", ("127.0.0.1", 40000)),
                (b"B", ("127.0.0.1", 40001)),
                (b"C", ("127.0.0.1", 40002)),
            ],
        )
        self.receive(b"d")
        self.assertEqual(self.transport.written[-1], (b"D", ("127.0.0.1", 40000)))
        self.assertEqual(self.proto.datagramsOut, 4)

    def test_heldReplyCap(self) -> None:
        """
        Once C{MAX_HELD_REPLIES} are held they are sent without waiting for
        the end of the burst: a long burst holds bounded memory.
        """
        cap = upperecho.udp.MAX_HELD_REPLIES
        self.proto.holdReplies()
        self.receive(*[b"x"] * cap)
        self.assertEqual(len(self.transport.written), 1)
        self.receive(b"y")
        self.assertEqual(len(self.transport.written), cap + 1)
        self.receive(b"z")
        self.assertEqual(len(self.transport.written), cap + 1)
        self.proto.sendHeldReplies()
        self.assertEqual(
            [data for data, _ in self.transport.written],
            [b"X"] * cap + [b"Y", b"Z"],
        )

    def test_refusalsNotHeld(self) -> None:
        """
        A refused datagram holds nothing: the first reply of the burst still
        goes out at once.
        """
        self.proto.holdReplies()
        self.proto.datagramReceived(b"loop", ("127.0.0.1", 53))
        self.receive(b"a")
        self.assertEqual(self.transport.written, [(b"A", ("127.0.0.1", 40000))])
        self.proto.sendHeldReplies()
        self.assertEqual(self.proto.drops["loop-guard"], 1)

    def test_realPortBurst(self) -> None:
        """
        Over loopback, an L{UpperEchoPort} answers a burst read in one
        C{doRead} completely and in order, replying on its own socket, and
        ends the burst.
        """
        proto = UpperEchoDatagramProtocol(clock=Clock())
        port = upperecho.udp.UpperEchoPort(
            0, proto, "127.0.0.1", MAX_DATAGRAM, MemoryReactor()
        )
        port.startListening()
        self.addCleanup(port.connectionLost)
        self.assertIs(proto._sock, port.socket)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        self.addCleanup(client.close)
        address = ("127.0.0.1", port.getHost().port)
        payloads = [f"datagram {i} straße".encode() for i in range(100)]
        for payload in payloads:
            client.sendto(payload, address)
        port.doRead()
        self.assertIsNone(proto._held)
        replies = [client.recv(70000) for _ in payloads]
        self.assertEqual(replies, [upper(p) for p in payloads])
        self.assertEqual(proto.datagramsOut, 100)

    def test_otherProtocol(self) -> None:
        """
        With a protocol that is not upperecho's, the port is a plain
        C{udp.Port}.
        """
        port = upperecho.udp.UpperEchoPort(
            0, _PlainEcho(), "127.0.0.1", MAX_DATAGRAM, MemoryReactor()
        )
        port.startListening()
        self.addCleanup(port.connectionLost)
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(5)
        self.addCleanup(client.close)
        client.sendto(b"same", ("127.0.0.1", port.getHost().port))
        port.doRead()
        self.assertEqual(client.recv(100), b"same")

    def test_serviceListensWithBurstPort(self) -> None:
        """
        The C{--udp} service of C{twistd upperecho} listens with
        L{upperecho.udp.listenUDP}, so it gets an L{UpperEchoPort}, and
        stops listening when it stops.
        """
        reactor = _PosixListenUDP()
        options = upperecho.tap.Options()
        options.parseOptions(["--udp", "0", "--interface", "127.0.0.1"])
        service = upperecho.tap.makeService(options, reactor=reactor)
        service.startService()
        (port,) = reactor.readers
        self.assertIs(type(port), upperecho.udp.UpperEchoPort)
        service.stopService()
        reactor.advance(0)
        self.assertEqual(reactor.readers, set())

    def test_listenUDP(self) -> None:
        """
        C{listenUDP} makes an L{UpperEchoPort} where the reactor's own
        C{listenUDP} is that of Twisted's POSIX reactors, and otherwise asks
        the reactor.
        """
        posix = _PosixListenUDP()
        port = upperecho.udp.listenUDP(
            posix, 0, UpperEchoDatagramProtocol(clock=Clock()), "127.0.0.1"
        )
        assert isinstance(port, upperecho.udp.UpperEchoPort)
        self.addCleanup(port.connectionLost)
        self.assertIn(port, posix.readers)

        class Other(MemoryReactor):
            def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
                self.asked = (args, kwargs)
                return "theirs"

        other = Other()
        proto = UpperEchoDatagramProtocol(clock=Clock())
        self.assertEqual(upperecho.udp.listenUDP(other, 7, proto), "theirs")
        self.assertEqual(
            other.asked, ((7, proto), {"interface": "", "maxPacketSize": MAX_DATAGRAM})
        )


#: pieces that make the UTF-8 decoder's boundary cases likely: characters of
#: every length, their proper prefixes, and sequences it must refuse
_UTF8_PIECES = [
    b"a",
    b"Z",
    b" ",
    *(c.encode() for c in "ßéǆŉΐσςѐ敏ａﬁ€😀𐐨"),
    b"\xc3",
    b"\xe6\x95",
    b"\xe6",
    b"\xf0\x9f\x98",
    b"\xf0\x9f",
    b"\xf0",
    b"\xf4\x8f\xbf",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xc1",
    b"\xe0\x80\x80",
    b"\xed\xa0\x80",
    b"\xed\xa0",
    b"\xf4\x90\x80\x80",
    b"\xf4\x90",
    b"\xf5",
    b"\xff",
]


class Utf8FastPathTests(SynchronousTestCase):
    """
    The codec-object-free UTF-8 path of L{Uppercaser} and L{upper} gives
    exactly what the incremental codec path and the SPEC's reference give.
    """

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(st.sampled_from(_UTF8_PIECES), max_size=40),
        st.lists(st.integers(min_value=0, max_value=200), max_size=10),
    )
    def test_sameAsCodecPath(self, pieces: list[bytes], cuts: list[int]) -> None:
        """
        Any split of any mix of valid, truncated and invalid sequences.
        """
        data = b"".join(pieces)
        fast, slow = Uppercaser(), Uppercaser()
        slow._utf8 = False
        self.assertTrue(fast._utf8)
        points = sorted({c % (len(data) + 1) for c in cuts})
        got, want = [], []
        start = 0
        for p in [*points, len(data)]:
            got.append(fast.feed(data[start:p]))
            want.append(slow.feed(data[start:p]))
            self.assertEqual(got[-1], want[-1])
            self.assertEqual(fast._pending, slow._pending)
            start = p
        got.append(fast.flush())
        want.append(slow.flush())
        self.assertEqual(got, want)
        reference = data.decode("utf-8", "surrogateescape").upper()
        self.assertEqual(b"".join(got), reference.encode("utf-8", "surrogateescape"))
        self.assertEqual(upper(data), b"".join(got))

    def test_spellings(self) -> None:
        """
        Every spelling of UTF-8 takes the fast path; UTF-8 with a BOM does
        not.
        """
        for name in ("utf-8", "UTF8", "utf_8", "U8"):
            self.assertTrue(Uppercaser(name)._utf8, name)
        self.assertFalse(Uppercaser("utf-8-sig")._utf8)
        self.assertFalse(Uppercaser("latin-1")._utf8)

    def test_reusedAfterFlush(self) -> None:
        """
        After a flush the held tail is gone.
        """
        u = Uppercaser()
        self.assertEqual(u.feed(b"a\xc3"), b"A")
        self.assertEqual(u.flush(), b"\xc3")
        self.assertEqual(u.feed(b"\x9f"), b"\x9f")
        self.assertEqual(u.flush(), b"")


class AllocatorTests(SynchronousTestCase):
    """
    Starting to listen tunes glibc's allocator once, unless told not to.
    """

    def test_tunedOnGlibc(self) -> None:
        """
        On glibc the thresholds are set, and a second call changes nothing.
        """
        import platform

        if platform.libc_ver()[0] != "glibc":
            raise self.skipTest("not glibc")
        self.assertTrue(upperecho.allocator.tuneAllocator())
        self.assertTrue(upperecho.allocator.tuneAllocator())

    def test_calledByTheServiceOnly(self) -> None:
        """
        The twistd service tunes the allocator when it starts (unless
        C{tuneMalloc} is false); the library's factory and datagram protocol,
        which may live in someone else's process, never do.
        """
        calls: list[str] = []
        self.patch(upperecho.tap, "tuneAllocator", lambda: calls.append("service"))
        self.patch(upperecho.allocator, "tuneAllocator", lambda: calls.append("lib"))
        factory = UpperEchoFactory(clock=Clock())
        factory.doStart()
        factory.doStop()
        proto = UpperEchoDatagramProtocol(clock=Clock())
        proto.makeConnection(FakeDatagramTransport())
        self.assertEqual(calls, [])
        service = upperecho.tap.UpperEchoService()
        service.startService()
        self.assertEqual(calls, ["service"])
        quiet = upperecho.tap.UpperEchoService()
        quiet.tuneMalloc = False
        quiet.startService()
        self.assertEqual(calls, ["service"])
