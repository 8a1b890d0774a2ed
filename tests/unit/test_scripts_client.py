"""
Tests for L{upperecho.scripts.client}, the C{upperecho-client} command:
the pipe and line sessions over fake standard input and output, its
options, and L{main} before the reactor runs.
"""

from __future__ import annotations

import errno
import io
import sys

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

import upperecho.scripts.probe.command
from upperecho.client import (
    ConnectionClosedError,
    NoReplyError,
)
from upperecho.scripts.client import (
    Options,
    UpperEchoPipeProtocol,
    _LineSession,
    _StdioSide,
    main,
)
from upperecho.transform import upper


class HalfCloseableStringTransport(StringTransport):
    """
    A L{StringTransport} that records C{loseWriteConnection}, as TCP, UNIX
    and stdio transports have it.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class PipeTests(SynchronousTestCase):
    """
    L{UpperEchoPipeProtocol} with standard input and output played by a
    L{StringTransport}.
    """

    def setUp(self) -> None:
        self.pipe = UpperEchoPipeProtocol()
        self.tcp = HalfCloseableStringTransport()
        self.pipe.makeConnection(self.tcp)
        self.stdio = StringTransport()
        self.side = _StdioSide(self.pipe)
        self.side.makeConnection(self.stdio)

    def test_halfCloseable(self) -> None:
        """
        The stdio side is half-closeable: the end of the input must not
        close the output, which still has replies to write.
        """
        self.assertTrue(verifyObject(IHalfCloseableProtocol, self.side))

    def test_producersBothWays(self) -> None:
        """
        Standard input produces for the connection (reading pauses while the
        socket buffer is full) and the connection produces for standard
        output (reading from the server pauses while output is behind).
        """
        self.assertIs(self.tcp.producer, self.stdio)
        self.assertTrue(self.tcp.streaming)
        self.assertIs(self.stdio.producer, self.tcp)
        self.assertTrue(self.stdio.streaming)

    def test_bytesAsTheyAre(self) -> None:
        """
        Input goes to the server and replies go to the output unchanged,
        including bytes that are not valid text.
        """
        data = b"abc\xff\xfe " + "straße".encode() + b"\x00\n"
        self.side.dataReceived(data)
        self.assertEqual(self.tcp.value(), data)
        self.pipe.dataReceived(upper(data))
        self.assertEqual(self.stdio.value(), upper(data))

    def test_endOfInputHalfCloses(self) -> None:
        """
        At the end of the input the connection is half-closed, not closed,
        and the input is no longer its producer.
        """
        self.side.readConnectionLost()
        self.assertTrue(self.tcp.writeClosed)
        self.assertFalse(self.tcp.disconnecting)
        self.assertIsNone(self.tcp.producer)
        self.assertNoResult(self.pipe.done)

    def test_successAfterServerCloses(self) -> None:
        """
        The server closing after the end of the input means every reply has
        arrived: the output is flushed and closed, then C{done} fires.
        """
        self.side.readConnectionLost()
        self.pipe.dataReceived(b"LAST")
        self.pipe.connectionLost(Failure(error.ConnectionDone()))
        self.assertTrue(self.stdio.disconnecting)
        self.assertIsNone(self.stdio.producer)
        self.assertNoResult(self.pipe.done)
        self.side.connectionLost()
        self.assertIsNone(self.successResultOf(self.pipe.done))
        self.assertEqual(self.stdio.value(), b"LAST")

    def test_serverClosesEarly(self) -> None:
        """
        A close before the end of the input is a lost connection.
        """
        self.pipe.connectionLost(Failure(error.ConnectionDone()))
        self.side.connectionLost()
        f = self.failureResultOf(self.pipe.done, ConnectionClosedError)
        self.assertIn("before the end of the input", str(f.value))

    def test_connectionError(self) -> None:
        """
        An abnormal end fails C{done} with its reason, even after the end of
        the input.
        """
        self.side.readConnectionLost()
        self.pipe.connectionLost(Failure(error.ConnectionLost()))
        self.side.connectionLost()
        self.failureResultOf(self.pipe.done, error.ConnectionLost)

    def test_outputClosed(self) -> None:
        """
        When the output goes away (a reader that quit), the connection is
        aborted and C{done} fails.
        """
        self.side.writeConnectionLost()
        self.assertTrue(self.tcp.disconnected)
        self.assertNoResult(self.pipe.done)
        # the abort's connectionLost ends it: stdio has no output left to
        # flush, so it will never call the side's connectionLost
        self.pipe.connectionLost(Failure(error.ConnectionLost()))
        f = self.failureResultOf(self.pipe.done, OSError)
        self.assertEqual(f.value.errno, errno.EPIPE)
        self.side.connectionLost()  # harmless if it comes anyway

    def test_tlsHalfClosesWithCloseNotify(self) -> None:
        """
        Over TLS the end of the input is TLS's own close_notify, sent by
        C{loseConnection}; the TCP-level C{loseWriteConnection} that the
        TLS wrapper would pass through must not be used.
        """
        pipe = UpperEchoPipeProtocol()
        tls = HalfCloseableStringTransport()
        directlyProvides(tls, ISSLTransport)
        pipe.makeConnection(tls)
        _StdioSide(pipe).makeConnection(StringTransport())
        pipe.inputEnded()
        self.assertTrue(tls.disconnecting)
        self.assertFalse(tls.writeClosed)

    def test_noHalfClose(self) -> None:
        """
        A transport without C{loseWriteConnection} is closed at the end of
        the input.
        """
        pipe = UpperEchoPipeProtocol()
        tcp = StringTransport()
        pipe.makeConnection(tcp)
        _StdioSide(pipe).makeConnection(StringTransport())
        pipe.inputEnded()
        self.assertTrue(tcp.disconnecting)


class LineSessionTests(SynchronousTestCase):
    """
    L{_LineSession}: one request per input line, one at a time.
    """

    def setUp(self) -> None:
        self.requests: list[tuple[bytes, Deferred[bytes]]] = []
        self.session = _LineSession(self.request, 100)
        self.stdio = StringTransport()
        self.session.makeConnection(self.stdio)

    def request(self, line: bytes) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self.requests.append((line, d))
        return d

    def answer(self) -> None:
        line, d = self.requests[-1]
        d.callback(line.upper())

    def test_oneAtATime(self) -> None:
        """
        Lines are sent without their line ending (LF or CRLF), one at a
        time; reading pauses until the reply is printed with a newline.
        """
        self.session.dataReceived(b"one\r\ntwo\nthree\n")
        self.assertEqual([r[0] for r in self.requests], [b"one"])
        self.assertEqual(self.stdio.producerState, "paused")
        self.answer()
        self.assertEqual([r[0] for r in self.requests], [b"one", b"two"])
        self.answer()
        self.answer()
        self.assertEqual(self.stdio.value(), b"ONE\nTWO\nTHREE\n")
        self.assertEqual(self.stdio.producerState, "producing")

    def test_emptyLine(self) -> None:
        """
        An empty line is a request too (an empty datagram).
        """
        self.session.dataReceived(b"\n")
        self.assertEqual([r[0] for r in self.requests], [b""])

    def test_endOfInput(self) -> None:
        """
        At the end of the input an unterminated last line is sent; once its
        reply is printed the output is closed and C{done} fires.
        """
        self.session.dataReceived(b"a\nlast")
        self.answer()
        self.session.readConnectionLost()
        self.assertEqual([r[0] for r in self.requests], [b"a", b"last"])
        self.assertFalse(self.stdio.disconnecting)
        self.answer()
        self.assertTrue(self.stdio.disconnecting)
        self.session.connectionLost()
        self.assertIsNone(self.successResultOf(self.session.done))
        self.assertEqual(self.stdio.value(), b"A\nLAST\n")

    def test_failureStops(self) -> None:
        """
        The first failed request ends the session with its error; no more
        lines are sent.
        """
        self.session.dataReceived(b"a\nb\n")
        self.requests[-1][1].errback(Failure(NoReplyError("h:1", 4, 1.0)))
        self.assertTrue(self.stdio.disconnecting)
        self.session.connectionLost()
        self.failureResultOf(self.session.done, NoReplyError)
        self.assertEqual(len(self.requests), 1)

    def test_outputClosed(self) -> None:
        """
        When the output goes away the session ends at once (stdio will not
        report its end), and a reply still to come is not written.
        """
        self.session.dataReceived(b"a\nb\n")
        self.session.writeConnectionLost()
        f = self.failureResultOf(self.session.done, OSError)
        self.assertEqual(f.value.errno, errno.EPIPE)
        self.answer()
        self.assertEqual(self.stdio.value(), b"")
        self.assertEqual(len(self.requests), 1)

    def test_lineTooLong(self) -> None:
        """
        A line longer than the limit ends the session with a clear error.
        """
        self.session.dataReceived(b"x" * 200)
        self.session.connectionLost()
        f = self.failureResultOf(self.session.done, ValueError)
        self.assertIn("longer than 100 bytes", f.getErrorMessage())
        self.assertEqual(self.requests, [])


class OptionsTests(SynchronousTestCase):
    """
    The command line of C{upperecho-client}.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_defaults(self) -> None:
        """
        localhost, port 12000, TCP, timeout 1 s, 3 retries.
        """
        o = self.parse()
        self.assertEqual(
            (o["host"], o["port"], o["udp"], o["timeout"], o["retries"]),
            ("localhost", 12000, False, 1.0, 3),
        )
        self.assertIsNone(o["connect"])

    def test_values(self) -> None:
        """
        Every option and both positional arguments are parsed.
        """
        o = self.parse("--udp", "--timeout", "0.2", "--retries", "0", "h", "9")
        self.assertEqual(
            (o["host"], o["port"], o["udp"], o["timeout"], o["retries"]),
            ("h", 9, True, 0.2, 0),
        )

    def test_badValues(self) -> None:
        """
        Bad values raise L{usage.UsageError} naming the option and value.
        """
        for argv, expected in [
            (["--timeout", "0"], "--timeout 0"),
            (["--timeout", "soon"], "--timeout soon"),
            (["--retries", "-1"], "--retries -1"),
            (["--encoding", "klingon"], "--encoding"),
            (["h", "70000"], "PORT 70000"),
            (["h", "http"], "PORT http"),
            (["--connect", "tcp:h:1", "--udp"], "--udp"),
            (["--connect", "tcp:h:1", "h", "1"], "HOST and PORT"),
            (["--connect", "tcp:h:1", "localhost"], "HOST and PORT"),
        ]:
            e = self.assertRaises(usage.UsageError, self.parse, *argv)
            self.assertIn(expected, str(e))


class MainTests(SynchronousTestCase):
    """
    L{main} before the reactor runs: usage errors and the probe hook.
    """

    def setUp(self) -> None:
        self.stderr = io.StringIO()
        self.patch(sys, "stderr", self.stderr)

    def test_badOption(self) -> None:
        """
        A bad option is one line on stderr and status 2.
        """
        self.assertEqual(main(["--bogus"]), 2)
        self.assertEqual(
            self.stderr.getvalue(),
            "upperecho-client: option --bogus not recognized (see --help)\n",
        )

    def test_probeDispatch(self) -> None:
        """
        C{--probe} anywhere hands the whole argument list to the probe
        command's C{main} and returns its status.
        """
        seen: list[list[str]] = []

        def probeMain(argv: list[str]) -> int:
            seen.append(argv)
            return 7

        self.patch(upperecho.scripts.probe.command, "main", probeMain)
        self.assertEqual(main(["-c", "3", "--probe", "h"]), 7)
        self.assertEqual(seen, [["-c", "3", "--probe", "h"]])
