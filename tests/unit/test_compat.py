"""
Tests for L{upperecho._compat}: every private Twisted name upperecho relies
on still exists, and each guard falls back when one is missing.
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.internet.udp import Port as UDPPort
from twisted.scripts._twistd_unix import UnixAppLogger
from twisted.trial.unittest import TestCase

from upperecho import _compat


def _resolve(where: str) -> Any:
    module, _, attribute = where.partition(":")
    found: Any = importlib.import_module(module)
    return getattr(found, attribute) if attribute else found


class PrivateNamesTests(TestCase):
    """
    L{_compat.PRIVATE_NAMES} is the audit list for a Twisted upgrade.
    """

    def test_everyNameExists(self) -> None:
        """
        Every private name listed is where the list says, in this Twisted;
        instance attributes are set on a fresh instance or as class defaults.
        """
        for entry in _compat.PRIVATE_NAMES:
            self.assertEqual(entry.twisted, _compat.AUDITED)
            target = _resolve(entry.where)
            for name in entry.names:
                if ":" in entry.where:
                    self.assertTrue(
                        _compat.definesAttribute(target, name), f"{entry.where}.{name}"
                    )
                elif not hasattr(importlib.import_module(entry.where), name):
                    # a submodule (haproxy's parsers) or a module global
                    importlib.import_module(f"{entry.where}.{name}")

    def test_flattenedCodeAudited(self) -> None:
        """
        Every function of Twisted that L{upperecho.port.LeanServer} carries
        flattened has the source it was audited with, in this Twisted; the
        check fails for a changed digest and for a function that is gone
        or whose source cannot be read.
        """
        self.assertTrue(_compat.auditedCodeUnchanged())
        self.assertTrue(_compat.mainLoopCodeUnchanged())
        self.assertTrue(_compat.reactorCodeUnchanged())
        self.assertTrue(_compat.socketCloseAudited())
        self.assertTrue(_compat.flattenedCodeUnchanged(_compat.MAIN_LOOP_CODE))
        self.assertTrue(_compat.flattenedCodeUnchanged(_compat.REACTOR_CODE))
        self.assertTrue(_compat.flattenedCodeUnchanged(_compat.FLATTENED_TWISTED_CODE))
        where = "twisted.internet.tcp:Server.__init__"
        changed = {**_compat.FLATTENED_TWISTED_CODE, where: "0" * 16}
        self.assertFalse(_compat.flattenedCodeUnchanged(changed))
        gone = {"twisted.internet.tcp:Server.notThere": "0" * 16}
        self.assertFalse(_compat.flattenedCodeUnchanged(gone))
        self.assertIsNone(_compat.sourceDigest(len))
        self.assertEqual(
            _compat.sourceDigest(_resolve("twisted.internet.tcp:Server").__init__),
            _compat.FLATTENED_TWISTED_CODE[where],
        )

    def test_tlsTransportUsable(self) -> None:
        """
        This Twisted's TLS transport has what the half-closeable one needs.
        """
        self.assertTrue(_compat.tlsTransportUsable())

    def test_proxyParsersImported(self) -> None:
        """
        The PROXY-protocol internals are importable from C{_compat}.
        """
        for name in ("V1Parser", "V2Parser", "InvalidProxyHeader"):
            self.assertIn(name, _compat.__all__)


class DefinesAttributeTests(TestCase):
    """
    L{_compat.definesAttribute} finds class attributes and assigned ones.
    """

    def test_found(self) -> None:
        """
        A class attribute, a method, and an attribute a method assigns.
        """

        class Base:
            kept = 1

            def make(self) -> None:
                self.made = 2

        class Child(Base):
            pass

        for name in ("kept", "make", "made"):
            self.assertTrue(_compat.definesAttribute(Child, name), name)
        self.assertFalse(_compat.definesAttribute(Child, "never"))


class GuardTests(TestCase):
    """
    Each guard gives the fallback answer for something it does not know.
    """

    def test_eagerSocketOtherTransport(self) -> None:
        """
        Only a plain C{tcp.Server} gets the eager path.
        """
        self.assertIsNone(_compat.eagerSocket(StringTransport()))

    def test_unconnectedUDPSocket(self) -> None:
        """
        A plain unconnected port gives its socket; a connected one, another
        type, or a port missing the private attribute give C{None}.
        """
        port = UDPPort(0, None)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        port.socket = sock
        self.assertIs(_compat.unconnectedUDPSocket(port), sock)
        port._connectedAddr = ("127.0.0.1", 9)
        self.assertIsNone(_compat.unconnectedUDPSocket(port))
        del port._connectedAddr
        self.assertIsNone(_compat.unconnectedUDPSocket(port))
        self.assertIsNone(_compat.unconnectedUDPSocket(StringTransport()))

    def test_sslEndpointParts(self) -> None:
        """
        An C{ssl:} endpoint's parts come back in order; anything else, or an
        endpoint missing one, gives C{None}.
        """
        creator = object()
        endpoint = SSL4ServerEndpoint(MemoryReactor(), 12443, creator, 7, "::1")
        self.assertEqual(_compat.sslEndpointParts(endpoint), (12443, 7, "::1", creator))
        del endpoint._backlog
        self.assertIsNone(_compat.sslEndpointParts(endpoint))
        tcp = TCP4ServerEndpoint(MemoryReactor(), 1)
        self.assertIsNone(_compat.sslEndpointParts(tcp))

    def test_raiseListenErrors(self) -> None:
        """
        The service raises listen failures; without the switch, nothing breaks.
        """
        svc = StreamServerEndpointService(
            TCP4ServerEndpoint(MemoryReactor(), 1), Factory()
        )
        _compat.raiseListenErrors(svc)
        self.assertTrue(svc._raiseSynchronously)
        _compat.raiseListenErrors(object())  # type: ignore[arg-type]


class TwistdLogFileTests(TestCase):
    """
    L{_compat.twistdLogFile} finds the file C{twistd --logfile} opened.
    """

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)

    def test_found(self) -> None:
        """
        After twistd's logger set up its file, that file is found.
        """
        path = self.mktemp()
        appLogger = UnixAppLogger({"logfile": path, "nodaemon": False})
        appLogger._getLogObserver()
        found = _compat.twistdLogFile()
        assert found is not None
        self.addCleanup(found.close)
        self.assertEqual(found.path, os.path.abspath(path))

    def test_otherHandler(self) -> None:
        """
        With no handler, or someone else's, there is none.
        """
        self.assertIsNone(_compat.twistdLogFile())
        signal.signal(signal.SIGUSR1, lambda *_: None)
        self.assertIsNone(_compat.twistdLogFile())
