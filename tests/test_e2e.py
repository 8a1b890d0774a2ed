"""
End-to-end tests: a real C{twistd -n upperecho} subprocess, talked to by
real clients over loopback (textbook-style sockets and netcat-like ones).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import (
    BIN,
    Twistd,
    freePort,
    freePorts,
    halfCloseExchange,
    runTwistd,
    udpExchange,
)
from upperecho.transform import upper


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int, Twistd]]:
    tcp, udp = freePorts()
    with Twistd(["--tcp", str(tcp), "--udp", str(udp)]) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        yield tcp, udp, t


def test_textbookTCPClient(server: tuple[int, int, Twistd]) -> None:
    """
    Kurose & Ross's TCPClient: connect, send the sentence with no newline,
    one recv(1024), close.
    """
    tcp, _, _ = server
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.connect(("127.0.0.1", tcp))
    client.send("hello, straße".encode())
    modified = client.recv(1024)
    client.close()
    assert modified.decode() == "HELLO, STRASSE"


def test_textbookUDPClient(server: tuple[int, int, Twistd]) -> None:
    """
    Kurose & Ross's UDPClient: sendto, recvfrom(2048).
    """
    _, udp, _ = server
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    client.sendto(b"hello udp", ("127.0.0.1", udp))
    modified, addr = client.recvfrom(2048)
    client.close()
    assert modified == b"HELLO UDP"
    assert addr == ("127.0.0.1", udp)


def test_halfCloseLikeNetcat(server: tuple[int, int, Twistd]) -> None:
    """
    C{printf 'hello\\n' | nc -N}: send, shut the sending side, read to EOF.
    Repeated, with a large payload too, because losing the answer at EOF is
    a race that a single try can miss.
    """
    tcp, _, _ = server
    for payload in [b"hello\n"] * 20 + [os.urandom(1 << 20)]:
        assert halfCloseExchange(tcp, payload) == upper(payload)


def test_largeDatagram(server: tuple[int, int, Twistd]) -> None:
    """
    A 60,000-byte datagram is answered whole, not truncated at 8 KiB.
    """
    _, udp, _ = server
    assert udpExchange(udp, b"a" * 60000) == b"A" * 60000


def test_emptyDatagram(server: tuple[int, int, Twistd]) -> None:
    """
    An empty datagram gets an empty reply.
    """
    _, udp, _ = server
    assert udpExchange(udp, b"") == b""


def test_portInUse() -> None:
    """
    A busy port ends twistd non-zero with one line naming the option.
    """
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runTwistd(["--interface", "127.0.0.1", "--tcp", str(port)])
    assert result.returncode != 0
    assert f"upperecho: --tcp {port}: cannot listen:" in result.stderr
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--tcp", "70000"], "--tcp 70000"),
        (["--encoding", "klingon"], "--encoding"),
        (["--listen", "bogus:12"], "--listen bogus:12"),
        (["--udp-rate", "-3"], "--udp-rate -3"),
        (["--interface", "foo", "--udp", "0"], "--interface foo"),
        (
            ["--listen", "unix:/nonexistent/folder/upperecho.sock"],
            "upperecho: --listen unix:/nonexistent/folder/upperecho.sock: cannot listen:",
        ),
    ],
)
def test_badOptions(args: list[str], expected: str) -> None:
    """
    Bad values end twistd non-zero with a line naming option and value.
    """
    result = runTwistd(args)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_helpListsPlugin() -> None:
    """
    C{twistd --help} lists upperecho and C{twistd upperecho --help} documents
    its options.
    """
    import subprocess

    out = subprocess.run(
        [str(BIN / "twistd"), "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "upperecho" in out
    out = subprocess.run(
        [str(BIN / "twistd"), "upperecho", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for option in ("--tcp", "--udp", "--listen", "--idle-timeout", "--udp-rate"):
        assert option in out


def test_listenEndpoints() -> None:
    """
    --listen serves tcp, tcp6 and unix endpoints at once.
    """
    tcp = freePort()
    tcp6 = freePort(host="::1")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "upperecho.sock")
        with Twistd(
            [
                "--listen",
                f"tcp:{tcp}:interface=127.0.0.1",
                "--listen",
                f"tcp6:port={tcp6}:interface=\\:\\:1",
                "--listen",
                f"unix:{path}",
            ]
        ) as t:
            t.waitBound(tcp=[tcp, tcp6], unix=[path])
            targets: list[tuple[int, Any]] = [
                (socket.AF_INET, ("127.0.0.1", tcp)),
                (socket.AF_INET6, ("::1", tcp6)),
                (socket.AF_UNIX, path),
            ]
            for family, addr in targets:
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.settimeout(10)
                    s.connect(addr)
                    s.sendall(b"via endpoint\n")
                    s.shutdown(socket.SHUT_WR)
                    got = b""
                    while chunk := s.recv(1024):
                        got += chunk
                assert got == b"VIA ENDPOINT\n", family


def test_dualStack() -> None:
    """
    --interface :: serves IPv4 and IPv6 clients over TCP and UDP.
    """
    tcp, udp = freePort(host="::1"), freePort(socket.SOCK_DGRAM, "::1")
    with Twistd(["--interface", "::", "--tcp", str(tcp), "--udp", str(udp)]) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        for host in ("127.0.0.1", "::1"):
            assert udpExchange(udp, b"dual", host) == b"DUAL"
            with socket.create_connection((host, tcp), timeout=10) as s:
                s.sendall(b"dual")
                assert s.recv(1024) == b"DUAL"


def test_sigtermExitsCleanly() -> None:
    """
    SIGTERM with a connection open stops twistd within 5 s, without a
    traceback.
    """
    tcp, udp = freePorts()
    t = Twistd(["--tcp", str(tcp), "--udp", str(udp)])
    t.waitBound(tcp=[tcp], udp=[udp])
    conn = socket.create_connection(("127.0.0.1", tcp))
    start = time.monotonic()
    t.process.send_signal(signal.SIGTERM)
    t.process.wait(10)
    elapsed = time.monotonic() - start
    log = t.log()
    t.stop()
    conn.close()
    assert elapsed < 5
    assert "Traceback" not in log
    assert "Unhandled" not in log


def test_twistRunner() -> None:
    """
    The newer C{twist} runner runs the same plugin.
    """
    tcp, udp = freePorts()
    with Twistd(["--tcp", str(tcp), "--udp", str(udp)], runner=str(BIN / "twist")) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        with socket.create_connection(("127.0.0.1", tcp), timeout=10) as s:
            s.sendall(b"twist")
            assert s.recv(1024) == b"TWIST"


@pytest.mark.skipif(shutil.which("nc") is None, reason="netcat (nc) is not installed")
def test_netcat(server: tuple[int, int, Twistd]) -> None:
    """
    The README's first command: C{printf 'hello\\n' | nc -N 127.0.0.1 PORT}
    prints C{HELLO}; and C{nc -u} gets a datagram answered.
    """
    import subprocess

    tcp, udp, _ = server
    result = subprocess.run(
        ["nc", "-N", "127.0.0.1", str(tcp)],
        input=b"hello\n",
        capture_output=True,
        timeout=20,
    )
    assert (result.returncode, result.stdout) == (0, b"HELLO\n")
    result = subprocess.run(
        ["nc", "-u", "-w1", "127.0.0.1", str(udp)],
        input=b"hello",
        capture_output=True,
        timeout=20,
    )
    assert result.stdout == b"HELLO"
