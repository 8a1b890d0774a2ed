"""
Prometheus metrics: the collector reads the counters the services keep, and
C{twistd upperecho --metrics ENDPOINT} serves them over real HTTP.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import (
    Twistd,
    freePort,
    freePorts,
    runTwistd,
    udpExchange,
)
from upperecho.metrics import UpperEchoCollector
from upperecho.tap import Options
from upperecho.tcp import UpperEchoFactory
from upperecho.transform import upper
from upperecho.udp import UpperEchoDatagramProtocol

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """
    Prometheus text as C{{(sample name, sorted labels): value}}.
    """
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def tcp(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("service", "tcp"),))


def udp(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("service", "udp"),))


def drop(service: str, reason: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("upperecho_drops_total", (("reason", reason), ("service", service)))


class CollectorTests(SynchronousTestCase):
    """
    L{UpperEchoCollector} against protocols on fake transports.
    """

    def test_counters(self) -> None:
        """
        Connections, bytes (of open and of closed connections), datagrams
        and drops appear with their C{service} and C{reason} labels.
        """
        clock = Clock()
        factory = UpperEchoFactory(maxConnections=2, idleTimeout=0, clock=clock)
        first = factory.buildProtocol(None)
        second = factory.buildProtocol(None)
        assert first is not None and second is not None
        first.makeConnection(StringTransport())
        second.makeConnection(StringTransport())
        self.assertIsNone(factory.buildProtocol(None))
        first.dataReceived(b"stra\xc3\x9fe")
        second.dataReceived(b"abc")
        first.connectionLost()
        datagram = UpperEchoDatagramProtocol(rate=0, clock=clock)
        datagram.makeConnection(FakeDatagramTransport())
        datagram.datagramReceived(b"hi", ("127.0.0.1", 40000))
        datagram.datagramReceived(b"hi", ("127.0.0.1", 53))

        registry = CollectorRegistry()
        registry.register(UpperEchoCollector(factory, datagram))
        samples = parse(generate_latest(registry).decode())

        self.assertEqual(samples[tcp("upperecho_connections_open")], 1)
        self.assertEqual(samples[tcp("upperecho_connections_total")], 2)
        self.assertEqual(samples[tcp("upperecho_received_bytes_total")], 7 + 3)
        self.assertEqual(samples[tcp("upperecho_sent_bytes_total")], 7 + 3)
        self.assertEqual(samples[drop("tcp", "max-connections")], 1)
        self.assertEqual(samples[drop("tcp", "idle-timeout")], 0)
        self.assertEqual(samples[udp("upperecho_received_datagrams_total")], 2)
        self.assertEqual(samples[udp("upperecho_sent_datagrams_total")], 1)
        self.assertEqual(samples[drop("udp", "loop-guard")], 1)

    def test_onlyUDP(self) -> None:
        """
        Without a TCP service there are no TCP samples, and no error.
        """
        registry = CollectorRegistry()
        registry.register(UpperEchoCollector(None, UpperEchoDatagramProtocol()))
        samples = parse(generate_latest(registry).decode())
        self.assertNotIn(tcp("upperecho_connections_total"), samples)
        self.assertEqual(samples[udp("upperecho_received_datagrams_total")], 0)


class OptionsTests(SynchronousTestCase):
    """
    C{--metrics} mistakes are usage errors.
    """

    def test_badEndpoint(self) -> None:
        """
        A malformed endpoint names the option and the value.
        """
        e = self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--metrics", "bogus:9100"]
        )
        self.assertIn("--metrics bogus:9100", str(e))

    def test_notInstalled(self) -> None:
        """
        Without prometheus-client the message says how to install it.
        """
        saved: Any = sys.modules.get("prometheus_client")
        sys.modules["prometheus_client"] = None  # type: ignore[assignment]
        self.addCleanup(sys.modules.__setitem__, "prometheus_client", saved)
        e = self.assertRaises(
            usage.UsageError, Options().parseOptions, ["--metrics", "tcp:9100"]
        )
        self.assertIn("pip install 'prometheus-client'", str(e))


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
