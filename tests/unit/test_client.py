"""
Tests for L{upperecho.client}, the reusable client protocols, driven
through L{StringTransport}, L{FakeDatagramTransport} and L{Clock}: no
sockets, no sleeps.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from upperecho.client import (
    ConnectionClosedError,
    NoReplyError,
    UpperEchoClientProtocol,
    UpperEchoDatagramClientProtocol,
)
from upperecho.transform import Uppercaser

SERVER = ("127.0.0.1", 12001)


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
