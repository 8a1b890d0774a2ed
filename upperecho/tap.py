# -*- test-case-name: tests.unit.test_tap -*-
"""
The C{twistd upperecho} command line: L{Options} and L{makeService}.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.application import internet
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError, InvalidAddressError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage

from upperecho import identity, options, transform
from upperecho._globalreactor import reactorOr
from upperecho._version import __version__
from upperecho.allocator import tuneAllocator
from upperecho.endpoints import HAPROXY_PREFIX, endpointService
from upperecho.environment import environmentArguments
from upperecho.health import Readiness
from upperecho.impair import Impairment
from upperecho.logs import HangupService
from upperecho.optional import missingMetrics, missingTLS, usesTLS
from upperecho.source import TrustedProxies, network
from upperecho.tcp import UpperEchoFactory
from upperecho.udp import (
    BYTE_RATE,
    MAX_DATAGRAM,
    ReplyWriter,
    UpperEchoDatagramProtocol,
    listenUDP,
)

__all__ = [
    "DEFAULT_PORT",
    "IMPAIRMENT_OPTIONS",
    "Options",
    "UpperEchoService",
    "makeService",
]

#: the port of the textbook's servers, for TCP and UDP alike
DEFAULT_PORT = 12000
#: the --tcp listen queue: Twisted's default of 50 makes a burst of new
#: clients wait a whole SYN retransmission (1 s); the kernel caps this at
#: net.core.somaxconn.  (--listen endpoints take backlog=N themselves.)
LISTEN_BACKLOG = 1024

_log = Logger()


def _number(option: str, value: str, kind: Callable[[str], float] = float) -> float:
    """
    L{options.number} >= 0 for the option named C{option} (without its
    dashes, as L{Options} keys it).
    """
    result: float = options.number(f"--{option}", value, kind)
    return result


def _percent(option: str, value: str) -> float:
    percent = _number(option, value)
    if percent > 100:
        raise usage.UsageError(f"--{option} {value}: not a percentage (0-100)")
    return percent


#: the options whose services are listeners, which readiness waits for
LISTENER_OPTIONS = ("--tcp", "--udp", "--listen")

#: the options that turn UDP impairment on (docs/contract.rst, UDP impairment)
IMPAIRMENT_OPTIONS = ("udp-loss", "udp-duplicate", "udp-delay", "udp-jitter")


def _checkMetrics(description: str) -> None:
    """
    Fail now, as a usage error, if C{--metrics} cannot work.
    """
    missing = missingMetrics()
    if missing:
        raise usage.UsageError(f"--metrics {description}: {missing}")
    _checkEndpoint("metrics", description)


def _checkEndpoint(option: str, description: str) -> None:
    """
    Fail now, as a usage error, if C{description} is not a server endpoint
    that can work here.

    It is parsed against a reactor that never listens: this catches syntax
    errors, unknown prefixes and unreadable TLS files now, as a usage error,
    instead of as a traceback at start-up.
    """
    if usesTLS(description):
        missing = missingTLS()
        if missing:
            raise usage.UsageError(f"--{option} {description}: {missing}")
    try:
        from twisted.internet.endpoints import serverFromString

        serverFromString(MemoryReactor(), description)
    except Exception as e:
        hint = ""
        if description.startswith("systemd:") and isinstance(e, (IndexError, KeyError)):
            hint = (
                " (no such socket was passed: Twisted needs LISTEN_PID, "
                "LISTEN_FDS and LISTEN_FDNAMES, as systemd sets them; with "
                "systemd-socket-activate add --fdname=NAME)"
            )
        raise usage.UsageError(f"--{option} {description}: {e}{hint}") from None


class Options(usage.Options):
    """
    Options for C{twistd upperecho}; every mistake is a one-line
    L{usage.UsageError} naming the option and the value.
    """

    synopsis = "[options]"
    longdesc = (
        "Serve the classic socket-programming uppercase echo: every byte "
        "received over TCP and every datagram received over UDP is sent back "
        "uppercased.  With no --tcp, --udp or --listen, both TCP and UDP are "
        f"served on port {DEFAULT_PORT}.  Every option can also be set in the "
        "environment as UPPERECHO_<OPTION> (--udp-rate: UPPERECHO_UDP_RATE); "
        "the command line wins."
    )

    optParameters: list[list[Any]] = [
        ["tcp", None, None, "Serve the TCP service on this port."],
        ["udp", None, None, "Serve the UDP service on this port."],
        [
            "interface",
            None,
            "",
            "Address to bind --tcp and --udp to; '::' is dual-stack IPv4+IPv6 "
            "[default: all IPv4 addresses].",
        ],
        [
            "encoding",
            None,
            "utf-8",
            "Text encoding used to uppercase: any Python text codec that gives "
            "back the bytes it decodes (not UTF-16/32, UTF-7 or utf-8-sig).",
        ],
        [
            "max-connections",
            None,
            "10000",
            "Concurrent TCP connections; more are closed at once.",
        ],
        [
            "max-connections-per-source",
            None,
            "0",
            "Concurrent TCP connections from one source (an IPv4 address, an "
            "IPv6 /64, a PROXY header's client); 0 = no cap but a fair share.",
        ],
        [
            "idle-timeout",
            None,
            "300",
            "Close a TCP connection silent for this many seconds; 0 = never.",
        ],
        [
            "udp-rate",
            None,
            "1000",
            "UDP replies per second to one source IP (burst of as many); "
            "0 = unlimited.",
        ],
        [
            "udp-byte-rate",
            None,
            str(BYTE_RATE),
            "UDP reply bytes per second to one source IP (burst of as many); "
            "0 = unlimited.",
        ],
        [
            "udp-loss",
            None,
            "0",
            "Impairment: drop this percent (0-100) of UDP replies.",
        ],
        [
            "udp-duplicate",
            None,
            "0",
            "Impairment: send this percent (0-100) of UDP replies twice.",
        ],
        [
            "udp-delay",
            None,
            "0",
            "Impairment: delay every UDP reply by this many milliseconds.",
        ],
        [
            "udp-jitter",
            None,
            "0",
            "Impairment: add a uniform random 0 to this many milliseconds to "
            "each UDP reply's delay, so that replies overtake each other.",
        ],
        [
            "udp-seed",
            None,
            None,
            "Seed the impairment's random choices, so that a run can be "
            "repeated [default: random, logged at start-up].",
        ],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this server endpoint, "
            "e.g. tcp:9100:interface=127.0.0.1; /healthz and /readyz too.",
        ],
        [
            "health",
            None,
            None,
            "Serve /healthz and /readyz alone on this server endpoint, e.g. tcp:8080.",
        ],
        [
            "drain-delay",
            None,
            "0",
            "Seconds to go on serving after SIGTERM, with /readyz already "
            "503, so that load balancers stop sending first.",
        ],
        [
            "name",
            None,
            None,
            "The name --identify gives [default: $POD_NAME, else the host name].",
        ],
    ]

    optFlags: list[list[Any]] = [
        [
            "identify",
            None,
            "Begin every TCP connection with 'upperecho NAME\\n' and every "
            "UDP reply with 'NAME: ' (see --name).",
        ],
    ]

    compData = usage.Completions(
        optActions={"interface": usage.CompleteNetInterfaces()}
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["proxy-from"] = []

    def opt_proxy_from(self, value: str) -> None:
        """
        Accept haproxy: connections (and their PROXY header) only from this
        address or network, e.g. 10.0.0.0/8 (repeatable) [default: any peer].
        """
        try:
            self["proxy-from"].append(network(value))
        except ValueError:
            raise usage.UsageError(
                f"--proxy-from {value}: not an IPv4 or IPv6 address or network"
            ) from None

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse the command line after the options the environment sets
        (L{upperecho.environment}: C{UPPERECHO_TCP=12000} is C{--tcp
        12000}); the command line wins.
        """
        argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(environmentArguments(self, os.environ, argv) + argv)

    def opt_listen(self, description: str) -> None:
        """
        Serve the stream service on a Twisted server endpoint (repeatable):
        tcp:12000, tcp6:port=12000:interface=\\:\\:1, unix:/run/upperecho.sock,
        ssl:12443:privateKey=key.pem:certKey=cert.pem,
        systemd:domain=INET:index=0, haproxy:tcp:12000.
        """
        _checkEndpoint("listen", description)
        self["listen"].append(description)

    def postOptions(self) -> None:
        for name in ("tcp", "udp"):
            if self[name] is not None:
                self[name] = options.port(f"--{name}", self[name])
        if self["interface"]:
            try:
                ipaddress.ip_address(self["interface"])
            except ValueError:
                raise usage.UsageError(
                    f"--interface {self['interface']}: not an IPv4 or IPv6 address"
                ) from None
        if self["tcp"] is None and self["udp"] is None and not self["listen"]:
            self["tcp"] = self["udp"] = DEFAULT_PORT
        self["encoding"] = options.encoding(self["encoding"])
        self["max-connections"] = int(
            _number("max-connections", self["max-connections"], int)
        )
        if self["max-connections"] < 1:
            raise usage.UsageError(
                f"--max-connections {self['max-connections']}: must be at least 1"
            )
        self["max-connections-per-source"] = int(
            _number(
                "max-connections-per-source", self["max-connections-per-source"], int
            )
        )
        self["idle-timeout"] = _number("idle-timeout", self["idle-timeout"])
        self["udp-rate"] = _number("udp-rate", self["udp-rate"])
        self["udp-byte-rate"] = _number("udp-byte-rate", self["udp-byte-rate"])
        for name in ("udp-loss", "udp-duplicate"):
            self[name] = _percent(name, self[name])
        for name in ("udp-delay", "udp-jitter"):
            self[name] = _number(name, self[name])
        if self["udp-seed"] is not None:
            self["udp-seed"] = int(_number("udp-seed", self["udp-seed"], int))
        if self["udp"] is None:
            for name in IMPAIRMENT_OPTIONS:
                if self[name]:
                    raise usage.UsageError(
                        f"--{name} impairs UDP replies, but no --udp service is served"
                    )
        if self["proxy-from"] and not any(
            d.startswith(HAPROXY_PREFIX) for d in self["listen"]
        ):
            raise usage.UsageError(
                "--proxy-from names trusted proxies, but no --listen haproxy:... "
                "endpoint is served"
            )
        if self["metrics"] is not None:
            _checkMetrics(self["metrics"])
        if self["health"] is not None:
            _checkEndpoint("health", self["health"])
        self["drain-delay"] = _number("drain-delay", self["drain-delay"])
        self._checkName()

    def _checkName(self) -> None:
        if not self["identify"]:
            if self["name"] is not None:
                raise usage.UsageError(f"--name {self['name']}: needs --identify")
            return
        given = self["name"] is not None
        name = self["name"] if given else identity.defaultName()
        why = identity.invalidName(name)
        if why is not None:
            source = "--name" if given else "the default name ($POD_NAME or host name)"
            hint = "" if given else "; give one with --name"
            raise usage.UsageError(f"{source} {name!r}: {why}{hint}")
        self["name"] = name


class UpperEchoService(MultiService):
    """
    The upperecho services, started so that a failure to listen ends the
    program with one line naming the option, not with a traceback.

    Each child is named for the option that asked for it (C{--tcp 12000}).

    It also owns the process, so it is what tunes the C allocator for a
    server (L{tuneAllocator}); set L{tuneMalloc} to C{False} to keep the
    platform's defaults.
    """

    _log = Logger()
    #: whether starting calls L{tuneAllocator}
    tuneMalloc = True
    #: the reactor the services listen with (named in the start-up log)
    reactor: Any = None
    #: told first when the services stop, and may hold the stop back
    #: (C{--drain-delay})
    readiness: Readiness | None = None

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        for child in self:
            self._start(child, child.privilegedStartService)

    def startService(self) -> None:
        # here, not in privilegedStartService: the twist runner calls only this
        if self.tuneMalloc:
            tuneAllocator()
        kind = type(self.reactor)
        self._log.info(
            "upperecho {version}: reactor {reactor}, transform {transform}",
            version=__version__,
            reactor=f"{kind.__module__}.{kind.__qualname__}",
            transform=transform.IMPLEMENTATION,
        )
        Service.startService(self)
        for child in self:
            self._start(child, child.startService)

    def stopService(self) -> Deferred[object]:
        """
        Mark the server not ready, wait out the drain, then stop every
        service (closing the listeners).
        """
        readiness = self.readiness
        draining = None if readiness is None else readiness.drain()
        if draining is None:
            stopped: Deferred[object] = MultiService.stopService(self)
            return stopped
        return draining.addCallback(lambda _: MultiService.stopService(self))

    def _start(self, child: IService, start: Callable[[], object]) -> None:
        try:
            start()
        except (CannotListenError, InvalidAddressError, OSError) as e:
            # OSError: a unix: socket in a missing folder, a lock that cannot
            # be taken; InvalidAddressError: an --interface Twisted refuses
            reason = getattr(e, "socketError", None) or e
            # twistd has already redirected sys.stderr into its log by now;
            # the person who started it should see this line on the terminal.
            stderr = sys.__stderr__ or sys.stderr
            print(f"upperecho: {child.name}: cannot listen: {reason}", file=stderr)
            self._log.error(
                "{option}: cannot listen: {reason}", option=child.name, reason=reason
            )
            raise SystemExit(1) from None


class UDPService(Service):
    """
    The C{--udp} service: C{twisted.application.internet.UDPServer}, but
    listening with L{upperecho.udp.listenUDP}, whose port sends the replies
    to a burst of datagrams together.

    @ivar protocol: the protocol it serves.
    """

    _port: IListeningPort | None = None

    def __init__(
        self, port: int, protocol: DatagramProtocol, interface: str, reactor: Any
    ) -> None:
        self.portNumber = port
        self.protocol = protocol
        self.interface = interface
        self.reactor = reactor

    def _listen(self) -> IListeningPort:
        return listenUDP(
            self.reactor, self.portNumber, self.protocol, self.interface, MAX_DATAGRAM
        )

    def privilegedStartService(self) -> None:
        # listen while still privileged, as Twisted's own servers do
        Service.privilegedStartService(self)
        self._port = self._listen()

    def startService(self) -> None:
        Service.startService(self)
        if self._port is None:
            self._port = self._listen()

    def stopService(self) -> Deferred[None] | None:
        Service.stopService(self)
        port, self._port = self._port, None
        if port is None:
            return None
        stopped = port.stopListening()
        return stopped if isinstance(stopped, Deferred) else None


def _installReactor() -> None:
    """
    Install upperecho's epoll reactor if no reactor was chosen (Linux only:
    elsewhere there is no epoll, and Twisted's default stays).
    """
    try:
        from upperecho.reactor import installIfUnchosen
    except ImportError:
        return
    installIfUnchosen()


def makeService(
    config: Options | dict[str, Any], reactor: Any = None
) -> UpperEchoService:
    """
    Build the upperecho services from parsed L{Options}.

    @param reactor: the reactor to listen with (tests pass a fake); the
        global reactor by default, which is L{upperecho.reactor}'s where
        nothing installed one before (C{twistd --reactor NAME} always wins).
    """
    if reactor is None:
        _installReactor()
    reactor = reactorOr(reactor)
    top = UpperEchoService()
    top.reactor = reactor
    listens: Sequence[str] = config.get("listen", [])
    factory = None
    proto = None
    name = config.get("name") if config.get("identify") else None
    if config.get("tcp") is not None or listens:
        factory = UpperEchoFactory(
            encoding=config["encoding"],
            maxConnections=config["max-connections"],
            idleTimeout=config["idle-timeout"],
            clock=reactor,
            maxPerSource=config.get("max-connections-per-source", 0),
        )
        if name is not None:
            factory.greeting = identity.greeting(name)
    if config.get("tcp") is not None:
        tcp = internet.TCPServer(
            config["tcp"],
            factory,
            backlog=LISTEN_BACKLOG,
            interface=config["interface"],
            reactor=reactor,
        )
        tcp.setName(f"--tcp {config['tcp']}")
        tcp.setServiceParent(top)
    proxyFrom = config.get("proxy-from") or []
    trusted = TrustedProxies(proxyFrom) if proxyFrom else None
    for i, description in enumerate(listens):
        assert factory is not None
        if description.startswith(HAPROXY_PREFIX) and trusted is None:
            _log.warn(
                "--listen {description}: any peer may send a PROXY header and "
                "claim any client address; give --proxy-from NET to accept "
                "headers only from your proxies",
                description=description,
            )
        svc = endpointService(description, factory, reactor, trusted)
        svc.setName(f"--listen {description}" + (f" (#{i + 1})" if i else ""))
        svc.setServiceParent(top)
    if config.get("udp") is not None:
        impairment = None
        # Off means absent: the protocol then pays one "is None" check.
        if any(config.get(name) for name in IMPAIRMENT_OPTIONS):
            impairment = Impairment(
                reactor,
                loss=config.get("udp-loss", 0),
                duplicate=config.get("udp-duplicate", 0),
                delay=config.get("udp-delay", 0),
                jitter=config.get("udp-jitter", 0),
                seed=config.get("udp-seed"),
            )
            # Before the UDP service, so that it stops after it: no reply is
            # scheduled once the pending ones are cancelled.
            impairment.setName("UDP impairment")
            impairment.setServiceParent(top)
        writer: ReplyWriter | None = impairment
        if name is not None:
            writer = identity.PrefixWriter(identity.replyPrefix(name), impairment)
        proto = UpperEchoDatagramProtocol(
            encoding=config["encoding"],
            rate=config["udp-rate"],
            byteRate=config.get("udp-byte-rate", BYTE_RATE),
            ownPorts=[config["udp"]] if config["udp"] else [],
            clock=reactor,
            impairment=writer,
        )
        udp = UDPService(config["udp"], proto, config["interface"], reactor)
        udp.setName(f"--udp {config['udp']}")
        udp.setServiceParent(top)
    _addOperations(top, config, factory, proto, reactor)
    return top


def _addOperations(
    top: UpperEchoService,
    config: Options | dict[str, Any],
    factory: UpperEchoFactory | None,
    proto: UpperEchoDatagramProtocol | None,
    reactor: Any,
) -> None:
    """
    Add what operators and orchestrators use to the echo services of
    C{top}: readiness (marked not ready when the shutdown begins), the
    C{--metrics} and C{--health} pages, and the SIGHUP handler.
    """
    from upperecho.web import healthRoot, webService

    top.readiness = readiness = Readiness(
        [svc for svc in top if str(svc.name).split(" ")[0] in LISTENER_OPTIONS],
        config.get("drain-delay", 0),
        reactor,
    )
    if config.get("metrics"):
        from upperecho.metrics import metricsResource

        root = healthRoot(readiness)
        root.putChild(b"metrics", metricsResource(factory, proto))
        webService("metrics", config["metrics"], root, reactor).setServiceParent(top)
    if config.get("health"):
        root = healthRoot(readiness)
        webService("health", config["health"], root, reactor).setServiceParent(top)
    HangupService(reactor).setServiceParent(top)
