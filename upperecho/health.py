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
from contextlib import suppress
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

__all__ = ["Readiness", "ReadinessService"]


class Readiness:
    """
    Whether the server should get traffic now.

    A listener counts as up while its service runs: upperecho's listeners
    (C{--tcp}, C{--udp}, C{--listen}) listen when they start and end the
    program, with one line, when they cannot (L{upperecho.tap}), and close
    when they stop.

    @ivar listeners: the services of every configured TCP and UDP listener.
    @ivar draining: the shutdown has begun.
    """

    def __init__(self, listeners: Sequence[IService] = ()) -> None:
        self.listeners = list(listeners)
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


class ReadinessService(Service):
    """
    Marks L{Readiness} as draining as soon as the reactor begins to shut
    down (SIGTERM, SIGINT, C{reactor.stop}), before any service stops, and
    then holds the shutdown for C{delay} seconds.

    @ivar readiness: what it marks.
    @ivar delay: seconds to keep serving, not ready, before the listeners
        close.
    """

    name = "readiness"
    _log = Logger()
    _trigger: Any = None

    def __init__(self, readiness: Readiness, reactor: Any, delay: float = 0.0) -> None:
        self.readiness = readiness
        self.reactor = reactor
        self.delay = delay

    def startService(self) -> None:
        Service.startService(self)
        self.readiness.draining = False
        self._trigger = self.reactor.addSystemEventTrigger(
            "before", "shutdown", self.drain
        )

    def stopService(self) -> None:
        Service.stopService(self)
        trigger, self._trigger = self._trigger, None
        if trigger is not None:
            # ValueError, KeyError: it has fired already, which removed it
            with suppress(ValueError, KeyError):
                self.reactor.removeSystemEventTrigger(trigger)

    def drain(self) -> Deferred[None] | None:
        """
        The shutdown begins: not ready from now on; keep serving for
        C{delay} seconds.
        """
        self._trigger = None
        self.readiness.draining = True
        if self.delay <= 0:
            self._log.info("shutting down: /readyz now answers 503")
            return None
        self._log.info(
            "shutting down: /readyz now answers 503; serving {delay} s more "
            "(--drain-delay)",
            delay=self.delay,
        )
        return deferLater(self.reactor, self.delay, lambda: None)
