# -*- test-case-name: tests.unit.test_port,tests.integration.test_reactor -*-
"""
upperecho's TCP listening port: Twisted's C{tcp.Port} and C{tcp.Server}
with a cheaper accept and a smaller connection.

A client that opens one connection per request (the textbook client, a
health check, a load balancer's probe) pays for the accept path once per
request, and a server holding many idle connections pays for each
connection's objects while it waits.  Twisted's C{tcp.Port.doRead}, per
accept, builds a log-buffering context manager and a L{Logger} (used only to
report C{EMFILE}), runs a generator and reads the listening socket's family
and type through C{socket.accept}, which converts each to an C{enum} member;
each C{tcp.Server} then keeps, besides its socket, a bound C{fileno} method,
its C{repr} string and its own copy of the peer's address string.

L{LeanPort.doRead} accepts in a plain loop with the same bound
(C{numberAccepts}, scaled as Twisted scales it), the same address handling
and the same calls to the factory and the protocol; any error but "no more
connections" hands over to Twisted's own C{doRead}, which knows what to do
about C{EMFILE} and the rest.  L{LeanServer} is a C{tcp.Server} whose
C{fileno} and C{repr} are computed when asked (72 and 82 bytes not kept per
connection), whose C{doRead} hands what it reads to the protocol itself
(one call fewer per read) and ends reading itself when the peer ends
sending (what the reactor's C{_disconnectSelectable} and
C{tcp.Connection.readConnectionLost} do with C{ConnectionDone}), and whose
C{__init__} and C{connectionLost} run the code of C{tcp.Server},
C{tcp.Connection} and C{FileDescriptor} they stand for in one call each
instead of six and nine (about 5 % less server CPU per connection, one
request per connection); the port hands consecutive connections from one
host the same address string.  Where upperecho's C accelerator is built,
the port accepts with its C{accept_nonblocking} (L{ACCEPT_NONBLOCKING}):
the new descriptor is non-blocking from the C{accept4} that makes it (no
C{ioctl} per connection), and "none waiting" is C{None}, not an
exception; elsewhere with Python's C{socket._accept}, as before.  About
210 bytes less per connection, and the accept path several microseconds
shorter (docs/performance.rst has the measurements).

It reads private names of Twisted's port (C{_buildAddr}, C{numberAccepts},
C{sessionno}), of its connection (C{_getLogPrefix}, C{_closeSocket} ...) and
the socket module's C{_accept}, and carries a flattened copy of Twisted's
connection set-up and tear-down, so, like the rest of upperecho's fast
paths, it is used only where L{leanAcceptAvailable} finds every name there
and every function copied unchanged since it was audited
(L{upperecho._compat.FLATTENED_TWISTED_CODE}); elsewhere
L{upperecho.reactor.UpperEchoReactor.listenTCP} makes Twisted's own
C{tcp.Port}.
"""

from __future__ import annotations

import _socket
import socket
import struct
from collections.abc import Callable
from errno import EWOULDBLOCK
from typing import Any

from twisted.internet.address import IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IHalfCloseableProtocol, IProtocol
from twisted.internet.main import CONNECTION_LOST
from twisted.internet.tcp import Port, Server
from twisted.python import log, reflect
from twisted.python.failure import Failure

from upperecho._compat import (
    EAGER_TRANSPORTS,
    leanAcceptAvailable,
    socketCloseAudited,
)
from upperecho.compiled import compiled

__all__ = ["LeanPort", "LeanServer", "leanAcceptAvailable"]


#: the accept L{LeanPort} uses where it can: one system call per connection
#: that gives a non-blocking descriptor, and C{None} rather than an
#: exception when no connection is waiting (see upperecho/_accel.c)
ACCEPT_NONBLOCKING: Callable[[int], tuple[int, tuple[Any, ...]] | None] | None = (
    compiled("accept_nonblocking")
)

#: SO_LINGER on, zero seconds: close with a reset (tcp.Connection's abort)
_LINGER_RESET = struct.pack("ii", 1, 0)

#: the C close that socket.socket.close calls (through _real_close) when
#: no makefile() holds the socket, where that code is the code audited
#: (L{upperecho._compat.socketCloseAudited}); else None, and
#: L{LeanServer.connectionLost} calls socket.socket.close
_SOCKET_CLOSE = _socket.socket.close if socketCloseAudited() else None

#: the reason a connection whose protocol does not take a half-close is
#: given when its peer ends sending: the one Twisted's reactor gives
_CONNECTION_DONE = Failure(ConnectionDone())


class _FilenoOfSocket:
    """
    C{fileno} of a L{LeanServer}: its socket's C{fileno} method, looked up
    when asked instead of stored per connection.

    C{tcp.Connection} assigns C{self.fileno = skt.fileno} and later deletes
    it; as a data descriptor this class takes both without storing anything,
    and once the socket is gone gives what C{FileDescriptor.fileno} gives:
    C{-1}.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        # (not obj.__dict__, which would make the instance a dict of its own)
        sock = getattr(obj, "socket", None)
        if sock is None:
            return _noFileno
        return sock.fileno

    def __set__(self, obj: Any, value: object) -> None:
        pass

    def __delete__(self, obj: Any) -> None:
        pass


def _noFileno() -> int:
    return -1


class _ReprNotKept:
    """
    C{repstr} of a L{LeanServer}: C{tcp.Server} builds it for every
    connection, for C{repr} alone; L{LeanServer.__repr__} builds it when
    asked, so the assignment is dropped.
    """

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        return repr(obj)

    def __set__(self, obj: Any, value: object) -> None:
        pass


#: The read size of a connection that streams: once a read fills Twisted's
#: 64 KiB, the connection reads up to this much at a time.  A bulk stream
#: then costs a quarter of the reads, and the Python work per read is most
#: of what a stream costs beyond the system calls (shared bench,
#: tcp-stream: server CPU per GB 25-40 % lower); request-sized reads never
#: fill 64 KiB, so ping-pong traffic and idle connections are unchanged.
#: The write buffer's high-water mark stays Twisted's C{bufferSize}: what a
#: client that does not read can make the server hold grows from the mark
#: plus one 64 KiB read's reply to the mark plus one such read's reply.
STREAM_READ_SIZE = 2**18


class LeanServer(Server):
    """
    A C{tcp.Server} that keeps less per connection (see the module's
    docstring), is set up and torn down in one Python call each (Twisted's
    own code, flattened), and reads a stream in larger pieces
    (L{STREAM_READ_SIZE}); everything else is C{tcp.Server}'s own.
    """

    fileno = _FilenoOfSocket()
    repstr = _ReprNotKept()
    #: how much one read asks for; C{bufferSize} is also the write
    #: buffer's high-water mark, which must not grow with it
    readSize = Server.bufferSize

    def __init__(
        self,
        sock: socket.socket,
        protocol: IProtocol,
        client: tuple[Any, ...],
        server: Port,
        sessionno: int,
        reactor: Any,
    ) -> None:
        """
        C{tcp.Server.__init__}, with the C{tcp.Connection.__init__},
        C{FileDescriptor.__init__} and C{startReading} it calls, in one
        call: the same state set in the same order, less the C{fileno} and
        C{repstr} this class does not keep.  The code is Twisted's, as
        audited (L{upperecho._compat.FLATTENED_TWISTED_CODE}: where it has
        changed, L{LeanPort} is not used at all).
        """
        if not reactor:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.reactor = reactor
        self._tempDataBuffer: list[bytes] = []
        self._tempDataLen = 0
        self.socket = sock
        if sock.gettimeout() != 0:
            # (a socket LeanPort made from accept_nonblocking is
            # non-blocking already: one system call fewer)
            sock.setblocking(False)
        self.protocol = protocol
        if len(client) != 2:
            self._addressType = IPv6Address
        self.server = server
        self.client = client
        self.sessionno = sessionno
        self.hostname = client[0]
        self.logstr = f"{self._getLogPrefix(protocol)},{sessionno},{self.hostname}"
        reactor.addReader(self)
        self.connected = 1

    def connectionLost(self, reason: Failure) -> None:
        """
        C{tcp.Connection.connectionLost}, with the
        C{FileDescriptor.connectionLost}, C{stopReading}, C{stopWriting} and
        C{_closeSocket} it calls, in one call (audited as L{__init__} is).
        Whether the connection was aborted is asked with C{issubclass},
        which answers what C{Failure.check}'s comparison of qualified names
        answers for a class, without building them.
        """
        if not hasattr(self, "socket"):
            return
        self.disconnected = 1
        self.connected = 0
        if self.producer is not None:
            self.producer.stopProducing()
            self.producer = None
        reactor = self.reactor
        removeSocket = getattr(reactor, "removeSocket", None)
        if removeSocket is not None:
            # upperecho's reactor: stopReading and stopWriting in one call
            removeSocket(self)
        else:
            reactor.removeReader(self)
            reactor.removeWriter(self)
        kind = reason.type
        # tcp.Connection._closeSocket, in line (audited as the rest)
        skt: Any = self.socket
        try:
            if not (kind is not None and issubclass(kind, ConnectionAborted)):
                if self._shouldShutdown:
                    skt.shutdown(2)
            else:
                skt.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        try:
            close = _SOCKET_CLOSE
            if close is not None and skt._io_refs <= 0:
                # socket.socket.close and its _real_close, in line: two
                # Python calls fewer (see socketCloseAudited)
                skt._closed = True
                close(skt)
            else:
                skt.close()
        except OSError:
            pass
        protocol = self.protocol
        del self.protocol
        del self.socket
        protocol.connectionLost(reason)

    def doRead(self) -> ConnectionLost | None:  # type: ignore[override]
        """
        C{tcp.Connection.doRead} and its C{_dataReceived} in one call (one
        Python call fewer per read): read, hand the bytes to the protocol,
        end reading when the peer has ended sending, or say why the
        connection is lost.  A read that fills the buffer marks a stream:
        later reads take up to L{STREAM_READ_SIZE}.
        """
        size = self.readSize
        try:
            data = self.socket.recv(size)
        except OSError as se:
            if se.args[0] == EWOULDBLOCK:
                return None
            return CONNECTION_LOST
        if not data:
            # the peer will send no more: what the reactor would do with
            # CONNECTION_DONE from a read (posixbase._disconnectSelectable,
            # which stops reading and, for this half-closeable transport,
            # calls tcp.Connection.readConnectionLost), done here, two
            # Python calls fewer for every connection (audited as __init__)
            self.reactor.removeReader(self)
            protocol = self.protocol
            halfCloseable: Any
            if IHalfCloseableProtocol.providedBy(protocol) and not hasattr(
                protocol, "__conform__"
            ):
                # what adapting it gives (zope.interface asks __conform__
                # first, then whether it provides the interface), without
                # the AttributeError the missing __conform__ costs
                halfCloseable = protocol
            else:
                halfCloseable = IHalfCloseableProtocol(protocol, None)
            if halfCloseable:
                try:
                    halfCloseable.readConnectionLost()
                except BaseException:
                    log.err()
                    self.connectionLost(Failure())
            else:
                self.connectionLost(_CONNECTION_DONE)
            return None
        if len(data) == size and size < STREAM_READ_SIZE:
            self.readSize = STREAM_READ_SIZE
        self.protocol.dataReceived(data)
        return None

    def __repr__(self) -> str:
        protocol = getattr(self, "protocol", None)
        name = "closed" if protocol is None else type(protocol).__name__
        port = getattr(self.server, "_realPortNumber", None)
        return f"<{name} #{self.sessionno} on {port}>"


EAGER_TRANSPORTS.add(LeanServer)


class LeanPort(Port):
    """
    A C{tcp.Port} with the accept loop written out (see the module's
    docstring) and L{LeanServer} connections.
    """

    transport = LeanServer
    #: the address string of the last host accepted, given to the next
    #: connection from the same host instead of a copy
    _lastHost: str | None = None
    #: the factory class L{logPrefix} last named, and its name
    _prefixOf: type | None = None
    _prefix = ""

    def logPrefix(self) -> str:
        """
        C{tcp.Port.logPrefix} (the qualified name of the factory's class),
        kept while that class stays the same: the reactor asks it for every
        pass that accepts.
        """
        cls = self.factory.__class__
        if cls is not self._prefixOf:
            self._prefix = reflect.qual(cls)
            self._prefixOf = cls
        return self._prefix

    def doRead(self) -> None:
        try:
            listener: Any = self.socket
            accept = listener._accept
            family = self.addressFamily
            kind: int = self.socketType
            proto = listener.proto
            acceptNow = ACCEPT_NONBLOCKING
            if acceptNow is not None:
                listenerFd = listener.fileno()
                # the descriptors it gives are non-blocking already: the
                # socket objects are made so, with no system call
                kind |= socket.SOCK_NONBLOCK
            factory: Any = self.factory
            numAccepts = self.numberAccepts
            # upperecho's reactor reads a new connection in the same pass
            # when it can (UpperEchoReactor.readSoon)
            readSoon = getattr(self.reactor, "readSoon", None)
            accepted = 0
            while accepted < numAccepts:
                try:
                    if acceptNow is None:
                        fd, addr = accept()
                    else:
                        got = acceptNow(listenerFd)
                        if got is None:
                            break
                        fd, addr = got
                except BlockingIOError:
                    break
                except OSError:
                    # EMFILE, EPERM, ECONNABORTED ...: Twisted's own accept
                    # loop handles each as it should, from here on
                    Port.doRead(self)
                    return
                accepted += 1
                skt = socket.socket(family, kind, proto, fd)
                if len(addr) == 4:
                    # IPv6: the scope ID, as tcp.Port does
                    host = socket.getnameinfo(
                        addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
                    )
                    addr = (host[0], *addr[1:])
                last = self._lastHost
                if addr[0] == last:
                    addr = (last, *addr[1:])
                else:
                    self._lastHost = addr[0]
                protocol = factory.buildProtocol(self._buildAddr(addr))
                if protocol is None:
                    skt.close()
                    continue
                s = self.sessionno
                self.sessionno = s + 1
                transport = self.transport(skt, protocol, addr, self, s, self.reactor)
                protocol.makeConnection(transport)
                if readSoon is not None:
                    readSoon(transport, fd)
            # as tcp.Port: more accepts next time if this pass used them all
            if accepted == numAccepts:
                self.numberAccepts = numAccepts + 20
            else:
                self.numberAccepts = max(1, accepted)
        except BaseException:
            log.deferr()
