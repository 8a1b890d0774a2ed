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

from upperecho import _compat
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


def registered(reactor: EPollReactor, fd: int) -> bool:
    """
    Whether C{fd} is registered with C{reactor}'s epoll (asked of epoll
    itself: registering it again fails if it is).
    """
    try:
        reactor._poller.register(fd, 0)
    except FileExistsError:
        return True
    reactor._poller.unregister(fd)
    return False


class RemoveTests(SynchronousTestCase):
    """
    L{UpperEchoReactor.removeReader} and C{removeWriter} leave the reactor
    and epoll as Twisted's do, for every state a descriptor can be in.
    """

    def state(self, kind: type[EPollReactor], steps: list[str]) -> tuple[Any, ...]:
        reactor = kind()
        self.addCleanup(reactor._poller.close)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.addCleanup(os.close, w)
        self.addCleanup(reactor.removeAll)
        fd = PipeReader(reactor, w, lambda: None)
        for step in steps:
            if step == "closed":
                fd.fileno = lambda: -1  # type: ignore[method-assign]
            elif step == "removeSocket" and kind is EPollReactor:
                # what UpperEchoReactor.removeSocket stands for
                reactor.removeReader(fd)
                reactor.removeWriter(fd)
            else:
                getattr(reactor, step)(fd)
        return (
            fd in reactor.getReaders(),
            fd in reactor.getWriters(),
            w in reactor._reads,
            w in reactor._writes,
            reactor._selectables.get(w) is fd,
            registered(reactor, w),
        )

    def test_sameAsTwisted(self) -> None:
        """
        Reading, writing, both, neither, and a descriptor whose C{fileno()}
        is already C{-1}: after each removal, the same registrations.
        """
        add = {"r": "addReader", "w": "addWriter"}
        cases = []
        for start in ("", "r", "w", "rw", "wr", "rr"):
            for remove in (
                [],
                ["removeReader"],
                ["removeWriter"],
                ["removeReader", "removeWriter"],
                ["removeWriter", "removeReader"],
                ["removeSocket"],
                ["closed", "removeReader", "removeWriter"],
                ["closed", "removeSocket"],
            ):
                cases.append(([add[c] for c in start] + remove, start))
        for steps, start in cases:
            ours = self.state(UpperEchoReactor, steps)
            stock = self.state(EPollReactor, steps)
            self.assertEqual(ours, stock, steps)
            if "closed" not in steps and (
                "removeSocket" in steps or len(steps) - len(start) == 2
            ):
                # both removed: nothing left, in epoll either
                self.assertEqual(ours[:2], (False, False), steps)
                self.assertFalse(ours[5], steps)

    def test_partial(self) -> None:
        """
        Removing one of reading and writing keeps the other, in epoll too.
        """
        for steps in (
            ["addReader", "addWriter", "removeReader"],
            ["addReader", "addWriter", "removeWriter"],
        ):
            ours = self.state(UpperEchoReactor, steps)
            self.assertEqual(ours, self.state(EPollReactor, steps))
            self.assertTrue(ours[5])
            kept = steps[2] == "removeWriter"
            self.assertEqual(ours[:2], (kept, not kept))

    def test_polledContinuously(self) -> None:
        """
        A descriptor epoll refuses (a regular file), which Twisted polls
        continuously instead, is removed from there.
        """
        for kind in (UpperEchoReactor, EPollReactor):
            reactor = kind()
            self.addCleanup(reactor._poller.close)
            f = open(__file__, "rb")  # noqa: SIM115 - closed by the cleanup
            self.addCleanup(f.close)
            fd = PipeReader(reactor, f.fileno(), lambda: None)
            for add, remove, listed in (
                (reactor.addReader, reactor.removeReader, reactor.getReaders),
                (reactor.addWriter, reactor.removeWriter, reactor.getWriters),
            ):
                add(fd)
                self.assertIn(fd, listed())
                self.assertNotIn(f.fileno(), reactor._selectables)
                remove(fd)
                self.assertNotIn(fd, listed())

    def test_fallback(self) -> None:
        """
        Without the lean dispatch, they are Twisted's own (and
        C{removeSocket} is Twisted's C{removeReader} and C{removeWriter}).
        """
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        reactor.lean = False
        calls: list[str] = []
        self.patch(EPollReactor, "addReader", lambda r, x: calls.append("add"))
        self.patch(EPollReactor, "removeReader", lambda r, x: calls.append("reader"))
        self.patch(EPollReactor, "removeWriter", lambda r, x: calls.append("writer"))
        reader = PipeReader(reactor, 0, lambda: None)
        reactor.addReader(reader)
        reactor.removeReader(reader)
        reactor.removeWriter(reader)
        reactor.removeSocket(reader)
        self.assertEqual(calls, ["add", "reader", "writer", "reader", "writer"])


class MainLoopTests(SynchronousTestCase):
    """
    L{UpperEchoReactor.mainLoop} runs timed calls, calls from threads and
    the stop as Twisted's main loop does, and waits as long as it would.
    """

    def runLoop(
        self, kind: type[EPollReactor], script: Callable[[Any, list[Any]], None]
    ) -> list[Any]:
        """
        Run a reactor of C{kind} until C{script} (given the reactor and a
        list to record in) stops it; the record.
        """
        reactor = kind()
        self.addCleanup(reactor._poller.close)
        record: list[Any] = []
        events: list[dict[str, Any]] = []
        log.addObserver(events.append)
        self.addCleanup(log.removeObserver, events.append)
        reactor.addSystemEventTrigger("before", "shutdown", record.append, "shutdown")
        script(reactor, record)
        reactor.callLater(5, record.append, "timed out")
        reactor.callLater(5, reactor.stop)
        reactor.run(installSignalHandlers=False)
        record.append(
            [
                e["log_format"]
                for e in events
                if e.get("log_format") == "Main loop terminated."
            ]
        )
        return record

    def both(self, script: Callable[[Any, list[Any]], None]) -> list[Any]:
        ours = self.runLoop(UpperEchoReactor, script)
        self.assertEqual(ours, self.runLoop(EPollReactor, script))
        self.assertNotIn("timed out", ours)
        return ours

    def test_timedCalls(self) -> None:
        """
        Calls due now, later, cancelled, added by a call, and from a
        thread run in Twisted's order; the stop fires the shutdown.
        """

        def script(reactor: Any, record: list[Any]) -> None:
            reactor.callLater(0.02, record.append, "later")
            cancelled = reactor.callLater(0.01, record.append, "cancelled")
            cancelled.cancel()
            reactor.callLater(0, record.append, "now")

            def chain() -> None:
                record.append("chain")
                reactor.callLater(0.01, record.append, "chained")
                reactor.callLater(0.05, reactor.stop)

            reactor.callLater(0.03, chain)
            reactor.callFromThread(record.append, "thread")

        self.assertEqual(
            self.both(script),
            [
                "thread",
                "now",
                "later",
                "chain",
                "chained",
                "shutdown",
                ["Main loop terminated."],
            ],
        )

    def test_waits(self) -> None:
        """
        Each pass waits what C{ReactorBase.timeout} says: until the first
        timed call, or without end when there is none.
        """

        def script(reactor: Any, record: list[Any]) -> None:
            poll = reactor.doIteration

            def doIteration(t: float | None) -> None:
                # what Twisted's loop would wait, asked after the timed
                # calls ran (as its loop asks)
                expected = reactor.running and reactor.timeout()
                if t is None or expected is None or t is False:
                    record.append("same" if t is expected else (t, expected))
                else:
                    record.append("same" if abs(t - expected) < 0.01 else (t, expected))
                poll(t)

            reactor.doIteration = doIteration
            reactor.callLater(0.05, reactor.stop)

        record = self.both(script)
        self.assertEqual(set(record[:-1]), {"same", "shutdown"})

    def test_errorInPass(self) -> None:
        """
        An error that escapes a pass is logged as Twisted logs it, and the
        loop goes on.
        """

        def script(reactor: Any, record: list[Any]) -> None:
            poll = reactor.doIteration
            failed: list[int] = []

            def doIteration(t: float | None) -> None:
                if not failed:
                    failed.append(1)
                    raise ZeroDivisionError()
                poll(t)

            reactor.doIteration = doIteration
            reactor.callLater(0.01, record.append, "went on")
            reactor.callLater(0.02, reactor.stop)

        self.assertEqual(self.both(script)[0], "went on")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_manyCancelled(self) -> None:
        """
        Cancelled calls are dropped from the queue when Twisted drops them.
        """

        def script(reactor: Any, record: list[Any]) -> None:
            calls = [reactor.callLater(10 + i, lambda: None) for i in range(100)]
            for call in calls[:80]:
                call.cancel()

            def look() -> None:
                record.append(len(reactor._pendingTimedCalls))
                reactor.stop()

            reactor.callLater(0.01, look)
            reactor.callLater(0.05, lambda: None)

        self.assertLess(self.both(script)[0], 30)

    def test_fallback(self) -> None:
        """
        Where the code it stands for is not the code audited, the loop is
        Twisted's own, and runs as well.
        """
        self.patch(
            _compat,
            "MAIN_LOOP_CODE",
            {"twisted.internet.base:ReactorBase.mainLoop": "0" * 16},
        )
        _compat.mainLoopCodeUnchanged.cache_clear()
        self.addCleanup(_compat.mainLoopCodeUnchanged.cache_clear)
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        self.assertIsNone(reactor._loopParts)
        used: list[str] = []
        real = EPollReactor.mainLoop

        def stock(r: Any) -> None:
            used.append("twisted")
            real(r)

        self.patch(EPollReactor, "mainLoop", stock)
        reactor.callLater(0, reactor.stop)
        reactor.run(installSignalHandlers=False)
        self.assertEqual(used, ["twisted"])

    def test_otherHandler(self) -> None:
        """
        Where Twisted's main-loop handler is not the kind audited, the loop
        is Twisted's own.
        """
        from contextlib import nullcontext

        from twisted.internet import base

        self.patch(base, "_topHandler", nullcontext())
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        self.assertIsNone(reactor._loopParts)

    def test_partsFound(self) -> None:
        """
        In this Twisted, the loop is upperecho's: every name it reads is
        there and the code it stands for is the code audited.
        """
        reactor = UpperEchoReactor()
        self.addCleanup(reactor._poller.close)
        self.assertIsNotNone(reactor._loopParts)
        self.assertIsNotNone(_compat.mainLoopParts(reactor))
        self.assertIsNone(_compat.mainLoopParts(object()))
