# -*- test-case-name: tests.unit.test_health -*-
"""
Liveness and readiness, for the kubelet and load balancers.

Kubernetes cannot probe UDP, and a TCP probe of the echo port only says that
one socket accepts; C{GET /readyz} says that I{every} configured listener is
up, and turns to 503 the moment a SIGTERM starts the shutdown, so a load
balancer stops sending new work before the listeners close.  With
C{--drain-delay SECONDS} the server goes on serving that long after the
SIGTERM (still answering, already not ready), which gives the load balancer
and the Service's endpoints time to notice.

C{GET /healthz} is 200 while the process runs and its reactor answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

__all__ = ["Readiness"]


class Readiness:
    """
    Whether the server should get traffic now, and the drain that ends it.

    A listener counts as up while its service runs: upperecho's listeners
    (C{--tcp}, C{--udp}, C{--listen}) listen when they start and end the
    program, with one line, when they cannot (L{upperecho.tap}), and close
    when they stop.

    @ivar listeners: the services of every configured TCP and UDP listener.
    @ivar delay: seconds to keep serving, not ready, once the shutdown has
        begun (C{--drain-delay}).
    @ivar draining: the shutdown has begun.
    """

    _log = Logger()

    def __init__(
        self, listeners: Sequence[IService] = (), delay: float = 0.0, clock: Any = None
    ) -> None:
        self.listeners = list(listeners)
        self.delay = delay
        self.clock = clock
        self.draining = False

    def problems(self) -> list[str]:
        """
        Why the server is not ready: one line per reason, none when ready.
        """
        found = ["shutting down"] if self.draining else []
        found.extend(
            f"{listener.name}: not listening"
            for listener in self.listeners
            if not listener.running
        )
        return found

    def drain(self) -> Deferred[None] | None:
        """
        The shutdown begins (the services are asked to stop, which SIGTERM,
        SIGINT and C{reactor.stop} do before anything else): not ready from
        now on.

        @return: C{None} to stop at once, or a L{Deferred} that fires after
            C{delay} seconds, when the listeners may close.
        """
        self.draining = True
        if self.delay <= 0:
            self._log.info("shutting down: /readyz now answers 503")
            return None
        self._log.info(
            "shutting down: /readyz now answers 503; serving {delay} s more "
            "(--drain-delay)",
            delay=self.delay,
        )
        return deferLater(self.clock, self.delay, lambda: None)
