# -*- test-case-name: tests.unit.test_globalreactor -*-
"""
The one place a library class falls back to the global reactor.

The C{twistd} service (L{upperecho.tap.makeService}) and each command
resolve the reactor once and pass it in; a class mounted by another
application may be built without one (C{UpperEchoFactory()}), and then gets
the global reactor from here, imported only at that moment so that
importing upperecho never installs a reactor.
"""

from __future__ import annotations

from typing import Any

__all__ = ["reactorOr"]


def reactorOr(given: Any) -> Any:
    """
    C{given}, or the global reactor if C{given} is C{None}.
    """
    if given is not None:
        return given
    from twisted.internet import reactor

    return reactor
