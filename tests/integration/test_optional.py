"""
Without the optional parts (pyOpenSSL, prometheus-client hidden): the
library imports, the server runs, and C{twistd} and the client say in one
line what to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN, TWISTD, Twistd, freePorts, udpExchange

#: what a trimmed install lacks: pyOpenSSL and prometheus-client
HIDDEN = ("OpenSSL", "prometheus_client")


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
