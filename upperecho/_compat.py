# -*- test-case-name: tests.unit.test_compat,tests.unit.test_tcp_eager -*-
"""
Every private Twisted name upperecho uses, in one place.

Twisted does not promise to keep a name that starts with an underscore, so
each one upperecho relies on is listed in L{PRIVATE_NAMES} with the Twisted
release it was read from, and is reached only through this module, behind a
guard with a fallback: a Twisted upgrade that moves one costs a feature its
speed or its half-close fix, never correctness, and auditing an upgrade is
reading this one file (C{tests/unit/test_compat.py} fails on the first name
that is gone).

The guards, from cheapest to most drastic fallback:

  - L{eagerSocket}: the TCP fast path checks a transport's type and every
    attribute it reads, per connection; without them, writes go through
    C{transport.write} (slower, same bytes);
  - L{unconnectedUDPSocket}: the UDP fast path, likewise;
  - L{leanDispatchAvailable}: upperecho's reactor dispatches in line only
    where the epoll reactor and the context tracker have what it reads;
    elsewhere it is Twisted's own C{doPoll};
  - L{leanAcceptAvailable}: upperecho's reactor listens on TCP with
    L{upperecho.port.LeanPort} only where Twisted's port and the socket
    module have what its accept loop reads, and Twisted's connection code
    that L{upperecho.port.LeanServer} runs flattened is the code audited
    (L{FLATTENED_TWISTED_CODE}); elsewhere with C{tcp.Port};
  - L{tlsTransportUsable}: the half-closeable TLS transport overrides
    private methods of C{BufferingTLSTransport}; without them,
    L{upperecho.endpoints} serves Twisted's own TLS wrapper;
  - the PROXY-protocol parser classes are imported here; if they move, this
    module simply lacks them, C{upperecho.proxyprotocol} fails to import, and
    L{upperecho.endpoints} serves Twisted's own C{haproxy:} wrapper;
  - L{sslEndpointParts} and L{sniEndpointType}: without them a C{ssl:} or
    C{tls:} endpoint is served by Twisted's own wrapper;
  - L{raiseListenErrors}: without it a failure to listen is logged by
    Twisted instead of ending start-up with one line;
  - L{twistdLogFile}: without it SIGHUP reopens only the JSON log file of
    L{upperecho.logs.jsonLogger}, not C{twistd}'s own C{--logfile}.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import signal
import socket
import sys
import textwrap
from dataclasses import dataclass
from functools import cache
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.tcp import Server as TCPServer
from twisted.internet.udp import Port as UDPPort
from twisted.python.logfile import BaseLogFile

__all__ = [
    "EAGER_TRANSPORTS",
    "PRIVATE_NAMES",
    "PrivateNames",
    "definesAttribute",
    "eagerSocket",
    "leanAcceptAvailable",
    "leanDispatchAvailable",
    "mainLoopParts",
    "raiseListenErrors",
    "sniEndpointType",
    "socketCloseAudited",
    "sslEndpointParts",
    "tlsTransportUsable",
    "twistdLogFile",
    "unconnectedUDPSocket",
]

#: the Twisted release every name below was read from (the oldest that
#: setup.cfg allows)
AUDITED = "26.10.0"


@dataclass(frozen=True)
class PrivateNames:
    """
    Private names upperecho reads in one Twisted module or class.

    @ivar where: the module, or C{module:Class}.
    @ivar names: the private attributes (or submodules) used there.
    @ivar why: what upperecho needs them for, and what it does without.
    @ivar twisted: the Twisted release they were read from.
    """

    where: str
    names: tuple[str, ...]
    why: str
    twisted: str = AUDITED


#: what L{eagerSocket} checks, and C{UpperEchoProtocol._write} and
#: C{_closeNow} then read, of a C{twisted.internet.tcp.Server}: its socket,
#: its write buffer's state, its producer, and how it ends
TCP_SERVER_ATTRIBUTES = (
    "socket",
    "dataBuffer",
    "_tempDataLen",
    "connected",
    "disconnecting",
    "_writeDisconnected",
    "TLS",
    "producer",
    "connectionLost",
)

#: the transport types L{eagerSocket} may send on: C{tcp.Server}, and
#: L{upperecho.port.LeanServer}, which adds itself when defined (it changes
#: what a C{tcp.Server} keeps, not how it reads, writes or closes)
EAGER_TRANSPORTS: set[type] = {TCPServer}

#: the private parts of C{BufferingTLSTransport} that
#: L{upperecho.tls.HalfCloseableTLSProtocol} reads or overrides
TLS_TRANSPORT_ATTRIBUTES = (
    "_tlsConnection",
    "_flushReceiveBIO",
    "_flushSendBIO",
    "_lostTLSConnection",
    "_aborted",
    "_tlsShutdownFinished",
    "_handshakeDone",
    "_shutdownTLS",
)

#: the epoll reactor's private names L{upperecho.reactor.UpperEchoReactor}'s
#: lean dispatch uses
REACTOR_ATTRIBUTES = (
    "_poller",
    "_selectables",
    "_doReadOrWrite",
    "_disconnectSelectable",
    "_reads",
    "_writes",
    "_continuousPolling",
)

#: the epoll reactor's code that L{upperecho.reactor.UpperEchoReactor}'s
#: C{removeReader} and C{removeWriter} run in line for a descriptor epoll
#: holds (as L{FLATTENED_TWISTED_CODE}: if any changes, they are Twisted's)
REACTOR_CODE = {
    "twisted.internet.epollreactor:EPollReactor._remove": "ab595698547b4a87",
    "twisted.internet.epollreactor:EPollReactor.removeReader": "e68aeaeeba120b15",
    "twisted.internet.epollreactor:EPollReactor.removeWriter": "f533157b03f6c697",
    "twisted.internet.epollreactor:EPollReactor.addReader": "48bbda9b5cf8ee7f",
    "twisted.internet.epollreactor:EPollReactor._add": "0220e81be7c372db",
    "twisted.python.context:ContextTracker.getContext": "3fc879d1864464d6",
}

#: Python's code that L{upperecho.port.LeanServer.connectionLost} runs in
#: line to close a socket (the same in Pythons 3.10 to 3.13): where it
#: differs, it calls C{socket.close()} (L{socketCloseAudited})
SOCKET_CLOSE_CODE = {
    "socket:socket.close": "4158f71798806cc3",
    "socket:socket._real_close": "a72cf326d691bb16",
}

#: what L{upperecho.reactor.UpperEchoReactor.mainLoop} reads of the
#: reactor, to tell whether a pass has timed calls to run (C{threadCallQueue}
#: and C{running} are public)
REACTOR_LOOP_ATTRIBUTES = (
    "_started",
    "_justStopped",
    "_pendingTimedCalls",
    "_newTimedCalls",
    "_cancellations",
    "threadCallQueue",
    "running",
)

#: the same, of C{twisted.internet.base}: the handler every pass of the
#: main loop runs under (a C{twisted.logger._logger._FastFailCtxMgr}, whose
#: C{__exit__} the loop calls only when a pass raises), and the logger that
#: says it ended
REACTOR_LOOP_GLOBALS = ("_topHandler", "_log")

#: the Twisted code L{upperecho.reactor.UpperEchoReactor.mainLoop} stands
#: for: it skips C{runUntilCurrent} and C{timeout} on a pass where, as
#: they read in this code, they would do nothing but compute the wait.  As
#: L{FLATTENED_TWISTED_CODE}: if any changes, the loop is Twisted's own.
MAIN_LOOP_CODE = {
    "twisted.internet.base:ReactorBase.mainLoop": "421c59cabb4e63c1",
    "twisted.internet.base:ReactorBase.runUntilCurrent": "461bb58be3c72108",
    "twisted.internet.base:ReactorBase.timeout": "a7879e4dbc964421",
    "twisted.internet.base:ReactorBase._insertNewDelayedCalls": "fa57ecd82fbf80aa",
    "twisted.logger._logger:_FastFailCtxMgr.__enter__": "2a941074f7a0b800",
    "twisted.logger._logger:_FastFailCtxMgr.__exit__": "8e3fb790ff7f77b6",
}

#: what L{upperecho.port.LeanPort}'s accept loop reads of a C{tcp.Port}
#: (C{addressFamily}, C{socketType}: public; the rest private)
TCP_PORT_ATTRIBUTES = (
    "_buildAddr",
    "numberAccepts",
    "sessionno",
    "addressFamily",
    "socketType",
)

#: the private names of C{tcp.Server} that L{upperecho.port.LeanServer}'s
#: flattened C{__init__} and C{connectionLost} set or call
LEAN_SERVER_ATTRIBUTES = (
    "_tempDataBuffer",
    "_tempDataLen",
    "_addressType",
    "_getLogPrefix",
    "_closeSocket",
)

#: Twisted's code that L{upperecho.port.LeanServer} runs flattened into its
#: own C{__init__} and C{connectionLost} (one Python call each, instead of
#: six and nine) and into its C{doRead}'s end of reading, each function's
#: source as read from Twisted L{AUDITED} given by the first 16 hex digits
#: of its SHA-256 (L{sourceDigest}).  If
#: any of them changes, or cannot be read, L{leanAcceptAvailable} is false
#: and connections are Twisted's own: the copy is never older than the code
#: it stands for.
FLATTENED_TWISTED_CODE = {
    "twisted.internet.abstract:FileDescriptor.__init__": "07cd8529302859e0",
    "twisted.internet.abstract:FileDescriptor.startReading": "a99b59fece3821eb",
    "twisted.internet.abstract:FileDescriptor.stopReading": "263dbcc59a0a0c76",
    "twisted.internet.abstract:FileDescriptor.stopWriting": "caed4a484eb020ad",
    "twisted.internet.abstract:FileDescriptor.connectionLost": "f842913d125f509e",
    "twisted.internet.tcp:Connection.__init__": "82433ee7a616597f",
    "twisted.internet.tcp:Connection.connectionLost": "2593a9583349ff34",
    "twisted.internet.tcp:Server.__init__": "ef8b9173c6923258",
    "twisted.internet.tcp:Connection.readConnectionLost": "960d0fd32bec27b2",
    "twisted.internet.tcp:Connection.logPrefix": "0e040f0b3f288158",
    "twisted.internet.tcp:Port.logPrefix": "b876dca4e46be658",
    "twisted.internet.tcp:Connection._closeSocket": "6b095ca22827171c",
    "twisted.internet.posixbase:_DisconnectSelectableMixin._disconnectSelectable": (
        "67a83a2169f1d69b"
    ),
}

#: what L{sslEndpointParts} reads of an C{ssl:} server endpoint
SSL_ENDPOINT_ATTRIBUTES = ("_port", "_sslContextFactory", "_backlog", "_interface")

PRIVATE_NAMES = (
    PrivateNames(
        "twisted.internet.tcp:Server",
        tuple(n for n in TCP_SERVER_ATTRIBUTES if n.startswith("_")),
        "eager send on plain TCP (upperecho.tcp); else transport.write",
    ),
    PrivateNames(
        "twisted.internet.udp:Port",
        ("_connectedAddr",),
        "direct sendto on an unconnected port (upperecho.udp); else transport.write",
    ),
    PrivateNames(
        "twisted.protocols.tls:BufferingTLSTransport",
        TLS_TRANSPORT_ATTRIBUTES,
        "half-close over TLS (upperecho.tls); else Twisted's TLS wrapper",
    ),
    PrivateNames(
        "twisted.internet.epollreactor:EPollReactor",
        REACTOR_ATTRIBUTES,
        "upperecho.reactor's in-line dispatch; else Twisted's own doPoll",
    ),
    PrivateNames(
        "twisted.python.context:ContextTracker",
        ("contexts",),
        "the same: the per-thread context stack it pushes the log context "
        "on (not underscored, but undocumented)",
    ),
    PrivateNames(
        "twisted.internet.base:ReactorBase",
        tuple(n for n in REACTOR_LOOP_ATTRIBUTES if n.startswith("_")),
        "upperecho.reactor's main loop (MAIN_LOOP_CODE); else Twisted's mainLoop",
    ),
    PrivateNames(
        "twisted.internet.base",
        REACTOR_LOOP_GLOBALS,
        "the same: the handler each pass runs under, the logger that says "
        "the loop ended",
    ),
    PrivateNames(
        "twisted.logger._logger",
        ("_FastFailCtxMgr",),
        "the same: the handler's type, whose __exit__ the loop calls only "
        "when a pass raises (MAIN_LOOP_CODE)",
    ),
    PrivateNames(
        "twisted.internet.tcp:Port",
        tuple(n for n in TCP_PORT_ATTRIBUTES if n.startswith("_")),
        "upperecho.port's accept loop (upperecho.reactor's listenTCP); else tcp.Port",
    ),
    PrivateNames(
        "twisted.internet.tcp:Server",
        LEAN_SERVER_ATTRIBUTES,
        "upperecho.port.LeanServer's flattened set-up and tear-down (with "
        "FLATTENED_TWISTED_CODE); else tcp.Port and tcp.Server",
    ),
    PrivateNames(
        "socket:socket",
        ("_accept",),
        "the same: accept without socket.accept's enum conversions "
        "(Python's socket module, read in 3.10 to 3.13)",
    ),
    PrivateNames(
        "socket:socket",
        ("_closed", "_io_refs"),
        "LeanServer's close of its socket (SOCKET_CLOSE_CODE); else "
        "socket.close() (read in 3.10 to 3.13)",
    ),
    PrivateNames(
        "twisted.internet.endpoints:SSL4ServerEndpoint",
        SSL_ENDPOINT_ATTRIBUTES,
        "half-close on ssl: endpoints; else Twisted's TLS wrapper",
    ),
    PrivateNames(
        "twisted.protocols",
        ("_sni",),
        "half-close on tls: endpoints (TLSServerEndpoint); else Twisted's",
    ),
    PrivateNames(
        "twisted.protocols.haproxy",
        ("_exceptions", "_v1parser", "_v2parser", "_wrapper"),
        "half-close and split headers behind haproxy: "
        "(upperecho.proxyprotocol); else Twisted's haproxy: wrapper",
    ),
    PrivateNames(
        "twisted.protocols.haproxy._wrapper:HAProxyProtocolWrapper",
        ("_proxyInfo", "_parser"),
        "the same: the parser state the wrapper subclass drives",
    ),
    PrivateNames(
        "twisted.application.internet:StreamServerEndpointService",
        ("_raiseSynchronously",),
        "a failure to listen ends start-up with one line, as "
        "twisted.application.strports.service does",
    ),
    PrivateNames(
        "twisted.scripts._twistd_unix:UnixAppLogger",
        ("_getLogObserver",),
        "SIGHUP reopens twistd's own --logfile (upperecho.logs), found in "
        "the closure of the SIGUSR1 handler this method installs "
        "(TWISTD_ROTATE_HANDLER); else SIGHUP "
        "reopens only upperecho.logs.jsonLogger's file",
    ),
)


def definesAttribute(cls: type, name: str) -> bool:
    """
    Whether instances of C{cls} have attribute C{name}: a class attribute
    or method, or one that a method of C{cls} or of a base class assigns
    (such as C{_tlsConnection}, set when the connection is made).
    """
    if hasattr(cls, name):
        return True
    for klass in cls.__mro__:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None and name in code.co_names:
                return True
    return False


#: L{eagerSocket}'s answers, by transport type and list of names
_eagerTypes: dict[tuple[type, tuple[str, ...]], bool] = {}


def eagerSocket(transport: object) -> socket.socket | None:
    """
    The socket that L{UpperEchoProtocol<upperecho.tcp.UpperEchoProtocol>}
    may C{send()} on directly, or C{None} when every write must go through
    C{transport.write}.

    C{transport.write} of a Twisted TCP connection only appends to a buffer
    and asks the reactor for a write event (C{epoll_ctl}); the bytes go out on
    the next reactor pass, which then asks the reactor to stop (C{epoll_ctl}
    again).  For a request/response service that doubles the cost of every
    request (twisted#5303).  Sending at once while nothing is queued is what
    asyncio and uvloop do.

    That needs private attributes, so only a plain C{tcp.Server} qualifies
    (or upperecho's own L{LeanServer<upperecho.port.LeanServer>}, see
    L{EAGER_TRANSPORTS}; not another subclass, not TLS, not the C{haproxy:} or any other wrapper, not
    UNIX, not a test transport), and only if its type has everything the
    fast path reads (L{TCP_SERVER_ATTRIBUTES}): a Twisted that changes its
    internals costs speed, never correctness.  Called once per connection,
    so it is kept cheap.
    """
    kind = type(transport)
    if kind not in EAGER_TRANSPORTS:
        return None
    # whether the type has every attribute the fast path reads (as a class
    # attribute or one its code sets), asked once per type and list of
    # names; an instance that lacks one all the same is caught where it
    # is read (AttributeError: the fast path switches itself off)
    key = (kind, TCP_SERVER_ATTRIBUTES)
    usable = _eagerTypes.get(key)
    if usable is None:
        usable = _eagerTypes[key] = all(
            definesAttribute(kind, name) for name in TCP_SERVER_ATTRIBUTES
        )
    if not usable:
        return None
    sock = getattr(transport, "socket", None)
    # a tcp.Server's socket is a connected SOCK_STREAM socket.socket
    return sock if isinstance(sock, socket.socket) else None


def unconnectedUDPSocket(
    transport: object, portTypes: tuple[type, ...] = (UDPPort,)
) -> socket.socket | None:
    """
    The datagram socket of C{transport} if it is exactly one of
    C{portTypes} (a plain C{udp.Port} by default) and not connected to one
    peer, else C{None}.  A Twisted without C{_connectedAddr} gives C{None}.
    """
    if type(transport) not in portTypes:
        return None
    if getattr(transport, "_connectedAddr", True) is not None:
        return None
    sock = getattr(transport, "socket", None)
    if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_DGRAM:
        return None
    return sock


def leanDispatchAvailable(reactor: object) -> bool:
    """
    Whether every private name L{UpperEchoReactor.doPoll
    <upperecho.reactor.UpperEchoReactor.doPoll>} (and its C{removeReader}
    and C{removeWriter}) reads is there on C{reactor} and on Twisted's
    context tracker, and the epoll reactor's code they run in line is the
    code audited (L{REACTOR_CODE}).
    """
    from twisted.python import context

    tracker = context.theContextTracker
    if type(tracker) is not context.ThreadedContextTracker:
        return False
    try:
        stack = tracker.currentContext().contexts
    except AttributeError:
        return False
    return (
        isinstance(stack, list)
        and all(hasattr(reactor, name) for name in REACTOR_ATTRIBUTES)
        and reactorCodeUnchanged()
    )


@cache
def reactorCodeUnchanged() -> bool:
    """
    L{flattenedCodeUnchanged} for L{REACTOR_CODE}, read once.
    """
    return flattenedCodeUnchanged(REACTOR_CODE)


def mainLoopParts(reactor: object) -> tuple[Any, Any] | None:
    """
    What L{UpperEchoReactor.mainLoop
    <upperecho.reactor.UpperEchoReactor.mainLoop>} needs of Twisted's
    (C{twisted.internet.base}'s top-level error handler and logger), or
    C{None} where a name it reads is missing or the code it stands for is
    not the code audited (L{MAIN_LOOP_CODE}): then the loop is Twisted's.
    """
    from twisted.internet import base
    from twisted.logger import _logger

    handler, logger = (getattr(base, name, None) for name in REACTOR_LOOP_GLOBALS)
    if (
        type(handler) is not getattr(_logger, "_FastFailCtxMgr", None)
        or logger is None
        or not all(hasattr(reactor, name) for name in REACTOR_LOOP_ATTRIBUTES)
        or not mainLoopCodeUnchanged()
    ):
        return None
    return handler, logger


@cache
def socketCloseAudited() -> bool:
    """
    Whether C{socket.socket.close} and C{_real_close} are the code audited
    (L{SOCKET_CLOSE_CODE}) and the private names they use are there.
    """
    return all(
        definesAttribute(socket.socket, name) for name in ("_closed", "_io_refs")
    ) and flattenedCodeUnchanged(SOCKET_CLOSE_CODE)


@cache
def mainLoopCodeUnchanged() -> bool:
    """
    L{flattenedCodeUnchanged} for L{MAIN_LOOP_CODE}, read once.
    """
    return flattenedCodeUnchanged(MAIN_LOOP_CODE)


def leanAcceptAvailable() -> bool:
    """
    Whether every private name L{upperecho.port.LeanPort} and its
    L{LeanServer<upperecho.port.LeanServer>} read is there: on Twisted's
    C{tcp.Port} (L{TCP_PORT_ATTRIBUTES}; C{numberAccepts} is set by its
    constructor, so it is looked for in the code), on C{tcp.Server}
    (L{LEAN_SERVER_ATTRIBUTES}) and the socket module's C{_accept}; and
    whether the Twisted code C{LeanServer} runs flattened is the code
    audited (L{flattenedCodeUnchanged}, read once per process).
    """
    from twisted.internet.tcp import Port

    return (
        callable(getattr(socket.socket, "_accept", None))
        and all(definesAttribute(Port, name) for name in TCP_PORT_ATTRIBUTES)
        and all(definesAttribute(TCPServer, n) for n in LEAN_SERVER_ATTRIBUTES)
        and auditedCodeUnchanged()
    )


@cache
def auditedCodeUnchanged() -> bool:
    """
    L{flattenedCodeUnchanged} for L{FLATTENED_TWISTED_CODE}, read once: the
    code cannot change while the process runs.
    """
    return flattenedCodeUnchanged(FLATTENED_TWISTED_CODE)


def sourceDigest(function: object) -> str | None:
    """
    The first 16 hex digits of the SHA-256 of C{function}'s source (its
    indentation removed), or C{None} if the source cannot be read (no
    C{.py} files installed, say).
    """
    try:
        source = textwrap.dedent(inspect.getsource(function))  # type: ignore[arg-type]
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def flattenedCodeUnchanged(audited: dict[str, str]) -> bool:
    """
    Whether every function of Twisted named in C{audited} (C{module:Class.name})
    still has the source it was audited with.
    """
    for where, digest in audited.items():
        module, _, qualified = where.partition(":")
        target: object = importlib.import_module(module)
        for part in qualified.split("."):
            target = getattr(target, part, None)
        if target is None or sourceDigest(target) != digest:
            return False
    return True


def tlsTransportUsable() -> bool:
    """
    Whether C{BufferingTLSTransport} still has every private part the
    half-closeable TLS transport builds on.
    """
    try:
        from twisted.protocols.tls import BufferingTLSTransport
    except ImportError:  # pragma: no cover - Twisted without TLS support
        return False
    return all(
        definesAttribute(BufferingTLSTransport, n) for n in TLS_TRANSPORT_ATTRIBUTES
    )


def sslEndpointParts(endpoint: object) -> tuple[int, int, str, Any] | None:
    """
    The port, backlog, interface and context factory of an C{ssl:} server
    endpoint, or C{None} for any other endpoint or a Twisted that keeps
    them elsewhere.
    """
    if not isinstance(endpoint, SSL4ServerEndpoint) or not all(
        hasattr(endpoint, name) for name in SSL_ENDPOINT_ATTRIBUTES
    ):
        return None
    return (
        endpoint._port,
        endpoint._backlog,
        endpoint._interface,
        endpoint._sslContextFactory,
    )


def sniEndpointType() -> type | None:
    """
    The class of Twisted's C{tls:} server endpoint (SNI, a directory of PEM
    files), or C{None} while its module is not loaded (no such endpoint can
    exist then, and importing it would load pyOpenSSL) or in a Twisted
    without it.  Its C{endpoint} and C{connectionCreator} attributes are
    public.
    """
    module = sys.modules.get("twisted.protocols._sni")
    found = getattr(module, "TLSServerEndpoint", None)
    return found if isinstance(found, type) else None


def raiseListenErrors(service: StreamServerEndpointService) -> None:
    """
    Make C{service} raise a failure to listen from C{privilegedStartService}
    (as L{twisted.application.strports.service} does for its own), so that
    start-up can report it; a Twisted without the switch logs it instead.
    """
    if hasattr(service, "_raiseSynchronously"):
        service._raiseSynchronously = True


#: the qualified name of the SIGUSR1 handler twistd installs to rotate its
#: log file
TWISTD_ROTATE_HANDLER = "UnixAppLogger._getLogObserver.<locals>.rotateLog"


def twistdLogFile() -> BaseLogFile | None:
    """
    The log file C{twistd} opened for C{--logfile}, or C{None} when it
    logs elsewhere (standard output, syslog, a C{--logger}) or keeps it
    where upperecho does not look.

    C{twistd} keeps it nowhere public: only the C{SIGUSR1} handler it
    installs to rotate it holds it, in its closure.
    """
    handler = signal.getsignal(signal.SIGUSR1)
    if getattr(handler, "__qualname__", None) != TWISTD_ROTATE_HANDLER:
        return None
    for cell in getattr(handler, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(value, BaseLogFile):
            return value
    return None


# The PROXY-protocol parser and wrapper: if a Twisted release moves them,
# these names are missing here, importing them from this module fails, and
# upperecho.endpoints falls back to Twisted's own haproxy: wrapper.
try:
    from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
    from twisted.protocols.haproxy._v1parser import V1Parser
    from twisted.protocols.haproxy._v2parser import V2Parser
    from twisted.protocols.haproxy._wrapper import (
        HAProxyProtocolWrapper,
        HAProxyWrappingFactory,
    )
except ImportError:  # pragma: no cover - depends on the Twisted release
    pass
else:
    __all__ += [
        "HAProxyProtocolWrapper",
        "HAProxyWrappingFactory",
        "InvalidProxyHeader",
        "V1Parser",
        "V2Parser",
    ]
