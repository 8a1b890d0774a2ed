"""
Tests for L{upperecho.optional}: which endpoints need pyOpenSSL, and the
one line that names what is missing.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.optional import missingMetrics, missingTLS, usesTLS
from upperecho.tap import Options


def hide(case: SynchronousTestCase, *modules: str) -> None:
    """
    Make C{import module} fail for the rest of C{case}.
    """
    for name in modules:
        saved: Any = sys.modules.get(name)
        sys.modules[name] = None  # type: ignore[assignment]
        if saved is None:
            case.addCleanup(sys.modules.pop, name, None)
        else:
            case.addCleanup(sys.modules.__setitem__, name, saved)


class UsesTLSTests(SynchronousTestCase):
    def test_tlsEndpoints(self) -> None:
        """
        C{ssl:} and C{tls:}, bare or behind C{haproxy:}, are TLS endpoints.
        """
        for description in (
            "ssl:12443:privateKey=k.pem",
            "tls:/etc/certs:port=443",
            "haproxy:ssl:12443:privateKey=k.pem",
            "tls:host=example.org:port=443",
        ):
            self.assertTrue(usesTLS(description), description)

    def test_others(self) -> None:
        """
        Plain stream endpoints are not.
        """
        for description in ("tcp:12000", "unix:/tmp/s", "haproxy:tcp:1", "sslx:1"):
            self.assertFalse(usesTLS(description), description)


class MissingTests(SynchronousTestCase):
    def test_installed(self) -> None:
        """
        In the test environment (a full install) nothing is missing.
        """
        self.assertIsNone(missingTLS())
        self.assertIsNone(missingMetrics())

    def test_missingTLS(self) -> None:
        """
        Without pyOpenSSL, C{--listen ssl:...} is a one-line usage error
        naming what to install.
        """
        hide(self, "OpenSSL")
        e = self.assertRaises(
            usage.UsageError,
            Options().parseOptions,
            ["--listen", "ssl:12443:privateKey=key.pem"],
        )
        self.assertEqual(
            str(e),
            "--listen ssl:12443:privateKey=key.pem: TLS needs twisted[tls], which "
            "is not installed (pip install 'twisted[tls]')",
        )

    def test_missingTLSMetrics(self) -> None:
        """
        The same for a C{--metrics} page served over TLS.
        """
        hide(self, "OpenSSL")
        e = self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--metrics", "ssl:9100"]
        )
        self.assertIn("--metrics ssl:9100: TLS needs twisted[tls]", str(e))

    def test_plainWithoutTLS(self) -> None:
        """
        Without pyOpenSSL, endpoints that do not need it still parse.
        """
        hide(self, "OpenSSL")
        config = Options()
        config.parseOptions(["--listen", "tcp:12000", "--tcp", "12001"])
        self.assertEqual(config["listen"], ["tcp:12000"])
