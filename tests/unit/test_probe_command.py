"""
Tests for L{upperecho.scripts.probe.command}: the options of
C{upperecho-client --probe} and L{main} before the reactor runs.
"""

from __future__ import annotations

import contextlib
import io

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.scripts.probe import (
    ProbeOptions,
    main,
)


class OptionsTests(SynchronousTestCase):
    """
    The command line.
    """

    def parse(self, *args: str) -> ProbeOptions:
        o = ProbeOptions()
        o.parseOptions(list(args))
        return o

    def test_defaults(self) -> None:
        """
        The defaults of docs/contract.rst (Probe mode): TCP to localhost:12000, 10 probes of 64 bytes, one per
        second, 1 s timeout; C{--probe} itself is accepted.
        """
        o = self.parse("--probe")
        self.assertEqual(
            (o["host"], o["port"], o["count"], o["interval"], o["size"]),
            ("localhost", 12000, 10, 1.0, 64),
        )
        self.assertEqual((o["timeout"], o["rate"], o["concurrency"]), (1.0, None, 1))
        self.assertFalse(o["udp"])

    def test_load(self) -> None:
        """
        C{--rate} alone runs 10 s.
        """
        o = self.parse("--rate", "500", "--udp", "--concurrency", "4", "h", "7")
        self.assertEqual((o["rate"], o["duration"], o["concurrency"]), (500, 10, 4))
        self.assertEqual((o["host"], o["port"]), ("h", 7))

    def test_bad(self) -> None:
        """
        Bad values are usage errors naming the option.
        """
        for args, word in [
            (["-c", "-1"], "--count"),
            (["-s", "5"], "--size"),
            (["-s", "70000"], "--size"),
            (["-W", "x"], "--timeout"),
            (["--duration", "3"], "--rate"),
            (["--concurrency", "3"], "--rate"),
            (["--udp", "--new-connection"], "--new-connection"),
            (["--encoding", "nope"], "--encoding"),
            (["h", "70000"], "PORT"),
        ]:
            with self.assertRaises(usage.UsageError) as e:
                self.parse(*args)
            self.assertIn(word, str(e.exception))

    def test_mainBadOption(self) -> None:
        """
        C{main} turns a bad option into exit status 2 and one line on stderr.
        """
        err = io.StringIO()
        self.assertEqual(main(["--probe", "-s", "1"], io.StringIO(), err), 2)
        self.assertEqual(len(err.getvalue().splitlines()), 1)
        self.assertIn("--size", err.getvalue())

    def test_mainHelp(self) -> None:
        """
        C{--help} prints the usage and returns 0 instead of raising
        C{SystemExit} into the caller.
        """
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(main(["--probe", "--help"]), 0)
        self.assertIn("Usage: upperecho-client --probe", out.getvalue())
