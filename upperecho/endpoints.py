# -*- test-case-name: tests.unit.test_endpoints,tests.integration.test_haproxy,tests.integration.test_tls -*-
"""
Server endpoints for C{--listen} that keep upperecho's half-close promise.

L{UpperEchoProtocol<upperecho.tcp.UpperEchoProtocol>} answers everything it
owes when its peer shuts the sending side, because it provides
L{IHalfCloseableProtocol}.  Twisted's protocol I{wrappers} hide that: the
C{haproxy:} wrapper and the TLS wrapper do not provide the interface, so a
FIN from the peer closes the connection at once and the replies still
buffered are lost.

L{serverEndpoint} parses an endpoint string as C{serverFromString} does, and
replaces those two wrappers with subclasses that pass the half-close on
(L{upperecho.proxyprotocol}, L{upperecho.tls}; each imported only when an
endpoint needs it, so a server without TLS never loads pyOpenSSL).  Every
other endpoint (C{tcp:}, C{tcp6:}, C{unix:}, C{systemd:} ...) is returned
unchanged: its transport already delivers the half-close.
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
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import Logger
from zope.interface import implementer

from upperecho._compat import (
    raiseListenErrors,
    sniEndpointType,
    sslEndpointParts,
    tlsTransportUsable,
)
from upperecho.source import TrustedProxies

__all__ = [
    "ProxyEndpoint",
    "TLSServerEndpoint",
    "endpointService",
    "serverEndpoint",
]

HAPROXY_PREFIX = "haproxy:"


@implementer(IStreamServerEndpoint)
class ProxyEndpoint:
    """
    Like Twisted's C{haproxy:} endpoint: reads a PROXY v1 or v2 header
    before the stream, using L{HalfCloseableHAProxyFactory}.

    @ivar wrapped: the endpoint that really listens.
    """

    def __init__(
        self, wrapped: IStreamServerEndpoint, trusted: TrustedProxies | None = None
    ) -> None:
        self.wrapped = wrapped
        self.trusted = trusted

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.wrapped.listen(_proxyFactory(factory, self.trusted))


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
    @ivar trusted: with C{proxyHeader}, the peers that may send one
        (C{--proxy-from}); C{None}: any peer.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamServerEndpoint,
        creator: Any,
        proxyHeader: bool = False,
        trusted: TrustedProxies | None = None,
    ) -> None:
        self._reactor = reactor
        self.endpoint = endpoint
        self.creator = creator
        self.proxyHeader = proxyHeader
        self.trusted = trusted

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        from upperecho.tls import HalfCloseableTLSFactory

        outer: IProtocolFactory = HalfCloseableTLSFactory(
            self.creator, False, factory, clock=self._reactor
        )
        if self.proxyHeader:
            untrusted = getattr(factory, "untrustedProxy", None)
            outer = _proxyFactory(outer, self.trusted, untrusted)
        return self.endpoint.listen(outer)


def _proxyFactory(
    factory: IProtocolFactory,
    trusted: TrustedProxies | None,
    untrusted: Any = None,
) -> IProtocolFactory:
    """
    The PROXY-protocol factory around C{factory}, reading headers only from
    C{trusted} peers; C{untrusted} (by default C{factory.untrustedProxy},
    if it has one) counts and logs the others.
    """
    from upperecho.proxyprotocol import HalfCloseableHAProxyFactory

    if untrusted is None:
        untrusted = getattr(factory, "untrustedProxy", None)
    return HalfCloseableHAProxyFactory(factory, trusted, untrusted)


def _asHalfCloseableTLS(
    reactor: Any, endpoint: IStreamServerEndpoint
) -> TLSServerEndpoint | None:
    """
    The L{TLSServerEndpoint} equivalent to Twisted's C{ssl:} or C{tls:}
    (SNI, directory of PEM files) server endpoint C{endpoint}, or C{None}
    for any other endpoint, and for every endpoint when this Twisted's TLS
    transport lacks what L{HalfCloseableTLSProtocol} builds on.
    """
    parts = sslEndpointParts(endpoint)
    sniEndpoint = sniEndpointType()
    if parts is not None:
        port, backlog, interface, contextFactory = parts
        tcp = TCP4ServerEndpoint(reactor, port, backlog, interface)
        inner, creator = tcp, contextFactory
    elif sniEndpoint is not None and isinstance(endpoint, sniEndpoint):
        sni: Any = endpoint
        inner, creator = sni.endpoint, sni.connectionCreator
    else:
        return None
    # checked only now: it imports the TLS layer, which loads pyOpenSSL
    if not tlsTransportUsable():
        return None
    return TLSServerEndpoint(reactor, inner, creator)


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


def serverEndpoint(
    reactor: Any, description: str, trusted: TrustedProxies | None = None
) -> IStreamServerEndpoint:
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
    @param trusted: the peers a C{haproxy:} endpoint accepts a PROXY header
        from (C{--proxy-from}); C{None}: any peer.
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
                reactor, inner.endpoint, inner.creator, True, trusted
            )
        return ProxyEndpoint(inner, trusted)
    endpoint: IStreamServerEndpoint = serverFromString(reactor, description)
    return _asHalfCloseableTLS(reactor, endpoint) or endpoint


def endpointService(
    description: str,
    factory: IProtocolFactory,
    reactor: Any,
    trusted: TrustedProxies | None = None,
) -> StreamServerEndpointService:
    """
    A service listening on C{description} (see L{serverEndpoint}), which
    raises a failure to listen from C{privilegedStartService}, as
    L{twisted.application.strports.service} does.
    """
    svc = StreamServerEndpointService(
        serverEndpoint(reactor, description, trusted), factory
    )
    raiseListenErrors(svc)
    return svc
