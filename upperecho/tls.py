# -*- test-case-name: tests.test_tls -*-
"""
TLS server connections that keep upperecho's half-close promise.

Twisted's TLS wrapper (L{BufferingTLSTransport}) does not provide
L{IHalfCloseableProtocol}, so a FIN from the peer closes the connection at
once and the replies still buffered are lost; and on the peer's
C{close_notify} it shuts TLS down before its write-aggregation buffer is
flushed.  (Measured against the plain wrapper: 2 to 3 of 20 half-closing
clients got their full reply.)  L{HalfCloseableTLSFactory} fixes both.

This module needs pyOpenSSL (Twisted's C{tls} extra, a dependency of
upperecho), so L{upperecho.endpoints} imports it only for a TLS endpoint.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.interfaces import IAddress, IHalfCloseableProtocol
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from upperecho.halfclose import passReadConnectionLost, passWriteConnectionLost

__all__ = ["HalfCloseableTLSFactory", "HalfCloseableTLSProtocol"]


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
