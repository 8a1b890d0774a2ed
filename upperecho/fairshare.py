# -*- test-case-name: tests.unit.test_fairshare -*-
"""
Fair-share admission: who holds the TCP connection slots, by source, and
who gives one up when they are all taken.

A plain limit (C{--max-connections}) lets one source that opens every slot
and keeps it lock everyone else out.  Here, when every slot is taken, a new
connection from a source holding I{fewer} connections than the largest
holder is admitted, and that holder's connection silent longest is closed
to make room; a connection from the largest holder (or a source tied with
it) is refused, as before.  So one source may use every slot while nobody
else wants one (a load test from one machine), and none can lock another
out.

Cost, at 10,000 connections: admitting, adding and removing a connection
are a few dictionary operations (O(1)): each source's connections are kept
in an ordered dictionary, and the sources are kept in buckets by how many
they hold, so the largest holder is found without a scan.  A read costs
nothing here: the connection already sets a flag on every read, and the
factory's periodic sweep (the idle timeout's) moves each connection it saw
active to the back of its source's order.  The front of that order is then
the connection seen active longest ago; the eviction skips (and moves back)
any that read since the last sweep, so the victim is the longest-silent one
to within one sweep interval, and the skipping is paid for by reads that
happened anyway.

Memory: a connection's source is kept on the connection itself (its
C{source} attribute, which the fair share sets), and the fair share is also
the factory's list of open connections, so each connection costs one
entry in one ordered dictionary here and nothing elsewhere (a second table
from connection to source, and a set of open connections beside this one,
cost about 100 bytes per connection).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["MAX_CONNECTIONS", "PER_SOURCE", "FairShare", "Held"]

#: refusal reasons, as counted and logged
MAX_CONNECTIONS = "max-connections"
PER_SOURCE = "per-source"


class Held(Hashable, Protocol):
    """
    What the fair share needs of a connection: hashable, and a C{source}
    attribute it sets when the connection is added or moved.
    """

    source: str


C = TypeVar("C", bound=Held)


class FairShare(Generic[C]):
    """
    The connections held, by source, against C{maxConnections} slots and a
    C{perSource} cap (0: none).  Iterating gives every connection held.

    @ivar active: tells whether a connection has read since the last sweep.
    """

    def __init__(
        self, maxConnections: int, perSource: int, active: Callable[[C], bool]
    ) -> None:
        self.maxConnections = maxConnections
        self.perSource = perSource
        self.active = active
        # source -> its connections, the one seen active longest ago first
        self._held: dict[str, OrderedDict[C, None]] = {}
        # n -> the sources holding n connections (a dict as an ordered set)
        self._bySize: dict[int, dict[str, None]] = {}
        self._largest = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[C]:
        for conns in self._held.values():
            yield from conns

    def __contains__(self, conn: object) -> bool:
        return self._holding(conn) is not None

    def _holding(self, conn: object) -> OrderedDict[C, None] | None:
        """
        The connections of C{conn}'s source, if C{conn} is among them.
        """
        conns = self._held.get(getattr(conn, "source", None))  # type: ignore[arg-type]
        return conns if conns is not None and conn in conns else None

    def held(self, source: str) -> int:
        """
        How many connections C{source} holds.
        """
        conns = self._held.get(source)
        return len(conns) if conns else 0

    def largest(self) -> int:
        """
        How many connections the largest holder holds.
        """
        return self._largest

    def admit(self, source: str) -> tuple[str | None, C | None]:
        """
        Whether a new connection from C{source} may be added.

        @return: the refusal reason (L{PER_SOURCE}, L{MAX_CONNECTIONS}) or
            C{None}, and the connection that must be closed to make room for
            it (already forgotten here), or C{None}.
        """
        mine = self.held(source)
        if self.perSource and mine >= self.perSource:
            return PER_SOURCE, None
        if self._count < self.maxConnections:
            return None, None
        if mine >= self._largest:
            # the largest holder itself, or tied with it
            return MAX_CONNECTIONS, None
        victim = self._longestSilent(next(iter(self._bySize[self._largest])))
        self.remove(victim)
        return None, victim

    def add(self, conn: C, source: str) -> None:
        """
        C{conn} from C{source} was admitted: its C{source} is set.
        """
        if self._holding(conn) is not None:
            return
        conn.source = source
        self._count += 1
        conns = self._held.get(source)
        if conns is None:
            conns = self._held[source] = OrderedDict()
        n = len(conns)
        conns[conn] = None
        self._resize(source, n, n + 1)

    def remove(self, conn: C) -> bool:
        """
        C{conn} is gone (or going): forget it; C{False} if it was not held.
        """
        conns = self._holding(conn)
        if conns is None:
            return False
        source = conn.source
        self._count -= 1
        n = len(conns)
        del conns[conn]
        if n == 1:
            del self._held[source]
        self._resize(source, n, n - 1)
        return True

    def move(self, conn: C, source: str) -> str | None:
        """
        C{conn}'s source turned out to be C{source} (a PROXY header named
        the client): count it there (its C{source} is set, held or not).

        @return: L{PER_SOURCE} if that source already holds its cap (the
            connection is then forgotten, and must be closed), else C{None}.
        """
        if conn.source == source:
            return None
        held = self.remove(conn)
        conn.source = source
        if not held:
            # no longer held (closed to make room)
            return None
        if self.perSource and self.held(source) >= self.perSource:
            return PER_SOURCE
        self.add(conn, source)
        return None

    def seen(self, conn: C) -> None:
        """
        The sweep saw C{conn} active: it goes to the back of its source's
        order.
        """
        conns = self._holding(conn)
        if conns is not None:
            conns.move_to_end(conn)

    def _resize(self, source: str, old: int, new: int) -> None:
        bySize = self._bySize
        if old:
            bucket = bySize[old]
            del bucket[source]
            if not bucket:
                del bySize[old]
        if new:
            bySize.setdefault(new, {})[source] = None
        if new > self._largest or (old == self._largest and old not in bySize):
            self._largest = new

    def _longestSilent(self, source: str) -> C:
        """
        C{source}'s connection silent longest: the first in its order that
        has not read since the last sweep (each one passed over goes to the
        back), or, if all have, the first.
        """
        conns = self._held[source]
        active = self.active
        for _ in range(len(conns)):
            conn = next(iter(conns))
            if not active(conn):
                return conn
            conns.move_to_end(conn)
        return next(iter(conns))
