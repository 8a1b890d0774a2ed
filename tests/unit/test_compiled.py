"""
Tests for L{upperecho.compiled} and the C accelerator's datagram reads
(C{recv_datagrams}): the same datagrams, ancillary data and addresses that
C{socket.recvmsg} gives, many per call, and C{[]} when none is waiting.
C{.ci/sanitize} runs these under AddressSanitizer and UBSan.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from upperecho.compiled import compiled, pureForced
from upperecho.pktinfo import ANCILLARY_SPACE, enableDestinationInfo

SIZE = 65535


class SwitchTests(SynchronousTestCase):
    """
    C{UPPERECHO_PURE_PYTHON} turns every compiled path off.
    """

    def test_pureForced(self) -> None:
        for value, forced in (("1", True), ("yes", True), ("0", False), ("", False)):
            self.patch(os, "environ", {**os.environ, "UPPERECHO_PURE_PYTHON": value})
            self.assertEqual(pureForced(), forced, value)
            if forced:
                self.assertIsNone(compiled("recv_datagrams"))

    def test_missing(self) -> None:
        """
        A name the accelerator lacks, or an accelerator that is not built,
        gives C{None}.
        """
        self.patch(os, "environ", {**os.environ, "UPPERECHO_PURE_PYTHON": ""})
        self.assertIsNone(compiled("no_such_function"))
        self.assertIsNone(compiled("UNIDATA_VERSION"))  # not callable

        def notBuilt(name: str) -> Any:
            raise ImportError(name)

        self.patch(importlib, "import_module", notBuilt)
        self.assertIsNone(compiled("recv_datagrams"))


class RecvDatagramsTests(SynchronousTestCase):
    def setUp(self) -> None:
        read = compiled("recv_datagrams")
        if read is None:
            if os.environ.get("UPPERECHO_REQUIRE_ACCEL", "") == "1":
                self.fail("the C accelerator's recv_datagrams is not built")
            raise SkipTest("the C accelerator is not built")
        self.read = read
        self.buffer = bytearray(16 * SIZE)

    def pair(
        self, family: socket.AddressFamily, host: str, wildcard: str
    ) -> tuple[socket.socket, socket.socket, tuple[Any, ...]]:
        try:
            server = socket.socket(family, socket.SOCK_DGRAM)
            server.bind((wildcard, 0))
        except OSError as e:
            raise SkipTest(f"no {family.name} here: {e}") from e
        self.addCleanup(server.close)
        server.setblocking(False)
        client = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(client.close)
        return server, client, (host, server.getsockname()[1])

    def test_sameAsRecvmsg(self) -> None:
        """
        For IPv4 and IPv6, with and without the destination's ancillary
        data: each datagram as C{recvmsg} gives it, less the flags, in
        order; C{[]} when none is waiting.
        """
        for family, host, wildcard in (
            (socket.AF_INET, "127.0.0.1", "0.0.0.0"),
            (socket.AF_INET6, "::1", "::"),
        ):
            for space in (0, ANCILLARY_SPACE):
                server, client, address = self.pair(family, host, wildcard)
                if space and enableDestinationInfo(server) is not None:
                    continue
                fd = server.fileno()
                self.assertEqual(self.read(fd, self.buffer, SIZE, space), [])
                payloads = [b"", b"x", "straße".encode(), bytes(range(256)) * 40]
                for p in payloads * 2:
                    client.sendto(p, address)
                # a buffer of four slots: the first four, then recvmsg's
                got = self.read(fd, bytearray(4 * SIZE), SIZE, space)
                theirs = []
                for _ in payloads:
                    data, ancillary, _flags, addr = server.recvmsg(SIZE, space)
                    theirs.append((data, ancillary, addr))
                self.assertEqual(len(got), len(payloads))
                self.assertEqual(got, theirs, (family, space))
                self.assertEqual([g[0] for g in got], payloads)
                self.assertEqual(got[0][2][:2], (host, client.getsockname()[1]))
                if space:
                    self.assertEqual(len(got[0][1]), 1)
                self.assertEqual(self.read(fd, self.buffer, SIZE, space), [])

    def test_burstBoundedByBuffer(self) -> None:
        """
        One call reads at most as many datagrams as the buffer has slots of
        C{size} bytes (and at most 64); the rest wait for the next call.
        """
        server, client, address = self.pair(socket.AF_INET, "127.0.0.1", "127.0.0.1")
        for i in range(100):
            client.sendto(b"%d" % i, address)
        fd = server.fileno()
        small = bytearray(3 * 100)
        self.assertEqual(len(self.read(fd, small, 100, 0)), 3)
        big = bytearray(80 * 100)
        self.assertEqual(len(self.read(fd, big, 100, 0)), 64)
        rest = self.read(fd, big, 100, 0)
        self.assertEqual([d for d, _, _ in rest], [b"%d" % i for i in range(67, 100)])

    def test_truncated(self) -> None:
        """
        A datagram longer than C{size} is cut to C{size}, as C{recvmsg}
        cuts it.
        """
        server, client, address = self.pair(socket.AF_INET, "127.0.0.1", "127.0.0.1")
        client.sendto(b"a" * 50, address)
        client.sendto(b"b" * 50, address)
        ((data, _, _),) = self.read(server.fileno(), bytearray(10), 10, 0)
        self.assertEqual(data, b"a" * 10)
        self.assertEqual(server.recvmsg(10)[0], b"b" * 10)

    def test_errors(self) -> None:
        """
        A descriptor that is not a socket raises C{OSError} with its errno;
        bad arguments raise C{TypeError} or C{ValueError}, and a read-only
        buffer C{BufferError}.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        with self.assertRaises(OSError) as raised:
            self.read(r, self.buffer, SIZE, 0)
        self.assertEqual(raised.exception.errno, errno.ENOTSOCK)
        server, _, _ = self.pair(socket.AF_INET, "127.0.0.1", "127.0.0.1")
        fd = server.fileno()
        self.assertRaises(TypeError, self.read, fd, self.buffer, SIZE)
        self.assertRaises(BufferError, self.read, fd, bytes(SIZE), SIZE, 0)
        for bad in ((-1, self.buffer, SIZE, 0), (fd, self.buffer, 0, 0)):
            self.assertRaises(ValueError, self.read, *bad)
        self.assertRaises(ValueError, self.read, fd, self.buffer, SIZE, 10**6)
        self.assertRaises(ValueError, self.read, fd, bytearray(10), SIZE, 0)
        self.assertRaises(TypeError, self.read, "3", self.buffer, SIZE, 0)
