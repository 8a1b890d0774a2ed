# -*- test-case-name: tests.test_client -*-
"""
The client side of upperecho: reusable client protocols and the
C{upperecho-client} command.

Three protocols, one per way of talking to the server:

  - L{UpperEchoClientProtocol}: TCP, one line at a time, pipelined;
    C{upper(text)} returns a L{Deferred} firing with the reply line;
  - L{UpperEchoDatagramClientProtocol}: UDP, one datagram per request, with
    the timeout and retries that a lossy network calls for;
  - L{UpperEchoPipeProtocol}: TCP as a byte stream, for piping a file
    through the server with bounded memory.

The command (L{main}) picks one: C{--udp} for datagrams, otherwise the pipe
when standard input is a file or a pipe, and the line protocol when it is a
terminal.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import importlib
import ipaddress
import os
import socket
import sys
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from typing import Protocol as Protocol_

from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IHalfCloseableProtocol,
    IReactorTime,
    ISSLTransport,
    IUDPTransport,
)
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from upperecho.address import hostPort
from upperecho.optional import missingTLS, usesTLS
from upperecho.transform import _PASSTHROUGH, checkEncoding, isAsciiCompatible
from upperecho.udp import MAX_DATAGRAM, MAX_PAYLOAD_IPV4, MAX_PAYLOAD_IPV6

__all__ = [
    "ConnectionClosedError",
    "NoReplyError",
    "Options",
    "UpperEchoClientProtocol",
    "UpperEchoDatagramClientProtocol",
    "UpperEchoPipeProtocol",
    "describe",
    "main",
]

PROGRAM = "upperecho-client"


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


class _Transport(Protocol_):
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


def _codecErrors(encoding: str) -> str:
    """
    The codec error handler that makes any byte string round-trip through
    text in C{encoding}, as L{upperecho.transform} does.
    """
    return "surrogateescape" if isAsciiCompatible(encoding) else _PASSTHROUGH


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

    transport: _Transport  # type: ignore[assignment]

    def __init__(self, encoding: str = "utf-8") -> None:
        """
        @param encoding: the server's text encoding (its C{--encoding}).
        @raise ValueError: if C{encoding} is not a text encoding.
        """
        checkEncoding(encoding)
        self.encoding = encoding
        errors = _codecErrors(encoding)
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
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        checkEncoding(encoding)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.encoding = encoding
        self.sent = 0
        self.ignored = 0
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
        errors = _codecErrors(self.encoding)
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


class UpperEchoPipeProtocol(Protocol):
    """
    The TCP side of piped mode: whatever the input sends goes to the server
    as it is, and the server's replies go to the output as they are -- no
    decoding, so the output equals the server's transform of the input byte
    for byte.

    Memory stays bounded both ways: the input is registered as the
    connection's producer (reading pauses while the socket's write buffer is
    full), and the connection as the output's producer (reading from the
    server pauses while the output is not keeping up).

    At the end of the input the connection is half-closed
    (C{loseWriteConnection}): the server then sends what it still owes and
    closes, which is how the client knows every reply has arrived.

    @ivar done: fires with C{None} once the server has closed the connection
        after the end of the input and the output is flushed and closed;
        fails with L{ConnectionClosedError} (or the connection's error) if
        the connection ended before that.
    """

    transport: _Transport  # type: ignore[assignment]

    def __init__(self) -> None:
        self.done: Deferred[None] = Deferred()
        self._stdio: Any = None
        self._inputEnded = False
        self._outcome: Failure | None = None
        self._connected = True
        self._outputGone = False

    def attach(self, stdio: Any) -> None:
        """
        Connect the input and output, a transport that is both a push
        producer (the input) and a consumer (the output), such as
        L{twisted.internet.stdio.StandardIO}; called by L{_StdioSide}.
        """
        self._stdio = stdio
        if not self._connected:
            self._closeOutput()
            return
        self.transport.registerProducer(stdio, True)
        stdio.registerProducer(self.transport, True)

    def inputReceived(self, data: bytes) -> None:
        """
        Bytes from the input: send them on.
        """
        if self._connected:
            self.transport.write(data)

    def inputEnded(self) -> None:
        """
        End of the input: half-close, and wait for the server to finish.
        """
        self._inputEnded = True
        if self._connected:
            self.transport.unregisterProducer()
            loseWrite = getattr(self.transport, "loseWriteConnection", None)
            if ISSLTransport.providedBy(self.transport):
                # TLS half-closes with its close_notify alert, which
                # loseConnection sends; reading goes on until the server's
                # own close_notify.  (The wrapped TCP transport's
                # loseWriteConnection would cut the TLS stream short.)
                self.transport.loseConnection()
            elif loseWrite is None:
                # no half-close on this transport: the replies still owed
                # cannot be told apart from none, so close both ways.
                self.transport.loseConnection()
            else:
                loseWrite()

    def outputLost(self) -> None:
        """
        The output closed under us (a reader that went away): stop.
        """
        self._outputGone = True
        if self._outcome is None:
            self._outcome = Failure(OSError(errno.EPIPE, "output closed"))
        if self._connected:
            self.transport.abortConnection()

    def outputClosed(self) -> None:
        """
        The output is flushed and closed: report the outcome.
        """
        if not self.done.called:
            if self._outcome is None:
                self.done.callback(None)
            else:
                self.done.errback(self._outcome)

    def dataReceived(self, data: bytes) -> None:
        if self._stdio is not None:
            self._stdio.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._connected = False
        if self._outcome is None:
            if not reason.check(error.ConnectionDone):
                self._outcome = reason
            elif not self._inputEnded:
                self._outcome = Failure(
                    ConnectionClosedError("before the end of the input")
                )
        if self._stdio is not None:
            self._closeOutput()

    def _closeOutput(self) -> None:
        self._stdio.unregisterProducer()
        self._stdio.loseConnection()
        if self._outputGone:
            # no output left to flush, so stdio will not report its end
            self.outputClosed()


@implementer(IHalfCloseableProtocol)
class _StdioSide(Protocol):
    """
    Standard input and output for L{UpperEchoPipeProtocol}.

    It is half-closeable so that the end of the input does not close the
    output, which still has replies to write.
    """

    def __init__(self, pipe: UpperEchoPipeProtocol) -> None:
        self.pipe = pipe

    def connectionMade(self) -> None:
        self.pipe.attach(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.pipe.inputReceived(data)

    def readConnectionLost(self) -> None:
        self.pipe.inputEnded()

    def writeConnectionLost(self) -> None:
        self.pipe.outputLost()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.pipe.outputClosed()


@implementer(IHalfCloseableProtocol)
class _LineSession(LineReceiver):
    """
    Line by line over standard input and output: each input line is one
    request, its reply is printed followed by a newline.  Used for UDP (one
    datagram per line) and for TCP on a terminal.

    One request is outstanding at a time, and reading pauses meanwhile, so
    a piped file of any size needs no more memory than one line.

    @ivar done: fires with C{None} when the input has ended, every reply is
        printed and the output is closed; fails with the first request's
        error (the rest of the input is not sent).
    """

    delimiter = b"\n"
    transport: _Transport  # type: ignore[assignment]

    def __init__(
        self, request: Callable[[bytes], Deferred[bytes]], maxLength: int
    ) -> None:
        """
        @param request: sends one line (without its line ending) and returns
            a L{Deferred} firing with the reply.
        @param maxLength: longest line accepted, in bytes.
        """
        self.request = request
        self.MAX_LENGTH = maxLength
        self.done: Deferred[None] = Deferred()
        self._busy = False
        self._ended = False
        self._outcome: Failure | None = None

    def lineReceived(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        self._busy = True
        self.pauseProducing()
        self.request(line).addCallbacks(self._replied, self._failed)

    def _replied(self, reply: bytes) -> None:
        self._busy = False
        if self._outcome is not None:
            return
        self.transport.write(reply + b"\n")
        if self._ended:
            self._finishInput()
        else:
            self.resumeProducing()

    def _failed(self, reason: Failure) -> None:
        self._busy = False
        self._stop(reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._stop(
            Failure(
                ValueError(
                    f"a line is longer than {self.MAX_LENGTH} bytes, "
                    "the most one request can carry"
                )
            )
        )

    def readConnectionLost(self) -> None:
        self._ended = True
        if not self._busy:
            self._finishInput()

    def _finishInput(self) -> None:
        """
        The input has ended: send its unterminated last line, if any, then
        close the output.
        """
        if self._outcome is not None:
            return
        rest = self.clearLineBuffer()
        if rest:
            self.lineReceived(rest)
            return
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:
        """
        The output closed under us (a reader that went away): stop now; with
        no output left to flush, stdio will not report its end.
        """
        self._stop(Failure(OSError(errno.EPIPE, "output closed")))
        self.connectionLost()

    def _stop(self, reason: Failure) -> None:
        if self._outcome is None:
            self._outcome = reason
            self.paused = True
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if self._outcome is not None:
            self.done.errback(self._outcome)
        else:
            self.done.callback(None)


class Options(usage.Options):
    """
    Command line of C{upperecho-client}.
    """

    synopsis = (
        "Usage: upperecho-client [--udp] [--timeout S] [--retries N] "
        "[--encoding E] [HOST] [PORT]\n"
        "       upperecho-client --connect ENDPOINT\n"
        "       upperecho-client --probe --help"
    )
    longdesc = (
        "Send lines to an upperecho server and print its replies. On a "
        "terminal: read a line, print the reply, repeat (Ctrl-D ends). "
        "Piped: stream the whole input through the server and exit once "
        "every reply has arrived. HOST defaults to localhost and PORT to "
        "12000. Exit status: 0 on success, 1 on a network error (one line "
        "on stderr), 2 on a bad option, 130 when interrupted."
    )

    optFlags = [
        ["udp", "u", "use UDP: one datagram per line, sent without its line ending"],
    ]
    optParameters = [
        ["timeout", "t", "1", "UDP: seconds to wait for each reply"],
        ["retries", "r", "3", "UDP: times to resend a datagram that got no reply"],
        [
            "encoding",
            "e",
            "utf-8",
            "the server's text encoding (used to find line ends in "
            "interactive TCP mode; other modes send bytes as they are)",
        ],
        [
            "connect",
            "c",
            None,
            "any Twisted client endpoint string instead of HOST PORT "
            "(tcp:HOST:PORT, unix:PATH, ssl:HOST:PORT, ...)",
        ],
    ]

    def parseArgs(self, host: str | None = None, port: str | None = None) -> None:
        """
        HOST (default C{localhost}) and PORT (default C{12000}).
        """
        self["positional"] = host is not None
        self["host"] = "localhost" if host is None else host
        self["port"] = "12000" if port is None else port

    def postOptions(self) -> None:
        """
        Check and convert every value, naming the option in the error.
        """
        try:
            timeout = float(self["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout < float("inf"):
            raise usage.UsageError(
                f"--timeout {self['timeout']}: a number of seconds > 0"
            )
        self["timeout"] = timeout
        try:
            retries = int(self["retries"])
        except ValueError:
            retries = -1
        if retries < 0:
            raise usage.UsageError(f"--retries {self['retries']}: a whole number >= 0")
        self["retries"] = retries
        try:
            checkEncoding(self["encoding"])
        except ValueError as e:
            raise usage.UsageError(f"--encoding: {e}") from None
        try:
            port = int(self["port"])
        except ValueError:
            port = 0
        if not 0 < port < 65536:
            raise usage.UsageError(f"PORT {self['port']}: a number from 1 to 65535")
        self["port"] = port
        if self["connect"] is not None:
            if self["udp"]:
                raise usage.UsageError(
                    "--connect takes a stream endpoint: it cannot be "
                    "combined with --udp"
                )
            if self["positional"]:
                raise usage.UsageError(
                    "--connect ENDPOINT replaces HOST and PORT: give one or the other"
                )


def _say(message: str) -> None:
    """
    Print one line on standard error, prefixed with the program's name.
    """
    sys.stderr.write(f"{PROGRAM}: {message}\n")
    sys.stderr.flush()


def _report(say: Callable[[str], None], reason: Failure, target: str) -> None:
    """
    Say what went wrong, unless the output was closed by its reader (as
    C{| head} does): like any filter, the client then just stops.
    """
    if not (isinstance(reason.value, OSError) and reason.value.errno == errno.EPIPE):
        say(describe(reason, target))


def describe(reason: Failure, target: str) -> str:
    """
    One line saying what went wrong, for people, not programmers.

    @param reason: the failure.
    @param target: the server, as given (C{host:port} or an endpoint).
    """
    value = reason.value
    if reason.check(error.DNSLookupError):
        return f"unknown host: cannot resolve {target}"
    if reason.check(error.ConnectionRefusedError):
        return f"cannot connect to {target}: connection refused"
    if reason.check(error.TimeoutError, error.UserError):
        return f"cannot connect to {target}: timed out"
    if reason.check(error.ConnectError):
        detail = getattr(value, "osError", None) or getattr(value, "args", None)
        text = reason.getErrorMessage()
        if isinstance(detail, tuple) and detail and isinstance(detail[0], str):
            text = detail[0]
        return f"cannot connect to {target}: {text}"
    if reason.check(NoReplyError):
        return str(value)
    if reason.check(ConnectionClosedError):
        return f"{value} ({target})"
    if reason.check(error.ConnectionLost, error.ConnectionDone):
        return f"connection lost: {target} went away"
    if reason.check(error.MessageLengthError):
        return "a line is too long for one datagram"
    if isinstance(value, OSError) and value.errno == errno.EPIPE:
        return "output closed"
    if isinstance(value, OSError) and value.strerror:
        return f"{target}: {value.strerror}"
    return f"{target}: {reason.getErrorMessage()}"


class _Blocking:
    """
    Remember the blocking mode of standard input and output, which
    L{twisted.internet.stdio.StandardIO} makes non-blocking, and put it back
    at exit: a terminal's file status flags are shared with the shell, and
    programs run after this one do not expect a non-blocking terminal.
    """

    def __init__(self, fds: Sequence[int] = (0, 1)) -> None:
        self._flags: dict[int, int] = {}
        for fd in fds:
            with contextlib.suppress(OSError):
                self._flags[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)

    def restore(self) -> None:
        for fd, flags in self._flags.items():
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)


async def _resolveUDP(reactor: Any, host: str, port: int) -> tuple[str, int]:
    """
    Resolve C{host} for UDP, preferring IPv4: the server binds IPv4
    addresses unless told otherwise (C{--interface ::}), and C{localhost}
    often resolves to C{::1} first.

    @return: the address and its family.
    """
    from twisted.internet.threads import deferToThreadPool

    infos = await deferToThreadPool(
        reactor,
        reactor.getThreadPool(),
        socket.getaddrinfo,
        host,
        port,
        0,
        socket.SOCK_DGRAM,
    )
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, sockaddr = infos[0]
    return str(sockaddr[0]), int(family)


async def _runUDP(reactor: Any, config: Options, say: Callable[[str], None]) -> int:
    """
    UDP mode: resolve, bind a port, one datagram per input line.

    @return: the exit status.
    """
    host, port = config["host"], config["port"]
    target = hostPort(host, port)
    try:
        address, family = await _resolveUDP(reactor, host, port)
    except socket.gaierror:
        say(f"unknown host: cannot resolve {host}")
        return 1
    client = UpperEchoDatagramClientProtocol(
        address, port, config["timeout"], config["retries"], clock=reactor
    )
    v6 = family == socket.AF_INET6
    udpPort = reactor.listenUDP(
        0, client, interface="::" if v6 else "", maxPacketSize=MAX_DATAGRAM
    )
    maxLength = MAX_PAYLOAD_IPV6 if v6 else MAX_PAYLOAD_IPV4
    if os.isatty(0):
        say(f"sending to {target} over UDP; type a line, Ctrl-D ends")
    session = _LineSession(client.exchange, maxLength)
    try:
        await _stdio(reactor, session, session.done)
    except Exception:
        _report(say, Failure(), target)
        return 1
    finally:
        await udpPort.stopListening()
    return 0


async def _runTCP(
    reactor: Any, config: Options, say: Callable[[str], None], interactive: bool
) -> int:
    """
    TCP mode: connect, then the line session on a terminal or the pipe
    otherwise.

    @return: the exit status.
    """
    from twisted.internet.endpoints import HostnameEndpoint, clientFromString
    from twisted.internet.protocol import Factory

    if config["connect"] is not None:
        target = config["connect"]
        missing = missingTLS() if usesTLS(target) else None
        if missing:
            say(f"--connect {target}: {missing}")
            return 2
        try:
            endpoint = clientFromString(reactor, target)
        except Exception as e:
            say(f"--connect {target}: {e}")
            return 2
    else:
        target = hostPort(config["host"], config["port"])
        endpoint = HostnameEndpoint(reactor, config["host"], config["port"])

    proto: Protocol
    if interactive:
        encoding = config["encoding"]
        errors = _codecErrors(encoding)
        proto = UpperEchoClientProtocol(encoding)

        def request(line: bytes) -> Deferred[bytes]:
            assert isinstance(proto, UpperEchoClientProtocol)
            return proto.upper(line.decode(encoding, errors)).addCallback(
                lambda reply: reply.encode(encoding, errors)
            )

        session = _LineSession(request, 1 << 20)
        side: Protocol = session
        done = session.done
    else:
        pipe = proto = UpperEchoPipeProtocol()
        side = _StdioSide(pipe)
        done = pipe.done

    try:
        await endpoint.connect(Factory.forProtocol(lambda: proto))
    except Exception:
        reason = Failure()
        if reason.check(error.DNSLookupError) and config["connect"] is None:
            say(f"unknown host: cannot resolve {config['host']}")
        else:
            say(describe(reason, target))
        return 1
    if interactive:
        say(f"connected to {target}; type a line, Ctrl-D ends")
    try:
        await _stdio(reactor, side, done)
    except Exception:
        _report(say, Failure(), target)
        return 1
    finally:
        if interactive and proto.transport is not None:
            proto.transport.loseConnection()
    return 0


async def _stdio(reactor: Any, side: Protocol, done: Deferred[None]) -> None:
    """
    Connect C{side} to standard input and output and wait for C{done}.
    """
    from twisted.internet.stdio import StandardIO

    StandardIO(side, reactor=reactor)
    await done


class _Status:
    """
    How a run of the command ended.

    @ivar code: the exit status, once the work is done.
    @ivar interrupted: the reactor began to stop (a signal) first; what
        fails after that is a consequence, not worth a message.
    """

    code: int | None = None
    interrupted = False


async def _run(reactor: Any, config: Options, status: _Status) -> None:
    """
    The work of L{main}, run by L{react}: C{say} stays silent once the
    reactor is stopping, since failures then are only its consequence.
    """

    def stopping() -> None:
        if status.code is None:
            status.interrupted = True

    def say(message: str) -> None:
        if not status.interrupted:
            _say(message)

    reactor.addSystemEventTrigger("before", "shutdown", stopping)
    if config["udp"]:
        code = await _runUDP(reactor, config, say)
    else:
        code = await _runTCP(reactor, config, say, os.isatty(0))
    status.code = code
    if code:
        raise SystemExit(code)


def _probe(argv: list[str]) -> int:
    """
    Hand the command line to the probe mode (L{upperecho.probe}).
    """
    try:
        module = importlib.import_module("upperecho.probe")
    except ModuleNotFoundError as e:
        if e.name not in ("upperecho.probe", "upperecho"):
            raise
        _say("--probe is not available: this installation has no upperecho.probe")
        return 2
    result = module.main(argv)
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    """
    The C{upperecho-client} command.

    @param argv: the arguments, without the program name; C{sys.argv[1:]}
        if C{None}.
    @return: the exit status (0 on success).
    """
    if argv is None:
        argv = sys.argv[1:]
    if "--probe" in argv:
        return _probe(list(argv))
    config = Options()
    try:
        config.parseOptions(argv)
    except usage.UsageError as e:
        _say(f"{e} (see --help)")
        return 2
    from twisted.internet.task import react

    status = _Status()
    blocking = _Blocking()
    try:
        react(_run, (config, status))
    except SystemExit:
        pass
    finally:
        blocking.restore()
    if status.interrupted or status.code is None:
        return 130  # 128 + SIGINT, as shells report an interrupted command
    return status.code
