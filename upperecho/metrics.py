# -*- test-case-name: tests.unit.test_metrics,tests.integration.test_metrics -*-
"""
Prometheus metrics for upperecho (C{--metrics ENDPOINT}).

Nothing is counted for the metrics' sake: L{UpperEchoCollector} reads, at
scrape time, the counters the factory, its protocols and the datagram
protocol keep anyway, so a request costs the same with metrics on or off.
The text is served at C{/metrics} by C{twisted.web} on any Twisted server
endpoint, in the same reactor thread as the echo services (L{upperecho.web}).

Built on C{prometheus-client}, a dependency of upperecho.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from twisted.web.resource import Resource
from twisted.web.server import Request

from upperecho.tcp import UpperEchoFactory
from upperecho.udp import UpperEchoDatagramProtocol

__all__ = [
    "MetricsResource",
    "UpperEchoCollector",
    "metricsRegistry",
    "metricsResource",
]


#: every metric: its name after C{upperecho_}, its kind, its help text, and
#: its labels after C{service}
_FAMILIES: tuple[tuple[Any, ...], ...] = (
    ("connections_open", GaugeMetricFamily, "TCP connections open now."),
    ("connections", CounterMetricFamily, "TCP connections accepted since start."),
    (
        "received_bytes",
        CounterMetricFamily,
        "Stream bytes received (TCP, TLS, UNIX, PROXY: after the header).",
    ),
    (
        "sent_bytes",
        CounterMetricFamily,
        "Stream bytes sent (uppercased; may differ in length from received).",
    ),
    ("received_datagrams", CounterMetricFamily, "UDP datagrams received."),
    (
        "sent_datagrams",
        CounterMetricFamily,
        "UDP replies sent (or handed to the impairment).",
    ),
    (
        "drops",
        CounterMetricFamily,
        "Connections closed or datagrams left unanswered, by reason.",
        "reason",
    ),
)


class UpperEchoCollector(Collector):
    """
    The upperecho counters, as Prometheus metrics, read when scraped.

    Every metric has a C{service} label (C{tcp} or C{udp}); drops also have
    a C{reason}: C{max-connections}, C{per-source} (refused by
    C{--max-connections-per-source}), C{evicted} (closed to make room for a
    smaller source), C{untrusted-proxy} (not in C{--proxy-from}) and
    C{idle-timeout} for TCP, and the datagram protocol's own reasons
    (C{loop-guard}, C{rate-limit}, C{oversize}, C{byte-rate},
    C{send-error} ...) for UDP.

    @ivar factory: the TCP factory, or C{None} without a TCP service.
    @ivar datagram: the UDP protocol, or C{None} without a UDP service.
    """

    def __init__(
        self,
        factory: UpperEchoFactory | None,
        datagram: UpperEchoDatagramProtocol | None,
    ) -> None:
        self.factory = factory
        self.datagram = datagram

    def collect(self) -> Iterator[Metric]:
        families = {
            name: kind(f"upperecho_{name}", doc, labels=["service", *labels])
            for name, kind, doc, *labels in _FAMILIES
        }
        opened = families["connections_open"]
        total = families["connections"]
        received = families["received_bytes"]
        sent = families["sent_bytes"]
        datagramsIn = families["received_datagrams"]
        datagramsOut = families["sent_datagrams"]
        drops = families["drops"]
        factory = self.factory
        if factory is not None:
            conns = list(factory.connections)
            opened.add_metric(["tcp"], len(conns))
            total.add_metric(["tcp"], factory.connectionsTotal)
            received.add_metric(
                ["tcp"], factory.bytesInClosed + sum(p.bytesIn for p in conns)
            )
            sent.add_metric(
                ["tcp"], factory.bytesOutClosed + sum(p.bytesOut for p in conns)
            )
            drops.add_metric(["tcp", "max-connections"], factory.refused)
            drops.add_metric(["tcp", "per-source"], factory.refusedPerSource)
            drops.add_metric(["tcp", "evicted"], factory.evicted)
            drops.add_metric(["tcp", "untrusted-proxy"], factory.refusedProxy)
            drops.add_metric(["tcp", "idle-timeout"], factory.idleClosed)
        datagram = self.datagram
        if datagram is not None:
            datagramsIn.add_metric(["udp"], datagram.datagramsIn)
            datagramsOut.add_metric(["udp"], datagram.datagramsOut)
            for reason, count in sorted(datagram.drops.items()):
                drops.add_metric(["udp", reason], count)
        yield from families.values()


def metricsRegistry(
    factory: UpperEchoFactory | None, datagram: UpperEchoDatagramProtocol | None
) -> CollectorRegistry:
    """
    A registry of the upperecho counters and the process's own (CPU seconds,
    resident memory, open file descriptors), so that a client that makes the
    server buffer shows up as memory.
    """
    registry = CollectorRegistry()
    registry.register(UpperEchoCollector(factory, datagram))
    ProcessCollector(registry=registry)
    return registry


class MetricsResource(Resource):
    """
    The Prometheus text exposition of C{registry}, rendered synchronously:
    collecting reads a few integers, so it needs no thread (unlike
    C{prometheus_client.twisted.MetricsResource}, a WSGI resource on the
    reactor's thread pool).
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, contentType = choose_encoder(accept.decode() if accept else "")
        request.setHeader(b"Content-Type", contentType.encode())
        body: bytes = encoder(self.registry)
        return body


def metricsResource(
    factory: UpperEchoFactory | None, datagram: UpperEchoDatagramProtocol | None
) -> MetricsResource:
    """
    C{/metrics} for these services, to put in the C{--metrics} site's tree
    (L{upperecho.web}).
    """
    return MetricsResource(metricsRegistry(factory, datagram))
