"""
Tests for L{upperecho.tap}: option parsing, defaults, errors and the
services L{makeService} builds (against a fake reactor).
"""

from __future__ import annotations

import io
import os
import socket
import sys
from typing import Any, cast

from twisted.application import internet
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from upperecho.impair import Impairment
from upperecho.tap import DEFAULT_PORT, Options, makeService
from upperecho.tcp import UpperEchoFactory
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def assertOneLineErrors(
    case: SynchronousTestCase, cases: list[tuple[list[str], str]]
) -> None:
    """
    Each command line in C{cases} is refused with a one-line usage error that
    contains the expected text (the option and its value).
    """
    for argv, expected in cases:
        with case.assertRaises(usage.UsageError, msg=str(argv)) as e:
            parse(*argv)
        message = str(e.exception)
        case.assertIn(expected, message)
        case.assertNotIn("\n", message)


class OptionsTests(SynchronousTestCase):
    """
    The command line of docs/contract.rst, The server command.
    """

    def test_defaults(self) -> None:
        """
        With no listener named, TCP and UDP are both served on 12000.
        """
        o = parse()
        self.assertEqual((o["tcp"], o["udp"], o["listen"]), (12000, 12000, []))
        self.assertEqual(o["encoding"], "utf-8")
        self.assertEqual(o["max-connections"], 10000)
        self.assertEqual(o["idle-timeout"], 300)
        self.assertEqual(o["udp-rate"], 1000)
        self.assertEqual(o["udp-byte-rate"], 1048576)
        self.assertEqual(o["max-connections-per-source"], 0)
        self.assertEqual(o["proxy-from"], [])
        self.assertEqual(o["interface"], "")

    def test_onlyWhatIsNamed(self) -> None:
        """
        Naming one listener turns the defaults off.
        """
        o = parse("--udp", "12001")
        self.assertEqual((o["tcp"], o["udp"]), (None, 12001))
        o = parse("--listen", "tcp:12005")
        self.assertEqual((o["tcp"], o["udp"], o["listen"]), (None, None, ["tcp:12005"]))

    def test_listenRepeatable(self) -> None:
        """
        --listen may be given several times.
        """
        o = parse("--listen", "tcp:1", "--listen", "unix:/tmp/x.sock")
        self.assertEqual(o["listen"], ["tcp:1", "unix:/tmp/x.sock"])

    def test_badValues(self) -> None:
        """
        Every bad value is a one-line usage error naming option and value.
        """
        cases = [
            (["--tcp", "70000"], "--tcp 70000"),
            (["--udp", "x"], "--udp x"),
            (["--tcp", "-1"], "--tcp -1"),
            (["--encoding", "nope"], "--encoding"),
            (["--encoding", "base64"], "base64"),
            (["--max-connections", "0"], "--max-connections 0"),
            (["--max-connections", "many"], "--max-connections many"),
            (["--idle-timeout", "-5"], "--idle-timeout -5"),
            (["--idle-timeout", "nan"], "--idle-timeout nan"),
            (["--udp-rate", "fast"], "--udp-rate fast"),
            (["--interface", "foo"], "--interface foo"),
            (["--udp-rate", "inf"], "--udp-rate inf"),
            (["--idle-timeout", "inf"], "--idle-timeout inf"),
            (["--interface", "1.2.3.4.5"], "--interface 1.2.3.4.5"),
            (["--listen", "bogus:1"], "--listen bogus:1"),
            (["--listen", "tcp:notaport"], "--listen tcp:notaport"),
            (["--listen", "ssl:1:privateKey=/nonexistent.pem"], "--listen ssl:1"),
            (["--udp-byte-rate", "-1"], "--udp-byte-rate -1"),
            (["--udp-byte-rate", "lots"], "--udp-byte-rate lots"),
            (["--max-connections-per-source", "-2"], "--max-connections-per-source"),
            (["--max-connections-per-source", "1.5"], "--max-connections-per-source"),
            (["--proxy-from", "10.0.0.0/33"], "--proxy-from 10.0.0.0/33"),
            (["--proxy-from", "haproxy.lan"], "--proxy-from haproxy.lan"),
            (["--proxy-from", "10.0.0.0/8"], "no --listen haproxy:"),
        ]
        assertOneLineErrors(self, cases)

    def test_helpDocumentsEveryOption(self) -> None:
        """
        C{--help} documents every option of docs/contract.rst.
        """
        text = str(Options())
        for name in (
            "--tcp",
            "--udp",
            "--interface",
            "--listen",
            "--encoding",
            "--max-connections",
            "--idle-timeout",
            "--udp-rate",
            "--udp-byte-rate",
            "--max-connections-per-source",
            "--proxy-from",
            "--metrics",
            "--udp-loss",
            "--udp-duplicate",
            "--udp-delay",
            "--udp-jitter",
            "--udp-seed",
        ):
            self.assertIn(name, text)


class FakeUDPReactor(MemoryReactor):
    """
    L{MemoryReactor} has no C{listenUDP}; record calls to it here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.udpPorts: list[tuple[Any, ...]] = []

    def listenUDP(
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192
    ) -> Any:
        self.udpPorts.append((port, protocol, interface, maxPacketSize))
        return object()


def started(*argv: str) -> FakeUDPReactor:
    """
    The reactor a service made from C{argv} has started listening on.
    """
    reactor = FakeUDPReactor()
    makeService(parse(*argv), reactor=reactor).privilegedStartService()
    return reactor


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeService} wires the options into TCP, UDP and endpoint services.
    """

    def test_defaultServices(self) -> None:
        """
        By default, one TCP and one UDP service on 12000 share the settings.
        """
        reactor = FakeUDPReactor()
        svc = makeService(parse("--encoding", "latin-1"), reactor=reactor)
        svc.privilegedStartService()
        svc.startService()
        ((port, factory, backlog, interface),) = reactor.tcpServers
        self.assertEqual((port, backlog, interface), (DEFAULT_PORT, 1024, ""))
        assert isinstance(factory, UpperEchoFactory)
        self.assertEqual(factory.encoding, "iso8859-1")
        ((uport, proto, uinterface, size),) = reactor.udpPorts
        self.assertEqual((uport, uinterface, size), (DEFAULT_PORT, "", MAX_DATAGRAM))
        self.assertIsInstance(proto, UpperEchoDatagramProtocol)
        self.assertIn(DEFAULT_PORT, proto.ownPorts)

    def test_interfaceAndLimits(self) -> None:
        """
        --interface, --max-connections, --idle-timeout and --udp-rate reach
        the services.
        """
        reactor = started(
            "--tcp",
            "1",
            "--udp",
            "2",
            "--interface",
            "::",
            "--max-connections",
            "7",
            "--idle-timeout",
            "0",
        )
        ((_, factory, _, interface),) = reactor.tcpServers
        assert isinstance(factory, UpperEchoFactory)
        self.assertEqual(interface, "::")
        self.assertEqual((factory.maxConnections, factory.idleTimeout), (7, 0))
        self.assertEqual(reactor.udpPorts[0][2], "::")

    def test_listen(self) -> None:
        """
        Each --listen becomes an endpoint service with the same factory.
        """
        reactor = FakeUDPReactor()
        svc = makeService(
            parse("--listen", "tcp:1", "--listen", "tcp:2:interface=127.0.0.1"),
            reactor=reactor,
        )
        children = [child for child in svc if child.name.startswith("--listen")]
        self.assertEqual(len(children), 2)
        for child in children:
            self.assertIsInstance(child, StreamServerEndpointService)
        svc.privilegedStartService()
        self.assertEqual([p[0] for p in reactor.tcpServers], [1, 2])
        self.assertIs(reactor.tcpServers[0][1], reactor.tcpServers[1][1])

    def test_fairShareOptions(self) -> None:
        """
        --max-connections-per-source and --udp-byte-rate reach the services.
        """
        reactor = started(
            "--tcp",
            "1",
            "--udp",
            "2",
            "--max-connections-per-source",
            "3",
            "--udp-byte-rate",
            "500",
        )
        factory = reactor.tcpServers[0][1]
        assert isinstance(factory, UpperEchoFactory)
        self.assertEqual(factory.fairShare.perSource, 3)
        proto = reactor.udpPorts[0][1]
        assert proto._byteLimiter is not None
        self.assertEqual(proto._byteLimiter.rate, 500)
        reactor = started("--udp", "3", "--udp-byte-rate", "0")
        self.assertIsNone(reactor.udpPorts[-1][1]._byteLimiter)

    def test_proxyFrom(self) -> None:
        """
        A haproxy: endpoint without --proxy-from logs that any peer may send
        a header; with it, the endpoint trusts only those networks.
        """
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        svc = makeService(parse("--listen", "haproxy:tcp:1"), reactor=FakeUDPReactor())
        warned = [e for e in events if "any peer may send" in e["log_format"]]
        self.assertEqual(len(warned), 1)
        (child,) = [c for c in svc if isinstance(c, StreamServerEndpointService)]
        self.assertIsNone(child.endpoint.trusted)
        events.clear()
        svc = makeService(
            parse(
                "--listen",
                "haproxy:tcp:1",
                "--proxy-from",
                "127.0.0.1/8",
                "--proxy-from",
                "::1",
            ),
            reactor=FakeUDPReactor(),
        )
        self.assertEqual(events, [])
        (child,) = [c for c in svc if isinstance(c, StreamServerEndpointService)]
        trusted = child.endpoint.trusted
        self.assertEqual(str(trusted), "127.0.0.0/8 ::1/128")

    def test_cannotListen(self) -> None:
        """
        A port that cannot be bound ends start-up with one line naming the
        option, instead of a traceback.
        """

        class Busy(FakeUDPReactor):
            def listenTCP(self, port: int, *a: Any, **kw: Any) -> Any:
                raise CannotListenError("", port, OSError(98, "Address already in use"))

        svc = makeService(parse("--tcp", "12345"), reactor=Busy())
        stderr = io.StringIO()
        self.patch(sys, "__stderr__", stderr)
        with self.assertRaises(SystemExit) as e:
            svc.privilegedStartService()
        self.assertEqual(e.exception.code, 1)
        self.assertEqual(
            stderr.getvalue(),
            "upperecho: --tcp 12345: cannot listen: [Errno 98] Address already in use\n",
        )

    def test_tcpServerType(self) -> None:
        """
        --tcp uses Twisted's own TCPServer service.
        """
        svc = makeService(parse("--tcp", "5"), reactor=FakeUDPReactor())
        self.assertIsInstance(svc.getServiceNamed("--tcp 5"), internet.TCPServer)


class PluginTests(SynchronousTestCase):
    """
    The twistd plugin is found and points at this module.
    """

    def test_plugin(self) -> None:
        """
        C{getPlugins} finds a service maker with tapname C{upperecho} whose
        options and makeService are this package's.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        self.assertIn("upperecho", makers)
        maker = makers["upperecho"]
        self.assertIs(maker.options, Options)
        self.assertIs(maker.makeService, makeService)


class ImpairmentOptionsTests(SynchronousTestCase):
    """
    The options of docs/contract.rst, UDP impairment.
    """

    def test_defaults(self) -> None:
        """
        Impairment is off by default, and the seed is left to chance.
        """
        o = parse()
        self.assertEqual(
            [o[n] for n in ("udp-loss", "udp-duplicate", "udp-delay", "udp-jitter")],
            [0, 0, 0, 0],
        )
        self.assertIsNone(o["udp-seed"])

    def test_values(self) -> None:
        """
        Percentages and milliseconds may be fractional; the seed is an int.
        """
        o = parse(
            "--udp-loss",
            "12.5",
            "--udp-duplicate",
            "100",
            "--udp-delay",
            "0.5",
            "--udp-jitter",
            "20",
            "--udp-seed",
            "7",
        )
        self.assertEqual(
            [
                o[n]
                for n in (
                    "udp-loss",
                    "udp-duplicate",
                    "udp-delay",
                    "udp-jitter",
                    "udp-seed",
                )
            ],
            [12.5, 100, 0.5, 20, 7],
        )

    def test_badValues(self) -> None:
        """
        Negative, over 100 %, not a number, infinite, a non-integer seed, or
        impairment without a UDP service: a one-line usage error naming the
        option and the value.
        """
        cases = [
            (["--udp-loss", "150"], "--udp-loss 150"),
            (["--udp-loss", "-1"], "--udp-loss -1"),
            (["--udp-loss", "some"], "--udp-loss some"),
            (["--udp-loss", "nan"], "--udp-loss nan"),
            (["--udp-duplicate", "100.1"], "--udp-duplicate 100.1"),
            (["--udp-delay", "-5"], "--udp-delay -5"),
            (["--udp-delay", "inf"], "--udp-delay inf"),
            (["--udp-jitter", "lots"], "--udp-jitter lots"),
            (["--udp-seed", "1.5"], "--udp-seed 1.5"),
            (["--udp-seed", "-3"], "--udp-seed -3"),
            (["--udp-seed", "x"], "--udp-seed x"),
            (["--tcp", "1", "--udp-loss", "10"], "--udp-loss"),
        ]
        assertOneLineErrors(self, cases)

    def test_offMeansAbsent(self) -> None:
        """
        With every value 0 (a seed alone changes nothing) the protocol gets
        no impairment at all, so a datagram costs one C{is None} check.
        """
        for argv in ([], ["--udp-seed", "3", "--udp-loss", "0"]):
            svc = makeService(parse("--udp", "5", *argv), reactor=FakeUDPReactor())
            self.assertEqual([s.name for s in svc], ["--udp 5", "SIGHUP"])
            proto = svc.getServiceNamed("--udp 5").protocol
            self.assertIsNone(proto.impairment)

    def test_wiring(self) -> None:
        """
        Any impairment value builds an L{Impairment} with every value, hands
        it to the UDP protocol and starts it next to the UDP service (before
        it, so that it stops after it), logging one line that says so.
        """
        reactor = FakeUDPReactor()
        svc = makeService(
            parse(
                "--udp",
                "5",
                "--tcp",
                "6",
                "--udp-loss",
                "30",
                "--udp-duplicate",
                "2",
                "--udp-delay",
                "4",
                "--udp-jitter",
                "8",
                "--udp-seed",
                "1",
            ),
            reactor=reactor,
        )
        impairment = svc.getServiceNamed("UDP impairment")
        assert isinstance(impairment, Impairment)
        self.assertEqual(
            (
                impairment.loss,
                impairment.duplicate,
                impairment.delay,
                impairment.jitter,
                impairment.seed,
            ),
            (30, 2, 4, 8, 1),
        )
        proto = svc.getServiceNamed("--udp 5").protocol
        self.assertIs(proto.impairment, impairment)
        self.assertIs(impairment._clock, reactor)
        names = [s.name for s in svc]
        self.assertLess(names.index("UDP impairment"), names.index("--udp 5"))
        events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        try:
            svc.privilegedStartService()
            svc.startService()
        finally:
            globalLogPublisher.removeObserver(observer)
        lines = [formatEvent(e) for e in events if "impaired" in formatEvent(e)]
        self.assertEqual(len(lines), 1)
        self.assertIn("30% lost", lines[0])
        self.assertIn("seed 1", lines[0])
        self.assertTrue(impairment.running)


class DeploymentOptionsTests(SynchronousTestCase):
    """
    --identify, --name, --health and --drain-delay (docs/contract.rst).
    """

    def test_identify(self) -> None:
        """
        --identify takes --name, or $POD_NAME, else the host name; the
        services get the greeting and the reply prefix.
        """
        self.patch(os, "environ", {"POD_NAME": "echo-abc12"})
        self.assertEqual(parse("--identify")["name"], "echo-abc12")
        self.assertEqual(parse("--identify", "--name", "n1")["name"], "n1")
        self.patch(os, "environ", {})
        self.assertEqual(parse("--identify")["name"], socket.gethostname())
        reactor = started("--identify", "--name", "n1", "--tcp", "1", "--udp", "2")
        factory: Any = reactor.tcpServers[0][1]
        self.assertEqual(factory.greeting, b"upperecho n1\n")
        writer = reactor.udpPorts[0][1].impairment
        self.assertEqual(writer.prefix, b"n1: ")

    def test_offByDefault(self) -> None:
        """
        Without --identify, no greeting and no reply writer.
        """
        reactor = started("--tcp", "1", "--udp", "2")
        factory: Any = reactor.tcpServers[0][1]
        self.assertEqual(factory.greeting, b"")
        self.assertIsNone(reactor.udpPorts[0][1].impairment)

    def test_errors(self) -> None:
        """
        One line each.
        """
        self.patch(os, "environ", {"POD_NAME": "bad name"})
        assertOneLineErrors(
            self,
            [
                (["--name", "n1"], "--name n1: needs --identify"),
                (["--identify", "--name", "a:b"], "--name 'a:b': not 1-253"),
                (["--identify"], "the default name ($POD_NAME or host name)"),
                (["--drain-delay", "-1"], "--drain-delay -1: not a finite number"),
                (["--health", "nope:1"], "--health nope:1:"),
            ],
        )
