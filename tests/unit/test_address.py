"""
Tests for L{upperecho.address}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from upperecho.address import addressText, hostPort


class AddressTests(SynchronousTestCase):
    """
    One way to write an address everywhere.
    """

    def test_hostPort(self) -> None:
        """
        IPv6 addresses get brackets, IPv4 addresses and names do not.
        """
        self.assertEqual(hostPort("127.0.0.1", 12000), "127.0.0.1:12000")
        self.assertEqual(hostPort("::1", 12000), "[::1]:12000")
        self.assertEqual(hostPort("localhost", 1), "localhost:1")

    def test_addressText(self) -> None:
        """
        Twisted address objects: TCP/UDP as host and port, UNIX as its path.
        """
        self.assertEqual(addressText(IPv4Address("TCP", "192.0.2.7", 5)), "192.0.2.7:5")
        self.assertEqual(addressText(IPv6Address("UDP", "::1", 5)), "[::1]:5")
        self.assertEqual(addressText(UNIXAddress(b"/run/x.sock")), "b'/run/x.sock'")
        self.assertEqual(addressText(None), "None")
