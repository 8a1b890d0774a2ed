"""
C{haproxy:} endpoints end to end: half-close over loopback, and a real
HAProxy in front of C{twistd} when one is installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet import threads

from tests.helpers import Twistd, freePort, waitForTCP
from tests.integration.test_metrics import _scrape as scrape
from tests.proxyheader import proxyV1, proxyV2
from tests.unit.test_metrics import tcp
from upperecho.endpoints import serverEndpoint
from upperecho.tcp import UpperEchoFactory
from upperecho.transform import upper

reactor: Any = _reactor


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
