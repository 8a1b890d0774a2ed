"""
The README's model unit test is real code: extract it and run it, so the
documentation cannot drift from the API.
"""

from __future__ import annotations

import unittest

from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tests.rstdoc import ROOT, Document
from upperecho import MAX_DATAGRAM, UpperEchoFactory
from upperecho.udp import UpperEchoPort

README = Document(ROOT / "README.rst")


class ReadmeTests(SynchronousTestCase):
    """
    Code shown in README.rst runs as shown.
    """

    def test_modelTestPasses(self) -> None:
        """
        The StringTransport example test passes.
        """
        namespace: dict[str, object] = {}
        exec(README.codeBlockAfter("Testing a protocol without a network"), namespace)
        case = namespace["ProtocolTests"]
        assert isinstance(case, type)
        result = unittest.TestResult()
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(case)
        self.assertEqual(suite.countTestCases(), 1)
        suite.run(result)
        self.assertEqual((result.errors, result.failures), ([], []))
        self.assertEqual(result.testsRun, 1)

    def test_mountingExampleRuns(self) -> None:
        """
        The "your own application" example listens as it says: TCP through
        an endpoint, UDP through C{listenUDP} with the burst port (on a free
        port and a reactor that never runs, instead of 12000 and the global
        reactor).
        """
        code = README.codeBlockAfter(
            "Using the protocols in your own Twisted application"
        )
        self.assertIn("from twisted.internet import reactor", code)
        code = code.replace("from twisted.internet import reactor", "")
        code = code.replace("12000", "0")
        reactor = _ExampleReactor()
        exec(code, {"reactor": reactor})
        self.assertTrue(reactor.ran)
        ((port, factory, _, _),) = reactor.tcpServers
        self.assertEqual(port, 0)
        self.assertIsInstance(factory, UpperEchoFactory)
        (udpPort,) = reactor.readers
        assert isinstance(udpPort, UpperEchoPort)
        self.addCleanup(udpPort.connectionLost)
        self.assertEqual(udpPort.maxPacketSize, MAX_DATAGRAM)


class _ExampleReactor(MemoryReactorClock):
    """
    A reactor for the mounting example: Twisted's POSIX C{listenUDP}, and a
    C{run} that only records that it was called.
    """

    listenUDP = PosixReactorBase.listenUDP
    ran = False

    def run(self) -> None:
        self.ran = True
