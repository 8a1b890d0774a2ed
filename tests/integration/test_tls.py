"""
TLS: C{--listen ssl:...} serves the TCP service over TLS, with certificates
made by C{trustme} and verified by every client; half-close and backpressure
hold through the TLS layer.
"""

from __future__ import annotations

import os
import select
import shutil
import ssl
import subprocess
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import reactor as _reactor
from twisted.internet import task, threads

from tests.helpers import BIN, Certs, Twistd, freePort, makeCerts, waitForTCP
from tests.tlsclient import TLSClient
from upperecho.endpoints import serverEndpoint
from upperecho.tcp import UpperEchoFactory
from upperecho.tls import HalfCloseableTLSProtocol
from upperecho.transform import upper

reactor: Any = _reactor


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return makeCerts(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tlsServer(certs: Certs) -> Iterator[int]:
    """
    A real C{twistd -n upperecho --listen ssl:...}; yields its port.
    """
    port = freePort()
    with Twistd(["--listen", certs.listen(port)]) as t:
        t.waitBound(tcp=[port])
        yield port


def test_verifiedReply(certs: Certs, tlsServer: int) -> None:
    """
    A client that verifies the server certificate against the CA gets the
    uppercased reply; one that trusts nothing fails the handshake.
    """
    client = TLSClient(tlsServer, certs.clientContext())
    try:
        assert client.tls.getpeercert() is not None
        client.send(b"hello tls, stra\xc3\x9fe\n")
        assert client.receive(until=19) == b"HELLO TLS, STRASSE\n"
    finally:
        client.close()
    with pytest.raises(ssl.SSLCertVerificationError):
        TLSClient(tlsServer, ssl.create_default_context())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_opensslClient(certs: Certs, tlsServer: int) -> None:
    """
    C{openssl s_client}, verifying the chain, gets uppercased lines back.
    """
    proc = subprocess.Popen(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{tlsServer}",
            "-servername",
            "localhost",
            "-CAfile",
            str(certs.caPath),
            "-verify_return_error",
            "-quiet",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"hello from openssl\n")
        proc.stdin.flush()
        # s_client does not half-close: read the reply line, then stop it
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no reply from the server within 20 s"
        assert proc.stdout.readline() == b"HELLO FROM OPENSSL\n"
    finally:
        proc.kill()
        proc.communicate(timeout=10)


@pytest.mark.parametrize("how", ["closeNotify", "tcpHalfClose"])
@pytest.mark.parametrize(
    "payload", [b"held \xc3", b"x" * 10, b"big " * 250_000], ids=["held", "10", "1M"]
)
def test_halfClose(certs: Certs, tlsServer: int, how: str, payload: bytes) -> None:
    """
    A client that half-closes (TLS close_notify, or a bare TCP FIN under the
    session) still receives every reply it is owed, the held bytes of an
    incomplete character included, and then the end of the session.
    Twisted's own TLS wrapper lost most of these (measured: 2-3 of 20).
    """
    for _ in range(5):
        client = TLSClient(tlsServer, certs.clientContext())
        try:
            client.send(payload)
            getattr(client, how)()
            assert client.receive() == payload.upper()
        finally:
            client.close()


def test_refusedByMaxConnections(certs: Certs) -> None:
    """
    When the wrapped factory refuses (C{--max-connections}), the TLS factory
    refuses too, instead of wrapping C{None}; each accepted connection
    builds exactly one protocol.
    """
    from twisted.internet import ssl as tssl
    from twisted.internet.task import Clock

    from upperecho.tls import HalfCloseableTLSFactory

    built: list[object] = []

    class Counting(UpperEchoFactory):
        def buildProtocol(self, addr: Any) -> Any:
            proto = super().buildProtocol(addr)
            built.append(proto)
            return proto

    options = tssl.PrivateCertificate.loadPEM(
        certs.keyPath.read_text() + certs.certPath.read_text()
    ).options()
    factory = HalfCloseableTLSFactory(
        options, False, Counting(maxConnections=1, clock=Clock()), clock=Clock()
    )
    first = factory.buildProtocol(None)
    assert isinstance(first, HalfCloseableTLSProtocol)
    assert len(built) == 1
    assert factory.buildProtocol(None) is None


def _bufferedBy(tls: HalfCloseableTLSProtocol) -> int:
    """
    Bytes the server holds for one TLS connection: its TCP write buffer, the
    TLS layer's pending writes and its small-write aggregator.
    """
    tcp: Any = tls.transport
    held: int = len(tcp.dataBuffer) - tcp.offset + sum(map(len, tcp._tempDataBuffer))
    held += sum(map(len, tls._appSendBuffer))
    held += sum(map(len, getattr(tls._aggregator, "_buffer", [])))
    return held


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_backpressure(certs: Certs) -> Generator[Any, Any, None]:
    """
    A TLS client that sends without reading cannot make the server buffer
    without bound: the TLS layer passes the transport's pause on
    (L{twisted.protocols.tls._ProducerMembrane}), the server stops reading,
    and everything is answered once the client reads again.
    """
    factory = UpperEchoFactory(idleTimeout=0, clock=reactor)
    port = yield serverEndpoint(reactor, certs.listen()).listen(factory)
    try:
        client = yield threads.deferToThread(
            TLSClient, port.getHost().port, certs.clientContext()
        )
        sent = yield threads.deferToThread(
            client.sendWithoutBlocking, b"a" * 65536, 64 << 20, 15.0
        )
        yield task.deferLater(reactor, 0.3, lambda: None)
        (proto,) = factory.connections
        tls = proto.transport
        assert isinstance(tls, HalfCloseableTLSProtocol)
        tcp: Any = tls.transport
        held = _bufferedBy(tls)
        print(f"TLS backpressure: client sent {sent} bytes, server holds {held}")
        # stopped before the 64 MiB cap, the server not reading ...
        assert sent < 64 << 20
        assert tcp not in reactor.getReaders()
        # ... and holding at most a few TLS-sized buffers, not what was sent
        assert held < 1 << 20, (held, sent)
        got = yield threads.deferToThread(client.receive, sent, 60.0)
        assert len(got) == sent
        assert got == b"A" * sent
        client.close()
    finally:
        yield port.stopListening()
        for p in list(factory.connections):
            p.transport.abortConnection()


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_proxyHeaderBeforeTLS(certs: Certs) -> Generator[Any, Any, None]:
    """
    C{haproxy:ssl:...} reads the PROXY header in clear before the TLS
    handshake, as HAProxy sends it; the protocol then sees the real client
    as its peer, and half-close still answers everything.
    """
    from tests.proxyheader import proxyV1, proxyV2

    factory = UpperEchoFactory(idleTimeout=0, clock=reactor)
    description = "haproxy:" + certs.listen()
    port = yield serverEndpoint(reactor, description).listen(factory)
    try:
        number = port.getHost().port
        for header, peer in [
            (proxyV1("203.0.113.7", 5555), ("203.0.113.7", 5555)),
            (proxyV2("198.51.100.9", 6000), ("198.51.100.9", 6000)),
        ]:
            client = yield threads.deferToThread(
                TLSClient, number, certs.clientContext(), preamble=header
            )
            try:
                yield threads.deferToThread(client.send, b"via proxy \xc3")
                got = yield threads.deferToThread(client.receive, 10)
                assert got == b"VIA PROXY "
                peers = set()
                for p in factory.connections:
                    address: Any = p.transport.getPeer()
                    peers.add((address.host, address.port))
                assert peer in peers
                yield threads.deferToThread(client.closeNotify)
                rest = yield threads.deferToThread(client.receive)
                assert rest == b"\xc3"
            finally:
                client.close()
    finally:
        yield port.stopListening()


HAPROXY_TLS_CFG = """\
defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s

frontend tls
    bind 127.0.0.1:{front}
    default_backend upperecho

backend upperecho
    # TLS passes through HAProxy untouched; the PROXY header goes first
    server one 127.0.0.1:{back} send-proxy-v2 check inter 100ms
"""


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not on PATH")
def test_haproxyTLSPassthrough(certs: Certs, tmp_path: Path) -> None:
    """
    HAProxy passing TLS through (mode tcp) with C{send-proxy-v2} in front of
    C{--listen haproxy:ssl:...}: the client verifies upperecho's certificate
    through the proxy, gets its reply, and upperecho logs the client's port.
    """
    front, back = freePort(), freePort()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY_TLS_CFG.format(front=front, back=back))
    with Twistd(["--listen", "haproxy:" + certs.listen(back)]) as server:
        server.waitBound(tcp=[back])
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            waitForTCP(front)
            client = TLSClient(front, certs.clientContext())
            try:
                clientPort = client.raw.getsockname()[1]
                client.send(b"through haproxy\n")
                client.closeNotify()
                assert client.receive() == b"THROUGH HAPROXY\n"
            finally:
                client.close()
            text = f"PROXY connection from 127.0.0.1:{clientPort} via 127.0.0.1:"
            deadline = time.monotonic() + 5
            while text not in server.log():
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.05)
        finally:
            haproxy.terminate()
            haproxy.communicate(timeout=10)


@pytest_twisted.inlineCallbacks  # type: ignore[untyped-decorator]
def test_tlsDirectoryEndpoint(
    certs: Certs, tmp_path: Path
) -> Generator[Any, Any, None]:
    """
    Twisted's C{tls:DIRECTORY:port=...} server endpoint (certificate chosen
    by SNI from a directory of PEM files) gets the same half-close fix.
    """
    try:
        from twisted.protocols._sni import TLSServerEndpoint as _SNI  # noqa: F401
    except ImportError:
        pytest.skip("this Twisted has no tls: server endpoint")
    pems = tmp_path / "pems"
    pems.mkdir()
    (pems / "localhost.pem").write_text(
        certs.keyPath.read_text() + certs.certPath.read_text()
    )
    factory = UpperEchoFactory(idleTimeout=0, clock=reactor)
    endpoint = serverEndpoint(reactor, f"tls:{pems}:port=0:interface=127.0.0.1")
    port = yield endpoint.listen(factory)
    try:
        number = port.getHost().port
        for how in ("closeNotify", "tcpHalfClose"):
            got = yield threads.deferToThread(
                _halfClosedExchange, number, certs, b"sni \xc3", how
            )
            assert got == b"SNI \xc3"
    finally:
        yield port.stopListening()


def _halfClosedExchange(number: int, certs: Certs, payload: bytes, how: str) -> bytes:
    """
    In a thread: send C{payload} over TLS to port C{number}, end the
    client's side by C{how} (a L{TLSClient} method), and read the reply to
    the end.
    """
    client = TLSClient(number, certs.clientContext())
    try:
        client.send(payload)
        getattr(client, how)()
        return client.receive()
    finally:
        client.close()


@pytest.mark.parametrize("size", [10, 1000, 100_000, 3_000_000])
def test_projectClientPipe(
    certs: Certs, tlsServer: int, size: int, tmp_path: Path
) -> None:
    """
    The project's own client, piped over C{--connect tls:...} with the CA's
    certificate as its only trust root, gets every byte back uppercased:
    client and server end a TLS stream without losing what is still owed.
    """
    data = os.urandom(size)
    endpoint = certs.tlsClient(tlsServer, tmp_path / "roots")
    result = subprocess.run(
        [str(BIN / "upperecho-client"), "--connect", endpoint],
        input=data,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    want = upper(data)
    assert (len(result.stdout), result.stdout == want) == (len(want), True)
