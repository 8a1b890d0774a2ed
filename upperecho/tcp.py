# -*- test-case-name: tests.test_tcp -*-
"""
The TCP side of upperecho: a stream protocol and the factory that limits it.

TCP is a byte stream with no message boundaries, so the protocol answers
every byte as soon as it arrives instead of waiting for a newline: the
textbook client (one C{send} with no newline, one C{recv}) and a pipe of
megabytes are served alike.
"""

from __future__ import annotations

from typing import Protocol as Protocol_

from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IHalfCloseableProtocol,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from upperecho.throttle import LogThrottle
from upperecho.transform import Uppercaser, checkEncoding

__all__ = ["UpperEchoFactory", "UpperEchoProtocol"]


class StreamTransport(Protocol_):
    """
    What the protocol needs of its transport: a stream that is also a
    consumer of itself (TCP, TLS, UNIX and PROXY-wrapped transports all are).
    """

    def write(self, data: bytes) -> None: ...
    def registerProducer(self, producer: object, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def getPeer(self) -> IAddress: ...


def _peerName(address: IAddress | None) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(getattr(address, "name", None) or address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@implementer(IHalfCloseableProtocol)
class UpperEchoProtocol(Protocol):
    """
    Uppercase echo over a stream (TCP, TLS, UNIX, PROXY-wrapped ...).

    Three properties make it safe to reuse:
      - chunking invariance: output equals C{transform(all input)} however the
        input was split, because an incomplete multi-byte character is held;
      - half-close: when the peer shuts its sending side, everything owed is
        sent, then the connection closes (L{readConnectionLost});
      - backpressure: the transport is registered as its own producer, so
        reading stops while the peer is not reading its replies.
    """

    factory: UpperEchoFactory
    transport: StreamTransport  # type: ignore[assignment]
    _upper: Uppercaser
    #: set on every read; the factory's idle sweep clears it
    _active = False
    #: when the idle sweep last saw this connection active (reactor seconds)
    _quietSince = 0.0
    #: the idle sweep has asked this connection to close
    _closing = False
    #: bytes received and sent on this connection (read by upperecho.metrics)
    bytesIn = 0
    bytesOut = 0

    def connectionMade(self) -> None:
        self._upper = Uppercaser(self.factory.encoding)
        self.transport.registerProducer(self.transport, True)
        self.factory.connectionOpened(self)

    def dataReceived(self, data: bytes) -> None:
        self._active = True
        self.bytesIn += len(data)
        out = self._upper.feed(data)
        if out:
            self.bytesOut += len(out)
            self.transport.write(out)

    def readConnectionLost(self) -> None:
        """
        The peer will send no more: answer what is owed, then close.

        The producer is unregistered first, because a transport with a
        registered producer never finishes L{loseConnection}.
        """
        self.transport.unregisterProducer()
        tail = self._upper.flush()
        if tail:
            self.bytesOut += len(tail)
            self.transport.write(tail)
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        The peer stopped reading for good: nothing more can be answered.
        """
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connectionClosed(self)


class UpperEchoFactory(Factory):
    """
    Builds one L{UpperEchoProtocol} per connection and holds what they share:
    the settings, the set of open connections and the counters.

    @ivar encoding: the text encoding used to uppercase.
    @ivar maxConnections: connections beyond this many are closed at once.
    @ivar idleTimeout: seconds of silence before a connection is closed;
        C{0} disables the timeout.
    @ivar connections: the open connections.
    @ivar connectionsTotal: connections accepted since start.
    @ivar refused: connections refused because of C{maxConnections}.
    @ivar idleClosed: connections closed by the idle timeout.
    @ivar bytesInClosed: bytes received on connections now closed.
    @ivar bytesOutClosed: bytes sent on connections now closed.
    """

    protocol = UpperEchoProtocol  # type: ignore[assignment]
    noisy = False
    _log = Logger()

    def __init__(
        self,
        encoding: str = "utf-8",
        maxConnections: int = 10000,
        idleTimeout: float = 300.0,
        clock: IReactorTime | None = None,
    ) -> None:
        checkEncoding(encoding)
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        self.encoding = encoding
        self.maxConnections = maxConnections
        self.idleTimeout = float(idleTimeout)
        self.connections: set[UpperEchoProtocol] = set()
        self.connectionsTotal = 0
        self.refused = 0
        self.idleClosed = 0
        self.bytesInClosed = 0
        self.bytesOutClosed = 0
        self._clock = clock
        self._logThrottle = LogThrottle(clock)
        self._sweepCall: IDelayedCall | None = None

    @property
    def sweepInterval(self) -> float:
        """
        How often idle connections are looked for: a tenth of the timeout, at
        most 5 s, so a connection is closed between C{idleTimeout} and
        C{idleTimeout} plus this much after its last byte.
        """
        return max(0.05, min(self.idleTimeout / 10, 5.0))

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        if len(self.connections) >= self.maxConnections:
            self.refused += 1
            peer = _peerName(addr)
            if self._logThrottle.ready(
                ("max-connections", getattr(addr, "host", peer))
            ):
                self._log.warn(
                    "refused connection from {peer}: --max-connections {limit} reached",
                    peer=peer,
                    limit=self.maxConnections,
                )
            return None
        return super().buildProtocol(addr)  # type: ignore[return-value]

    def connectionOpened(self, proto: UpperEchoProtocol) -> None:
        """
        Called by a protocol once connected.
        """
        self.connections.add(proto)
        self.connectionsTotal += 1
        proto._quietSince = self._clock.seconds()
        if self.idleTimeout > 0 and self._sweepCall is None:
            self._sweepCall = self._clock.callLater(self.sweepInterval, self._sweep)

    def connectionClosed(self, proto: UpperEchoProtocol) -> None:
        """
        Called by a protocol when its connection is gone.
        """
        self.connections.discard(proto)
        self.bytesInClosed += proto.bytesIn
        self.bytesOutClosed += proto.bytesOut
        if not self.connections and self._sweepCall is not None:
            if self._sweepCall.active():
                self._sweepCall.cancel()
            self._sweepCall = None

    def _sweep(self) -> None:
        """
        Close connections silent for C{idleTimeout} seconds.

        One timer for the whole factory instead of one reset per read: a read
        costs only setting a flag, and an idle connection holds no timer.
        """
        self._sweepCall = None
        now = self._clock.seconds()
        for proto in list(self.connections):
            if proto._active:
                proto._active = False
                proto._quietSince = now
            elif proto._closing:
                # still there a whole sweep after loseConnection: its peer is
                # not reading what is owed, so drop it without waiting.
                proto.transport.abortConnection()
            elif now - proto._quietSince >= self.idleTimeout:
                self.idleClosed += 1
                self._log.info(
                    "closing {peer}: silent for {timeout} s (--idle-timeout)",
                    peer=_peerName(proto.transport.getPeer()),
                    timeout=self.idleTimeout,
                )
                proto._closing = True
                proto.transport.unregisterProducer()
                proto.transport.loseConnection()
        if self.connections:
            self._sweepCall = self._clock.callLater(self.sweepInterval, self._sweep)

    def stopFactory(self) -> None:
        if self._sweepCall is not None and self._sweepCall.active():
            self._sweepCall.cancel()
        self._sweepCall = None
