"""
The TCP fast path under a real epoll reactor over loopback.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from upperecho.tcp import UpperEchoFactory


class RealReactorTests(SynchronousTestCase):
    """
    The fast path under a real epoll reactor (a private one, iterated by
    the test): a stream of replies that the client reads only after the
    server had to stop reading.
    """

    def test_backpressureAndHalfClose(self) -> None:
        """
        The client sends 8 MiB without reading: the server pauses (its queue
        stays bounded); once the client reads, everything arrives in order,
        and the server closes after the client's EOF.
        """
        from twisted.internet.epollreactor import EPollReactor

        self.backpressureAndHalfClose(EPollReactor())

    def test_onUpperEchoReactor(self) -> None:
        """
        The same on upperecho's reactor, whose port makes L{LeanServer}
        connections: the fast path, the pause and the close are the same.
        """
        from upperecho.port import LeanServer
        from upperecho.reactor import UpperEchoReactor

        reactor = UpperEchoReactor()
        kinds = self.backpressureAndHalfClose(reactor)
        self.assertEqual(kinds, {LeanServer})

    def backpressureAndHalfClose(self, reactor: Any) -> set[type]:
        """
        The scenario of L{test_backpressureAndHalfClose} on C{reactor}.

        @return: the types of the transports the connections had.
        """
        self.addCleanup(reactor._uninstallHandler)
        self.addCleanup(reactor.disconnectAll)
        factory = UpperEchoFactory(clock=reactor)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        payload = b"abcdefghij\xc3\x9f" * (8 * 1024 * 1024 // 12)
        expected = payload.decode().upper().encode()
        # small kernel buffers, so that the server's own queue must fill
        client = socket.socket()
        self.addCleanup(client.close)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        client.connect(("127.0.0.1", port.getHost().port))
        client.setblocking(False)
        shrunk: set[int] = set()
        kinds: set[type] = set()
        sent = peak = paused = eager = 0
        out: list[bytes] = []
        eof = False
        deadline = time.monotonic() + 60
        while not eof and time.monotonic() < deadline:
            reactor.iterate(0.001)
            transports: list[Any] = [p.transport for p in factory.connections]
            kinds.update(type(t) for t in transports)
            for t in transports:
                if id(t) not in shrunk:
                    shrunk.add(id(t))
                    t.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
                peak = max(peak, len(t.dataBuffer) - t.offset + t._tempDataLen)
            if sent < len(payload):
                with contextlib.suppress(BlockingIOError):
                    sent += client.send(payload[sent : sent + 262144])
                if sent == len(payload):
                    client.shutdown(socket.SHUT_WR)
            eager += any(p._sock is not None for p in factory.connections)
            nowPaused = any(t.producerPaused for t in transports)
            paused += nowPaused
            if nowPaused or sent == len(payload):
                try:
                    while chunk := client.recv(1 << 20):
                        out.append(chunk)
                    eof = True
                except BlockingIOError:
                    pass
        self.assertTrue(eof)
        self.assertEqual(b"".join(out), expected)
        self.assertGreater(paused, 0)
        self.assertGreater(eager, 0)
        # never much more than one read's reply beyond the 64 KiB mark; a
        # LeanServer's reads of a stream are STREAM_READ_SIZE
        from upperecho.port import STREAM_READ_SIZE, LeanServer

        readSize = STREAM_READ_SIZE if LeanServer in kinds else 65536
        self.assertLess(peak, 65536 + 3 * readSize)
        self.assertEqual(factory.connections, set())
        return kinds
