"""
What a deployment relies on, against a real C{twistd}: C{/healthz} and
C{/readyz} over HTTP (503 from SIGTERM on, serving through
C{--drain-delay}), C{--identify} counted by C{upperecho-client --probe
--identify}, and options from C{UPPERECHO_*} variables.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.helpers import Twistd, freePort, halfCloseExchange, udpExchange


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upperecho.scripts.probe", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_readiness() -> None:
    """
    Ready once bound; after SIGTERM, 503 at once while the echo still
    answers for --drain-delay; then a clean exit.
    """
    tcp, udp, http = freePort(), freePort(socket.SOCK_DGRAM), freePort()
    args = ["--tcp", str(tcp), "--udp", str(udp), "--drain-delay", "3"]
    args += ["--health", f"tcp:{http}:interface=127.0.0.1"]
    with Twistd(args) as server:
        server.waitBound(tcp=[tcp, http], udp=[udp])
        assert get(http, "/readyz") == (200, b"ready\n")
        assert get(http, "/healthz") == (200, b"ok\n")
        assert get(http, "/metrics")[0] == 404
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while "/readyz now answers 503" not in server.log():
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.02)
        assert get(http, "/readyz") == (503, b"shutting down\n")
        assert halfCloseExchange(tcp, b"draining") == b"DRAINING"
        assert udpExchange(udp, b"draining") == b"DRAINING"
        assert server.process.wait(20) == -signal.SIGTERM
        assert "Server Shut Down." in server.log()


def test_identifyCounted() -> None:
    """
    The probe strips the identity, checks the rest and counts replies per
    instance, over TCP and UDP; the options come from the environment.
    """
    tcp, udp = freePort(), freePort(socket.SOCK_DGRAM)
    env = {
        **os.environ,
        "UPPERECHO_TCP": str(tcp),
        "UPPERECHO_UDP": str(udp),
        "UPPERECHO_IDENTIFY": "true",
        "POD_NAME": "echo-e2e-0",
    }
    with Twistd([], env=env) as server:
        server.waitBound(tcp=[tcp], udp=[udp])
        for extra in (["--udp"], [], ["--new-connection"]):
            port = str(udp if extra == ["--udp"] else tcp)
            args = ["--identify", "--json", "-c", "3", "-i", "0.05", *extra]
            result = probe(*args, "127.0.0.1", port)
            assert result.returncode == 0, result.stderr
            obj = json.loads(result.stdout)
            assert (obj["received"], obj["instances"]) == (3, {"echo-e2e-0": 3})
        plain = probe("-c", "1", "127.0.0.1", str(tcp))
        assert plain.returncode == 1
