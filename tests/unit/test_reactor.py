"""
Tests for L{upperecho.reactor}: the lean dispatch does what Twisted's
epoll reactor does (same log context while a selectable runs, same logging
and disconnection when it raises), uses only private names that are there,
and falls back to Twisted's own C{doPoll} when they are not.

Each scenario runs on L{UpperEchoReactor} and on Twisted's L{EPollReactor},
and the two are compared.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.error import ConnectionDone
from twisted.python import context, log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from upperecho._compat import REACTOR_ATTRIBUTES
from upperecho.reactor import (
    CONTEXTS_KEPT,
    UpperEchoReactor,
    installIfUnchosen,
    leanDispatchAvailable,
)

PREFIX = "PipeProtocol,7,192.0.2.1"


class PipeReader(FileDescriptor):
    """
    The read end of a pipe, recording the log context it is called in.
    """

    def __init__(self, reactor: Any, fd: int, action: Callable[[], object]) -> None:
        super().__init__(reactor)
        self.fd = fd
        self.action = action
        self.contexts: list[dict[str, Any]] = []
        self.lost: list[type[BaseException] | None] = []

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return PREFIX

    def doRead(self) -> object:
        os.read(self.fd, 100)
        self.contexts.append(dict(context.get(log.ILogContext)))
        return self.action()

    def connectionLost(self, reason: Failure) -> None:
        self.lost.append(reason.type)
        FileDescriptor.connectionLost(self, reason)


class Scenario:
    """
    One reactor, one pipe registered for reading, the legacy log events.
    """

    def __init__(
        self, case: SynchronousTestCase, kind: type[EPollReactor], action: Any
    ) -> None:
        self.reactor = kind()
        case.addCleanup(self.close)
        self.r, self.w = os.pipe()
        self.reader = PipeReader(self.reactor, self.r, action)
        self.events: list[dict[str, Any]] = []
        log.addObserver(self.events.append)
        case.addCleanup(log.removeObserver, self.events.append)

    def run(self) -> None:
        self.reactor.addReader(self.reader)
        os.write(self.w, b"x")
        before = context.get(log.ILogContext)
        self.reactor.doPoll(0)
        # the context is what it was: the pushed one is gone
        assert context.get(log.ILogContext) is before

    def logged(self) -> list[tuple[Any, ...]]:
        return [
            (e.get("system"), e.get("isError"), getattr(e.get("failure"), "type", None))
            for e in self.events
        ]

    def close(self) -> None:
        self.reactor.removeAll()
        self.reactor._poller.close()
        for fd in (self.r, self.w):
            os.close(fd)


class LeanDispatchTests(SynchronousTestCase):
    def both(self, action: Any) -> tuple[Scenario, Scenario]:
        ours = Scenario(self, UpperEchoReactor, action)
        assert isinstance(ours.reactor, UpperEchoReactor)
        self.assertTrue(ours.reactor.lean)
        stock = Scenario(self, EPollReactor, action)
        ours.run()
        stock.run()
        return ours, stock

    def test_privateNames(self) -> None:
        """
        Every private name the lean dispatch reads is there in this Twisted.
        """
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        for name in REACTOR_ATTRIBUTES:
            self.assertTrue(hasattr(reactor, name), name)
        tracker = context.theContextTracker
        self.assertIsInstance(tracker, context.ThreadedContextTracker)
        self.assertIsInstance(tracker.currentContext().contexts, list)
        self.assertTrue(leanDispatchAvailable(reactor))

    def test_sameContext(self) -> None:
        """
        While a selectable reads, the log context is the one Twisted sets:
        the current context with C{system} set to the selectable's prefix.
        """
        ours, stock = self.both(lambda: None)
        self.assertEqual(ours.reader.contexts, stock.reader.contexts)
        self.assertEqual(ours.reader.contexts[0]["system"], PREFIX)
        self.assertEqual(ours.reader.lost, [])

    def test_contextFollowsBase(self) -> None:
        """
        The context pushed for a selectable is rebuilt when the context
        beneath it changes (a pass run inside another context): what the
        selectable sees is always that context with its own C{system}.
        """
        s = Scenario(self, UpperEchoReactor, lambda: None)
        s.run()
        s.reactor.addReader(s.reader)
        os.write(s.w, b"x")
        outer = {log.ILogContext: {"system": "outer", "extra": 1}}
        context.call(outer, s.reactor.doPoll, 0)
        self.assertEqual(s.reader.contexts[1], {"system": PREFIX, "extra": 1})
        s.reactor.addReader(s.reader)
        os.write(s.w, b"x")
        s.reactor.doPoll(0)
        self.assertEqual(s.reader.contexts[2], s.reader.contexts[0])
        self.assertNotIn("extra", s.reader.contexts[2])

    def test_contextsBounded(self) -> None:
        """
        The contexts kept for reuse are at most L{CONTEXTS_KEPT}, however
        many selectables (log prefixes) there have been.
        """
        s = Scenario(self, UpperEchoReactor, lambda: None)
        assert isinstance(s.reactor, UpperEchoReactor)
        for i in range(CONTEXTS_KEPT + 10):
            s.reader.logPrefix = lambda i=i: f"P,{i},192.0.2.1"  # type: ignore[method-assign,misc]
            s.run()
            self.assertLessEqual(len(s.reactor._contexts), CONTEXTS_KEPT)
        self.assertEqual(
            [c["system"] for c in s.reader.contexts[-2:]],
            [f"P,{CONTEXTS_KEPT + 8},192.0.2.1", f"P,{CONTEXTS_KEPT + 9},192.0.2.1"],
        )

    def test_tracebackNamesConnection(self) -> None:
        """
        An exception in C{doRead} is logged with the selectable's prefix as
        C{system}, and the selectable is disconnected, as by Twisted.
        """

        def fail() -> None:
            raise ValueError("boom")

        ours, stock = self.both(fail)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)
        self.assertEqual(ours.logged(), stock.logged())
        self.assertIn((PREFIX, 1, ValueError), ours.logged())
        self.assertEqual(ours.reader.lost, stock.reader.lost)
        self.assertEqual(ours.reader.lost, [ValueError])

    def test_readSaysDone(self) -> None:
        """
        A C{doRead} that returns C{ConnectionDone} (the peer closed) gets
        the selectable disconnected as Twisted does it: C{connectionLost}
        with C{ConnectionDone}, nothing logged.
        """
        ours, stock = self.both(ConnectionDone)
        self.assertEqual(ours.reader.lost, stock.reader.lost)
        self.assertEqual(ours.reader.lost, [ConnectionDone])
        self.assertEqual(ours.logged(), stock.logged())
        self.assertNotIn(ours.reader, ours.reactor.getReaders())

    def test_closedDescriptor(self) -> None:
        """
        A registered selectable whose C{fileno()} is already C{-1} is not
        read, and is disconnected as Twisted does it.
        """
        results = []
        for kind in (UpperEchoReactor, EPollReactor):
            s = Scenario(self, kind, lambda: None)
            s.reactor.addReader(s.reader)
            os.write(s.w, b"x")
            s.reader.fileno = lambda: -1  # type: ignore[method-assign]
            s.reactor.doPoll(0)
            results.append((s.reader.contexts, s.reader.lost, s.logged()))
        self.assertEqual(results[0], results[1])
        self.assertEqual(results[0][0], [])
        self.assertEqual(len(results[0][1]), 1)

    def test_buggyLogPrefix(self) -> None:
        """
        A C{logPrefix} that raises is logged as Twisted logs it, and the
        read still happens.
        """
        ours = Scenario(self, UpperEchoReactor, lambda: None)
        stock = Scenario(self, EPollReactor, lambda: None)
        for s in (ours, stock):
            s.reader.logPrefix = lambda: str(1 / 0)  # type: ignore[method-assign]
            s.run()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(ours.logged(), stock.logged())
        self.assertEqual(ours.reader.contexts, stock.reader.contexts)
        self.assertEqual(ours.reader.contexts[0]["system"], "(buggy logPrefix method)")

    def test_fallback(self) -> None:
        """
        With a context tracker other than Twisted's own, the reactor uses
        Twisted's C{doPoll}, and reads still happen.
        """
        saved = context.theContextTracker
        context.installContextTracker(context.ContextTracker())
        self.addCleanup(context.installContextTracker, saved)
        s = Scenario(self, UpperEchoReactor, lambda: None)
        assert isinstance(s.reactor, UpperEchoReactor)
        self.assertFalse(s.reactor.lean)
        s.run()
        self.assertEqual(s.reader.contexts[0]["system"], PREFIX)

    def test_fallbackDoesNotReadSoon(self) -> None:
        """
        On Twisted's own C{doPoll}, C{readSoon} does nothing: the next poll
        reports the selectable, as usual.
        """
        saved = context.theContextTracker
        context.installContextTracker(context.ContextTracker())
        self.addCleanup(context.installContextTracker, saved)
        first = Scenario(self, UpperEchoReactor, lambda: None)
        assert isinstance(first.reactor, UpperEchoReactor)
        reactor = first.reactor
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.addCleanup(reactor.removeAll)
        second = PipeReader(reactor, r, lambda: None)
        reactor.addReader(second)

        def soon() -> None:
            os.write(w, b"y")
            reactor.readSoon(second)

        first.reader.action = soon
        first.run()
        self.assertEqual(second.contexts, [])
        reactor.doPoll(0)
        self.assertEqual(len(second.contexts), 1)

    def test_missingReactorName(self) -> None:
        """
        A reactor without one of the names is not dispatched leanly.
        """

        class Other:
            _poller = _selectables = None

        self.assertFalse(leanDispatchAvailable(Other()))

    def test_notOverAnInstalledReactor(self) -> None:
        """
        Where a reactor is installed already, nothing is replaced.
        """
        from twisted.internet import reactor

        self.assertFalse(installIfUnchosen())
        from twisted.internet import reactor as after

        self.assertIs(after, reactor)


class ReadSoonTests(SynchronousTestCase):
    """
    L{UpperEchoReactor.readSoon}: a selectable read later in the pass being
    dispatched, as if the poll had reported it, when that pass had nothing
    else to do.
    """

    def setUp(self) -> None:
        self.first = Scenario(self, UpperEchoReactor, lambda: None)
        assert isinstance(self.first.reactor, UpperEchoReactor)
        self.reactor: UpperEchoReactor = self.first.reactor
        self.second = self.pipe("Second,8,192.0.2.2")

    def pipe(self, prefix: str) -> PipeReader:
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        # (cleanups run last first: unregistered before it is closed)
        self.addCleanup(self.reactor.removeAll)
        reader = PipeReader(self.reactor, r, lambda: None)
        reader.logPrefix = lambda: prefix  # type: ignore[method-assign]
        reader.w = w  # type: ignore[attr-defined]
        self.reactor.addReader(reader)
        return reader

    def soon(self, reader: PipeReader) -> Callable[[], None]:
        def action() -> None:
            os.write(reader.w, b"y")  # type: ignore[attr-defined]
            self.reactor.readSoon(reader)

        return action

    def test_readInSamePass(self) -> None:
        """
        Asked during the only event of a pass, the selectable is read in
        that same C{doPoll}, in its own log context.
        """
        self.first.reader.action = self.soon(self.second)
        self.first.run()
        self.assertEqual(len(self.first.reader.contexts), 1)
        self.assertEqual(
            [c["system"] for c in self.second.contexts], ["Second,8,192.0.2.2"]
        )
        self.assertIsNone(self.reactor._batch)

    def test_errorLoggedAndDisconnected(self) -> None:
        """
        An exception in a read asked for this way is logged with that
        selectable's prefix, and it is disconnected, as for any event.
        """

        def fail() -> None:
            raise ValueError("boom")

        self.second.action = fail
        self.first.reader.action = self.soon(self.second)
        self.first.run()
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertIn(("Second,8,192.0.2.2", 1, ValueError), self.first.logged())
        self.assertEqual(self.second.lost, [ValueError])

    def test_notWhenBusy(self) -> None:
        """
        When the pass has other events, the selectable is left to the poll.
        """
        third = self.pipe("Third,9,192.0.2.3")
        os.write(third.w, b"z")  # type: ignore[attr-defined]
        self.first.reader.action = self.soon(self.second)
        self.first.run()
        self.assertEqual(len(third.contexts), 1)
        self.assertEqual(self.second.contexts, [])
        self.reactor.doPoll(0)
        self.assertEqual(len(self.second.contexts), 1)

    def test_notWhenNotReading(self) -> None:
        """
        A selectable that stopped reading before its turn (paused, say, but
        still registered for writing) is not read.
        """

        def soonThenPause() -> None:
            self.soon(self.second)()
            self.reactor.addWriter(self.second)
            self.reactor.removeReader(self.second)

        self.first.reader.action = soonThenPause
        self.first.run()
        self.assertEqual(self.second.contexts, [])

    def test_notBetweenPasses(self) -> None:
        """
        Outside a pass nothing is added: the next poll reports the
        selectable once, as usual.
        """
        self.soon(self.second)()
        self.reactor.doPoll(0)
        self.assertEqual(len(self.second.contexts), 1)
