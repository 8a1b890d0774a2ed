"""
Tests for C{upperecho-client --probe --identify}: the instance's name is
stripped from every reply (L{framing}), the rest still checked, and replies
counted per instance (L{session}, L{channels}, L{report}).
"""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import PROBE_JSON_KEYS
from upperecho.identity import greeting, replyPrefix
from upperecho.scripts.probe import ProbeResult, ProbeSession, ProbeStreamProtocol
from upperecho.scripts.probe.framing import parseGreeting, splitIdentity
from upperecho.scripts.probe.report import formatText
from upperecho.scripts.probe.stats import Verdict


def session() -> tuple[Clock, ProbeSession]:
    clock = Clock()
    s = ProbeSession(clock, size=20, timer=clock.seconds, rng=random.Random(5))
    s.identify = True
    return clock, s


class FramingTests(SynchronousTestCase):
    """
    The server's identity, as L{upperecho.identity} writes it, is read back.
    """

    def test_greeting(self) -> None:
        self.assertEqual(parseGreeting(greeting("pod-1")), "pod-1")
        self.assertEqual(parseGreeting(b"upperecho pod-1"), "pod-1")
        for bad in (b"", b"UPPERECHO X\n", b"upperecho \n", b"upperecho a b\n"):
            self.assertIsNone(parseGreeting(bad), bad)

    def test_split(self) -> None:
        data = b"00000001 ABC"
        self.assertEqual(splitIdentity(replyPrefix("n-1") + data), ("n-1", data))
        self.assertEqual(splitIdentity(data), (None, data))
        self.assertEqual(splitIdentity(b"a b: x"), (None, b"a b: x"))


class DatagramTests(SynchronousTestCase):
    """
    UDP: each reply names its instance.
    """

    def test_counted(self) -> None:
        """
        Replies with a name are judged without it and counted by name.
        """
        _, s = session()
        replies = []
        for name in ("a", "b", "a"):
            _, probe, _ = s.newProbe(0.0)
            replies.append((name, probe.upper()))
        for name, reply in replies:
            self.assertEqual(
                s.datagramReply(replyPrefix(name) + reply), Verdict.RECEIVED
            )
        self.assertEqual(s.instances, {"a": 2, "b": 1})
        self.assertEqual(s.tally.received, 3)

    def test_missing(self) -> None:
        """
        A reply without a name, when names are expected, is corrupted.
        """
        _, s = session()
        _, probe, _ = s.newProbe(0.0)
        self.assertEqual(s.datagramReply(probe.upper()), Verdict.CORRUPTED)
        self.assertEqual(s.instances, {})


class StreamTests(SynchronousTestCase):
    """
    TCP: the connection's first line names the instance.
    """

    def setUp(self) -> None:
        self.clock, self.session = session()
        self.proto = ProbeStreamProtocol(self.session)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def test_greeting(self) -> None:
        """
        The line may come in pieces, with replies after it in the same read.
        """
        self.proto.sendProbe(0.0)
        self.proto.sendProbe(0.0)
        stream = greeting("pod-7") + self.transport.value().upper()
        for cut in (3, 12, 30):
            self.proto.dataReceived(stream[:cut])
            stream = stream[cut:]
        self.proto.dataReceived(stream)
        self.assertEqual(self.proto.instance, "pod-7")
        self.assertEqual(self.session.tally.received, 2)
        self.assertEqual(self.session.instances, {"pod-7": 2})

    def test_noGreeting(self) -> None:
        """
        A server that does not identify itself ends the run, saying why.
        """
        self.proto.sendProbe(0.0)
        self.proto.dataReceived(self.transport.value().upper())
        self.assertTrue(self.transport.disconnecting)
        assert self.session.error is not None
        self.assertIn("--identify", self.session.error)
        self.assertEqual(self.session.tally.received, 0)


class ReportTests(SynchronousTestCase):
    """
    The summary and the JSON say how replies were spread.
    """

    def result(self, identify: bool) -> ProbeResult:
        _, s = session()
        s.identify = identify
        _, probe, _ = s.newProbe(0.0)
        s.datagramReply(replyPrefix("b") + probe.upper())
        return ProbeResult.fromSession(s, "t:1", "udp", 1.0)

    def test_json(self) -> None:
        obj = self.result(True).asJSON()
        self.assertEqual(list(obj), [*PROBE_JSON_KEYS, "instances"])
        self.assertEqual(obj["instances"], {"b": 1})
        self.assertEqual(list(self.result(False).asJSON()), PROBE_JSON_KEYS)

    def test_text(self) -> None:
        self.assertIn("replies per instance: b 1\n", formatText(self.result(True)))
        self.assertNotIn("per instance", formatText(self.result(False)))
