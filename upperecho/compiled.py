# -*- test-case-name: tests.unit.test_compiled -*-
"""
The compiled network paths of upperecho's C accelerator (upperecho/_accel.c),
and the one switch that turns every compiled path off.

The accelerator holds, besides the transform (L{upperecho.transform}),
system-call paths that Python's socket module makes dear per connection or
per datagram: an C{accept4} that gives a non-blocking descriptor at once
(L{upperecho.port}), and a C{recvmmsg} and a C{sendmmsg} that read a burst
of datagrams and send the replies to it in one call each
(L{upperecho.udp}).  Each has a pure-Python path beside it, used where the
accelerator is not built, where this platform lacks the call, or where
C{UPPERECHO_PURE_PYTHON} is set.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["compiled", "pureForced"]


def pureForced() -> bool:
    """
    Whether C{UPPERECHO_PURE_PYTHON} asks for the pure-Python paths (any
    value but empty or C{0}).
    """
    return os.environ.get("UPPERECHO_PURE_PYTHON", "") not in ("", "0")


def compiled(name: str) -> Any:
    """
    The function C{name} of the C accelerator, or C{None} where it is not
    built, lacks it, or L{pureForced}.
    """
    if pureForced():
        return None
    try:
        module = importlib.import_module("upperecho._accel")
    except ImportError:
        return None
    found = getattr(module, name, None)
    return found if callable(found) else None
