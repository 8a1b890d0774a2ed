"""
The README's model unit test is real code: extract it and run it, so the
documentation cannot drift from the API.
"""

from __future__ import annotations

import textwrap
import unittest
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

README = Path(__file__).resolve().parent.parent / "README.rst"


def codeBlockAfter(marker: str) -> str:
    """
    The first literal block (indented after a C{::} line) that follows
    C{marker} in README.rst.
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    begin = next(i for i in range(start, len(lines)) if lines[i].endswith("::")) + 1
    block = []
    for line in lines[begin:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


class ReadmeTests(SynchronousTestCase):
    """
    Code shown in README.rst runs as shown.
    """

    def test_modelTestPasses(self) -> None:
        """
        The StringTransport example test passes.
        """
        namespace: dict[str, object] = {}
        exec(codeBlockAfter("Testing a protocol without a network"), namespace)
        case = namespace["ProtocolTests"]
        assert isinstance(case, type)
        result = unittest.TestResult()
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
        self.assertEqual(suite.countTestCases(), 1)
        suite.run(result)
        self.assertEqual((result.errors, result.failures), ([], []))
        self.assertEqual(result.testsRun, 1)
