# -*- test-case-name: tests.unit.test_probe_channels -*-
"""
The sockets and connections that carry probes: they only move bytes, and
hand every reply to the L{ProbeSession}, which judges it.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable
from typing import Any
from typing import Protocol as Protocol_

from twisted.internet.error import ConnectionRefusedError, MessageLengthError
from twisted.internet.protocol import (
    ClientFactory,
    DatagramProtocol,
    Protocol,
    connectionDone,
)
from twisted.python.failure import Failure

from upperecho.scripts.probe.framing import (
    GREETING_PREFIX,
    MAX_GREETING,
    parseGreeting,
)
from upperecho.scripts.probe.session import ProbeSession

__all__ = [
    "SOCKET_BUFFER",
    "ProbeChannel",
    "ProbeDatagramProtocol",
    "ProbeStreamProtocol",
    "StreamFactory",
    "enlargeBuffers",
]


class _DatagramTransport(Protocol_):
    """
    What L{ProbeDatagramProtocol} needs of its transport: a UDP port that
    can be connected to one peer.
    """

    def write(self, data: bytes) -> None: ...
    def connect(self, host: str, port: int) -> None: ...
    def stopListening(self) -> object: ...


class _StreamTransport(Protocol_):
    """
    What L{ProbeStreamProtocol} needs of its transport.
    """

    def write(self, data: bytes) -> None: ...
    def loseConnection(self) -> None: ...


class ProbeChannel(Protocol_):
    """
    Something that can send the next probe: a UDP socket or a TCP connection.
    """

    def sendProbe(self, origin: float) -> None:
        """
        Create the next probe with RTT origin C{origin} and send it.
        """


class ProbeDatagramProtocol(DatagramProtocol):
    """
    One connected UDP socket sending probes and passing replies to the
    session.  Connected, so that only the target's datagrams come in and an
    ICMP "port unreachable" is reported as a refused connection.
    """

    transport: _DatagramTransport  # type: ignore[assignment]

    def __init__(self, session: ProbeSession, flow: int = 0) -> None:
        """
        @param flow: this socket's number, for per-socket reordering.
        """
        self.session = session
        self.flow = flow
        self._closing = False

    def sendProbe(self, origin: float) -> None:
        """
        Send the next probe.
        """
        probe = self.session.newProbe(origin)[1]
        if self.transport is None:
            self.session.sendErrors += 1
            return
        try:
            self.transport.write(probe)
        except (OSError, MessageLengthError):
            # counted as sent: it will time out and be lost, which is the
            # truth about this probe (the socket buffer was full, say)
            self.session.sendErrors += 1

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        """
        A reply: the session finds its probe by the sequence number.
        """
        self.session.datagramReply(data, self.flow)

    def connectionRefused(self) -> None:
        """
        The target answered with ICMP "port unreachable": nothing listens.
        """
        self.session.fail(Failure(ConnectionRefusedError("no UDP service")))

    def stopProtocol(self) -> None:
        """
        The port closed.  Unless we closed it, that is the kernel reporting
        an ICMP "port unreachable" on the connected socket: Twisted's epoll
        reactor sees the socket error as a lost connection and closes the
        port instead of calling L{connectionRefused}.
        """
        if not self._closing:
            self.connectionRefused()

    def close(self) -> None:
        """
        Close on purpose (the run is over).
        """
        self._closing = True
        if self.transport is not None:
            self.transport.stopListening()


class ProbeStreamProtocol(Protocol):
    """
    One TCP connection carrying probes.  Replies come back in order, so the
    next C{n} bytes answer the oldest unanswered probe, whose expected reply
    is C{n} bytes long.

    When the session expects identities (C{--identify}), the connection
    first carries the server's line C{upperecho <name>\\n}: every reply on
    it is from that instance.  A connection without it ends the run.

    @ivar oneShot: close after the first reply (C{--new-connection}).
    @ivar instance: the name of the instance answering, once known.
    """

    transport: _StreamTransport  # type: ignore[assignment]
    instance: str | None = None

    def __init__(self, session: ProbeSession, oneShot: bool = False) -> None:
        self.session = session
        self.oneShot = oneShot
        self.connected = False
        self._fifo: deque[tuple[int, int]] = deque()
        self._buffer = bytearray()
        self._closing = False
        self.onConnect: Callable[[ProbeStreamProtocol], None] | None = None

    def connectionMade(self) -> None:
        """
        Connected: tell whoever is waiting to start sending.
        """
        self.connected = True
        if self.onConnect is not None:
            self.onConnect(self)

    def sendProbe(self, origin: float) -> None:
        """
        Send the next probe on this connection.
        """
        seq, probe, replyLength = self.session.newProbe(origin)
        self.sendPrepared(seq, probe, replyLength)

    def sendPrepared(self, seq: int, probe: bytes, replyLength: int) -> None:
        """
        Send probe C{seq}, already created by the session.
        """
        self._fifo.append((seq, replyLength))
        self.transport.write(probe)

    def dataReceived(self, data: bytes) -> None:
        """
        Split the stream into replies by the expected lengths, oldest probe
        first, and hand each to the session.
        """
        buf = self._buffer
        buf += data
        if self.session.identify and self.instance is None and not self._greeted():
            return
        fifo = self._fifo
        pos = 0
        while fifo and len(buf) - pos >= fifo[0][1]:
            seq, n = fifo.popleft()
            self.session.reply(seq, bytes(buf[pos : pos + n]), 0, self.instance)
            pos += n
        del buf[:pos]
        if buf and not fifo:
            # bytes nobody asked for
            self.session.tally.stray += 1
            buf.clear()
        if self.oneShot and not fifo and pos:
            self._closing = True
            self.transport.loseConnection()

    def _greeted(self) -> bool:
        """
        Read the identity line from the start of the buffer.

        @return: whether it has been read; if not, either more bytes are
            needed or the run has been failed.
        """
        buf = self._buffer
        end = buf.find(b"\n")
        if end < 0:
            head = bytes(buf[: len(GREETING_PREFIX)])
            if len(buf) < MAX_GREETING and GREETING_PREFIX.startswith(head):
                return False  # the line is still coming
            name = None
        else:
            name = parseGreeting(bytes(buf[: end + 1]))
        if name is None:
            self._closing = True
            self.transport.loseConnection()
            self.session.fail(
                Failure(
                    ValueError(
                        "no identity line (upperecho NAME) from the server: "
                        "is it run with --identify?"
                    )
                )
            )
            return False
        del buf[: end + 1]
        self.instance = name
        return True

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        A connection we did not close is an error for the whole run.
        """
        self.connected = False
        if not self._closing:
            self.session.fail(reason)

    def close(self) -> None:
        """
        Close on purpose (the run is over).
        """
        self._closing = True
        if self.connected:
            self.transport.loseConnection()


#: socket buffer size asked for on probe sockets: a load run must not lose
#: replies in its own receive buffer while the reactor is busy sending
SOCKET_BUFFER = 4 * 1024 * 1024


def enlargeBuffers(transport: object) -> None:
    """
    Ask for large send and receive buffers (the kernel caps them at
    C{net.core.rmem_max}/C{wmem_max}; a refusal is harmless).
    """
    sock = getattr(transport, "socket", None)
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)


class StreamFactory(ClientFactory):
    """
    Builds one L{ProbeStreamProtocol} and reports a failed connect.
    """

    noisy = False

    def __init__(
        self,
        session: ProbeSession,
        oneShot: bool,
        onConnect: Callable[[ProbeStreamProtocol], None],
        onFail: Callable[[Failure], None],
    ) -> None:
        self.session = session
        self.oneShot = oneShot
        self.onConnect = onConnect
        self.onFail = onFail

    def buildProtocol(self, addr: Any) -> ProbeStreamProtocol:
        """
        The connection's protocol, wired to the session.
        """
        proto = ProbeStreamProtocol(self.session, self.oneShot)
        proto.onConnect = self.onConnect
        return proto

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        """
        Refused, unreachable or timed out.
        """
        self.onFail(reason)
