"""
Tests for L{upperecho._globalreactor}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from upperecho._globalreactor import reactorOr


class ReactorOrTests(SynchronousTestCase):
    """
    L{reactorOr}: the given clock, else the global reactor.
    """

    def test_given(self) -> None:
        """
        A given clock or reactor is used as it is.
        """
        clock = Clock()
        self.assertIs(reactorOr(clock), clock)

    def test_global(self) -> None:
        """
        Without one, the global reactor (trial has installed it already).
        """
        from twisted.internet import reactor

        self.assertIs(reactorOr(None), reactor)
