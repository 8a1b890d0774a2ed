"""
Tests for L{upperecho.options}: a value, or one line naming the option, the
value and what was wanted.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.options import encoding, number, port


class NumberTests(SynchronousTestCase):
    """
    L{number}: whole or real, bounded below, finite.
    """

    def test_values(self) -> None:
        """
        Whole and real numbers at or above the bound.
        """
        self.assertEqual(number("--n", "3", int), 3)
        self.assertEqual(number("--n", "0", int), 0)
        self.assertEqual(number("--t", "0.5", above=True), 0.5)
        self.assertEqual(number("--c", "1", int, 1), 1)

    def test_errors(self) -> None:
        """
        Not a number, out of range, infinite, not a number at all (NaN).
        """
        for args, expected in [
            (("--n", "x", int), "--n x: not a whole number >= 0"),
            (("--n", "1.5", int), "--n 1.5: not a whole number >= 0"),
            (("--n", "-1", int), "--n -1: not a whole number >= 0"),
            (("--c", "0", int, 1), "--c 0: not a whole number >= 1"),
            (("--t", "0", float, 0.0, True), "--t 0: not a finite number > 0"),
            (("--t", "inf"), "--t inf: not a finite number >= 0"),
            (("--t", "nan"), "--t nan: not a finite number >= 0"),
        ]:
            e = self.assertRaises(usage.UsageError, number, *args)
            self.assertEqual(str(e), expected)


class PortTests(SynchronousTestCase):
    """
    L{port}: 0 (any free port) or 1 to 65535, as the caller allows.
    """

    def test_values(self) -> None:
        """
        The bounds are included.
        """
        self.assertEqual(port("--tcp", "0"), 0)
        self.assertEqual(port("PORT", "65535", 1), 65535)

    def test_errors(self) -> None:
        """
        Out of range or not a number.
        """
        for value in ("0", "65536", "http", "-1"):
            e = self.assertRaises(usage.UsageError, port, "PORT", value, 1)
            self.assertEqual(str(e), f"PORT {value}: not a port number (1-65535)")


class EncodingTests(SynchronousTestCase):
    """
    L{encoding}: the canonical name, or why not.
    """

    def test_canonical(self) -> None:
        """
        Any spelling of a codec gives its canonical name.
        """
        self.assertEqual(encoding("UTF8"), "utf-8")

    def test_refused(self) -> None:
        """
        Unknown and unsupported encodings name the option.
        """
        for name in ("klingon", "base64", "utf-16"):
            e = self.assertRaises(usage.UsageError, encoding, name)
            self.assertTrue(str(e).startswith("--encoding: "), str(e))
