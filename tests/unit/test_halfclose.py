"""
Tests for L{upperecho.halfclose}: a wrapper passes the peer's half-close to
a protocol that takes it, and closes for one that does not.
"""

from __future__ import annotations

from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from upperecho.halfclose import passReadConnectionLost, passWriteConnectionLost


@implementer(IHalfCloseableProtocol)
class HalfCloseable(Protocol):
    """
    Records the half-close events it is told of.
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    def readConnectionLost(self) -> None:
        self.events.append("read")

    def writeConnectionLost(self) -> None:
        self.events.append("write")


class Wrapper:
    """
    The part of a protocol wrapper the functions use.
    """

    def __init__(self, wrapped: Protocol | None) -> None:
        self.wrappedProtocol = wrapped
        self.closed = 0

    def loseConnection(self) -> None:
        self.closed += 1


class PassTests(SynchronousTestCase):
    """
    L{passReadConnectionLost} and L{passWriteConnectionLost}.
    """

    def test_halfCloseable(self) -> None:
        """
        A protocol that takes a half-close is told; the wrapper stays open.
        """
        proto = HalfCloseable()
        wrapper = Wrapper(proto)
        passReadConnectionLost(wrapper)
        passWriteConnectionLost(wrapper)
        self.assertEqual((proto.events, wrapper.closed), (["read", "write"], 0))

    def test_notHalfCloseable(self) -> None:
        """
        Any other protocol, or none, gets the connection closed, as Twisted
        does without the interface.
        """
        for wrapped in (Protocol(), None):
            wrapper = Wrapper(wrapped)
            passReadConnectionLost(wrapper)
            passWriteConnectionLost(wrapper)
            self.assertEqual(wrapper.closed, 2)
