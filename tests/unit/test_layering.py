"""
The library loads no command-line code, and the modules import without
cycles.
"""

from __future__ import annotations

import json
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

#: what only the commands need
COMMAND_MODULES = ("upperecho.scripts",)
COMMAND_NAMES = ("fcntl", "termios", "tty")

_PROBE = """
import json, sys, types
import upperecho.tap, upperecho
loaded = sorted(sys.modules)
ours = [m for m in loaded if m == "upperecho" or m.startswith("upperecho.")]
names = {
    m: sorted(
        k for k, v in vars(sys.modules[m]).items()
        if isinstance(v, types.ModuleType) and v.__name__ in %r
    )
    for m in ours
}
print(json.dumps({"loaded": loaded, "names": names}))
"""


class LibraryImportTests(SynchronousTestCase):
    """
    C{import upperecho.tap} (what every C{twistd upperecho} does) and
    C{import upperecho} load no command-line code.
    """

    def test_noCommandCode(self) -> None:
        """
        In a fresh interpreter, importing the library leaves the scripts
        package unloaded, and no upperecho module holds C{fcntl},
        C{termios} or C{tty}.  (Twisted's reactor itself loads C{termios}
        through C{twisted.internet.process}, so the check is on upperecho's
        own modules.)
        """
        out = subprocess.run(
            [sys.executable, "-c", _PROBE % (COMMAND_NAMES,)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        report = json.loads(out)
        for module in report["loaded"]:
            for command in COMMAND_MODULES:
                self.assertFalse(
                    module == command or module.startswith(command + "."), module
                )
        self.assertEqual(
            {m: n for m, n in report["names"].items() if n}, {}, "imported by"
        )

    def test_scriptsImportFcntl(self) -> None:
        """
        The check above can fail: the client command does hold C{fcntl}.
        """
        import upperecho.scripts._common as common

        self.assertIn("fcntl", vars(common))
