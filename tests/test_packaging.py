"""
Packaging: the wheel ships the plugin (and nothing of Twisted's own), and a
plain, non-editable install makes C{twistd --help} list upperecho.

The twisted/plugins folder has no __init__.py, so packaging tools drop it
unless told; this test is what notices.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers import Twistd, freePort, freePorts, makeCerts
from upperecho.transform import upper

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (path,) = out.glob("upperecho-*.whl")
    return path


def test_wheelContents(wheel: Path) -> None:
    """
    The plugin file is in the wheel; Twisted's own package markers are not,
    and neither are the tests.
    """
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/upperecho_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "upperecho/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


@pytest.fixture(scope="module")
def plain(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    A new virtual environment with the wheel installed as a user installs
    it: C{pip install}, no extras, not editable.  Yields its C{bin}.
    """
    env = tmp_path_factory.mktemp("plain") / "venv"
    venv.create(env, with_pip=True)
    subprocess.run(
        [
            str(env / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    return env / "bin"


def test_freshInstallListsPlugin(plain: Path, tmp_path: Path) -> None:
    """
    In a new virtual environment, C{pip install} of the wheel (not editable)
    is enough for C{twistd --help} to list upperecho.
    """
    out = subprocess.run(
        [str(plain / "twistd"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "upperecho" in out.stdout


def _client(plain: Path, args: list[str], data: bytes) -> bytes:
    result = subprocess.run(
        [str(plain / "upperecho-client"), *args],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_plainInstallServesEverything(plain: Path, tmp_path: Path) -> None:
    """
    The plain install serves every documented feature: TCP and UDP, an
    C{ssl:} listener, C{--metrics}; and its client talks TCP, UDP and
    C{tls:} to it.
    """
    certs = makeCerts(tmp_path)
    tcp, udp = freePorts()
    tlsPort, metricsPort = freePort(), freePort()
    args = ["--tcp", str(tcp), "--udp", str(udp), "--listen", certs.listen(tlsPort)]
    args += ["--metrics", f"tcp:{metricsPort}:interface=127.0.0.1"]
    with Twistd(args, runner=str(plain / "twistd")) as t:
        t.waitBound(tcp=[tcp, tlsPort, metricsPort], udp=[udp])
        line = "hello, stra\u00dfe\n".encode()
        assert _client(plain, ["127.0.0.1", str(tcp)], line) == upper(line)
        assert _client(plain, ["--udp", "127.0.0.1", str(udp)], line) == upper(line)
        endpoint = certs.tlsClient(tlsPort, tmp_path / "roots")
        assert _client(plain, ["--connect", endpoint], line) == upper(line)
        url = f"http://127.0.0.1:{metricsPort}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            page = r.read().decode()
        lines = page.splitlines()
        assert 'upperecho_connections_total{service="tcp"} 2.0' in lines  # TCP, TLS
        assert 'upperecho_received_datagrams_total{service="udp"} 1.0' in lines
    assert "Traceback" not in t.log()
