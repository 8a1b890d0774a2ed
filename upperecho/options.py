# -*- test-case-name: tests.unit.test_options -*-
"""
Option coercers: a command-line value as a number, a port or an encoding,
or a one-line L{usage.UsageError} naming the option and the value.

Both sides use them: the C{twistd upperecho} options (L{upperecho.tap})
and the commands (L{upperecho.scripts}), so that a mistake reads the same
everywhere: C{--idle-timeout soon: not a finite number >= 0}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from twisted.python import usage

from upperecho.transform import checkEncoding

__all__ = ["encoding", "number", "port"]


def number(
    option: str,
    value: str,
    kind: Callable[[str], float] = float,
    least: float = 0.0,
    above: bool = False,
) -> Any:
    """
    C{value} of C{option} as a finite C{kind} (C{int} or C{float}) at least
    C{least} (or, with C{above}, greater than it).

    @raise usage.UsageError: naming the option, the value and the range.
    """
    try:
        result = kind(value)
    except ValueError:
        result = math.nan
    if not (result > least if above else result >= least) or math.isinf(result):
        word = "a whole number" if kind is int else "a finite number"
        bound = f"> {least:g}" if above else f">= {least:g}"
        raise usage.UsageError(f"{option} {value}: not {word} {bound}")
    return result


def port(option: str, value: str, least: int = 0) -> int:
    """
    C{value} of C{option} as a port number from C{least} to 65535 (0 asks
    the system for a free port where listening; a client needs 1 or more).

    @raise usage.UsageError: naming the option, the value and the range.
    """
    try:
        result = int(value)
    except ValueError:
        result = -1
    if not least <= result <= 65535:
        raise usage.UsageError(f"{option} {value}: not a port number ({least}-65535)")
    return result


def encoding(value: str, option: str = "--encoding") -> str:
    """
    A text encoding upperecho can uppercase with (L{checkEncoding}), as its
    canonical name.

    @raise usage.UsageError: naming the option and why the encoding fails.
    """
    try:
        return checkEncoding(value)
    except ValueError as e:
        raise usage.UsageError(f"{option}: {e}") from None
