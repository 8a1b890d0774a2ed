"""
Tests for L{upperecho.compiled} and the C accelerator's datagram reads and
writes: C{recv_datagrams} gives the datagrams, ancillary data and addresses
C{socket.recvmsg} gives, many per call, and C{[]} when none is waiting;
C{send_datagrams} sends a list of replies in order and leaves the first it
does not take to the caller.  C{.ci/sanitize} runs these under
AddressSanitizer and UBSan.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
import sys
from typing import Any

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.helpers import requireCompiled
from upperecho.compiled import compiled, pureForced
from upperecho.pktinfo import ANCILLARY_SPACE, IP_PKTINFO, enableDestinationInfo

SIZE = 65535


def udpSocket(
    case: SynchronousTestCase, family: socket.AddressFamily, host: str
) -> socket.socket:
    """
    A UDP socket bound to C{host}, closed when C{case} ends; the test is
    skipped where this machine has no such address.
    """
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, 0))
    except OSError as e:
        raise SkipTest(f"no {family.name} here: {e}") from e
    case.addCleanup(sock.close)
    return sock


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
        self.read = requireCompiled(self, "recv_datagrams")
        self.buffer = bytearray(16 * SIZE)

    def pair(
        self, family: socket.AddressFamily, host: str, wildcard: str
    ) -> tuple[socket.socket, socket.socket, tuple[Any, ...]]:
        server = udpSocket(self, family, wildcard)
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

    def test_ancillaryCut(self) -> None:
        """
        Ancillary data that does not fit the room given is cut where
        C{recvmsg} cuts it, for every room from none to enough.
        """
        # IP_RECVTTL: named by Python's socket module only from 3.12 on;
        # its value on Linux is fixed by the kernel ABI
        recvTTL = getattr(socket, "IP_RECVTTL", 12 if sys.platform == "linux" else None)
        if IP_PKTINFO is None or recvTTL is None:
            raise SkipTest("no IP_PKTINFO or IP_RECVTTL here")
        server, client, address = self.pair(socket.AF_INET, "127.0.0.1", "0.0.0.0")
        server.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        server.setsockopt(socket.IPPROTO_IP, recvTTL, 1)
        fd = server.fileno()
        full = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(4)
        for space in range(0, full + 1, 4):
            client.sendto(b"a", address)
            client.sendto(b"a", address)
            ours = self.read(fd, bytearray(SIZE), SIZE, space)
            data, ancillary, _flags, addr = server.recvmsg(SIZE, space)
            self.assertEqual(ours, [(data, ancillary, addr)], space)
        self.assertEqual(len(ours[0][1]), 2)

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


class SendDatagramsTests(SynchronousTestCase):
    """
    C{send_datagrams}: the plain replies of a list in order, in as few
    C{sendmmsg} calls as it takes, stopping at the first it leaves to the
    caller.
    """

    def setUp(self) -> None:
        self.send = requireCompiled(self, "send_datagrams")

    def sockets(
        self, family: socket.AddressFamily, host: str
    ) -> tuple[socket.socket, socket.socket, tuple[Any, ...]]:
        receiver = udpSocket(self, family, host)
        receiver.settimeout(5)
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sender = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("0.0.0.0" if family == socket.AF_INET else "::", 0))
        sender.setblocking(False)
        return sender, receiver, receiver.getsockname()[:2]

    def received(self, receiver: socket.socket, n: int) -> list[bytes]:
        got = [receiver.recv(70000) for _ in range(n)]
        receiver.setblocking(False)
        self.assertRaises(BlockingIOError, receiver.recv, 10)
        receiver.settimeout(5)
        return got

    def test_allInOrder(self) -> None:
        """
        More replies than one call takes, IPv4 and IPv6: all sent, in
        order; the index returned is the list's length.
        """
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            sender, receiver, address = self.sockets(family, host)
            payloads = [b"reply %d" % i for i in range(150)] + [b""]
            replies = [(p, address, None) for p in payloads]
            self.assertEqual(
                self.send(sender.fileno(), family, replies, 0), len(replies)
            )
            self.assertEqual(self.received(receiver, len(replies)), payloads)
            self.assertEqual(
                self.send(sender.fileno(), family, replies, len(replies)), len(replies)
            )

    def test_fromSource(self) -> None:
        """
        A reply with a source (C{IP_PKTINFO}, as L{upperecho.pktinfo} makes
        it) comes from that address.
        """
        if IP_PKTINFO is None:
            raise SkipTest("no IP_PKTINFO here")
        sender, receiver, address = self.sockets(socket.AF_INET, "127.0.0.1")
        source = [
            (
                socket.IPPROTO_IP,
                IP_PKTINFO,
                b"\0" * 4
                + socket.inet_aton("127.0.0.3")
                + socket.inet_aton("127.0.0.3"),
            )
        ]
        replies = [(b"one", address, source), (b"two", address, None)]
        self.assertEqual(self.send(sender.fileno(), socket.AF_INET, replies, 0), 2)
        self.assertEqual(receiver.recvfrom(10)[1][0], "127.0.0.3")
        self.assertEqual(receiver.recvfrom(10)[1][0], "127.0.0.1")

    def test_leavesToCaller(self) -> None:
        """
        It stops at, and returns the index of, the first reply whose address
        or source it does not take (a name, a port out of range, a four-part
        address, two ancillary items, not a tuple of three, data not
        bytes) or that the kernel refuses (too long); those before it are
        sent.
        """
        sender, receiver, address = self.sockets(socket.AF_INET, "127.0.0.1")
        host, port = address
        item = (socket.IPPROTO_IP, 8, b"\0" * 12)
        for odd in (
            (b"x", ("localhost", port), None),
            (b"x", (host, 70000), None),
            (b"x", (host, port, 0, 0), None),
            (b"x", address, [item, item]),
            (b"x", address, [(0, 0, b"\0" * 100)]),
            (b"x", address),
            ("x", address, None),
            (b"x" * 70000, address, None),
        ):
            replies: list[Any] = [
                (b"first", address, None),
                odd,
                (b"after", address, None),
            ]
            self.assertEqual(
                self.send(sender.fileno(), socket.AF_INET, replies, 0), 1, odd[1:]
            )
            self.assertEqual(self.received(receiver, 1), [b"first"])
            self.assertEqual(self.send(sender.fileno(), socket.AF_INET, replies, 2), 3)
            self.assertEqual(self.received(receiver, 1), [b"after"])

    def test_errors(self) -> None:
        """
        A descriptor the kernel will not send on leaves the first reply to
        the caller; bad arguments raise C{TypeError} or C{ValueError}.
        """
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        replies = [(b"x", ("127.0.0.1", 9), None)]
        self.assertEqual(self.send(w, socket.AF_INET, replies, 0), 0)
        self.assertRaises(TypeError, self.send, w, socket.AF_INET, tuple(replies), 0)
        self.assertRaises(TypeError, self.send, w, socket.AF_INET, replies)
        self.assertRaises(ValueError, self.send, w, socket.AF_INET, replies, 2)
        self.assertRaises(ValueError, self.send, -1, socket.AF_INET, replies, 0)
