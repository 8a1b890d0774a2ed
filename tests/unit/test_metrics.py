"""
Tests for L{upperecho.metrics}: the collector and the C{--metrics} option,
without a network.
"""

from __future__ import annotations

import sys
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.metrics import UpperEchoCollector
from upperecho.tap import Options
from upperecho.tcp import UpperEchoFactory
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

    def test_fairShareCounters(self) -> None:
        """
        Evictions, per-source refusals, untrusted-proxy refusals and UDP
        byte-budget drops are counted.
        """
        clock = Clock()
        factory = UpperEchoFactory(maxConnections=2, maxPerSource=2, clock=clock)
        for port in (1, 2, 3):
            proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.7", port))
            if proto is not None:
                proto.makeConnection(StringTransport())
        proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.8", 1))
        assert proto is not None
        proto.makeConnection(StringTransport())
        factory.untrustedProxy(IPv4Address("TCP", "192.0.2.9", 1))
        datagram = UpperEchoDatagramProtocol(rate=0, byteRate=10, clock=clock)
        datagram.makeConnection(FakeDatagramTransport())
        datagram.datagramReceived(b"x" * 11, ("127.0.0.1", 40000))

        registry = CollectorRegistry()
        registry.register(UpperEchoCollector(factory, datagram))
        samples = parse(generate_latest(registry).decode())
        self.assertEqual(samples[drop("tcp", "per-source")], 1)
        self.assertEqual(samples[drop("tcp", "evicted")], 1)
        self.assertEqual(samples[drop("tcp", "untrusted-proxy")], 1)
        self.assertEqual(samples[drop("tcp", "max-connections")], 0)
        self.assertEqual(samples[drop("udp", "byte-rate")], 1)

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
