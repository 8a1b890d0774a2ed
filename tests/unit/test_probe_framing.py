"""
Tests for L{upperecho.scripts.probe.framing}: a probe's bytes.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from upperecho.scripts.probe import (
    MIN_SIZE,
    makeProbe,
    probeSequence,
)
from upperecho.transform import upper


class ProbeFormatTests(SynchronousTestCase):
    """
    The probe framing.
    """

    def test_layout(self) -> None:
        """
        Eight digits, a space, lowercase letters; exactly SIZE bytes.
        """
        rng = random.Random(1)
        for size in (MIN_SIZE, 64, 1500):
            p = makeProbe(42, size, rng)
            self.assertEqual(len(p), size)
            self.assertEqual(p[:9], b"00000042 ")
            self.assertTrue(p[9:].isalpha() and p[9:].islower())
        self.assertEqual(probeSequence(makeProbe(123456789, 20, rng)), 23456789)

    def test_sequenceOfReply(self) -> None:
        """
        The uppercase reply carries the same sequence number; garbage has none.
        """
        p = makeProbe(7, 30, random.Random(2))
        self.assertEqual(probeSequence(upper(p)), 7)
        self.assertIsNone(probeSequence(b"hello world"))
        self.assertIsNone(probeSequence(b"0000007"))
