# -*- test-case-name: tests.unit.test_proxyprotocol,tests.integration.test_haproxy -*-
"""
The PROXY protocol (C{haproxy:} endpoints) with half-close passed on.

Twisted's own wrapper (L{HAProxyProtocolWrapper}) does not provide
L{IHalfCloseableProtocol}, so a client's FIN closes the connection before the
replies still owed are written.  These subclasses fix that, and parse a
header that arrives split over several reads.

They build on Twisted's I{private} parser modules, which
L{upperecho._compat} imports; L{upperecho.endpoints} imports this module
lazily and falls back to Twisted's own wrapper, with a warning, if a Twisted
release moves them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.logger import Logger
from zope.interface import implementer

from upperecho._compat import (
    HAProxyProtocolWrapper,
    HAProxyWrappingFactory,
    InvalidProxyHeader,
    V1Parser,
    V2Parser,
)
from upperecho.address import addressText
from upperecho.halfclose import passReadConnectionLost, passWriteConnectionLost
from upperecho.source import TrustedProxies

__all__ = ["HalfCloseableHAProxyFactory", "HalfCloseableHAProxyWrapper"]


def _admitClient(proto: object, client: IAddress) -> bool:
    """
    Tell the upperecho protocol under C{proto} (directly, or under a TLS
    layer) that its real client is C{client}, so the per-source limits
    count it there (L{UpperEchoFactory.proxied
    <upperecho.tcp.UpperEchoFactory.proxied>}).

    @return: C{False} if that client's source may not hold another
        connection.
    """
    while proto is not None:
        proxied = getattr(getattr(proto, "factory", None), "proxied", None)
        if callable(proxied):
            return bool(proxied(proto, client))
        proto = getattr(proto, "wrappedProtocol", None)
    return True


def _couldBeShortHeader(data: bytes) -> bool:
    """
    Is C{data} the start of a PROXY header, too short to be parsed yet?
    """
    if len(data) < 16 and V2Parser.PREFIX.startswith(data[:12]):
        return True
    return len(data) < 8 and V1Parser.PROXYSTR.startswith(data[:5])


@implementer(IHalfCloseableProtocol)
class HalfCloseableHAProxyWrapper(HAProxyProtocolWrapper):
    """
    The PROXY protocol wrapper, passing the peer's half-close on to the
    wrapped protocol and logging the real client address.

    Behind a proxy, C{getPeer()} is the proxy until the header is parsed, so
    this wrapper logs the client named by the header, once, when the first
    bytes after the header arrive: connections that carry no data (the
    proxy's health checks, every 100 ms or so) are not logged.  After that
    line, reads go straight to the wrapped protocol.  (Refusals by
    C{--max-connections} happen before the header and name the proxy.)
    """

    _log = Logger()
    #: the start of a PROXY header too short for Twisted's parser to judge
    _head = b""

    def dataReceived(self, data: bytes) -> None:
        if self._proxyInfo is not None:
            self._firstData(data)
            return
        parser = self._parser
        if parser is None:
            # Twisted's wrapper closes the connection unless the first read
            # holds 16 bytes (v2) or 8 (v1); a header split by the network
            # is held here until that much has come.
            data = self._head + data
            self._head = b""
            if _couldBeShortHeader(data):
                self._head = data
                return
            if data[:12] == V2Parser.PREFIX and data[12] & 0xF0 == 0x20:
                self._parser = parser = V2Parser()
            elif data[:5] == V1Parser.PROXYSTR:
                self._parser = parser = V1Parser()
            else:
                self.loseConnection()
                return
        try:
            self._proxyInfo, remaining = parser.feed(data)
        except InvalidProxyHeader:
            self.loseConnection()
            return
        info = self._proxyInfo
        if (
            info is not None
            and info.source is not None
            and not _admitClient(self.wrappedProtocol, info.source)
        ):
            self.loseConnection()
            return
        if remaining:
            self._firstData(remaining)

    def _firstData(self, data: bytes) -> None:
        """
        Log the real client, then hand this and every later read straight
        to the wrapped protocol.
        """
        info = self._proxyInfo
        assert info is not None and self.transport is not None
        if info.source is not None:
            self._log.info(
                "PROXY connection from {client} via {proxy}",
                client=addressText(info.source),
                proxy=addressText(self.transport.getPeer()),
            )
        forward = self.wrappedProtocol.dataReceived
        self.dataReceived = forward  # type: ignore[method-assign]
        forward(data)

    def readConnectionLost(self) -> None:
        """
        The proxy shut its sending side: let the protocol answer what it owes.
        """
        passReadConnectionLost(self)

    def writeConnectionLost(self) -> None:
        """
        The proxy reads no more: let the protocol stop.
        """
        passWriteConnectionLost(self)


class HalfCloseableHAProxyFactory(HAProxyWrappingFactory):
    """
    Builds L{HalfCloseableHAProxyWrapper}s, and refuses a connection when the
    wrapped factory does (Twisted's L{WrappingFactory} would wrap the
    C{None} and fail with a traceback).

    @ivar trusted: the peers that may send a PROXY header (C{--proxy-from});
        any other is closed at once, before its header is read.  C{None}:
        every peer may (Twisted's behaviour).
    @ivar untrusted: called with the address of each peer refused so, to
        count and log it.
    """

    protocol = HalfCloseableHAProxyWrapper  # type: ignore[assignment]

    def __init__(
        self,
        wrappedFactory: Any,
        trusted: TrustedProxies | None = None,
        untrusted: Callable[[IAddress | None], object] | None = None,
    ) -> None:
        super().__init__(wrappedFactory)
        self.trusted = trusted
        self.untrusted = untrusted

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if self.trusted is not None and addr not in self.trusted:
            if self.untrusted is not None:
                self.untrusted(addr)
            return None
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        return self.protocol(self, wrapped)  # type: ignore[arg-type]
