"""
Real and hostile networks, end to end (docs/contract.rst, Fair share): a
real C{twistd -n upperecho} on loopback, where 127.0.0.2 and 127.0.0.3 are
further addresses of the host.

  - a connected UDP client (the way C{nc -u}, upperecho's own client and
    probe talk) gets its reply from the address it asked, with the server
    bound to every address, over IPv4, IPv6 and dual-stack;
  - one source holding every connection slot cannot lock another out;
  - C{--proxy-from}: a peer that is not a trusted proxy is refused.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers import BIN, Twistd, freePort, ipv6Loopback
from tests.proxyheader import proxyV1


@pytest.fixture(scope="module")
def udpServer() -> Iterator[int]:
    """
    A server bound to every IPv4 address (the default).
    """
    udp = freePort(socket.SOCK_DGRAM)
    with Twistd(["--udp", str(udp)]) as t:
        t.waitBound(udp=[udp])
        yield udp


def connectedExchange(
    family: int, host: str, port: int, payload: bytes, bind: str | None = None
) -> bytes:
    """
    Send C{payload} on a UDP socket I{connected} to C{(host, port)} and
    return the reply: the kernel drops a reply from any other address.
    """
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        if bind is not None:
            s.bind((bind, 0))
        s.connect((host, port))
        s.send(payload)
        return s.recv(70000)


@pytest.mark.parametrize("host", ["127.0.0.2", "127.0.0.3", "127.0.0.1"])
def test_connectedClientEachAddress(udpServer: int, host: str) -> None:
    """
    Asked at 127.0.0.2 or 127.0.0.3, the server answers from that address,
    so a connected client accepts the reply (before, it came from
    127.0.0.1 and was dropped).
    """
    assert connectedExchange(socket.AF_INET, host, udpServer, b"hello") == b"HELLO"


def test_replyAddress(udpServer: int) -> None:
    """
    An unconnected client sees each reply come from the address it asked.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        for host in ("127.0.0.2", "127.0.0.1", "127.0.0.3"):
            s.sendto(b"x", (host, udpServer))
            assert s.recvfrom(10) == (b"X", (host, udpServer))


def test_upperechoClient(udpServer: int) -> None:
    """
    The issue's reproduction: C{upperecho-client --udp --retries 0
    127.0.0.2 PORT} gets its reply, and the probe loses nothing.
    """
    done = subprocess.run(
        [
            str(BIN / "upperecho-client"),
            "--udp",
            "--retries",
            "0",
            "127.0.0.2",
            str(udpServer),
        ],
        input=b"hello\n",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == b"HELLO"
    probe = subprocess.run(
        [
            str(BIN / "upperecho-client"),
            "--probe",
            "--udp",
            "-c",
            "3",
            "127.0.0.2",
            str(udpServer),
        ],
        capture_output=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert b"3 received, 0.0% lost" in probe.stdout, probe.stdout


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc not on PATH")
def test_netcat(udpServer: int) -> None:
    """
    C{printf hello | nc -u -w1 127.0.0.2 PORT}: netcat connects its UDP
    socket, so it prints the reply only if it comes from 127.0.0.2.
    """
    done = subprocess.run(
        ["nc", "-u", "-w1", "127.0.0.2", str(udpServer)],
        input=b"hello",
        capture_output=True,
        timeout=30,
    )
    assert done.stdout == b"HELLO"


@pytest.mark.skipif(not ipv6Loopback(), reason="no IPv6 loopback")
def test_dualStack() -> None:
    """
    C{--interface ::}: an IPv4 client asking 127.0.0.2 (IPv4-mapped on
    the server's socket) and an IPv6 client asking ::1 are each answered
    from the address they asked.
    """
    udp = freePort(socket.SOCK_DGRAM, "::1")
    with Twistd(["--udp", str(udp), "--interface", "::"]) as t:
        t.waitBound(udp=[udp])
        for family, host in [
            (socket.AF_INET, "127.0.0.2"),
            (socket.AF_INET, "127.0.0.1"),
            (socket.AF_INET6, "::1"),
        ]:
            assert connectedExchange(family, host, udp, b"dual") == b"DUAL"


def _connect(host: str, port: int, bind: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((bind, 0))
    s.connect((host, port))
    return s


def _alive(s: socket.socket) -> bool:
    """
    Whether the server still answers on C{s}.
    """
    try:
        s.sendall(b"ping")
        return s.recv(10) == b"PING"
    except OSError:
        return False


def test_fairShareAcrossSources() -> None:
    """
    The issue's lock-out: with C{--max-connections 20}, 20 connections
    from 127.0.0.2 fill every slot; a client from 127.0.0.3 is still
    served, one of 127.0.0.2's connections is closed for it, and one more
    from 127.0.0.2 is refused.
    """
    tcp = freePort()
    with Twistd(["--tcp", str(tcp), "--max-connections", "20"]) as t:
        t.waitBound(tcp=[tcp])
        hog = [_connect("127.0.0.1", tcp, "127.0.0.2") for _ in range(20)]
        try:
            assert all(_alive(s) for s in hog)
            other = _connect("127.0.0.1", tcp, "127.0.0.3")
            assert _alive(other)
            alive = [_alive(s) for s in hog]
            assert alive.count(False) == 1
            extra = _connect("127.0.0.1", tcp, "127.0.0.2")
            assert not _alive(extra)
            extra.close()
            other.close()
        finally:
            for s in hog:
                s.close()
        deadline = time.monotonic() + 10
        while "make room" not in t.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "make room for 127.0.0.3:" in t.log()


def test_perSource() -> None:
    """
    C{--max-connections-per-source 2}: a third connection from 127.0.0.2
    is closed at once; 127.0.0.3 is not affected.
    """
    tcp = freePort()
    with Twistd(["--tcp", str(tcp), "--max-connections-per-source", "2"]) as t:
        t.waitBound(tcp=[tcp])
        two = [_connect("127.0.0.1", tcp, "127.0.0.2") for _ in range(2)]
        third = _connect("127.0.0.1", tcp, "127.0.0.2")
        other = _connect("127.0.0.1", tcp, "127.0.0.3")
        assert [_alive(s) for s in two] == [True, True]
        assert not _alive(third)
        assert _alive(other)
        for s in [*two, third, other]:
            s.close()


def test_proxyFromRefusesOthers() -> None:
    """
    C{--proxy-from 127.0.0.2}: a PROXY header from 127.0.0.2 is honoured;
    the same header from 127.0.0.3 is refused before it is read, and
    logged.
    """
    tcp = freePort()
    with Twistd(
        [
            "--listen",
            f"haproxy:tcp:{tcp}:interface=127.0.0.1",
            "--proxy-from",
            "127.0.0.2/32",
        ]
    ) as t:
        t.waitBound(tcp=[tcp])
        trusted = _connect("127.0.0.1", tcp, "127.0.0.2")
        trusted.sendall(proxyV1("203.0.113.7", 5555) + b"hi")
        assert trusted.recv(10) == b"HI"
        trusted.close()
        untrusted = _connect("127.0.0.1", tcp, "127.0.0.3")
        try:
            untrusted.sendall(proxyV1("203.0.113.7", 5555) + b"hi")
            assert untrusted.recv(10) == b""
        except ConnectionResetError:
            pass
        untrusted.close()
        deadline = time.monotonic() + 10
        while "not a trusted proxy" not in t.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "refused connection from 127.0.0.3:" in t.log()
        assert "any peer may send" not in t.log()


def test_haproxyWithoutProxyFromWarns() -> None:
    """
    A C{haproxy:} endpoint without C{--proxy-from} says at start-up that
    any peer may send a header.
    """
    tcp = freePort()
    with Twistd(["--listen", f"haproxy:tcp:{tcp}:interface=127.0.0.1"]) as t:
        t.waitBound(tcp=[tcp])
        assert "any peer may send a PROXY header" in t.log()
