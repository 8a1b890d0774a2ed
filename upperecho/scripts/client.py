# -*- test-case-name: tests.unit.test_scripts_client -*-
"""
The C{upperecho-client} command: send lines to an upperecho server and
print its replies.

It picks one way of talking to the server: C{--udp} for datagrams (the
library's L{UpperEchoDatagramClientProtocol}), otherwise the pipe
(L{UpperEchoPipeProtocol}) when standard input is a file or a pipe, and the
line protocol (L{UpperEchoClientProtocol}) when it is a terminal.

C{upperecho-client --probe ...} is the probe command
(L{upperecho.scripts.probe}): L{main} hands every argument list that holds
C{--probe} to it, so that both keep one program name.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, ISSLTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from upperecho.address import hostPort
from upperecho.client import (
    ClientTransport,
    ConnectionClosedError,
    UpperEchoClientProtocol,
    UpperEchoDatagramClientProtocol,
)
from upperecho.optional import missingTLS, usesTLS
from upperecho.options import encoding, number, port
from upperecho.scripts._common import (
    ExitStatus,
    Run,
    describe,
    isOutputClosed,
    resolve,
    runCommand,
    statusOf,
)
from upperecho.transform import codecErrors
from upperecho.udp import MAX_DATAGRAM, MAX_PAYLOAD_IPV4, MAX_PAYLOAD_IPV6

__all__ = ["Options", "UpperEchoPipeProtocol", "main"]


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

    transport: ClientTransport  # type: ignore[assignment]

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
    transport: ClientTransport  # type: ignore[assignment]

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
        "12000. Exit status: 0 on success; 1 when the exchange failed midway "
        "(connection lost, no UDP reply); 2 on a bad option, an unknown host "
        "or a refused connection; 130 when interrupted. Errors are one line "
        "on stderr."
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
        self["timeout"] = number("--timeout", self["timeout"], above=True)
        self["retries"] = int(number("--retries", self["retries"], int))
        self["encoding"] = encoding(self["encoding"])
        self["port"] = port("PORT", self["port"], 1)
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


async def _runUDP(reactor: Any, config: Options, run: Run) -> ExitStatus:
    """
    UDP mode: resolve, bind a port, one datagram per input line.
    """
    host, port = config["host"], config["port"]
    target = hostPort(host, port)
    try:
        family, address = await resolve(reactor, host, port, socket.SOCK_DGRAM)
    except Exception:
        reason = Failure()
        run.say(describe(reason, target))
        return statusOf(reason)
    client = UpperEchoDatagramClientProtocol(
        address, port, config["timeout"], config["retries"], clock=reactor
    )
    v6 = family == socket.AF_INET6
    udpPort = reactor.listenUDP(
        0, client, interface="::" if v6 else "", maxPacketSize=MAX_DATAGRAM
    )
    maxLength = MAX_PAYLOAD_IPV6 if v6 else MAX_PAYLOAD_IPV4
    if os.isatty(0):
        run.say(f"sending to {target} over UDP; type a line, Ctrl-D ends")
    session = _LineSession(client.exchange, maxLength)
    try:
        await _stdio(reactor, session, session.done)
    except Exception:
        return _failed(run, Failure(), target)
    finally:
        await udpPort.stopListening()
    return ExitStatus.OK


async def _runTCP(reactor: Any, config: Options, run: Run) -> ExitStatus:
    """
    TCP mode: connect, then the line session on a terminal or the pipe
    otherwise.
    """
    from twisted.internet.endpoints import HostnameEndpoint, clientFromString
    from twisted.internet.protocol import Factory

    interactive = os.isatty(0)
    if config["connect"] is not None:
        target = config["connect"]
        missing = missingTLS() if usesTLS(target) else None
        if missing:
            run.say(f"--connect {target}: {missing}")
            return ExitStatus.ERROR
        try:
            endpoint = clientFromString(reactor, target)
        except Exception as e:
            run.say(f"--connect {target}: {e}")
            return ExitStatus.ERROR
    else:
        target = hostPort(config["host"], config["port"])
        endpoint = HostnameEndpoint(reactor, config["host"], config["port"])

    proto: Protocol
    if interactive:
        encoding = config["encoding"]
        errors = codecErrors(encoding)
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
        named = config["host"] if config["connect"] is None else target
        run.say(
            describe(reason, named if reason.check(error.DNSLookupError) else target)
        )
        return statusOf(reason)
    if interactive:
        run.say(f"connected to {target}; type a line, Ctrl-D ends")
    try:
        await _stdio(reactor, side, done)
    except Exception:
        return _failed(run, Failure(), target)
    finally:
        if interactive and proto.transport is not None:
            proto.transport.loseConnection()
    return ExitStatus.OK


def _failed(run: Run, reason: Failure, target: str) -> ExitStatus:
    """
    The exchange failed midway: say why, unless the output was closed by
    its reader (as C{| head} does), after which, like any filter, the
    client just stops.
    """
    if not isOutputClosed(reason):
        run.say(describe(reason, target))
    return ExitStatus.FAILED


async def _stdio(reactor: Any, side: Protocol, done: Deferred[None]) -> None:
    """
    Connect C{side} to standard input and output and wait for C{done}.
    """
    from twisted.internet.stdio import StandardIO

    StandardIO(side, reactor=reactor)
    await done


async def _work(reactor: Any, config: Options, run: Run) -> ExitStatus:
    """
    The client's work, run by L{runCommand}.
    """
    if config["udp"]:
        return await _runUDP(reactor, config, run)
    return await _runTCP(reactor, config, run)


def isProbe(argv: list[str]) -> bool:
    """
    Whether C{argv} asks for the probe command: C{--probe} anywhere (it is
    a mode of the program, not an option of the client).
    """
    return "--probe" in argv


def main(argv: list[str] | None = None) -> int:
    """
    The C{upperecho-client} command (its console-script entry point).

    @param argv: the arguments, without the program name; C{sys.argv[1:]}
        if C{None}.
    @return: the exit status (L{ExitStatus}).
    """
    if argv is None:
        argv = sys.argv[1:]
    if isProbe(argv):
        from upperecho.scripts.probe.command import main as probeMain

        return probeMain(argv)
    return runCommand(Options(), argv, _work)


if __name__ == "__main__":
    sys.exit(main())
