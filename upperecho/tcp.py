# -*- test-case-name: tests.unit.test_tcp,tests.unit.test_tcp_eager -*-
"""
The TCP side of upperecho: a stream protocol and the factory that limits it.

TCP is a byte stream with no message boundaries, so the protocol answers
every byte as soon as it arrives instead of waiting for a newline: the
textbook client (one C{send} with no newline, one C{recv}) and a pipe of
megabytes are served alike.
"""

from __future__ import annotations

import math
import socket
from typing import Any
from typing import Protocol as Protocol_

from twisted.internet.error import ConnectionDone
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

from upperecho._compat import eagerSocket
from upperecho._globalreactor import reactorOr
from upperecho.address import addressText
from upperecho.fairshare import MAX_CONNECTIONS, FairShare
from upperecho.source import sourceOf
from upperecho.throttle import LogThrottle
from upperecho.transform import (
    Uppercaser,
    checkEncoding,
    isAsciiCompatible,
    upperAscii,
)

__all__ = ["UpperEchoFactory", "UpperEchoProtocol", "eagerSocket"]


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


#: the reason given to a connection that L{UpperEchoProtocol._closeNow} ends:
#: the one the reactor gives when the peer ends a connection (it too shares
#: one instance between connections)
_CONNECTION_DONE = Failure(ConnectionDone())


@implementer(IHalfCloseableProtocol)
class UpperEchoProtocol(Protocol):
    """
    Uppercase echo over a stream (TCP, TLS, UNIX, PROXY-wrapped ...).

    Three properties make it safe to reuse:
      - chunking invariance: output equals C{transform(all input)} however the
        input was split, because an incomplete multi-byte character is held;
      - half-close: when the peer shuts its sending side, everything owed is
        sent, then the connection closes (L{readConnectionLost});
      - backpressure: the transport is registered as its own producer (at
        once, or on the eager path as soon as anything is queued), so
        reading stops while the peer is not reading its replies.
    """

    factory: UpperEchoFactory
    transport: StreamTransport  # type: ignore[assignment]
    #: made on the first data that is not plain ASCII: most connections
    #: never need one, and an idle connection should cost little memory
    _upper: Uppercaser | None = None
    #: the socket to send on directly while nothing is queued (L{eagerSocket})
    _sock: socket.socket | None = None
    #: set on every read; the factory's idle sweep clears it
    _active = False
    #: when the idle sweep last saw this connection active (reactor seconds)
    _quietSince = 0.0
    #: the idle sweep has asked this connection to close
    _closing = False
    #: the transport is registered as this connection's producer
    _registered = False
    #: the transport must not be registered (again): the connection is ending
    _producerDone = False
    #: bytes received and sent on this connection (read by upperecho.metrics)
    bytesIn = 0
    bytesOut = 0
    #: who holds this connection, for the per-source limits (upperecho.source);
    #: the fair share sets it (upperecho.fairshare)
    source: str = ""

    def connectionMade(self) -> None:
        if not isAsciiCompatible(self.factory.encoding):
            # the ASCII fast path of dataReceived does not apply
            self._upper = Uppercaser(self.factory.encoding)
        self._sock = eagerSocket(self.transport)
        if self._sock is None:
            # every reply goes through the transport's buffer
            self._register()
        # opening counts as activity: the next idle sweep starts its quiet
        # time (one shared float for every connection it sees, not one each)
        self._active = True
        self.factory.connectionOpened(self)
        if self.factory.greeting:
            # --identify (upperecho.identity): the line before any reply
            self._write(self.factory.greeting)

    def dataReceived(self, data: bytes) -> None:
        self._active = True
        self.bytesIn += len(data)
        upper = self._upper
        if upper is None:
            out = upperAscii(data)
            if out is None:
                upper = self._upper = Uppercaser(self.factory.encoding)
                out = upper.feed(data)
        else:
            out = upper.feed(data)
        if out:
            self._write(out)

    def _write(self, data: bytes) -> None:
        """
        Send C{data}: straight to the socket when nothing is queued before
        it (see L{eagerSocket}), else, and for whatever the kernel did not
        take, through C{transport.write}, which keeps order, backpressure
        (pausing this transport as its own producer) and C{loseConnection}
        exactly as they are.
        """
        self.bytesOut += len(data)
        sock = self._sock
        if sock is None:
            self.transport.write(data)
            return
        t: Any = self.transport
        try:
            if (
                t._tempDataLen
                or t.dataBuffer
                or t.disconnecting
                or t.TLS
                or t._writeDisconnected
                or not t.connected
            ):
                self._register()
                t.write(data)
                return
        except AttributeError:
            # Twisted's internals moved under us: stop being clever
            self._sock = None
            self._register()
            t.write(data)
            return
        try:
            sent = sock.send(data)
        except OSError:
            # EAGAIN, or an error the reactor will find and report when it
            # tries to send the queued bytes itself
            sent = 0
        if sent < len(data):
            self._register()
            t.write(data[sent:] if sent else data)

    def _register(self) -> None:
        """
        Make the transport its own producer, so that it stops reading while
        its write buffer is full, unless that is done or over.

        On the eager path this waits for the first reply the kernel does not
        take at once: until then the transport's buffer stays empty and
        there is nothing to pause for, and most connections (and every idle
        one) never pay for the registration.
        """
        if not self._registered and not self._producerDone:
            self._registered = True
            self.transport.registerProducer(self.transport, True)

    def readConnectionLost(self) -> None:
        """
        The peer will send no more: answer what is owed, then close.

        The producer is unregistered first, because a transport with a
        registered producer never finishes L{loseConnection}.
        """
        self._unregister()
        if self._upper is not None:
            tail = self._upper.flush()
            if tail:
                self._write(tail)
        if self._sock is None or not self._closeNow():
            self.transport.loseConnection()

    def _closeNow(self) -> bool:
        """
        On the eager path (L{eagerSocket}), with every reply already taken
        by the kernel, end the connection now, as Twisted ends one whose
        protocol does not take a half-close: C{connectionLost} with
        C{ConnectionDone}, which closes the socket (the kernel still sends
        what it holds, then its FIN).

        C{loseConnection} would get there one reactor pass later, after
        asking epoll for a write event that only says the empty buffer is
        empty: two C{epoll_ctl} calls and a dispatch for every connection
        that half-closes, the textbook client's included.

        @return: whether it closed; if not, the caller must close as usual.
        """
        t: Any = self.transport
        try:
            if (
                t.dataBuffer
                or t._tempDataLen
                or t.disconnecting
                or not t.connected
                or t.producer is not None
            ):
                return False
        except AttributeError:
            # Twisted's internals moved under us: stop being clever
            self._sock = None
            return False
        t.connectionLost(_CONNECTION_DONE)
        return True

    def writeConnectionLost(self) -> None:
        """
        The peer stopped reading for good: nothing more can be answered.
        """
        self._unregister()
        self.transport.loseConnection()

    def _unregister(self) -> None:
        """
        Stop being the transport's producer, once: half-close, a dead reader
        and the idle timeout can each end a connection, in any order.
        """
        self._producerDone = True
        if self._registered:
            self._registered = False
            self.transport.unregisterProducer()

    def sweepIdle(self, now: float, timeout: float) -> bool:
        """
        The factory's idle sweep looks at this connection, every so often.

        A connection that read since the last look starts its quiet time
        now; one silent for C{timeout} seconds is asked to close; one still
        there a whole sweep after that is not reading what it is owed, so
        it is dropped without waiting.

        @return: whether this look asked the connection to close.
        """
        if self._active:
            self._active = False
            self._quietSince = now
        elif self._closing:
            self.transport.abortConnection()
        elif now - self._quietSince >= timeout:
            self._closing = True
            self._unregister()
            self.transport.loseConnection()
            return True
        return False

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.connectionClosed(self)


def _readSinceSweep(proto: UpperEchoProtocol) -> bool:
    return proto._active


class UpperEchoFactory(Factory):
    """
    Builds one L{UpperEchoProtocol} per connection and holds what they share:
    the settings, the set of open connections and the counters.

    @ivar encoding: the text encoding used to uppercase.
    @ivar maxConnections: connections beyond this many are shared fairly
        between sources (L{upperecho.fairshare}).
    @ivar fairShare: who holds the connection slots.
    @ivar idleTimeout: seconds of silence before a connection is closed;
        C{0} disables the timeout.
    @ivar connectionsTotal: connections accepted since start.
    @ivar refused: connections refused because of C{maxConnections}.
    @ivar refusedPerSource: connections refused because their source held
        C{--max-connections-per-source} already.
    @ivar evicted: connections closed to make room for a smaller source.
    @ivar refusedProxy: C{haproxy:} connections refused because the peer is
        not a trusted proxy (C{--proxy-from}).
    @ivar idleClosed: connections closed by the idle timeout.
    @ivar bytesInClosed: bytes received on connections now closed.
    @ivar bytesOutClosed: bytes sent on connections now closed.
    @ivar greeting: bytes every connection begins with (C{--identify},
        L{upperecho.identity}); empty, the default, sends nothing.
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
        maxPerSource: int = 0,
    ) -> None:
        checkEncoding(encoding)
        clock = reactorOr(clock)
        self.encoding = encoding
        self.maxConnections = maxConnections
        self.idleTimeout = float(idleTimeout)
        # connections the fair share gave up (evicted, or refused by their
        # PROXY header's source) that have not closed yet
        self._leaving: set[UpperEchoProtocol] = set()
        self.connectionsTotal = 0
        self.fairShare: FairShare[UpperEchoProtocol] = FairShare(
            maxConnections, maxPerSource, _readSinceSweep
        )
        self.refused = 0
        self.refusedPerSource = 0
        self.evicted = 0
        self.refusedProxy = 0
        self.idleClosed = 0
        self.bytesInClosed = 0
        self.bytesOutClosed = 0
        self._clock = clock
        self._logThrottle = LogThrottle(clock)
        self._sweepCall: IDelayedCall | None = None
        # an instance attribute, not a class one: connectionMade reads it
        # for every connection, and that lookup is the cheaper one
        self.greeting = b""

    @property
    def connections(self) -> set[UpperEchoProtocol]:
        """
        The open connections, as a new set: those holding a slot in the
        fair share (which is the one list of them kept, see
        L{upperecho.fairshare}) and those it gave up that have not closed
        yet.
        """
        return {p for p in self.fairShare if p.connected} | self._leaving

    @property
    def sweepInterval(self) -> float:
        """
        How often idle connections are looked for: a tenth of the timeout, at
        most 5 s, so a connection is closed between C{idleTimeout} and
        C{idleTimeout} plus this much after its last byte.
        """
        if self.idleTimeout <= 0:
            # no timeout: the sweep only tells the fair share who is active
            return 5.0
        return max(0.05, min(self.idleTimeout / 10, 5.0))

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        source = sourceOf(addr)
        refusal, victim = self.fairShare.admit(source)
        if refusal is not None:
            self.refuse(refusal, addr)
            return None
        if victim is not None:
            self._evict(victim, addr)
        proto: UpperEchoProtocol = super().buildProtocol(addr)  # type: ignore[assignment]
        self.fairShare.add(proto, source)
        return proto

    def refuse(self, reason: str, addr: IAddress | None) -> None:
        """
        Count and log (throttled) a connection refused for C{reason}
        (L{upperecho.fairshare.MAX_CONNECTIONS} or C{PER_SOURCE}).
        """
        if reason == MAX_CONNECTIONS:
            self.refused += 1
            option, limit = "--max-connections", self.maxConnections
        else:
            self.refusedPerSource += 1
            option, limit = "--max-connections-per-source", self.fairShare.perSource
        if self._logThrottle.ready((reason, sourceOf(addr))):
            self._log.warn(
                "refused connection from {peer}: {option} {limit} reached",
                peer=addressText(addr),
                option=option,
                limit=limit,
            )

    def untrustedProxy(self, addr: IAddress | None) -> None:
        """
        Count and log (throttled) a C{haproxy:} connection closed because
        its peer is not a trusted proxy (C{--proxy-from}).
        """
        self.refusedProxy += 1
        if self._logThrottle.ready(("untrusted-proxy", sourceOf(addr))):
            self._log.warn(
                "refused connection from {peer}: not a trusted proxy "
                "(--proxy-from), so it may not send a PROXY header",
                peer=addressText(addr),
            )

    def proxied(self, proto: UpperEchoProtocol, client: IAddress) -> bool:
        """
        A PROXY header named C{proto}'s real client: count the connection
        against that client's source from now on.

        @return: C{False} if that source already holds
            C{--max-connections-per-source} (counted and logged; the caller
            closes the connection).
        """
        refusal = self.fairShare.move(proto, sourceOf(client))
        if refusal is None:
            return True
        self._leaving.add(proto)
        self.refuse(refusal, client)
        return False

    def _evict(self, victim: UpperEchoProtocol, addr: IAddress | None) -> None:
        """
        Close C{victim}, the longest-silent connection of the largest
        holder, to make room for a connection from C{addr}: at once, with
        nothing more sent.
        """
        self.evicted += 1
        self._leaving.add(victim)
        if self._logThrottle.ready(("evicted", victim.source)):
            self._log.info(
                "closed {peer} (silent longest of {source}, which holds the "
                "most connections) to make room for {new}: --max-connections "
                "{limit} reached",
                peer=addressText(victim.transport.getPeer()),
                source=victim.source,
                new=addressText(addr),
                limit=self.maxConnections,
            )
        victim._unregister()
        victim.transport.abortConnection()

    def connectionOpened(self, proto: UpperEchoProtocol) -> None:
        """
        Called by a protocol once connected.
        """
        self.connectionsTotal += 1
        if self._sweepCall is None:
            self._sweepCall = self._clock.callLater(self.sweepInterval, self._sweep)

    def connectionClosed(self, proto: UpperEchoProtocol) -> None:
        """
        Called by a protocol when its connection is gone.
        """
        self._leaving.discard(proto)
        self.fairShare.remove(proto)
        self.bytesInClosed += proto.bytesIn
        self.bytesOutClosed += proto.bytesOut
        # The sweep timer is left to run out: it does not schedule itself
        # again when no connection is left.  Cancelling it here would cost
        # a cancel and a new timer for every connection of a client that
        # opens one at a time (the textbook client).

    def _sweep(self) -> None:
        """
        Close connections silent for C{idleTimeout} seconds.

        One timer for the whole factory instead of one reset per read: a read
        costs only setting a flag, and an idle connection holds no timer.
        The same look tells the fair share which connections read since the
        last one (L{FairShare.seen}), so it needs nothing per read either;
        without a timeout the sweep runs for that alone.
        """
        self._sweepCall = None
        now = self._clock.seconds()
        timeout = self.idleTimeout if self.idleTimeout > 0 else math.inf
        seen = self.fairShare.seen
        for proto in self.connections:
            if proto._active:
                seen(proto)
            if proto.sweepIdle(now, timeout):
                self.idleClosed += 1
                peer = proto.transport.getPeer()
                key = ("idle-timeout", getattr(peer, "host", None))
                if self._logThrottle.ready(key):
                    self._log.info(
                        "closing {peer}: silent for {timeout} s (--idle-timeout)",
                        peer=addressText(peer),
                        timeout=self.idleTimeout,
                    )
        if self.fairShare or self._leaving:
            self._sweepCall = self._clock.callLater(self.sweepInterval, self._sweep)

    def stopFactory(self) -> None:
        if self._sweepCall is not None and self._sweepCall.active():
            self._sweepCall.cancel()
        self._sweepCall = None
