# -*- test-case-name: tests.unit.test_halfclose -*-
"""
Passing a peer's half-close through a protocol wrapper.

Twisted's PROXY-protocol and TLS wrappers do not provide
L{IHalfCloseableProtocol}, so upperecho's subclasses of them
(L{upperecho.proxyprotocol}, L{upperecho.tls}) hand the two half-close
events to the protocol they wrap with these functions.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IHalfCloseableProtocol

__all__ = ["passReadConnectionLost", "passWriteConnectionLost"]


def passReadConnectionLost(wrapper: Any) -> None:
    """
    Tell the protocol inside C{wrapper} that its peer will send no more, or,
    if it cannot take a half-close, close the connection as Twisted would.
    """
    wrapped = wrapper.wrappedProtocol
    if wrapped is not None and IHalfCloseableProtocol.providedBy(wrapped):
        wrapped.readConnectionLost()
    else:
        wrapper.loseConnection()


def passWriteConnectionLost(wrapper: Any) -> None:
    """
    Tell the protocol inside C{wrapper} that its peer reads no more.
    """
    wrapped = wrapper.wrappedProtocol
    if wrapped is not None and IHalfCloseableProtocol.providedBy(wrapped):
        wrapped.writeConnectionLost()
    else:
        wrapper.loseConnection()
