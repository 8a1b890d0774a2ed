# -*- test-case-name: tests.unit.test_client -*-
"""
The client side of upperecho, as reusable protocols:

  - L{UpperEchoClientProtocol}: TCP, one line at a time, pipelined;
    C{upper(text)} returns a L{Deferred} firing with the reply line;
  - L{UpperEchoDatagramClientProtocol}: UDP, one datagram per request, with
    the timeout and retries that a lossy network calls for.

The C{upperecho-client} command built on them is L{upperecho.scripts.client}.
"""

from __future__ import annotations

import codecs
import ipaddress
from collections import deque
from typing import Any
from typing import Protocol as Protocol_

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime, IUDPTransport
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.python.failure import Failure

from upperecho._globalreactor import reactorOr
from upperecho.address import hostPort
from upperecho.transform import checkEncoding, codecErrors

__all__ = [
    "ClientTransport",
    "ConnectionClosedError",
    "NoReplyError",
    "UpperEchoClientProtocol",
    "UpperEchoDatagramClientProtocol",
]


class NoReplyError(Exception):
    """
    A UDP request got no reply, even after every retry.

    UDP gives no delivery guarantee: the request or its reply may have been
    lost, or no server is listening (an unconnected UDP socket is not told).
    """

    def __init__(self, address: str, attempts: int, timeout: float) -> None:
        """
        @param address: the server, as C{host:port}.
        @param attempts: how many datagrams were sent.
        @param timeout: seconds waited after each.
        """
        super().__init__(address, attempts, timeout)
        self.address = address
        self.attempts = attempts
        self.timeout = timeout

    def __str__(self) -> str:
        plural = "" if self.attempts == 1 else "s"
        return (
            f"no reply from {self.address} after {self.attempts} "
            f"datagram{plural} ({self.timeout:g} s timeout each)"
        )


class ConnectionClosedError(Exception):
    """
    The connection ended while replies were still owed.
    """

    def __str__(self) -> str:
        return "connection lost: the server closed the connection" + (
            f" ({self.args[0]})" if self.args and self.args[0] else ""
        )


class ClientTransport(Protocol_):
    """
    What these protocols use of their transports (TCP, UNIX and TLS
    connections, and L{twisted.internet.stdio.StandardIO}, all have it).
    """

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def registerProducer(self, producer: Any, streaming: bool) -> None: ...
    def unregisterProducer(self) -> None: ...
    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...


class UpperEchoClientProtocol(Protocol):
    """
    A TCP client asking for one line at a time: C{upper(text)} sends
    C{text} and a newline, and returns a L{Deferred} firing with the reply
    line, without its newline.

    Requests are pipelined: several may be outstanding, and since the server
    answers a byte stream in order, the replies fire in the order of the
    requests.  Text is encoded and replies are decoded incrementally with
    the server's encoding, so the newline is found in any encoding the
    server accepts (even one, such as EBCDIC cp037, whose newline is not the
    byte C{0x0a}); bytes that are not valid text round-trip as lone
    surrogates, as in L{upperecho.transform}.

    @ivar encoding: the server's text encoding.
    """

    transport: ClientTransport  # type: ignore[assignment]

    def __init__(self, encoding: str = "utf-8") -> None:
        """
        @param encoding: the server's text encoding (its C{--encoding}).
        @raise ValueError: if C{encoding} is not a text encoding.
        """
        checkEncoding(encoding)
        self.encoding = encoding
        errors = codecErrors(encoding)
        self._encoder = codecs.getincrementalencoder(encoding)(errors)
        self._decoder = codecs.getincrementaldecoder(encoding)(errors)
        self._waiting: deque[Deferred[str]] = deque()
        self._partial: list[str] = []
        self._lost: Failure | None = None

    def upper(self, text: str) -> Deferred[str]:
        """
        Ask the server to uppercase one line.

        @param text: the line, without a line ending.
        @return: a L{Deferred} firing with the reply line; it fails with
            L{ValueError} if C{text} contains a newline (the reply could not
            be matched to the request), with L{UnicodeEncodeError} if it
            cannot be encoded, and with L{ConnectionClosedError} or
            the connection's error if the connection ends first.
        """
        if "\n" in text:
            return fail(ValueError("one line at a time: text contains a newline"))
        if self._lost is not None:
            return fail(self._lost)
        try:
            data = self._encoder.encode(text + "\n")
        except UnicodeEncodeError:
            return fail()
        d: Deferred[str] = Deferred()
        self._waiting.append(d)
        self.transport.write(data)
        return d

    def dataReceived(self, data: bytes) -> None:
        text = self._decoder.decode(data)
        if "\n" not in text:
            self._partial.append(text)
            return
        self._partial.append(text)
        *lines, rest = "".join(self._partial).split("\n")
        self._partial = [rest] if rest else []
        for line in lines:
            if self._waiting:
                self._waiting.popleft().callback(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(error.ConnectionDone):
            reason = Failure(ConnectionClosedError())
        self._lost = reason
        while self._waiting:
            self._waiting.popleft().errback(reason)


class UpperEchoDatagramClientProtocol(DatagramProtocol):
    """
    A UDP client: C{exchange(payload)} sends one datagram and returns a
    L{Deferred} firing with the reply.

    UDP may lose a datagram or its reply, so after C{timeout} seconds with
    no reply the same datagram is sent again, up to C{retries} more times
    (1 + C{retries} datagrams in all); then the request fails with
    L{NoReplyError}.  Requests are sent one at a time, in order: a reply
    carries nothing that would match it to one of several outstanding
    requests.  Datagrams from any address but the server's are ignored.

    A reply delayed past its timeout and then duplicated by the retry could
    arrive while the I{next} request is waiting; nothing in the reply can
    tell.  (The probe mode numbers its datagrams for that reason.)

    @ivar host: the server's IP address.
    @ivar port: the server's UDP port.
    @ivar timeout: seconds to wait for a reply to each datagram.
    @ivar retries: how many times a request is resent.
    @ivar sent: datagrams sent in all (retries included).
    @ivar ignored: datagrams ignored (wrong sender, or no request waiting).
    """

    transport: IUDPTransport
    sent = 0
    ignored = 0

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 1.0,
        retries: int = 3,
        clock: IReactorTime | None = None,
        encoding: str = "utf-8",
    ) -> None:
        """
        @param host: the server's IP address (not a name: resolve it first).
        @param port: the server's UDP port.
        @param timeout: seconds to wait after each datagram; must be > 0.
        @param retries: how many more times to send a request; >= 0.
        @param clock: the reactor's clock (L{IReactorTime}); the global
            reactor if C{None}.
        @param encoding: the server's text encoding, for L{upper}.
        @raise ValueError: if C{host} is not an IP address, or C{timeout} or
            C{retries} is out of range.
        """
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, not {timeout!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, not {retries!r}")
        clock = reactorOr(clock)
        checkEncoding(encoding)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.encoding = encoding
        self._ip = _ipOf(host)
        self._clock = clock
        self._queue: deque[tuple[bytes, Deferred[bytes]]] = deque()
        self._current: Deferred[bytes] | None = None
        self._payload = b""
        self._attempts = 0
        self._timer: Any = None

    @property
    def address(self) -> str:
        """
        The server's address as C{host:port} (C{[host]:port} for IPv6).
        """
        return hostPort(self.host, self.port)

    def exchange(self, payload: bytes) -> Deferred[bytes]:
        """
        Send C{payload} as one datagram and wait for the reply.

        @return: a L{Deferred} firing with the reply's payload, or failing
            with L{NoReplyError}, or with the error that prevented sending
            (for example L{error.MessageLengthError} for a payload larger
            than one datagram).
        """
        d: Deferred[bytes] = Deferred()
        self._queue.append((payload, d))
        if self._current is None:
            self._next()
        return d

    def upper(self, text: str) -> Deferred[str]:
        """
        Like L{exchange}, for text in the server's encoding.
        """
        errors = codecErrors(self.encoding)
        return self.exchange(text.encode(self.encoding, errors)).addCallback(
            lambda reply: reply.decode(self.encoding, errors)
        )

    def _next(self) -> None:
        while self._queue and self._current is None:
            self._payload, self._current = self._queue.popleft()
            self._attempts = 0
            self._send()

    def _send(self) -> None:
        self._attempts += 1
        try:
            self.transport.write(self._payload, (self.host, self.port))
        except Exception:
            self._finish(Failure())
            return
        self.sent += 1
        self._timer = self._clock.callLater(self.timeout, self._timedOut)

    def _timedOut(self) -> None:
        self._timer = None
        if self._attempts <= self.retries:
            self._send()
        else:
            self._finish(
                Failure(NoReplyError(self.address, self._attempts, self.timeout))
            )

    def _finish(self, result: bytes | Failure) -> None:
        d, self._current = self._current, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert d is not None
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)
        self._next()

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if self._current is None or not self._fromServer(addr):
            self.ignored += 1
            return
        self._finish(data)

    def _fromServer(self, addr: Any) -> bool:
        try:
            return addr[1] == self.port and _ipOf(addr[0]) == self._ip
        except (ValueError, IndexError, TypeError):
            return False

    def stopProtocol(self) -> None:
        """
        The port is closed: fail whatever is still waiting.
        """
        reason = Failure(error.ConnectionLost("the UDP port was closed"))
        queued = [d for _, d in self._queue]
        self._queue.clear()
        if self._current is not None:
            self._finish(reason)
        for d in queued:
            d.errback(reason)


def _ipOf(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """
    C{host} as an address object, so that spellings compare equal (an
    IPv4-mapped IPv6 address is its IPv4 address; a scope is dropped).
    """
    ip = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
