"""
Tests for L{upperecho.client}, driven through L{StringTransport},
L{FakeDatagramTransport} and L{Clock}: no sockets, no sleeps.
"""

from __future__ import annotations

import errno
import io
import sys
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol, ISSLTransport
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

import upperecho.scripts.probe.command
from upperecho.client import (
    ConnectionClosedError,
    NoReplyError,
    UpperEchoClientProtocol,
    UpperEchoDatagramClientProtocol,
)
from upperecho.scripts._common import describe
from upperecho.scripts.client import (
    Options,
    UpperEchoPipeProtocol,
    _LineSession,
    _StdioSide,
    main,
)
from upperecho.transform import Uppercaser, upper

SERVER = ("127.0.0.1", 12001)


class HalfCloseableStringTransport(StringTransport):
    """
    A L{StringTransport} that records C{loseWriteConnection}, as TCP, UNIX
    and stdio transports have it.
    """

    writeClosed = False

    def loseWriteConnection(self) -> None:
        self.writeClosed = True


class LineClientTests(SynchronousTestCase):
    """
    L{UpperEchoClientProtocol}: one line per request, pipelined.
    """

    def setUp(self) -> None:
        self.proto = UpperEchoClientProtocol()
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_sendsTextAndNewline(self) -> None:
        """
        C{upper(text)} writes the encoded text and a newline, nothing else.
        """
        self.proto.upper("straße")
        self.assertEqual(self.transport.value(), "straße\n".encode())

    def test_firesWithReplyLine(self) -> None:
        """
        The reply line, without its newline, fires the L{Deferred}.
        """
        d = self.proto.upper("hello")
        self.assertNoResult(d)
        self.proto.dataReceived(b"HELLO\n")
        self.assertEqual(self.successResultOf(d), "HELLO")

    def test_pipelinedInOrder(self) -> None:
        """
        Several requests may be outstanding; replies, however they are
        split into reads, fire them in the order they were sent.
        """
        ds = [self.proto.upper(t) for t in ["one", "two", "", "four"]]
        self.assertEqual(self.transport.value(), b"one\ntwo\n\nfour\n")
        for chunk in [b"ON", b"E\nTWO", b"\n\nFO", b"UR\n"]:
            self.proto.dataReceived(chunk)
        self.assertEqual(
            [self.successResultOf(d) for d in ds], ["ONE", "TWO", "", "FOUR"]
        )

    def test_partialReplyWaits(self) -> None:
        """
        Until the newline arrives the request stays outstanding, even when
        the reply's bytes stop in the middle of a character.
        """
        d = self.proto.upper("ǆ")
        reply = "Ǆ\n".encode()
        self.proto.dataReceived(reply[:1])
        self.assertNoResult(d)
        self.proto.dataReceived(reply[1:])
        self.assertEqual(self.successResultOf(d), "Ǆ")

    def test_newlineRefused(self) -> None:
        """
        Text with a newline would get two reply lines for one request: it is
        refused and nothing is sent.
        """
        f = self.failureResultOf(self.proto.upper("a\nb"), ValueError)
        self.assertIn("newline", f.getErrorMessage())
        self.assertEqual(self.transport.value(), b"")

    def test_unencodable(self) -> None:
        """
        Text the encoding cannot express fails its request; nothing is sent.
        """
        proto = UpperEchoClientProtocol("latin-1")
        transport = StringTransport()
        proto.makeConnection(transport)
        self.failureResultOf(proto.upper("中文"), UnicodeEncodeError)
        self.assertEqual(transport.value(), b"")

    def test_connectionClosedFailsWaiting(self) -> None:
        """
        A clean close while replies are owed fails them, and later requests,
        with L{ConnectionClosedError}.
        """
        d = self.proto.upper("x")
        self.proto.connectionLost(Failure(error.ConnectionDone()))
        self.failureResultOf(d, ConnectionClosedError)
        self.failureResultOf(self.proto.upper("y"), ConnectionClosedError)

    def test_connectionLostKeepsReason(self) -> None:
        """
        An abnormal end fails the waiting requests with its own error.
        """
        d = self.proto.upper("x")
        self.proto.connectionLost(Failure(error.ConnectionLost()))
        self.failureResultOf(d, error.ConnectionLost)

    def test_roundTripThroughServerTransform(self) -> None:
        """
        Through the server's own transform, in encodings whose newline is
        not the byte 0x0a too (EBCDIC), every request gets its uppercased
        text back, however the reply is split.
        """
        for encoding in ["utf-8", "latin-1", "cp500", "gb18030"]:
            proto = UpperEchoClientProtocol(encoding)
            transport = StringTransport()
            proto.makeConnection(transport)
            server = Uppercaser(encoding)
            ds = [proto.upper(t) for t in ["hello", "ÿé", "abc"]]
            wire = transport.value()
            for i in range(len(wire)):
                proto.dataReceived(server.feed(wire[i : i + 1]))
            self.assertEqual(
                [self.successResultOf(d) for d in ds],
                ["HELLO", "ÿÉ" if encoding == "latin-1" else "ŸÉ", "ABC"]
                if encoding != "cp500"
                else ["HELLO", "ÿÉ", "ABC"],
                encoding,
            )

    def test_badEncoding(self) -> None:
        """
        An unknown encoding is refused when the protocol is built.
        """
        self.assertRaises(ValueError, UpperEchoClientProtocol, "klingon")


class DatagramClientTests(SynchronousTestCase):
    """
    L{UpperEchoDatagramClientProtocol}: timeout, retries, sender checks.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.proto = UpperEchoDatagramClientProtocol(
            *SERVER, timeout=1.0, retries=3, clock=self.clock
        )
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)

    def test_sendsOneDatagram(self) -> None:
        """
        A request is one datagram to the server, payload as given.
        """
        self.proto.exchange(b"hello")
        self.assertEqual(self.transport.written, [(b"hello", SERVER)])

    def test_reply(self) -> None:
        """
        The server's datagram fires the request, and no timer is left.
        """
        d = self.proto.exchange(b"hello")
        self.proto.datagramReceived(b"HELLO", SERVER)
        self.assertEqual(self.successResultOf(d), b"HELLO")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_resendsAtExactlyTimeout(self) -> None:
        """
        The datagram is sent again exactly C{timeout} seconds later, not
        before.
        """
        self.proto.exchange(b"x")
        self.clock.advance(0.999)
        self.assertEqual(len(self.transport.written), 1)
        self.clock.advance(0.001)
        self.assertEqual(len(self.transport.written), 2)
        self.assertEqual(self.transport.written[1], (b"x", SERVER))

    def test_oneDatagramPlusRetries(self) -> None:
        """
        With C{retries} N, 1 + N datagrams are sent; the request fails with
        L{NoReplyError} at (1 + N) * timeout, and not earlier.
        """
        for retries in [0, 1, 3]:
            clock = Clock()
            proto = UpperEchoDatagramClientProtocol(
                *SERVER, timeout=0.5, retries=retries, clock=clock
            )
            transport = FakeDatagramTransport()
            proto.makeConnection(transport)
            d = proto.exchange(b"x")
            for sent in range(1, 1 + retries):
                clock.advance(0.5)
                self.assertEqual(len(transport.written), 1 + sent)
            clock.advance(0.25)
            self.assertNoResult(d)
            clock.advance(0.25)
            f = self.failureResultOf(d, NoReplyError)
            self.assertEqual(len(transport.written), 1 + retries)
            self.assertEqual(proto.sent, 1 + retries)
            self.assertEqual(f.value.attempts, 1 + retries)
            clock.advance(100)
            self.assertEqual(len(transport.written), 1 + retries)

    def test_replyToRetry(self) -> None:
        """
        A reply after a resend fires the request and stops the resends.
        """
        d = self.proto.exchange(b"x")
        self.clock.advance(1.0)
        self.proto.datagramReceived(b"X", SERVER)
        self.assertEqual(self.successResultOf(d), b"X")
        self.clock.advance(10)
        self.assertEqual(len(self.transport.written), 2)

    def test_otherSendersIgnored(self) -> None:
        """
        Datagrams from another address or port are not replies.
        """
        d = self.proto.exchange(b"x")
        self.proto.datagramReceived(b"EVIL", ("127.0.0.2", 12001))
        self.proto.datagramReceived(b"EVIL", ("127.0.0.1", 12002))
        self.proto.datagramReceived(b"EVIL", ("::1", 12001))
        self.assertNoResult(d)
        self.assertEqual(self.proto.ignored, 3)
        self.proto.datagramReceived(b"X", SERVER)
        self.assertEqual(self.successResultOf(d), b"X")

    def test_unexpectedReplyIgnored(self) -> None:
        """
        A datagram when no request is waiting (a late duplicate) is dropped.
        """
        self.proto.datagramReceived(b"LATE", SERVER)
        self.assertEqual(self.proto.ignored, 1)
        d = self.proto.exchange(b"x")
        self.assertNoResult(d)

    def test_oneAtATime(self) -> None:
        """
        A second request waits for the first to finish, then is sent.
        """
        d1 = self.proto.exchange(b"a")
        d2 = self.proto.exchange(b"b")
        self.assertEqual(self.transport.written, [(b"a", SERVER)])
        self.proto.datagramReceived(b"A", SERVER)
        self.assertEqual(self.transport.written, [(b"a", SERVER), (b"b", SERVER)])
        self.proto.datagramReceived(b"B", SERVER)
        self.assertEqual(
            (self.successResultOf(d1), self.successResultOf(d2)), (b"A", b"B")
        )

    def test_nextAfterNoReply(self) -> None:
        """
        After a request fails, the next one is sent.
        """
        d1 = self.proto.exchange(b"a")
        d2 = self.proto.exchange(b"b")
        for _ in range(4):
            self.clock.advance(1.0)
        self.failureResultOf(d1, NoReplyError)
        self.assertEqual(self.transport.written[-1], (b"b", SERVER))
        self.assertNoResult(d2)

    def test_writeError(self) -> None:
        """
        A datagram the socket refuses (too large) fails its request at once.
        """

        class Refusing(FakeDatagramTransport):
            def write(self, packet: bytes, addr: Any = None) -> None:
                raise error.MessageLengthError()

        proto = UpperEchoDatagramClientProtocol(*SERVER, clock=self.clock)
        proto.makeConnection(Refusing())
        self.failureResultOf(proto.exchange(b"x" * 70000), error.MessageLengthError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_upperText(self) -> None:
        """
        C{upper(text)} encodes, exchanges and decodes.
        """
        d = self.proto.upper("straße")
        self.assertEqual(self.transport.written, [("straße".encode(), SERVER)])
        self.proto.datagramReceived(b"STRASSE", SERVER)
        self.assertEqual(self.successResultOf(d), "STRASSE")

    def test_ipv6Server(self) -> None:
        """
        An IPv6 server is matched however its address is spelled.
        """
        proto = UpperEchoDatagramClientProtocol("::1", 9999, clock=self.clock)
        proto.makeConnection(FakeDatagramTransport())
        self.assertEqual(proto.address, "[::1]:9999")
        d = proto.exchange(b"x")
        proto.datagramReceived(b"X", ("0:0:0:0:0:0:0:1", 9999, 0, 0))
        self.assertEqual(self.successResultOf(d), b"X")

    def test_stopProtocolFailsWaiting(self) -> None:
        """
        Closing the port fails the request in progress and the queued ones.
        """
        d1 = self.proto.exchange(b"a")
        d2 = self.proto.exchange(b"b")
        self.proto.doStop()
        self.failureResultOf(d1, error.ConnectionLost)
        self.failureResultOf(d2, error.ConnectionLost)

    def test_badArguments(self) -> None:
        """
        A host name (not an address), a timeout <= 0 or negative retries are
        refused.
        """
        self.assertRaises(ValueError, UpperEchoDatagramClientProtocol, "example", 1)
        self.assertRaises(
            ValueError, UpperEchoDatagramClientProtocol, "127.0.0.1", 1, timeout=0
        )
        self.assertRaises(
            ValueError, UpperEchoDatagramClientProtocol, "127.0.0.1", 1, retries=-1
        )

    def test_noReplyMessage(self) -> None:
        """
        L{NoReplyError} reads as one plain sentence.
        """
        self.assertEqual(
            str(NoReplyError("127.0.0.1:12001", 4, 1.0)),
            "no reply from 127.0.0.1:12001 after 4 datagrams (1 s timeout each)",
        )
        self.assertEqual(
            str(NoReplyError("h:1", 1, 0.25)),
            "no reply from h:1 after 1 datagram (0.25 s timeout each)",
        )


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


class DescribeTests(SynchronousTestCase):
    """
    L{describe}: one line per kind of failure.
    """

    def test_messages(self) -> None:
        """
        Refused, unknown host, no reply and lost connection read plainly.
        """
        for exc, expected in [
            (
                error.ConnectionRefusedError(),
                "cannot connect to h:1: connection refused",
            ),
            (error.DNSLookupError("h"), "unknown host: cannot resolve h:1"),
            (
                NoReplyError("h:1", 2, 0.5),
                "no reply from h:1 after 2 datagrams (0.5 s timeout each)",
            ),
            (error.ConnectionLost(), "connection lost: h:1 went away"),
        ]:
            self.assertEqual(describe(Failure(exc), "h:1"), expected)


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
