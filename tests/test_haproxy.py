"""
PROXY protocol: C{--listen haproxy:tcp:PORT} reads PROXY v1 and v2 headers,
sees (and logs) the real client address, keeps the half-close promise, and
works behind a real HAProxy in front of two upperecho instances.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet import threads
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import ILogObserver, Logger, LogLevel
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.helpers import Twistd, freePort, waitForTCP
from tests.test_metrics import _scrape as scrape
from tests.test_metrics import tcp
from upperecho.endpoints import serverEndpoint
from upperecho.proxyprotocol import (
    HalfCloseableHAProxyFactory,
    HalfCloseableHAProxyWrapper,
)
from upperecho.tcp import UpperEchoFactory
from upperecho.transform import upper

reactor: Any = _reactor

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxyV1(src: str, srcPort: int, dst: str = "127.0.0.1", dstPort: int = 1) -> bytes:
    """
    A PROXY protocol v1 header for a TCP4 connection.
    """
    return f"PROXY TCP4 {src} {dst} {srcPort} {dstPort}\r\n".encode()


def proxyV2(src: str, srcPort: int, dst: str = "127.0.0.1", dstPort: int = 1) -> bytes:
    """
    A PROXY protocol v2 header (command PROXY, TCP over IPv4).
    """
    body = (
        socket.inet_aton(src)
        + socket.inet_aton(dst)
        + struct.pack("!HH", srcPort, dstPort)
    )
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


class HAProxyWrapperTests(SynchronousTestCase):
    """
    L{HalfCloseableHAProxyWrapper} over a L{StringTransport}: no sockets.
    """

    def connect(
        self, maxConnections: int = 10
    ) -> tuple[HalfCloseableHAProxyWrapper, StringTransport, list[dict[str, Any]]]:
        factory = HalfCloseableHAProxyFactory(
            UpperEchoFactory(maxConnections=maxConnections, clock=Clock())
        )
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        assert isinstance(wrapper, HalfCloseableHAProxyWrapper)
        events: list[dict[str, Any]] = []
        wrapper._log = Logger(observer=cast(ILogObserver, events.append))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        wrapper.makeConnection(transport)
        return wrapper, transport, events

    def test_interface(self) -> None:
        """
        The wrapper tells the transport it can take a half-close.
        """
        wrapper, _, _ = self.connect()
        self.assertTrue(verifyObject(IHalfCloseableProtocol, wrapper))

    def test_halfCloseV1(self) -> None:
        """
        After a v1 header, the real client is the peer; on the proxy's
        half-close the held bytes of an incomplete character are sent as
        they are and the connection closes.
        """
        wrapper, transport, events = self.connect()
        wrapper.dataReceived(proxyV1("203.0.113.7", 5555) + b"hello \xc3")
        self.assertEqual(wrapper.getPeer(), IPv4Address("TCP", "203.0.113.7", 5555))
        self.assertEqual(transport.value(), b"HELLO ")
        self.assertFalse(transport.disconnecting)
        wrapper.readConnectionLost()
        self.assertEqual(transport.value(), b"HELLO \xc3")
        self.assertTrue(transport.disconnecting)
        (event,) = events
        self.assertEqual(event["log_level"], LogLevel.info)
        self.assertEqual(event["client"], "203.0.113.7:5555")
        self.assertEqual(event["proxy"], "127.0.0.1:40000")

    def test_halfCloseV2SplitHeader(self) -> None:
        """
        A v2 header split across reads works too, and the stream after it is
        uppercased.
        """
        wrapper, transport, events = self.connect()
        data = proxyV2("198.51.100.9", 6000) + b"abc"
        for i in range(0, len(data), 5):
            wrapper.dataReceived(data[i : i + 5])
        self.assertEqual(wrapper.getPeer(), IPv4Address("TCP", "198.51.100.9", 6000))
        wrapper.readConnectionLost()
        self.assertEqual(transport.value(), b"ABC")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(events[0]["client"], "198.51.100.9:6000")

    def test_headerOnlyNotLogged(self) -> None:
        """
        A connection with a header and no data (a health check) is not
        logged; its first data is, once.
        """
        wrapper, transport, events = self.connect()
        wrapper.dataReceived(proxyV1("203.0.113.7", 5555))
        self.assertEqual(events, [])
        wrapper.dataReceived(b"a")
        wrapper.dataReceived(b"b")
        self.assertEqual(len(events), 1)
        self.assertEqual(transport.value(), b"AB")

    def test_notProxy(self) -> None:
        """
        A stream that does not start with a PROXY header is closed unanswered.
        """
        wrapper, transport, _ = self.connect()
        wrapper.dataReceived(b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_writeConnectionLost(self) -> None:
        """
        When the peer reads no more, the connection is closed.
        """
        wrapper, transport, _ = self.connect()
        wrapper.writeConnectionLost()
        self.assertTrue(transport.disconnecting)

    def test_refusedByMaxConnections(self) -> None:
        """
        When the wrapped factory refuses (C{--max-connections}), the wrapping
        factory refuses too, instead of wrapping C{None}.
        """
        factory = HalfCloseableHAProxyFactory(
            UpperEchoFactory(maxConnections=1, clock=Clock())
        )
        addr = IPv4Address("TCP", "127.0.0.1", 40000)
        first = factory.buildProtocol(addr)
        first.makeConnection(StringTransport())
        self.assertIsNone(factory.buildProtocol(addr))


def _halfCloseClient(port: int, header: bytes, payload: bytes) -> bytes:
    """
    Send a PROXY header and C{payload}, shut the sending side, read all.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(header + payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(262144):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_halfCloseLoopback() -> Generator[Any, Any, None]:
    """
    Over real loopback sockets, clients that send a PROXY header, their
    data and then C{shutdown(SHUT_WR)} get every reply (Twisted's own
    C{haproxy:} wrapper closes at the FIN and drops buffered replies).
    """
    factory = UpperEchoFactory(idleTimeout=0, clock=reactor)
    port = yield serverEndpoint(reactor, "haproxy:tcp:0:interface=127.0.0.1").listen(
        factory
    )
    try:
        number = port.getHost().port
        for header in (proxyV1("192.0.2.1", 4000), proxyV2("192.0.2.2", 4001)):
            for payload in (b"held \xc3", b"x" * 10, b"big " * 250_000):
                for _ in range(5):
                    got = yield threads.deferToThread(
                        _halfCloseClient, number, header, payload
                    )
                    assert got == upper(payload)
    finally:
        yield port.stopListening()


HAPROXY_CFG = """\
global
    maxconn 200

defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    # a connection refused by a dead instance is retried on the other one
    retries 3
    option redispatch 1

frontend upperecho
    bind 127.0.0.1:{front}
    default_backend upperecho

backend upperecho
    balance roundrobin
    server one 127.0.0.1:{one} send-proxy-v2 check inter 100ms fall 1 rise 1
    server two 127.0.0.1:{two} send-proxy-v2 check inter 100ms fall 1 rise 1
"""


def _throughProxy(front: int, payload: bytes) -> tuple[bytes, int]:
    """
    One client connection from 127.0.0.2 through HAProxy, half-closed.

    @return: the reply and the client's own port.
    """
    with socket.socket() as s:
        s.settimeout(10)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", front))
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks), s.getsockname()[1]


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not on PATH")
def test_realHAProxy() -> None:
    """
    HAProxy with C{send-proxy-v2} and health checks in front of two
    upperecho instances: replies are right, upperecho logs the real client
    address (127.0.0.2 and its port, not HAProxy's), and after one instance
    is killed every new connection is still answered by the survivor.
    """
    front, one, two = freePort(), freePort(), freePort()
    metrics = {one: freePort(), two: freePort()}
    instances = {
        port: Twistd(
            [
                "--listen",
                f"haproxy:tcp:{port}:interface=127.0.0.1",
                "--metrics",
                f"tcp:{metrics[port]}:interface=127.0.0.1",
            ]
        )
        for port in (one, two)
    }
    cfgDir = tempfile.TemporaryDirectory()
    cfg = Path(cfgDir.name) / "haproxy.cfg"
    cfg.write_text(HAPROXY_CFG.format(front=front, one=one, two=two))
    haproxy = None
    try:
        for port, instance in instances.items():
            instance.waitBound(tcp=[port, metrics[port]])
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        waitForTCP(front)
        clientPorts: dict[int, bytes] = {}
        for i in range(40):
            payload = f"hello {i} stra\u00dfe\n".encode()
            reply, clientPort = _throughProxy(front, payload)
            assert reply == upper(payload)
            clientPorts[clientPort] = payload
        # both instances served, and both logged the real clients (their
        # 127.0.0.2 address and own port, not HAProxy's 127.0.0.1)
        for clientPort in clientPorts:
            text = f"PROXY connection from 127.0.0.2:{clientPort} via 127.0.0.1:"
            assert _waitForLog(list(instances.values()), text), text
        for t in instances.values():
            assert "PROXY connection from 127.0.0.2:" in t.log()
            # health checks (a header and no data, every 100 ms) are not
            assert "PROXY connection from 127.0.0.1:" not in t.log()
        # the metrics count the clients' bytes, not the PROXY headers nor
        # the health checks (which send a header and nothing else)
        received = sent = 0.0
        for port in instances:
            samples = scrape(metrics[port])
            assert samples[tcp("upperecho_connections_total")] > 0
            received += samples[tcp("upperecho_received_bytes_total")]
            sent += samples[tcp("upperecho_sent_bytes_total")]
        assert received == sum(map(len, clientPorts.values()))
        assert sent == sum(len(upper(p)) for p in clientPorts.values())

        # kill one instance: no new connection may fail
        instances[one].process.kill()
        instances[one].process.wait(10)
        deadline = time.monotonic() + 30
        for i in range(60):
            assert time.monotonic() < deadline
            payload = f"after the kill {i}\n".encode()
            reply, clientPort = _throughProxy(front, payload)
            assert reply == upper(payload), i
            assert _waitForLog([instances[two]], f"from 127.0.0.2:{clientPort} ")
    finally:
        if haproxy is not None:
            haproxy.terminate()
            try:
                haproxy.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                haproxy.kill()
                haproxy.communicate()
        for t in instances.values():
            t.stop()
        cfgDir.cleanup()


def _waitForLog(twistds: list[Twistd], text: str, timeout: float = 5.0) -> bool:
    """
    Wait until C{text} appears in the log of one of C{twistds}.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in t.log() for t in twistds):
            return True
        time.sleep(0.05)
    return False


class FallbackTests(SynchronousTestCase):
    """
    A Twisted release that moves its private PROXY-protocol modules costs
    the half-close fix, never the service.
    """

    def test_privateModulesMissing(self) -> None:
        """
        When L{upperecho.proxyprotocol} cannot be imported, C{haproxy:} gives
        Twisted's own endpoint, with one warning naming the option.
        """
        import sys

        from twisted.logger import ILogObserver, LogEvent, globalLogPublisher

        import upperecho.endpoints

        saved = sys.modules.get("upperecho.proxyprotocol")
        sys.modules["upperecho.proxyprotocol"] = None  # type: ignore[assignment]

        def restore() -> None:
            if saved is None:
                sys.modules.pop("upperecho.proxyprotocol", None)
            else:
                sys.modules["upperecho.proxyprotocol"] = saved

        self.addCleanup(restore)
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        endpoint = serverEndpoint(MemoryReactor(), "haproxy:tcp:0")
        self.assertNotIsInstance(endpoint, upperecho.endpoints.ProxyEndpoint)
        self.assertEqual(
            [e["description"] for e in events if "description" in e],
            ["haproxy:tcp:0"],
        )

    def test_privateModulesPresent(self) -> None:
        """
        With this Twisted, C{haproxy:} gets the half-closeable endpoint.
        """
        import upperecho.endpoints

        endpoint = serverEndpoint(MemoryReactor(), "haproxy:tcp:0")
        self.assertIsInstance(endpoint, upperecho.endpoints.ProxyEndpoint)
