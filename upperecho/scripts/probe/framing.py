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
"""

from __future__ import annotations

import random

__all__ = [
    "HEADER_SIZE",
    "MAX_SIZE",
    "MIN_SIZE",
    "SEQ_MOD",
    "makeProbe",
    "probeSequence",
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
