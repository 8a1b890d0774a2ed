"""
Tests for L{upperecho.allocator}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import (
    FakeDatagramTransport,
)
from twisted.trial.unittest import SynchronousTestCase

import upperecho._compat
import upperecho.allocator
import upperecho.tap
import upperecho.tcp
import upperecho.transform
import upperecho.udp
from upperecho.tcp import UpperEchoFactory
from upperecho.udp import UpperEchoDatagramProtocol


class AllocatorTests(SynchronousTestCase):
    """
    Starting to listen tunes glibc's allocator once, unless told not to.
    """

    def test_tunedOnGlibc(self) -> None:
        """
        On glibc the thresholds are set, and a second call changes nothing.
        """
        import platform

        if platform.libc_ver()[0] != "glibc":
            raise self.skipTest("not glibc")
        self.assertTrue(upperecho.allocator.tuneAllocator())
        self.assertTrue(upperecho.allocator.tuneAllocator())

    def test_calledByTheServiceOnly(self) -> None:
        """
        The twistd service tunes the allocator when it starts (unless
        C{tuneMalloc} is false); the library's factory and datagram protocol,
        which may live in someone else's process, never do.
        """
        calls: list[str] = []
        self.patch(upperecho.tap, "tuneAllocator", lambda: calls.append("service"))
        self.patch(upperecho.allocator, "tuneAllocator", lambda: calls.append("lib"))
        factory = UpperEchoFactory(clock=Clock())
        factory.doStart()
        factory.doStop()
        proto = UpperEchoDatagramProtocol(clock=Clock())
        proto.makeConnection(FakeDatagramTransport())
        self.assertEqual(calls, [])
        service = upperecho.tap.UpperEchoService()
        service.startService()
        self.assertEqual(calls, ["service"])
        quiet = upperecho.tap.UpperEchoService()
        quiet.tuneMalloc = False
        quiet.startService()
        self.assertEqual(calls, ["service"])
