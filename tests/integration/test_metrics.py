"""
C{--metrics} end to end: a real C{twistd} scraped over HTTP.
"""

from __future__ import annotations

import socket
import time
import urllib.request

from tests.helpers import (
    Twistd,
    freePort,
    freePorts,
    runTwistd,
    udpExchange,
)
from tests.unit.test_metrics import Samples, drop, parse, tcp, udp
from upperecho.transform import upper


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return parse(r.read().decode())


def test_scrapeAfterTraffic() -> None:
    """
    After known TCP and UDP traffic, a scrape over HTTP reports exactly it:
    connections, bytes both ways (C{ŉ} grows to C{ʼN}), datagrams, and
    drops by the rate limit and the idle timeout; plus process metrics.
    """
    tcpPort, udpPort = freePorts()
    metricsPort = freePort()
    args = ["--tcp", str(tcpPort), "--udp", str(udpPort), "--interface", "127.0.0.1"]
    args += ["--udp-rate", "3", "--idle-timeout", "1"]
    args += ["--metrics", f"tcp:{metricsPort}:interface=127.0.0.1"]
    with Twistd(args) as t:
        t.waitBound(tcp=[tcpPort, metricsPort], udp=[udpPort])
        assert udpExchange(udpPort, b"ping") == b"PING"  # one datagram, answered
        before = _scrape(metricsPort)
        payloads = [b"hello\n", "\u0149 stra\u00dfe\n".encode(), b"x" * 100_000]
        for payload in payloads:
            with socket.create_connection(("127.0.0.1", tcpPort), timeout=10) as s:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
                assert got == upper(payload)
        idle = socket.create_connection(("127.0.0.1", tcpPort), timeout=10)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for _ in range(10):
                u.sendto(b"burst", ("127.0.0.1", udpPort))
        deadline = time.monotonic() + 10
        while True:
            samples = _scrape(metricsPort)
            if samples[udp("upperecho_received_datagrams_total")] >= 11 and (
                samples[drop("tcp", "idle-timeout")] == 1
            ):
                break
            assert time.monotonic() < deadline, samples
            time.sleep(0.1)
        assert idle.recv(10) == b""  # closed by the server for idleness
        idle.close()

    sentIn = sum(map(len, payloads))
    sentOut = sum(len(upper(p)) for p in payloads)
    assert before[tcp("upperecho_connections_total")] == 0
    assert samples[tcp("upperecho_connections_total")] == 3 + 1
    assert samples[tcp("upperecho_received_bytes_total")] == sentIn
    assert samples[tcp("upperecho_sent_bytes_total")] == sentOut == sentIn + 1
    assert samples[udp("upperecho_received_datagrams_total")] == 11
    # burst of 3 per source: the probe's reply and 2 of the 10, 8 dropped
    # (at most one more token may have refilled meanwhile)
    out = samples[udp("upperecho_sent_datagrams_total")]
    assert out in (3, 4)
    assert samples[drop("udp", "rate-limit")] == 11 - out
    assert samples[drop("udp", "loop-guard")] == 0
    assert samples[("process_resident_memory_bytes", ())] > 1 << 20


def test_metricsPortInUse() -> None:
    """
    A busy metrics port ends twistd with one line naming C{--metrics}.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runTwistd(
            ["--tcp", "0", "--udp", "0", "--metrics", f"tcp:{port}:interface=127.0.0.1"]
        )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert f"upperecho: --metrics tcp:{port}:interface=127.0.0.1: cannot listen:" in (
        result.stderr
    )
