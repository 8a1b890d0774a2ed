"""
Tests for L{upperecho.port}: the lean accept loop builds connections as
C{tcp.Port} does (same factory calls, addresses, session numbers, log
prefix), keeps less per connection, and hands every accept error to
Twisted's own loop; C{UpperEchoReactor.listenTCP} uses it only where the
private names it reads are there.

The sockets are loopback sockets inside this process; the reactor is never
run, C{doRead} is called by hand.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from typing import Any

from twisted.internet import tcp
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.python import context, log, reflect
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import requireCompiled
from upperecho import _compat
from upperecho import port as portModule
from upperecho.compiled import compiled
from upperecho.port import STREAM_READ_SIZE, LeanPort, LeanServer, leanAcceptAvailable
from upperecho.reactor import UpperEchoReactor


class Recorder(Protocol):
    """
    Records what it is given.
    """

    lost: Failure | None = None

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost = reason


class RecordingFactory(Factory):
    """
    Builds L{Recorder}s, or refuses (C{None}) while C{refuse} is set.
    """

    protocol = Recorder
    noisy = False

    def __init__(self) -> None:
        self.addresses: list[Any] = []
        self.built: list[Recorder] = []
        self.refuse = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        self.addresses.append(addr)
        if self.refuse:
            return None
        p = Recorder()
        p.factory = self
        self.built.append(p)
        return p


class _Producer:
    """
    A streaming producer that records being stopped.
    """

    def __init__(self, stopped: list[str], name: str) -> None:
        self.stopped = stopped
        self.name = name

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped.append(self.name)


class LeanPortTests(SynchronousTestCase):
    """
    L{LeanPort} with the compiled accept (C{accept_nonblocking}); its
    subclass L{PythonAcceptLeanPortTests} runs every test again with
    Python's C{socket._accept}.
    """

    #: whether the port uses the compiled accept (else Python's)
    compiled = True

    def setUp(self) -> None:
        self.accept = None
        if self.compiled:
            self.accept = requireCompiled(
                self, "accept_nonblocking", portModule.ACCEPT_NONBLOCKING
            )
        self.patch(portModule, "ACCEPT_NONBLOCKING", self.accept)
        self.reactor = UpperEchoReactor()
        self.addCleanup(self.reactor._poller.close)
        self.factory = RecordingFactory()
        self.port: Any = self.reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self.reactor.removeAll)

    def connect(self) -> socket.socket:
        client = socket.create_connection(
            ("127.0.0.1", self.port.getHost().port), timeout=5
        )
        self.addCleanup(client.close)
        return client

    def test_listenTCPMakesLeanPort(self) -> None:
        """
        upperecho's reactor listens with a L{LeanPort} where the private
        names are there, and with Twisted's C{tcp.Port} where they are not.
        """
        self.assertTrue(leanAcceptAvailable())
        self.assertIs(type(self.port), LeanPort)
        self.reactor.leanAccept = False
        other = self.reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(other.stopListening)
        self.assertIs(type(other), tcp.Port)

    def test_acceptsLikeTcpPort(self) -> None:
        """
        Each pending connection gets a protocol from the factory, with the
        peer's address, a L{LeanServer} transport connected to it, session
        numbers in order and Twisted's log prefix.
        """
        clients = [self.connect(), self.connect()]
        self.port.doRead()
        self.assertEqual(len(self.factory.built), 2)
        for i, (client, proto) in enumerate(
            zip(clients, self.factory.built, strict=True)
        ):
            t = proto.transport
            self.assertIs(type(t), LeanServer)
            assert isinstance(t, LeanServer)
            self.assertEqual(t.getPeer().port, client.getsockname()[1])
            self.assertEqual(self.factory.addresses[i].host, "127.0.0.1")
            self.assertEqual(t.sessionno, i)
            self.assertEqual(t.logPrefix(), f"Recorder,{i},127.0.0.1")
            self.assertEqual(t.fileno(), t.socket.fileno())
            self.assertTrue(self.reactor._selectables[t.fileno()] is t)
            port = self.port.getHost().port
            self.assertEqual(repr(t), f"<Recorder #{i} on {port}>")
            self.assertEqual(t.repstr, repr(t))
        # one address string for consecutive connections from one host
        first, second = (p.transport for p in self.factory.built)
        self.assertIs(first.hostname, second.hostname)  # type: ignore[union-attr]

    def test_repliesAndCloses(self) -> None:
        """
        The connection works: bytes written reach the client, and after
        C{connectionLost} the transport holds neither a file descriptor nor
        its protocol, as a C{tcp.Server} does.
        """
        client = self.connect()
        self.port.doRead()
        proto = self.factory.built[0]
        t: Any = proto.transport
        t.write(b"HELLO")
        t.doWrite()
        self.assertEqual(client.recv(10), b"HELLO")
        fd = t.fileno()
        t.connectionLost(Failure(Exception("gone")))
        self.assertIsNotNone(proto.lost)
        # it left the reactor before its socket closed (the lean dispatch
        # relies on it, and does not ask a LeanServer's fileno)
        self.assertNotIn(fd, self.reactor._selectables)
        self.assertEqual(t.fileno(), -1)
        self.assertIn("closed", repr(t))
        self.assertEqual(client.recv(10), b"")

    def pair(self) -> tuple[tcp.Server, LeanServer]:
        """
        A C{tcp.Server} and a L{LeanServer} made alike, each on a socket
        accepted from this port, both on this test's reactor.
        """
        made = []
        #: the client end of each, in the same order
        self.peers: list[socket.socket] = []
        for kind in (tcp.Server, LeanServer):
            self.peers.append(self.connect())
            sock, addr = self.port.socket.accept()
            self.addCleanup(sock.close)
            proto = Recorder()
            made.append(kind(sock, proto, addr, self.port, 7, self.reactor))
            proto.makeConnection(made[-1])
            # (cleanups run last first: out of the reactor before closed)
            self.addCleanup(self.reactor.removeAll)
        twisted, lean = made
        assert isinstance(lean, LeanServer)
        return twisted, lean

    def state(self, t: Any) -> dict[str, Any]:
        """
        A connection's own attributes, less those that differ by design
        (its socket and protocol, the client's port, the C{fileno} and
        C{repstr} a C{LeanServer} does not keep).
        """
        skip = {"socket", "protocol", "fileno", "repstr", "client"}
        state = {k: v for k, v in vars(t).items() if k not in skip}
        # (each was accepted from its own client port)
        state["client"] = t.client[0]
        return state

    def test_setUpLikeTcpServer(self) -> None:
        """
        L{LeanServer}'s one-call C{__init__} leaves a connection in the
        state C{tcp.Server.__init__} does: the same attributes with the same
        values, registered for reading, its socket non-blocking.
        """
        twisted, lean = self.pair()
        self.assertEqual(self.state(lean), self.state(twisted))
        self.assertEqual(
            sorted(vars(twisted)), sorted([*vars(lean), "fileno", "repstr"])
        )
        self.assertIn(lean, self.reactor.getReaders())
        self.assertEqual(lean.socket.gettimeout(), 0.0)
        self.assertEqual(lean.logPrefix(), twisted.logPrefix())

    def test_tearDownLikeTcpServer(self) -> None:
        """
        L{LeanServer}'s one-call C{connectionLost} does what
        C{tcp.Connection.connectionLost} does: producer stopped, out of the
        reactor, socket closed in order (or with a reset when aborted),
        protocol and socket dropped, the protocol told with the same
        reason; a second call does nothing.
        """
        for reason in (ConnectionDone(), ConnectionAborted()):
            twisted, lean = self.pair()
            stopped: list[str] = []
            sockets = [twisted.socket, lean.socket]
            for name, t in (("twisted", twisted), ("lean", lean)):
                producer = _Producer(stopped, name)
                t.registerProducer(producer, True)
                t.startWriting()
            protocols = [twisted.protocol, lean.protocol]
            failure = Failure(reason)
            twisted.connectionLost(failure)
            lean.connectionLost(failure)
            lean.connectionLost(failure)
            # what each peer sees: the end of data (shutdown, close), or a
            # reset (aborted: SO_LINGER 0, close)
            seen: list[bytes | str] = []
            for peer in self.peers:
                try:
                    seen.append(peer.recv(10))
                except ConnectionResetError:
                    seen.append("reset")
            self.assertEqual(
                seen,
                [b"", b""] if isinstance(reason, ConnectionDone) else ["reset"] * 2,
            )
            # each socket object closed, and says so
            self.assertEqual([s.fileno() for s in sockets], [-1, -1])
            self.assertEqual(["[closed]" in repr(s) for s in sockets], [True, True])
            self.assertEqual(stopped, ["twisted", "lean"])
            self.assertEqual(self.state(lean), self.state(twisted))
            self.assertNotIn(lean, self.reactor.getReaders())
            self.assertNotIn(lean, self.reactor.getWriters())
            self.assertFalse(hasattr(lean, "socket") or hasattr(lean, "protocol"))
            for proto in protocols:
                self.assertIs(proto.lost, failure)  # type: ignore[attr-defined]

    def test_readInAcceptPass(self) -> None:
        """
        A request already there when its connection is accepted is read and
        answered in the same pass of the reactor (one C{doPoll}): the
        textbook client costs one poll fewer.
        """
        from upperecho.tcp import UpperEchoFactory

        port: Any = self.reactor.listenTCP(
            0, UpperEchoFactory(clock=self.reactor), interface="127.0.0.1"
        )
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
        self.addCleanup(client.close)
        # on loopback, the request is queued at the server when this returns
        client.sendall(b"hello")
        self.reactor.doPoll(5)
        client.setblocking(False)
        self.assertEqual(client.recv(10), b"HELLO")

    def test_doRead(self) -> None:
        """
        L{LeanServer.doRead} gives the protocol what it reads, C{None} when
        nothing is there, and C{ConnectionLost} when the socket fails, as
        C{tcp.Connection} does; at the peer's end of data it ends the
        connection itself (L{test_endOfData}) and returns C{None}.
        """
        received: list[bytes] = []
        client = self.connect()
        self.port.doRead()
        proto = self.factory.built[0]
        proto.dataReceived = received.append  # type: ignore[method-assign,assignment]
        t: Any = proto.transport
        self.assertIsNone(t.doRead())
        client.sendall(b"hello")
        for _ in range(100):
            if t.doRead() is None and received:
                break
        self.assertEqual(b"".join(received), b"hello")

        class Broken:
            def recv(self, n: int) -> bytes:
                raise ConnectionResetError(errno.ECONNRESET, "reset")

        real = t.socket
        t.socket = Broken()
        self.addCleanup(setattr, t, "socket", real)
        self.assertIsInstance(t.doRead(), ConnectionLost)

    def test_endOfData(self) -> None:
        """
        At the peer's end of data, L{LeanServer.doRead} does what Twisted's
        reactor does with the C{ConnectionDone} C{tcp.Connection.doRead}
        returns: it stops reading, and a protocol that takes a half-close
        is told C{readConnectionLost} (and may still write), one that does
        not loses the connection with C{ConnectionDone}; an error in
        C{readConnectionLost} is logged and loses the connection with it.
        Each is compared with a C{tcp.Server} the stock reactor serves.
        """
        from twisted.internet.epollreactor import EPollReactor
        from twisted.internet.interfaces import IHalfCloseableProtocol
        from zope.interface import implementer

        @implementer(IHalfCloseableProtocol)
        class HalfCloser(Recorder):
            ended = 0
            fail = False

            def readConnectionLost(self) -> None:
                self.ended += 1
                if self.fail:
                    raise ZeroDivisionError()

            def writeConnectionLost(self) -> None:
                pass

        @implementer(IHalfCloseableProtocol)
        class Conforming(HalfCloser):
            """
            Provides the interface, but its __conform__ names another
            object, which adaptation prefers: that one is told, not this.
            """

            def __init__(self) -> None:
                self.other = HalfCloser()
                self.mine = 0

            def __conform__(self, interface: object) -> Any:
                return self.other

            def readConnectionLost(self) -> None:
                self.mine += 1

            @property
            def ended(self) -> tuple[int, int]:  # type: ignore[override]
                return (self.other.ended, self.mine)

        for kind, fail in (
            (Recorder, False),
            (HalfCloser, False),
            (HalfCloser, True),
            (Conforming, False),
        ):
            seen = []
            for lean in (True, False):
                reactor = UpperEchoReactor() if lean else EPollReactor()
                self.addCleanup(reactor._poller.close)
                listener = socket.socket()
                self.addCleanup(listener.close)
                listener.bind(("127.0.0.1", 0))
                listener.listen(1)
                client = socket.create_connection(listener.getsockname(), timeout=5)
                self.addCleanup(client.close)
                sock, addr = listener.accept()
                proto = kind()
                proto.fail = fail  # type: ignore[attr-defined]
                server: Any = (LeanServer if lean else tcp.Server)(
                    sock, proto, addr, self.port, 1, reactor
                )
                self.addCleanup(server.connectionLost, Failure(ConnectionDone()))
                proto.makeConnection(server)
                client.shutdown(socket.SHUT_WR)
                if lean:
                    self.assertIsNone(server.doRead())
                else:
                    why = server.doRead()
                    self.assertIsInstance(why, ConnectionDone)
                    reactor._disconnectSelectable(server, why, True)
                seen.append(
                    (
                        getattr(proto, "ended", None),
                        None if proto.lost is None else proto.lost.type,
                        server in reactor.getReaders(),
                        server.connected,
                        len(self.flushLoggedErrors(ZeroDivisionError)),
                    )
                )
            self.assertEqual(seen[0], seen[1])
            self.assertFalse(seen[0][2])
            if kind is Recorder:
                self.assertEqual(seen[0][1], ConnectionDone)
            elif fail:
                self.assertEqual(seen[0][1:], (ZeroDivisionError, False, 0, 1))
            else:
                told = (1, 0) if kind is Conforming else 1
                self.assertEqual(seen[0][:2], (told, None))
                self.assertTrue(seen[0][3])

    def test_eventsInConnectionContext(self) -> None:
        """
        Every event of a connection is dispatched in the log context its
        C{logPrefix()} names (the reactor reads a L{LeanServer}'s
        C{logstr}, what C{tcp.Connection.logPrefix} returns), and the
        port's own in the factory's qualified name, kept while the factory
        class stays.
        """
        systems: list[str] = []

        def record(data: bytes) -> None:
            systems.append(context.get(log.ILogContext)["system"])

        client = self.connect()
        self.reactor.doPoll(1)
        proto = self.factory.built[0]
        proto.dataReceived = record  # type: ignore[method-assign]
        client.sendall(b"x")
        self.reactor.doPoll(1)
        transport: Any = proto.transport
        self.assertEqual(systems, [transport.logPrefix()])
        self.assertEqual(systems, ["Recorder,0,127.0.0.1"])
        self.assertEqual(self.port.logPrefix(), reflect.qual(RecordingFactory))
        self.port.factory = Factory()
        self.assertEqual(self.port.logPrefix(), "twisted.internet.protocol.Factory")

    def test_closeWithoutAuditedSocketCode(self) -> None:
        """
        Where Python's C{socket.close} is not the code audited, or a
        C{makefile()} holds the socket, the connection closes its socket
        with C{socket.close()}, to the same effect.
        """
        for how in ("unaudited", "makefile"):
            twisted, lean = self.pair()
            sock = lean.socket
            if how == "unaudited":
                self.patch(portModule, "_SOCKET_CLOSE", None)
            else:
                held = sock.makefile("rb")
                self.addCleanup(held.close)
            lean.connectionLost(Failure(ConnectionDone()))
            self.assertEqual(self.peers[1].recv(10), b"")
            self.assertIn("[closed]", repr(sock))
            if how == "makefile":
                # socket.close() leaves it open for the file, as ever
                self.assertNotEqual(sock.fileno(), -1)
                held.close()
            self.assertEqual(sock.fileno(), -1)
            twisted.connectionLost(Failure(ConnectionDone()))

    def test_streamReadSize(self) -> None:
        """
        A connection reads 64 KiB at a time, as C{tcp.Connection} does,
        until a read fills that; from then on it reads up to
        L{STREAM_READ_SIZE}.  Short reads leave the size alone.
        """
        asked: list[int] = []

        class Socket:
            def __init__(self, chunks: list[bytes]) -> None:
                self.chunks = chunks

            def recv(self, n: int) -> bytes:
                asked.append(n)
                return self.chunks.pop(0)[:n]

        client = self.connect()
        self.port.doRead()
        proto = self.factory.built[0]
        received: list[bytes] = []
        proto.dataReceived = received.append  # type: ignore[method-assign,assignment]
        t: Any = proto.transport
        real = t.socket
        self.addCleanup(setattr, t, "socket", real)
        t.socket = Socket([b"x" * 100, b"y" * 2**16, b"z" * 2**20, b"w"])
        for _ in range(4):
            self.assertIsNone(t.doRead())
        self.assertEqual(asked, [2**16, 2**16, STREAM_READ_SIZE, STREAM_READ_SIZE])
        self.assertEqual([len(r) for r in received], [100, 2**16, STREAM_READ_SIZE, 1])
        client.close()

    def test_refused(self) -> None:
        """
        A connection the factory refuses (C{None}) is closed at once, and
        the next one is still accepted.
        """
        self.factory.refuse = True
        refused = self.connect()
        self.port.doRead()
        self.assertEqual(refused.recv(10), b"")
        self.factory.refuse = False
        self.connect()
        self.port.doRead()
        self.assertEqual(len(self.factory.addresses), 2)
        self.assertEqual(len(self.factory.built), 1)
        self.assertEqual(self.factory.built[0].transport.sessionno, 0)  # type: ignore[union-attr]

    def test_acceptBound(self) -> None:
        """
        As C{tcp.Port}: a pass that uses all C{numberAccepts} allows 20
        more next time; one that uses fewer allows that many (at least 1).
        """
        assert isinstance(self.port, LeanPort)
        self.port.numberAccepts = 1
        self.connect()
        self.connect()
        self.port.doRead()
        self.assertEqual(len(self.factory.built), 1)
        self.assertEqual(self.port.numberAccepts, 21)
        self.port.doRead()
        self.assertEqual(len(self.factory.built), 2)
        self.assertEqual(self.port.numberAccepts, 1)
        self.port.doRead()
        self.assertEqual(self.port.numberAccepts, 1)

    def test_errorGoesToTwisted(self) -> None:
        """
        Any accept error but "no more connections" is left to Twisted's own
        C{doRead}, which handles each (here: C{ECONNABORTED} is skipped and
        the next connection accepted).
        """
        assert isinstance(self.port, LeanPort)
        real = self.port.socket
        calls: list[str] = []

        class Listener:
            proto = real.proto

            def _accept(self) -> Any:
                calls.append("lean")
                raise ConnectionAbortedError(errno.ECONNABORTED, "aborted")

            def fileno(self) -> int:
                return int(real.fileno())

            def accept(self) -> Any:
                calls.append("twisted")
                return real.accept()

        def compiledAccept(fd: int) -> Any:
            return Listener()._accept()

        if self.accept is not None:
            self.patch(portModule, "ACCEPT_NONBLOCKING", compiledAccept)
        self.connect()
        self.port.socket = Listener()
        self.addCleanup(setattr, self.port, "socket", real)
        self.port.doRead()
        self.assertEqual(calls[0], "lean")
        self.assertIn("twisted", calls)
        self.assertEqual(len(self.factory.built), 1)


class PythonAcceptLeanPortTests(LeanPortTests):
    """
    L{LeanPortTests} with Python's C{socket._accept}: what runs where the C
    accelerator is not built, or C{UPPERECHO_PURE_PYTHON} is set.
    """

    compiled = False


class CompiledAcceptTests(SynchronousTestCase):
    """
    C{accept_nonblocking}, the compiled accept: what C{socket._accept}
    gives, with the descriptor non-blocking and close-on-exec, and C{None}
    when nothing is waiting.
    """

    def setUp(self) -> None:
        self.accept = requireCompiled(
            self, "accept_nonblocking", portModule.ACCEPT_NONBLOCKING
        )

    def listener(self, family: socket.AddressFamily, host: str) -> socket.socket:
        try:
            listener = socket.socket(family)
            listener.bind((host, 0))
        except OSError as e:
            raise SkipTest(f"no {host} here: {e}") from e
        self.addCleanup(listener.close)
        listener.listen(5)
        listener.setblocking(False)
        return listener

    def test_sameAsPython(self) -> None:
        """
        For IPv4 and IPv6 peers, the descriptor and address are what
        C{socket._accept} gives (same peer, same address shape), the
        descriptor non-blocking and close-on-exec; C{None} when none waits.
        """
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = self.listener(family, host)
            fd = listener.fileno()
            self.assertIsNone(self.accept(fd))
            clients = [
                socket.create_connection(listener.getsockname()[:2], timeout=5)
                for _ in range(2)
            ]
            for client in clients:
                self.addCleanup(client.close)
            got = self.accept(fd)
            assert got is not None
            theirs = listener._accept()  # type: ignore[attr-defined]
            os.close(theirs[0])
            accepted, addr = got
            self.addCleanup(os.close, accepted)
            self.assertEqual(addr, clients[0].getsockname())
            self.assertEqual(len(addr), len(theirs[1]))
            self.assertEqual([type(x) for x in addr], [type(x) for x in theirs[1]])
            self.assertTrue(fcntl.fcntl(accepted, fcntl.F_GETFL) & os.O_NONBLOCK)
            self.assertTrue(fcntl.fcntl(accepted, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
            self.assertIsNone(self.accept(fd))

    def test_errors(self) -> None:
        """
        An error other than "none waiting" is raised as C{OSError} with its
        errno, and a bad argument as C{ValueError} or C{TypeError}.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        with self.assertRaises(OSError) as raised:
            self.accept(r)
        self.assertEqual(raised.exception.errno, errno.ENOTSOCK)
        self.assertRaises(ValueError, self.accept, -1)
        self.assertRaises(TypeError, self.accept, "3")
        self.assertRaises(OverflowError, self.accept, 2**80)

    def test_pureSwitch(self) -> None:
        """
        C{UPPERECHO_PURE_PYTHON} turns the compiled accept off, as it does
        the compiled transform.
        """
        self.patch(os, "environ", {**os.environ, "UPPERECHO_PURE_PYTHON": "1"})
        self.assertIsNone(compiled("accept_nonblocking"))
        self.patch(os, "environ", {**os.environ, "UPPERECHO_PURE_PYTHON": ""})
        self.assertIs(compiled("accept_nonblocking"), self.accept)


class LeanAcceptAvailableTests(SynchronousTestCase):
    def test_missingName(self) -> None:
        """
        A Twisted whose C{tcp.Port} lacks a name the loop reads gets
        C{tcp.Port}: the check fails, and the reactor says so.
        """
        self.patch(
            _compat,
            "TCP_PORT_ATTRIBUTES",
            (*_compat.TCP_PORT_ATTRIBUTES, "_notThere"),
        )
        self.assertFalse(_compat.leanAcceptAvailable())
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        self.assertFalse(reactor.leanAccept)

    def test_changedTwistedCode(self) -> None:
        """
        A Twisted whose connection code differs from the code
        C{LeanServer} carries flattened gets C{tcp.Port}.
        """
        self.patch(_compat, "auditedCodeUnchanged", lambda: False)
        self.assertFalse(_compat.leanAcceptAvailable())
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        self.assertFalse(reactor.leanAccept)

    def test_eagerOnLeanServer(self) -> None:
        """
        The eager-send path takes a L{LeanServer} as it takes a
        C{tcp.Server}, and no other subclass.
        """
        self.assertIn(LeanServer, _compat.EAGER_TRANSPORTS)

        class Other(tcp.Server):
            pass

        self.assertNotIn(Other, _compat.EAGER_TRANSPORTS)
