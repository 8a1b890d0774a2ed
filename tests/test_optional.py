"""
Optional parts that are missing at run time end C{twistd} and the client
with one line naming what to install, never a traceback; and a server that
needs none of them starts without them.

The modules are hidden as a trimmed environment would lack them: in this
process by a C{None} in C{sys.modules}, in a subprocess by a
C{sitecustomize} that does the same.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import BIN, TWISTD, Twistd, freePorts, udpExchange
from upperecho.optional import missingMetrics, missingTLS, usesTLS
from upperecho.tap import Options

#: what a trimmed install lacks: pyOpenSSL and prometheus-client
HIDDEN = ("OpenSSL", "prometheus_client")


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


@pytest.fixture()
def trimmed(tmp_path: Path) -> Iterator[dict[str, str]]:
    """
    The environment of a subprocess in which pyOpenSSL and prometheus-client
    cannot be imported.
    """
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in HIDDEN)
    )
    yield {**os.environ, "PYTHONPATH": str(tmp_path)}


def test_libraryImportsNoOptional(trimmed: dict[str, str]) -> None:
    """
    C{import upperecho.tap} (what C{twistd upperecho} loads) needs neither
    pyOpenSSL nor prometheus-client.
    """
    code = "import upperecho, upperecho.tap, upperecho.endpoints; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=trimmed,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


def test_serverRunsWithout(trimmed: dict[str, str]) -> None:
    """
    A trimmed environment serves TCP and UDP as usual.
    """
    tcp, udp = freePorts()
    with Twistd(["--tcp", str(tcp), "--udp", str(udp)], env=trimmed) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        assert udpExchange(udp, b"trimmed") == b"TRIMMED"
    assert "Traceback" not in t.log()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--listen", "ssl:0:privateKey=key.pem"],
            "--listen ssl:0:privateKey=key.pem: TLS needs twisted[tls], which is "
            "not installed (pip install 'twisted[tls]')",
        ),
        (
            ["--tcp", "0", "--metrics", "tcp:0"],
            "--metrics tcp:0: the metrics page needs prometheus-client, which is not "
            "installed (pip install 'prometheus-client')",
        ),
    ],
)
def test_twistdOneLine(
    trimmed: dict[str, str], args: list[str], expected: str, tmp_path: Path
) -> None:
    """
    A feature whose part is missing ends twistd with a non-zero status and
    one line naming what to install, and no traceback.
    """
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "upperecho", *args],
        cwd=tmp_path,
        env=trimmed,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert output.splitlines()[-1] == f"{TWISTD} -n: {expected}"


def test_clientOneLine(trimmed: dict[str, str]) -> None:
    """
    The client's C{--connect tls:...} says what to install, exit status 2.
    """
    result = subprocess.run(
        [str(BIN / "upperecho-client"), "--connect", "tls:localhost:12000"],
        env=trimmed,
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "upperecho-client: --connect tls:localhost:12000: TLS needs twisted[tls], "
        "which is not installed (pip install 'twisted[tls]')"
    ]
