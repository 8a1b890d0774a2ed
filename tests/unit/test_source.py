"""
Tests for L{upperecho.source}: what counts as one source, and which peers
may send a PROXY header.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from upperecho.source import UNIX_SOURCE, TrustedProxies, network, sourceOf


class SourceTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        self.assertEqual(sourceOf(IPv4Address("TCP", "192.0.2.7", 1)), "192.0.2.7")

    def test_ipv6Prefix(self) -> None:
        """
        Every address of one IPv6 /64 is one source; another /64 is another.
        """
        a = sourceOf(IPv6Address("TCP", "2001:db8:1:2::1", 1))
        b = sourceOf(IPv6Address("TCP", "2001:db8:1:2:ffff:1:2:3%eth0", 1))
        c = sourceOf(IPv6Address("TCP", "2001:db8:1:3::1", 1))
        self.assertEqual(a, "2001:db8:1:2::/64")
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_mapped(self) -> None:
        """
        An IPv4-mapped address (a dual-stack socket's IPv4 client) is the
        IPv4 address.
        """
        self.assertEqual(
            sourceOf(IPv6Address("TCP", "::ffff:192.0.2.7", 1)), "192.0.2.7"
        )

    def test_unix(self) -> None:
        """
        All UNIX-socket peers, and a peer with no address, are one source.
        """
        self.assertEqual(sourceOf(UNIXAddress(b"/run/x.sock")), UNIX_SOURCE)
        self.assertEqual(sourceOf(UNIXAddress(None)), UNIX_SOURCE)
        self.assertEqual(sourceOf(None), UNIX_SOURCE)

    def test_notAnAddress(self) -> None:
        """
        A host that is not an IPv6 address is its own source.
        """
        self.assertEqual(sourceOf(IPv6Address("TCP", "nonsense:", 1)), "nonsense:")


class TrustedProxiesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.trusted = TrustedProxies([network("127.0.0.1/8"), network("2001:db8::1")])

    def test_hostBitsDropped(self) -> None:
        self.assertEqual(str(network("127.0.0.1/8")), "127.0.0.0/8")
        self.assertEqual(str(self.trusted), "127.0.0.0/8 2001:db8::1/128")

    def test_badNetwork(self) -> None:
        for bad in ("1.2.3.4/33", "proxy", ""):
            self.assertRaises(ValueError, network, bad)

    def test_membership(self) -> None:
        self.assertIn(IPv4Address("TCP", "127.0.0.3", 1), self.trusted)
        self.assertIn(IPv6Address("TCP", "::ffff:127.0.0.1", 1), self.trusted)
        self.assertIn(IPv6Address("TCP", "2001:db8::1", 1), self.trusted)
        self.assertNotIn(IPv6Address("TCP", "2001:db8::2", 1), self.trusted)
        self.assertNotIn(IPv4Address("TCP", "192.0.2.7", 1), self.trusted)
        self.assertNotIn(IPv4Address("TCP", "not-an-ip", 1), self.trusted)

    def test_unixAlwaysTrusted(self) -> None:
        self.assertIn(UNIXAddress(b"/run/haproxy.sock"), self.trusted)
