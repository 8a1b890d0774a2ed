# -*- test-case-name: tests.unit.test_probe_framing -*-
"""
Probe framing: what a probe of SIZE bytes looks like.

A probe (at least L{MIN_SIZE} bytes) is the sequence number modulo
L{SEQ_MOD} in eight zero-padded ASCII digits, one space, then SIZE - 9
random lowercase ASCII letters::

    00000003 qhzkwmdoeal...

Digits and the space are their own uppercase, so the reply carries the same
sequence number and, for any ASCII-compatible encoding, has the same length.
UDP replies are matched by that number; a TCP connection is an ordered byte
stream, so its replies are matched by position and split by the length of
the expected reply (fixed-size framing, no delimiter needed).

A server run with C{--identify} says who answered (L{upperecho.identity}):
a TCP connection begins with the line C{upperecho <name>\\n}
(L{parseGreeting}), and a UDP reply with C{<name>: } (L{splitIdentity}).
The name never contains C{:}, a space or a newline, and a probe never
contains C{": "}, so both split unambiguously.
"""

from __future__ import annotations

import random
import re

__all__ = [
    "GREETING_PREFIX",
    "HEADER_SIZE",
    "MAX_GREETING",
    "MAX_SIZE",
    "MIN_SIZE",
    "SEQ_MOD",
    "makeProbe",
    "parseGreeting",
    "probeSequence",
    "splitIdentity",
]

#: bytes of the header: eight digits and a space
HEADER_SIZE = 9
#: the smallest probe: the header and at least one letter, so that a reply
#: that was not uppercased can be told from one that was
MIN_SIZE = HEADER_SIZE + 1
#: the largest probe: the largest UDP payload over IPv4
MAX_SIZE = 65507
#: sequence numbers are carried modulo this (eight digits)
SEQ_MOD = 100_000_000
#: maps any byte to a lowercase letter (a cheap way to draw random letters)
_LETTERS = bytes(ord("a") + i % 26 for i in range(256))


def makeProbe(seq: int, size: int, rng: random.Random) -> bytes:
    """
    Build probe number C{seq}: header plus random lowercase letters, exactly
    C{size} bytes.
    """
    return b"%08d " % (seq % SEQ_MOD) + rng.randbytes(size - HEADER_SIZE).translate(
        _LETTERS
    )


def probeSequence(data: bytes) -> int | None:
    """
    The sequence number (modulo 10**8) in a probe or a reply, or C{None} if
    C{data} does not start with a probe header.
    """
    head = data[:8]
    if len(data) < HEADER_SIZE or data[8:9] != b" " or not head.isdigit():
        return None
    return int(head)


#: how the line a server run with C{--identify} sends first begins
GREETING_PREFIX = b"upperecho "
#: the longest such line: the prefix, a 253-byte name and the newline
MAX_GREETING = len(GREETING_PREFIX) + 253 + 1
_NAME = re.compile(rb"[A-Za-z0-9._-]{1,253}")


def parseGreeting(line: bytes) -> str | None:
    """
    The instance name in the line C{upperecho <name>\\n} (with or without
    its newline), or C{None} if C{line} is not that line.
    """
    if not line.startswith(GREETING_PREFIX):
        return None
    name = line[len(GREETING_PREFIX) :].removesuffix(b"\n")
    return name.decode("ascii") if _NAME.fullmatch(name) else None


def splitIdentity(data: bytes) -> tuple[str | None, bytes]:
    """
    Split a UDP reply C{<name>: <rest>} into the name and the rest; a reply
    without a name is C{(None, data)}.
    """
    name, sep, rest = data.partition(b": ")
    if not sep or _NAME.fullmatch(name) is None:
        return None, data
    return name.decode("ascii"), rest
