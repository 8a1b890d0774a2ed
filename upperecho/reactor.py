# -*- test-case-name: tests.unit.test_reactor,tests.integration.test_reactor -*-
"""
upperecho's reactor: Twisted's epoll reactor with the per-event dispatch
written out in one loop.

Twisted's epoll reactor hands every ready file descriptor to
C{log.callWithLogger(selectable, _doReadOrWrite, ...)}, which pushes a log
context naming the connection (so that a traceback from C{dataReceived}
says which connection it came from) through nine Python calls:
C{callWithLogger}, C{logPrefix}, C{log.callWithContext}, the thread-local
tracker's C{getContext} and C{callWithContext} and what they call.  On this
service that is about 1.2 us of every event (measured with C{timeit}:
1.5 us against 0.26 us for the loop below), where a whole request costs
about 13 us.

L{UpperEchoReactor.doPoll} does the same work in line: per event it calls
C{logPrefix()}, pushes the same context (C{{ILogContext: {...the current
log context..., "system": prefix}}}, built once per prefix and kept for the
next event, see L{CONTEXTS_KEPT}) on the same thread's context stack,
calls C{_doReadOrWrite}, pops it, and logs anything that escapes with
C{system} set, exactly as C{callWithLogger} does.  For the commonest event,
readable and nothing else, it takes C{_doReadOrWrite}'s own steps in line
(the C{fileno() == -1} check, skipped for a L{LeanServer}, which leaves the
reactor before its socket closes; C{doRead}; an error logged and the
selectable disconnected with C{_disconnectSelectable}).  What a protocol
sees and what is logged are unchanged.

That needs private names of Twisted (the reactor's C{_poller},
C{_selectables}, C{_doReadOrWrite} and C{_disconnectSelectable}, the context tracker's per-thread
C{ContextTracker.contexts}), so, as with L{upperecho.tcp.eagerSocket}, they
are listed in L{upperecho._compat} and checked once when the reactor is made
(L{leanDispatchAvailable}); where
any is missing, C{doPoll} is Twisted's own: a Twisted that changes its
internals costs speed, never correctness.

A connection accepted during a pass can be read in that same pass
(L{UpperEchoReactor.readSoon}): the textbook client's request is almost
always there by the time its connection is accepted, and reading it at once
saves the poll and the loop iteration that would only report it.

Its main loop (L{UpperEchoReactor.mainLoop}) skips Twisted's timed-call
step on the passes that have nothing for it, and its C{addReader},
C{removeReader} and C{removeWriter} take one call where Twisted's take two
or three, for a descriptor epoll holds (C{removeSocket}: both removals at
once, for a connection that ends); each runs Twisted's code (or its steps
in line) only where that code is the code audited
(L{upperecho._compat.MAIN_LOOP_CODE}, L{upperecho._compat.REACTOR_CODE}),
and is Twisted's own elsewhere.

Its C{listenTCP} listens with L{upperecho.port.LeanPort}, whose accept
loop and connections cost less than C{tcp.Port}'s (see L{upperecho.port});
where the private names that needs are missing (L{leanAcceptAvailable}), it
is Twisted's own C{tcp.Port}.

C{twistd upperecho} installs this reactor only when the user named none
(L{installIfUnchosen}); C{twistd --reactor NAME} always wins.
"""

from __future__ import annotations

import errno
import sys
from select import EPOLLIN, EPOLLOUT
from typing import Any

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.python import context, log
from twisted.python.log import ILogContext

from upperecho._compat import (
    leanAcceptAvailable,
    leanDispatchAvailable,
    mainLoopParts,
)
from upperecho.port import LeanPort, LeanServer

__all__ = [
    "UpperEchoReactor",
    "installIfUnchosen",
    "leanAcceptAvailable",
    "leanDispatchAvailable",
]


#: the event L{UpperEchoReactor.readSoon} adds: a read, if still reading
_READ_SOON = -1

#: the longest wait C{ReactorBase.timeout} gives: 2 ** 31 ms, what
#: C{epoll_wait} can take
_LONGEST_WAIT = 2147483

#: how many log contexts the lean dispatch keeps for reuse, by log prefix:
#: the context pushed for a connection's events is the same every time
#: (the context beneath, with C{system} set to the prefix), and building it
#: is two dictionaries per event; kept, it is one look-up.  Bounded (and
#: emptied when full), so connections that come and go, or thousands that
#: are idle, cost at most this many small dictionaries.
CONTEXTS_KEPT = 256


class UpperEchoReactor(EPollReactor):
    """
    An L{EPollReactor} whose C{doPoll} dispatches without the nested calls
    of C{log.callWithLogger}, to the same effect (see the module's
    docstring).

    @ivar lean: whether the lean dispatch is in use (L{leanDispatchAvailable}).
    @ivar _loopParts: what L{mainLoop} needs of Twisted's (its top-level
        error handler and logger), or C{None} to run Twisted's own
        (L{mainLoopParts}).
    @ivar leanAccept: whether C{listenTCP} makes L{LeanPort}s
        (L{leanAcceptAvailable}).
    """

    #: (until __init__ has checked: Twisted's own, which EPollReactor's
    #: own __init__ uses to add its waker)
    lean = False
    _loopParts: tuple[Any, Any] | None = None
    #: the events of the pass being dispatched (L{readSoon} adds to them);
    #: C{None} between passes
    _batch: list[tuple[int, int]] | None = None
    #: the log context pushed for each log prefix, while the context
    #: beneath stays C{_contextsBase} (see L{CONTEXTS_KEPT})
    _contextsBase: object = None

    def __init__(self) -> None:
        super().__init__()
        self.lean = leanDispatchAvailable(self)
        self._loopParts = mainLoopParts(self)
        self.leanAccept = leanAcceptAvailable()
        self._contexts: dict[str, dict[Any, Any]] = {}

    def readSoon(self, selectable: Any, fd: int | None = None) -> None:
        """
        Dispatch a read event for C{selectable} later in the pass now being
        dispatched, as if the poll had reported it readable: the same
        dispatch, log context and error handling as every other event, and
        only if it is still reading by then (not paused, closed or
        aborted).

        L{LeanPort} asks this for a connection it has just accepted while
        the only event of the pass was that accept: that is the textbook
        client, whose request is almost always there already (in a run of
        10,000 such connections, all but 8), and reading it now saves a
        poll and a pass of the main loop.  When the pass had other events
        too, the connection is left to the next poll, where a request that
        had not come yet costs nothing: a read that finds nothing costs a
        failed C{recv}.

        Outside a lean pass (Twisted's own C{doPoll}, or between passes)
        this does nothing, and the poll reports the connection as usual.

        @param fd: C{selectable.fileno()}, if the caller has it at hand.
        """
        batch = self._batch
        if batch is not None and len(batch) == 1:
            if fd is None:
                fd = selectable.fileno()
            batch.append((fd, _READ_SOON))

    def listenTCP(
        self,
        port: int,
        factory: Factory,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        if not self.leanAccept:
            listening: IListeningPort = super().listenTCP(
                port, factory, backlog, interface
            )
            return listening
        p = LeanPort(port, factory, backlog, interface, self)
        p.startListening()
        return p

    def addReader(self, reader: Any) -> None:
        """
        C{EPollReactor.addReader}, in one call for a descriptor new to
        epoll (every connection, once); C{_add}'s own steps.  Anything
        else (already registered for writing, or refused by epoll, which
        Twisted then polls continuously) is Twisted's, as it is.
        """
        if self.lean:
            fd = reader.fileno()
            reads: set[int] = self._reads
            if fd in reads:
                return
            if fd not in self._writes:
                try:
                    self._poller.register(fd, EPOLLIN)
                except OSError:
                    # Twisted's, which meets the same error and handles it
                    pass
                else:
                    reads.add(fd)
                    self._selectables[fd] = reader
                    return
        super().addReader(reader)

    def removeReader(self, reader: Any) -> None:
        """
        C{EPollReactor.removeReader}, in one call where C{reader} is
        registered with epoll (where it is not, or in Twisted's own
        dispatch, it is Twisted's, as it is).

        Every connection that ends stops reading, and Twisted's way there
        is three Python calls (C{removeReader}, its check that the reader
        is not polled continuously, C{_remove}); a descriptor that epoll
        holds for reading is in C{_reads}, and one polled continuously is
        not, so that one look-up answers the check.  The steps after it are
        C{_remove}'s own.  Where it is neither that nor polled continuously
        (a connection that stopped reading before it ended), there is
        nothing to do, as in Twisted's, in two calls.
        """
        if self.lean:
            fd = reader.fileno()
            reads: set[int] = self._reads
            if fd in reads:
                if fd in self._writes:
                    self._poller.modify(fd, EPOLLOUT)
                else:
                    del self._selectables[fd]
                    self._poller.unregister(fd)
                reads.remove(fd)
                return
            if fd != -1 and not self._continuousPolling.isReading(reader):
                return
        super().removeReader(reader)

    def removeWriter(self, writer: Any) -> None:
        """
        C{EPollReactor.removeWriter}, as L{removeReader}: in one call where
        C{writer} is registered with epoll for writing, and in two where it
        is neither that nor polled continuously (most connections end that
        way: they never had to wait to write).
        """
        if self.lean:
            fd = writer.fileno()
            writes: set[int] = self._writes
            if fd in writes:
                if fd in self._reads:
                    self._poller.modify(fd, EPOLLIN)
                else:
                    del self._selectables[fd]
                    self._poller.unregister(fd)
                writes.remove(fd)
                return
            if fd != -1 and not self._continuousPolling.isWriting(writer):
                return
        super().removeWriter(writer)

    def removeSocket(self, selectable: Any) -> None:
        """
        C{removeReader} and C{removeWriter} in one call, for a selectable
        whose descriptor is a socket (a L{LeanServer} that ends): epoll
        takes every socket, so Twisted never polls one continuously, and
        what is left is C{_remove}'s steps for each, which for both
        together are one C{unregister}.  A closed socket (C{fileno()} of
        C{-1}) and Twisted's own dispatch take the two calls.
        """
        fd = selectable.fileno()
        if self.lean and fd != -1:
            reads: set[int] = self._reads
            writes: set[int] = self._writes
            if fd in reads or fd in writes:
                del self._selectables[fd]
                self._poller.unregister(fd)
                reads.discard(fd)
                writes.discard(fd)
            return
        self.removeReader(selectable)
        self.removeWriter(selectable)

    def doPoll(self, timeout: float | None) -> None:
        if not self.lean:
            super().doPoll(timeout)
            return
        if timeout is None:
            timeout = -1  # wait indefinitely
        selectables: dict[int, Any] = self._selectables
        try:
            # at most as many events as there are descriptors, as Twisted's
            events = self._poller.poll(timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        if not events:
            return
        # readSoon may add to the list while it is dispatched (a loop over
        # a list sees what is appended to it)
        self._batch = events
        dispatch = self._doReadOrWrite
        disconnect = self._disconnectSelectable
        reads = self._reads
        stack: list[dict[Any, Any]] = (
            context.theContextTracker.currentContext().contexts
        )
        # ContextTracker.getContext(ILogContext), in line
        base: Any = None
        for beneath in reversed(stack):
            if ILogContext in beneath:
                base = beneath[ILogContext]
                break
        contexts = self._contexts
        if base is not self._contextsBase:
            contexts.clear()
            self._contextsBase = base
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            if event == _READ_SOON:
                if fd not in reads:
                    continue
                event = EPOLLIN
            if selectable.__class__ is LeanServer:
                # its logPrefix() is tcp.Connection's, which returns this
                # (audited with LeanServer's code): one call fewer per event
                prefix = selectable.logstr
            else:
                try:
                    prefix = selectable.logPrefix()
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    prefix = "(buggy logPrefix method)"
                    log.err(system=prefix)
            pushed = contexts.get(prefix)
            if pushed is None:
                if len(contexts) >= CONTEXTS_KEPT:
                    contexts.clear()
                pushed = contexts[prefix] = {ILogContext: {**base, "system": prefix}}
            stack.append(pushed)
            try:
                try:
                    if event == EPOLLIN:
                        # _doReadOrWrite's own steps for a plain read, in
                        # line: one Python call fewer per request
                        # (a LeanServer leaves the reactor before its
                        # socket closes: its fileno() is never -1 here)
                        if (
                            selectable.__class__ is not LeanServer
                            and selectable.fileno() == -1
                        ):
                            dispatch(selectable, fd, event)
                        else:
                            try:
                                why = selectable.doRead()
                            except BaseException:
                                why = sys.exc_info()[1]
                                log.err()
                            if why:
                                disconnect(selectable, why, True)
                    else:
                        dispatch(selectable, fd, event)
                finally:
                    stack.pop()
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.err(system=prefix)
        # (a KeyboardInterrupt leaves it set: readSoon then adds to a list
        # nobody reads, and the next pass replaces it)
        self._batch = None

    doIteration = doPoll

    def mainLoop(self) -> None:
        """
        C{ReactorBase.mainLoop}, with the timed-call step skipped on the
        passes that have nothing for it.

        Twisted's loop calls C{runUntilCurrent} and C{timeout} on every
        pass (six Python calls with what they call), and on a busy server
        nearly every pass finds no thread call queued, no timer added, none
        due and no stop under way: then the only thing they compute is how
        long to wait, the time to the first timer, which this loop computes
        in line.  On every other pass it calls them both, as Twisted does.
        The pass runs under Twisted's own top-level handler (an error is
        logged as "Unexpected error in main loop" and the loop goes on).

        Where a name this reads is missing, or the code it stands for is
        not the code audited (L{upperecho._compat.mainLoopParts}), it is
        Twisted's own C{mainLoop}.
        """
        parts = self._loopParts
        if parts is None:
            super().mainLoop()
            return
        handler, baseLog = parts
        while self._started:
            # "with handler:", whose __enter__ does nothing and whose
            # __exit__ logs and swallows what a pass raises: called only
            # then, two calls fewer per pass
            try:
                pending = self._pendingTimedCalls
                cancelled = self._cancellations
                if (
                    self.threadCallQueue
                    or self._newTimedCalls
                    or self._justStopped
                    or (cancelled > 50 and cancelled > len(pending) >> 1)
                ):
                    self.runUntilCurrent()
                    t = self.timeout()
                elif pending:
                    delay = pending[0].time - self.seconds()
                    if delay <= 0:
                        self.runUntilCurrent()
                        t = self.timeout()
                    else:
                        # as timeout(): at most what epoll_wait can take
                        t = min(_LONGEST_WAIT, delay)
                else:
                    t = None
                self.doIteration(self.running and t)
            except BaseException:
                handler.__exit__(*sys.exc_info())
        baseLog.info("Main loop terminated.")


def installIfUnchosen() -> bool:
    """
    Install L{UpperEchoReactor} as the global reactor, unless a reactor is
    installed already (C{twistd --reactor NAME}, or any code that imported
    C{twisted.internet.reactor}).

    @return: whether it was installed.
    """
    if "twisted.internet.reactor" in sys.modules:
        return False
    from twisted.internet.main import installReactor

    installReactor(UpperEchoReactor())
    return True
