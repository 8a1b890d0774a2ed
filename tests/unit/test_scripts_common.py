"""
Tests for L{upperecho.scripts._common}: what both commands share.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from upperecho.client import (
    NoReplyError,
)
from upperecho.scripts._common import (
    ExitStatus,
    ResolveError,
    describe,
    resolve,
    statusOf,
)


class DescribeTests(SynchronousTestCase):
    """
    L{describe}: one line per kind of failure.
    """

    def test_messages(self) -> None:
        """
        Refused, unknown host, no reply and lost connection read plainly.
        """
        for exc, expected in [
            (
                error.ConnectionRefusedError(),
                "cannot connect to h:1: connection refused",
            ),
            (error.DNSLookupError("h"), "unknown host: cannot resolve h:1"),
            (
                NoReplyError("h:1", 2, 0.5),
                "no reply from h:1 after 2 datagrams (0.5 s timeout each)",
            ),
            (error.ConnectionLost(), "connection lost: h:1 went away"),
            (ResolveError("nowhere"), "unknown host: cannot resolve nowhere"),
        ]:
            self.assertEqual(describe(Failure(exc), "h:1"), expected)


class StatusTests(SynchronousTestCase):
    """
    L{statusOf} and L{ExitStatus}: one meaning per code in both commands.
    """

    def test_codes(self) -> None:
        """
        The values scripts and shells see.
        """
        self.assertEqual([int(s) for s in ExitStatus], [0, 1, 2, 130], list(ExitStatus))

    def test_noExchangeIsError(self) -> None:
        """
        No address or no connection: nothing could be exchanged.
        """
        for exc in [
            ResolveError("h"),
            error.DNSLookupError("h"),
            error.ConnectionRefusedError(),
            error.TimeoutError(),
        ]:
            self.assertIs(statusOf(Failure(exc)), ExitStatus.ERROR, exc)

    def test_midwayIsFailed(self) -> None:
        """
        A connection lost, or a request unanswered, after the start.
        """
        for exc in [error.ConnectionLost(), NoReplyError("h:1", 1, 1.0)]:
            self.assertIs(statusOf(Failure(exc)), ExitStatus.FAILED, exc)


class ResolveTests(SynchronousTestCase):
    """
    L{resolve}: IPv4 first, in the reactor's thread pool.
    """

    def resolve(self, infos: list[Any] | Exception) -> Deferred[tuple[int, str]]:
        class Pool:
            def callInThreadWithCallback(
                self, onResult: Any, f: Any, *a: Any, **kw: Any
            ) -> None:
                if isinstance(infos, Exception):
                    onResult(False, Failure(infos))
                else:
                    onResult(True, infos)

        class Reactor:
            def getThreadPool(self) -> Pool:
                return Pool()

            def callFromThread(self, f: Any, *a: Any) -> None:
                f(*a)

        return Deferred.fromCoroutine(resolve(Reactor(), "h", 1, socket.SOCK_DGRAM))

    def test_ipv4First(self) -> None:
        """
        An IPv4 address wins over an IPv6 one listed before it.
        """
        infos = [
            (socket.AF_INET6, 0, 0, "", ("::1", 1, 0, 0)),
            (socket.AF_INET, 0, 0, "", ("127.0.0.1", 1)),
        ]
        self.assertEqual(
            self.successResultOf(self.resolve(infos)), (socket.AF_INET, "127.0.0.1")
        )

    def test_unknown(self) -> None:
        """
        A resolver error, or no IP address at all, is L{ResolveError}.
        """
        self.failureResultOf(self.resolve(socket.gaierror(-2, "x")), ResolveError)
        self.failureResultOf(self.resolve([]), ResolveError)
