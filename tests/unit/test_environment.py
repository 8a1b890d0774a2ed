"""
Tests for L{upperecho.environment}: every option from C{UPPERECHO_*}
variables, the command line winning.
"""

from __future__ import annotations

import os
import re

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.environment import environmentArguments, variableName
from upperecho.tap import Options


def parse(environ: dict[str, str], *argv: str) -> Options:
    options = Options()
    args = list(argv)
    options.parseOptions(environmentArguments(options, environ, args) + args)
    return options


class EnvironmentTests(SynchronousTestCase):
    """
    C{UPPERECHO_<OPTION>} for every option.
    """

    def test_names(self) -> None:
        """
        Dashes become underscores, letters uppercase.
        """
        self.assertEqual(variableName("tcp"), "UPPERECHO_TCP")
        self.assertEqual(variableName("udp-rate"), "UPPERECHO_UDP_RATE")

    def test_values(self) -> None:
        """
        Parameters, repeatable --listen and flags are all read.
        """
        o = parse(
            {
                "UPPERECHO_TCP": "2000",
                "UPPERECHO_UDP_RATE": "5",
                "UPPERECHO_LISTEN": "tcp:3000 unix:/tmp/x.sock",
                "UPPERECHO_IDENTIFY": "yes",
                "UPPERECHO_NAME": "pod-1",
                "UNRELATED": "1",
            }
        )
        self.assertEqual(o["tcp"], 2000)
        self.assertIsNone(o["udp"])
        self.assertEqual(o["udp-rate"], 5)
        self.assertEqual(o["listen"], ["tcp:3000", "unix:/tmp/x.sock"])
        self.assertEqual((o["identify"], o["name"]), (1, "pod-1"))

    def test_proxyFromRepeatable(self) -> None:
        """
        C{UPPERECHO_PROXY_FROM} holds several networks, as C{--proxy-from}
        given several times.
        """
        o = parse(
            {
                "UPPERECHO_LISTEN": "haproxy:tcp:3000",
                "UPPERECHO_PROXY_FROM": "10.0.0.0/8 ::1",
            }
        )
        self.assertEqual([str(n) for n in o["proxy-from"]], ["10.0.0.0/8", "::1/128"])

    def test_commandLineWins(self) -> None:
        """
        An option on the command line hides its variable, in both spellings.
        """
        environ = {"UPPERECHO_TCP": "2000", "UPPERECHO_LISTEN": "tcp:3000"}
        self.assertEqual(parse(environ, "--tcp", "4000")["tcp"], 4000)
        self.assertEqual(parse(environ, "--tcp=4000")["tcp"], 4000)
        self.assertEqual(parse(environ, "--listen", "tcp:5")["listen"], ["tcp:5"])

    def test_flagOff(self) -> None:
        """
        0, false, no and empty leave a flag off.
        """
        for word in ("0", "false", "No", ""):
            self.assertFalse(parse({"UPPERECHO_IDENTIFY": word})["identify"], word)

    def test_errors(self) -> None:
        """
        A bad value is the option's own one-line error, or names the
        variable for a flag.
        """
        with self.assertRaises(usage.UsageError) as e:
            parse({"UPPERECHO_TCP": "many"})
        self.assertEqual(str(e.exception), "--tcp many: not a port number (0-65535)")
        with self.assertRaises(usage.UsageError) as e:
            parse({"UPPERECHO_IDENTIFY": "maybe"})
        self.assertEqual(
            str(e.exception),
            "UPPERECHO_IDENTIFY=maybe: not one of 1, true, yes, 0, false, no",
        )

    def test_parseOptions(self) -> None:
        """
        L{Options.parseOptions} reads the process's environment.
        """
        self.patch(os, "environ", {"UPPERECHO_UDP": "2001"})
        o = Options()
        o.parseOptions(["--tcp", "2000"])
        self.assertEqual((o["tcp"], o["udp"]), (2000, 2001))


class DocumentedTests(SynchronousTestCase):
    """
    docs/contract.rst, Environment variables, lists every option.
    """

    def test_table(self) -> None:
        from pathlib import Path

        text = (Path(__file__).parents[2] / "docs" / "contract.rst").read_text()
        section = text.split("Environment variables\n---")[1].split("\n\n\n")[0]
        rows = dict(re.findall(r"^``--([\w-]+)``\s+``(UPPERECHO_\w+)``", section, re.M))
        options = {spec.rstrip("=") for spec in Options().longOpt} - {"help", "version"}
        self.assertEqual(set(rows), options)
        for option, variable in rows.items():
            self.assertEqual(variable, variableName(option))
