"""
Stateful fuzzing of the protocols with hypothesis: random interleavings of
what a peer and the reactor can do to a connection or a datagram port, with
the SPEC's promises checked after every step.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport, StringTransport
from twisted.python.failure import Failure

from upperecho.tcp import UpperEchoFactory, UpperEchoProtocol
from upperecho.transform import upper
from upperecho.udp import UpperEchoDatagramProtocol

#: text with multi-byte UTF-8 characters, including ones whose uppercase
#: form is longer (ß, ŉ, ﬁ) and ones with none (中)
TEXT = st.text(
    alphabet=st.sampled_from("aZ 9\nßŉﬁǆ中é€😀ıſ\x00") | st.characters(codec="utf-8"),
    max_size=40,
)
#: held bytes at most: the tail of one incomplete UTF-8 character
MAX_HELD = 3


class LenientTransport(StringTransport):
    """
    A L{StringTransport} that, like Twisted's real stream transports (TCP,
    TLS), accepts C{unregisterProducer} when no producer is registered: the
    idle sweep may close a connection that has already half-closed.
    """

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class StreamMachine(RuleBasedStateMachine):
    """
    One L{UpperEchoProtocol} over a L{StringTransport}: data in random
    chunks (random bytes, UTF-8 text cut inside characters), the transport
    pausing and resuming itself, the idle sweep, half-close and loss.
    """

    @initialize()
    def connect(self) -> None:
        self.clock = Clock()
        self.factory = UpperEchoFactory(idleTimeout=10, clock=self.clock)
        proto = self.factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 4000))
        assert isinstance(proto, UpperEchoProtocol)
        self.proto = proto
        self.transport = LenientTransport()
        self.proto.makeConnection(self.transport)
        self.sent = b""
        self.halfClosed = False
        self.lost = False

    def open(self) -> bool:
        """
        Whether the peer can still send: not half-closed, lost or closing.
        """
        return not (self.halfClosed or self.lost or self.transport.disconnecting)

    def feed(self, data: bytes) -> None:
        self.sent += data
        self.proto.dataReceived(data)

    @precondition(open)
    @rule(data=st.binary(max_size=64))
    def randomBytes(self, data: bytes) -> None:
        """
        Any bytes at all, valid UTF-8 or not.
        """
        self.feed(data)

    @precondition(open)
    @rule(text=TEXT, cut=st.integers(min_value=0, max_value=200))
    def splitText(self, text: str, cut: int) -> None:
        """
        UTF-8 text in two reads, cut anywhere, often inside a character.
        """
        data = text.encode()
        cut = cut % (len(data) + 1)
        self.feed(data[:cut])
        self.feed(data[cut:])

    @precondition(open)
    @rule(text=TEXT)
    def bytewise(self, text: str) -> None:
        """
        UTF-8 text one byte per read.
        """
        for b in text.encode():
            self.feed(bytes([b]))

    @precondition(lambda self: not (self.lost or self.transport.disconnecting))
    @rule()
    def pause(self) -> None:
        """
        The transport's buffer passed its high-water mark: it pauses itself.
        """
        self.transport.pauseProducing()

    @precondition(lambda self: not (self.lost or self.transport.disconnecting))
    @rule()
    def resume(self) -> None:
        """
        The transport's buffer drained: it resumes.
        """
        self.transport.resumeProducing()

    @rule(seconds=st.floats(min_value=0, max_value=8))
    def time(self, seconds: float) -> None:
        """
        Time passes; the idle sweep may ask the connection to close.
        """
        self.clock.advance(seconds)

    @precondition(open)
    @rule()
    def halfClose(self) -> None:
        """
        The peer shuts its sending side: everything owed is sent.
        """
        self.proto.readConnectionLost()
        self.halfClosed = True
        assert self.transport.value() == upper(self.sent)
        assert self.transport.disconnecting
        assert self.transport.producer is None

    @precondition(lambda self: not self.lost)
    @rule()
    def lose(self) -> None:
        """
        The connection is gone, cleanly or not.
        """
        self.transport.unregisterProducer()
        self.proto.connectionLost(Failure(ConnectionLost()))
        self.lost = True
        assert self.proto not in self.factory.connections

    @invariant()
    def prefixOfTransform(self) -> None:
        """
        The output is C{upper(input)} minus at most a held tail, which is
        the input's own last few bytes (an incomplete character).
        """
        if not hasattr(self, "proto"):
            return
        out = self.transport.value()
        whole = upper(self.sent)
        assert whole.startswith(out), (self.sent, out)
        held = len(whole) - len(out)
        assert 0 <= held <= MAX_HELD, (self.sent, out)
        if held:
            assert whole[len(out) :] == self.sent[-held:]
        if self.halfClosed:
            assert held == 0

    @invariant()
    def selfProducer(self) -> None:
        """
        While the connection is open the transport is its own producer.
        """
        if not hasattr(self, "proto"):
            return
        if self.open():
            assert self.transport.producer is self.transport
            assert self.proto in self.factory.connections


StreamMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestStream = StreamMachine.TestCase

OWN_PORT = 12001
#: source hosts and whether a reply to them is allowed (SPEC section 4)
HOSTS = {
    "127.0.0.1": True,
    "192.0.2.7": True,
    "10.1.2.3": True,
    "::1": True,
    "2001:db8::1": True,
    "::ffff:192.0.2.8": True,
    "0.0.0.0": False,
    "0.1.2.3": False,
    "224.0.0.1": False,
    "239.255.255.250": False,
    "255.255.255.255": False,
    "::": False,
    "ff02::1": False,
    "::ffff:224.0.0.5": False,
    "::ffff:255.255.255.255": False,
    "::ffff:0.0.0.0": False,
}
PORTS = st.sampled_from([0, 7, 19, 53, 123, 1023, 1024, OWN_PORT, 40000]) | (
    st.integers(min_value=0, max_value=65535)
)
RATE = 5


class DatagramMachine(RuleBasedStateMachine):
    """
    One L{UpperEchoDatagramProtocol} (rate limit 5 per second per source)
    fed datagrams from random sources, guarded and not, with time passing.
    A model token bucket per source says which datagrams get a reply.
    """

    @initialize()
    def start(self) -> None:
        self.clock = Clock()
        self.proto = UpperEchoDatagramProtocol(
            rate=RATE, ownPorts=[OWN_PORT], clock=self.clock
        )
        self.transport = FakeDatagramTransport()
        self.proto.makeConnection(self.transport)
        self.tokens: dict[str, tuple[float, float]] = {}

    def allowedByRate(self, host: str) -> bool:
        """
        The model bucket: a burst of C{RATE}, then C{RATE} per second.
        """
        now = self.clock.seconds()
        tokens, then = self.tokens.get(host, (RATE, now))
        tokens = min(RATE, tokens + (now - then) * RATE)
        if tokens >= 1:
            self.tokens[host] = (tokens - 1, now)
            return True
        self.tokens[host] = (tokens, now)
        return False

    @rule(
        host=st.sampled_from(sorted(HOSTS)),
        port=PORTS,
        payload=st.binary(max_size=100) | TEXT.map(str.encode),
    )
    def datagram(self, host: str, port: int, payload: bytes) -> None:
        """
        One datagram: a reply, to the sender, equal to C{upper(payload)},
        if and only if the source passes the loop guard and its bucket.
        """
        before = len(self.transport.written)
        self.proto.datagramReceived(payload, (host, port))
        new = self.transport.written[before:]
        guarded = port < 1024 or port == OWN_PORT or not HOSTS[host]
        if not guarded and self.allowedByRate(host):
            assert new == [(upper(payload), (host, port))]
        else:
            assert new == []

    @rule(seconds=st.floats(min_value=0, max_value=2))
    def time(self, seconds: float) -> None:
        """
        Time passes; buckets refill.
        """
        self.clock.advance(seconds)

    @invariant()
    def counted(self) -> None:
        """
        Every datagram is either answered or counted as a drop.
        """
        if not hasattr(self, "proto"):
            return
        p = self.proto
        assert p.datagramsIn == p.datagramsOut + sum(p.drops.values())
        assert p.datagramsOut == len(self.transport.written)


DatagramMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestDatagram = DatagramMachine.TestCase
