#!/usr/bin/env python3
"""
What fair-share admission costs per accepted connection, at 10,000 idle
connections (and at 1,000 and 100,000, to show that it does not grow).

In one process, with no sockets: an L{UpperEchoFactory} at its
--max-connections limit, full of idle connections on StringTransports, then
ACCEPTS more connections timed one by one (build the protocol, connect it,
and close what it evicted), for three cases:

  below     one slot below the limit: admission, no eviction;
  evict     every slot held, the newcomer's source holds fewer: the largest
            holder's longest-silent connection is closed for it;
  refuse    every slot held, the newcomer's source is the largest holder.

Every case also runs one idle sweep (the idle timeout's timer, which feeds
the fair share's order) over the full table, reported separately: it runs
every few seconds, never per accept.

  python3 bench/admission.py             # 10,000 connections
  python3 bench/admission.py 1000 100000 # several sizes

Prints microseconds per accept (median of 5 rounds).
"""

from __future__ import annotations

import statistics
import sys
import time

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol

ACCEPTS = 2000
ROUNDS = 5


def peer(i: int, source: int) -> IPv4Address:
    return IPv4Address("TCP", f"10.{source >> 8 & 255}.{source & 255}.1", i)


#: protocols whose connection was aborted, for L{closeAborted}
aborted: list[UpperEchoProtocol] = []


class Transport(StringTransport):
    """
    A L{StringTransport} that remembers its protocol when aborted, as the
    reactor remembers which connection to call C{connectionLost} on.
    """

    proto: UpperEchoProtocol

    def abortConnection(self) -> None:
        super().abortConnection()
        aborted.append(self.proto)


def connect(factory: UpperEchoFactory, addr: IPv4Address) -> UpperEchoProtocol | None:
    proto = factory.buildProtocol(addr)
    if proto is None:
        return None
    assert isinstance(proto, UpperEchoProtocol)
    transport = Transport(peerAddress=addr)
    transport.proto = proto
    proto.makeConnection(transport)
    return proto


def fill(size: int, sources: int) -> tuple[UpperEchoFactory, Clock]:
    """
    A factory at C{size} connections spread over C{sources} sources (the
    first holding the most), swept once so all are idle.
    """
    clock = Clock()
    factory = UpperEchoFactory(maxConnections=size, clock=clock)
    for i in range(size):
        connect(factory, peer(i, i % sources))
    clock.advance(factory.sweepInterval)
    clock.advance(factory.sweepInterval)
    return factory, clock


def closeAborted() -> None:
    """
    Deliver C{connectionLost} to what was aborted, as the reactor would.
    """
    while aborted:
        aborted.pop().connectionLost()


def timeAccepts(size: int, case: str) -> float:
    factory, _ = fill(size, sources=max(1, size // 100))
    if case == "below":
        factory.maxConnections = factory.fairShare.maxConnections = size + ACCEPTS
    newcomer = 60000 if case != "refuse" else 0
    samples = []
    for i in range(ACCEPTS):
        addr = peer(100000 + i, newcomer + i if case == "evict" else newcomer)
        start = time.perf_counter()
        proto = connect(factory, addr)
        if case == "evict":
            closeAborted()
        samples.append(time.perf_counter() - start)
        if case == "below":
            assert proto is not None
        elif case == "evict":
            assert proto is not None and factory.evicted == i + 1
        else:
            assert proto is None
    assert len(factory.fairShare) <= factory.maxConnections
    return statistics.median(samples) * 1e6


def timeSweep(size: int) -> float:
    factory, clock = fill(size, sources=max(1, size // 100))
    for proto in list(factory.connections)[::2]:
        proto.dataReceived(b"x")
    start = time.perf_counter()
    clock.advance(factory.sweepInterval)
    return (time.perf_counter() - start) * 1e6


def main(sizes: list[int]) -> None:
    print(f"{'connections':>11} {'below':>8} {'evict':>8} {'refuse':>8} {'sweep':>10}")
    for size in sizes:
        row = [
            statistics.median(timeAccepts(size, case) for _ in range(ROUNDS))
            for case in ("below", "evict", "refuse")
        ]
        sweep = statistics.median(timeSweep(size) for _ in range(ROUNDS))
        print(
            f"{size:>11,} {row[0]:>7.1f}u {row[1]:>7.1f}u {row[2]:>7.1f}u"
            f" {sweep / 1000:>8.2f}ms"
        )
    print("(u: microseconds per accept, median; sweep: one pass, half active)")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10000])
