"""
Tests for L{upperecho.scripts.probe.report}: the lines, the summary and
the JSON object.
"""

from __future__ import annotations

import json
import random

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import PROBE_JSON_KEYS
from upperecho.scripts.probe import (
    ProbeResult,
    ProbeSession,
    formatText,
)
from upperecho.scripts.probe.stats import Tally
from upperecho.transform import upper

TARGET = "127.0.0.1:12001"


class OutputTests(SynchronousTestCase):
    """
    The summary, the histogram and the JSON object.
    """

    def result(self) -> ProbeResult:
        clock = Clock()
        session = ProbeSession(clock, timer=clock.seconds, rng=random.Random(9))
        for i in range(4):
            seq, probe, _ = session.newProbe(clock.seconds())
            clock.advance(0.0001 * (i + 1))
            if i < 3:
                session.reply(seq, upper(probe))
        clock.advance(2)
        return ProbeResult.fromSession(session, TARGET, "udp", 9.94)

    def test_text(self) -> None:
        """
        The summary lines are those of docs/contract.rst (Probe mode), then a histogram.
        """
        lines = formatText(self.result()).splitlines()
        self.assertEqual(lines[0], f"--- {TARGET} udp probe statistics ---")
        self.assertEqual(
            lines[1],
            "4 sent, 3 received, 25.0% lost, 0 corrupted, 0 duplicated, "
            "0 reordered, time 9.9 s",
        )
        self.assertEqual(
            lines[2],
            "rtt min/p50/avg/p90/p99/max/stddev = "
            "0.100/0.200/0.200/0.300/0.300/0.300/0.082 ms",
        )
        self.assertEqual(lines[3], "rtt histogram (ms):")
        self.assertTrue(lines[4].startswith("  <= 0.1 "))
        self.assertTrue(lines[4].endswith("1 " + "#" * 20))

    def test_jsonKeys(self) -> None:
        """
        The JSON object has exactly the keys of docs/contract.rst; UDP has no connect
        times; ping mode has no achieved rate.
        """
        obj = json.loads(json.dumps(self.result().asJSON()))
        self.assertEqual(list(obj), PROBE_JSON_KEYS)
        self.assertEqual(
            list(obj["rtt_ms"]), ["min", "p50", "avg", "p90", "p99", "max", "stddev"]
        )
        self.assertIsNone(obj["connect_ms"])
        self.assertIsNone(obj["achieved_rate"])
        self.assertEqual(sum(c for _, c in obj["histogram"]), 3)
        self.assertEqual(obj["lost"], 1)

    def test_noSamples(self) -> None:
        """
        With nothing received, the RTT values are null.
        """
        result = ProbeResult.fromSession(ProbeSession(Clock()), TARGET, "tcp", 1.0)
        obj = result.asJSON()
        self.assertEqual(set(obj["rtt_ms"].values()), {None})
        self.assertEqual(set(obj["connect_ms"].values()), {None})
        self.assertEqual(obj["histogram"], [])

    def test_exitCode(self) -> None:
        """
        0 only when every probe got a correct reply.
        """
        self.assertEqual(self.result().exitCode, 1)
        t = Tally()
        t.reply(t.send(), True, True)
        ok = ProbeResult(TARGET, "udp", t, 1.0, self.result().rtt, None, [])
        self.assertEqual(ok.exitCode, 0)
        t.reply(t.send(), False, True)
        self.assertEqual(ok.exitCode, 1)
