# -*- test-case-name: tests.test_haproxy,tests.test_tls -*-
"""
Server endpoints for C{--listen} that keep upperecho's half-close promise.

L{UpperEchoProtocol<upperecho.tcp.UpperEchoProtocol>} answers everything it
owes when its peer shuts the sending side, because it provides
L{IHalfCloseableProtocol}.  Twisted's protocol I{wrappers} hide that: the
C{haproxy:} wrapper (L{HAProxyProtocolWrapper}) and the TLS wrapper
(L{BufferingTLSTransport}) do not provide the interface, so a FIN from the
peer closes the connection at once and the replies still buffered are lost;
and the TLS wrapper, on the peer's C{close_notify}, shuts TLS down before its
write-aggregation buffer is flushed.  (Measured against the plain wrappers:
over TLS 2 to 3 of 20 half-closing clients got their full reply.)

L{serverEndpoint} parses an endpoint string as C{serverFromString} does, and
replaces those two wrappers with subclasses that pass the half-close on.
Every other endpoint (C{tcp:}, C{tcp6:}, C{unix:}, C{systemd:} ...) is
returned unchanged: its transport already delivers the half-close.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import (
    TCP4ServerEndpoint,
    serverFromString,
)
from twisted.internet.interfaces import (
    IAddress,
    IHalfCloseableProtocol,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from upperecho._compat import (
    raiseListenErrors,
    sniEndpointType,
    sslEndpointParts,
    tlsTransportUsable,
)
from upperecho.halfclose import passReadConnectionLost, passWriteConnectionLost

__all__ = [
    "HalfCloseableTLSFactory",
    "HalfCloseableTLSProtocol",
    "ProxyEndpoint",
    "TLSServerEndpoint",
    "endpointService",
    "serverEndpoint",
]

HAPROXY_PREFIX = "haproxy:"


@implementer(IHalfCloseableProtocol)
class HalfCloseableTLSProtocol(BufferingTLSTransport):
    """
    The TLS server transport, with half-close in both of its forms passed on
    to the application protocol:

      - the peer's TLS C{close_notify} (TLS 1.3 allows the other side to go
        on writing): the application is told C{readConnectionLost}, writes
        what it owes and calls C{loseConnection}, which flushes the write
        aggregation buffer, answers C{close_notify} and closes;
      - a bare TCP FIN without C{close_notify} (a client that called
        C{shutdown(SHUT_WR)} on the socket under its TLS session, as
        Twisted's own C{loseWriteConnection} does over TLS): the same, and
        the TCP connection is closed once our C{close_notify} is written,
        since the peer's will never come.
    """

    #: the peer has ended its side (TLS close_notify or TCP FIN)
    _peerEnded = False
    #: the peer's side ended with a TCP FIN, so its close_notify never comes
    _peerFIN = False

    def dataReceived(self, data: bytes) -> None:
        if self._peerEnded:
            # Nothing the peer sends after its end counts: dropped here, not
            # stored in the TLS layer, where a peer that goes on sending
            # while its replies are flushed could make it grow.
            return
        super().dataReceived(data)

    def _flushReceiveBIO(self) -> None:
        if self._peerEnded:
            # the TLS shutdown is finished by loseConnection
            self._flushSendBIO()
            return
        # Look for the peer's close_notify before the base class does: it
        # would shut TLS down at once, dropping replies not yet encrypted.
        from OpenSSL.SSL import Error, WantReadError, ZeroReturnError

        while not self._lostTLSConnection and not self._peerEnded:
            try:
                data = self._tlsConnection.recv(2**15)
            except WantReadError:
                break
            except ZeroReturnError:
                self._peerEnded = True
                passReadConnectionLost(self)
            except Error:
                # a broken session: the base class's own handling
                self._tlsShutdownFinished(Failure())
                break
            else:
                if not self._aborted:
                    self.wrappedProtocol.dataReceived(data)
        self._flushSendBIO()

    def readConnectionLost(self) -> None:
        """
        The peer sent a TCP FIN: no more TLS records will come.
        """
        self._peerFIN = True
        if self._peerEnded:
            return
        self._peerEnded = True
        assert self.transport is not None
        if not self._handshakeDone:
            self.transport.loseConnection()
            return
        passReadConnectionLost(self)

    def writeConnectionLost(self) -> None:
        """
        The peer reads no more: let the protocol stop.
        """
        passWriteConnectionLost(self)

    def _shutdownTLS(self) -> None:
        super()._shutdownTLS()
        if self._peerFIN and self.transport is not None:
            # our close_notify is queued; the peer's will never arrive
            self.transport.loseConnection()


class HalfCloseableTLSFactory(TLSMemoryBIOFactory):
    """
    Builds L{HalfCloseableTLSProtocol}s, and refuses a connection when the
    wrapped factory does.
    """

    protocol = HalfCloseableTLSProtocol

    def buildProtocol(self, addr: IAddress | None) -> Any:
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)


@implementer(IStreamServerEndpoint)
class ProxyEndpoint:
    """
    Like Twisted's C{haproxy:} endpoint: reads a PROXY v1 or v2 header
    before the stream, using L{HalfCloseableHAProxyFactory}.

    @ivar wrapped: the endpoint that really listens.
    """

    def __init__(self, wrapped: IStreamServerEndpoint) -> None:
        self.wrapped = wrapped

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        from upperecho.proxyprotocol import HalfCloseableHAProxyFactory

        return self.wrapped.listen(HalfCloseableHAProxyFactory(factory))


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """
    TLS over another endpoint, like Twisted's C{ssl:} and C{tls:} endpoints
    (which it is built from), using L{HalfCloseableTLSFactory}.

    @ivar endpoint: the endpoint that really listens (TCP).
    @ivar creator: the server TLS settings (a context factory or connection
        creator, as L{TLSMemoryBIOFactory} takes).
    @ivar proxyHeader: read a PROXY header I{before} the TLS handshake, in
        clear, as HAProxy sends it with C{send-proxy-v2} both when it passes
        TLS through and when it re-encrypts (C{haproxy:ssl:...}).
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamServerEndpoint,
        creator: Any,
        proxyHeader: bool = False,
    ) -> None:
        self._reactor = reactor
        self.endpoint = endpoint
        self.creator = creator
        self.proxyHeader = proxyHeader

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        outer: IProtocolFactory = HalfCloseableTLSFactory(
            self.creator, False, factory, clock=self._reactor
        )
        if self.proxyHeader:
            from upperecho.proxyprotocol import HalfCloseableHAProxyFactory

            outer = HalfCloseableHAProxyFactory(outer)
        return self.endpoint.listen(outer)


def _asHalfCloseableTLS(
    reactor: Any, endpoint: IStreamServerEndpoint
) -> TLSServerEndpoint | None:
    """
    The L{TLSServerEndpoint} equivalent to Twisted's C{ssl:} or C{tls:}
    (SNI, directory of PEM files) server endpoint C{endpoint}, or C{None}
    for any other endpoint, and for every endpoint when this Twisted's TLS
    transport lacks what L{HalfCloseableTLSProtocol} builds on.
    """
    if not tlsTransportUsable():
        return None
    parts = sslEndpointParts(endpoint)
    if parts is not None:
        port, backlog, interface, contextFactory = parts
        tcp = TCP4ServerEndpoint(reactor, port, backlog, interface)
        return TLSServerEndpoint(reactor, tcp, contextFactory)
    sniEndpoint = sniEndpointType()
    if sniEndpoint is not None and isinstance(endpoint, sniEndpoint):
        sni: Any = endpoint
        return TLSServerEndpoint(reactor, sni.endpoint, sni.connectionCreator)
    return None


_log = Logger()


def _proxyProtocolAvailable() -> bool:
    """
    Whether L{upperecho.proxyprotocol} imports: it builds on Twisted's
    private PROXY-protocol parser modules, which a Twisted release may move.
    """
    try:
        import upperecho.proxyprotocol  # noqa: F401
    except ImportError:
        return False
    return True


def serverEndpoint(reactor: Any, description: str) -> IStreamServerEndpoint:
    """
    Parse C{description} as L{serverFromString} does, with the C{haproxy:}
    and C{ssl:} wrappers replaced by ones that pass half-close on.

    Both TLS server endpoints are covered: C{ssl:PORT:privateKey=...} and
    (Twisted 25 and later) C{tls:DIRECTORY:port=...}, which picks the
    certificate by SNI from a directory of PEM files.

    One deliberate difference: C{haproxy:ssl:...} (or C{haproxy:tls:...}) reads the PROXY header in
    clear before the TLS handshake (as HAProxy's C{send-proxy-v2} sends it),
    where Twisted's own parser would look for it inside the TLS session.

    @param reactor: the reactor to listen with.
    @param description: a Twisted server endpoint string.
    @raise ValueError: for a malformed description, as L{serverFromString}.
    """
    if description.startswith(HAPROXY_PREFIX):
        if not _proxyProtocolAvailable():
            _log.warn(
                "--listen {description}: this Twisted's PROXY-protocol parser is "
                "not where upperecho expects it; using Twisted's own haproxy: "
                "wrapper, which loses replies owed when a client half-closes",
                description=description,
            )
            plain: IStreamServerEndpoint = serverFromString(reactor, description)
            return plain
        inner = serverEndpoint(reactor, description[len(HAPROXY_PREFIX) :])
        if isinstance(inner, TLSServerEndpoint):
            # Twisted's haproxy:ssl: expects the header inside the TLS
            # session, which no proxy sends: read it in clear, before TLS.
            return TLSServerEndpoint(
                reactor, inner.endpoint, inner.creator, proxyHeader=True
            )
        return ProxyEndpoint(inner)
    endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    return _asHalfCloseableTLS(reactor, endpoint) or endpoint


def endpointService(
    description: str, factory: IProtocolFactory, reactor: Any
) -> StreamServerEndpointService:
    """
    A service listening on C{description} (see L{serverEndpoint}), which
    raises a failure to listen from C{privilegedStartService}, as
    L{twisted.application.strports.service} does.
    """
    svc = StreamServerEndpointService(serverEndpoint(reactor, description), factory)
    raiseListenErrors(svc)
    return svc
