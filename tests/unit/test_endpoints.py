"""
Tests for L{upperecho.endpoints}: the fallback to Twisted's own
C{haproxy:} wrapper when its private parser modules are gone.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver
from twisted.trial.unittest import SynchronousTestCase

from upperecho.endpoints import serverEndpoint


class FallbackTests(SynchronousTestCase):
    """
    A Twisted release that moves its private PROXY-protocol modules costs
    the half-close fix, never the service.
    """

    def test_privateModulesMissing(self) -> None:
        """
        When L{upperecho.proxyprotocol} cannot be imported, C{haproxy:} gives
        Twisted's own endpoint, with one warning naming the option.
        """
        import sys

        from twisted.logger import LogEvent, globalLogPublisher

        import upperecho.endpoints

        saved = sys.modules.get("upperecho.proxyprotocol")
        sys.modules["upperecho.proxyprotocol"] = None  # type: ignore[assignment]

        def restore() -> None:
            if saved is None:
                sys.modules.pop("upperecho.proxyprotocol", None)
            else:
                sys.modules["upperecho.proxyprotocol"] = saved

        self.addCleanup(restore)
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        endpoint = serverEndpoint(MemoryReactor(), "haproxy:tcp:0")
        self.assertNotIsInstance(endpoint, upperecho.endpoints.ProxyEndpoint)
        self.assertEqual(
            [e["description"] for e in events if "description" in e],
            ["haproxy:tcp:0"],
        )

    def test_privateModulesPresent(self) -> None:
        """
        With this Twisted, C{haproxy:} gets the half-closeable endpoint.
        """
        import upperecho.endpoints

        endpoint = serverEndpoint(MemoryReactor(), "haproxy:tcp:0")
        self.assertIsInstance(endpoint, upperecho.endpoints.ProxyEndpoint)
