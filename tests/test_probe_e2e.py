"""
End-to-end tests of probe mode: C{python -m upperecho.probe} as a subprocess
against a real C{twistd -n upperecho}, and against a plain echo server
written here (whose replies are never uppercased).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers import (
    PROBE_JSON_KEYS,
    Twistd,
    freePort,
    freePorts,
)

PROBE = [sys.executable, "-m", "upperecho.probe", "--probe"]


def probe(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """
    Run the probe command to its end.
    """
    return subprocess.run(
        [*PROBE, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int]]:
    tcp, udp = freePorts()
    with Twistd(["--tcp", str(tcp), "--udp", str(udp), "--udp-rate", "0"]) as t:
        t.waitBound(tcp=[tcp], udp=[udp])
        yield tcp, udp


class _EchoTCP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _EchoUDP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(data, self.client_address)


@pytest.fixture(scope="module")
def plainEcho() -> Iterator[tuple[int, int]]:
    """
    A plain (RFC 862) echo server on TCP and UDP: replies are the probes.
    """
    socketserver.ThreadingTCPServer.daemon_threads = True
    tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _EchoTCP)
    udp = socketserver.UDPServer(("127.0.0.1", 0), _EchoUDP)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05})
        for s in (tcp, udp)
    ]
    for t in threads:
        t.start()
    try:
        yield tcp.server_address[1], udp.server_address[1]
    finally:
        for s in (tcp, udp):
            s.shutdown()
            s.server_close()
        for t in threads:
            t.join(5)


def test_udpPing(server: tuple[int, int]) -> None:
    """
    UDP ping mode: one line per probe, the summary, the histogram, exit 0.
    """
    _, udp = server
    r = probe("--udp", "-c", "3", "-i", "0.05", "127.0.0.1", str(udp))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    target = f"127.0.0.1:{udp}"
    for seq in (1, 2, 3):
        assert any(
            line.startswith(f"64 bytes from {target}: seq={seq} time=")
            and line.endswith(" ms")
            for line in lines
        ), lines
    assert f"--- {target} udp probe statistics ---" in lines
    assert any(
        line.startswith("3 sent, 3 received, 0.0% lost, 0 corrupted, 0 duplicated, ")
        for line in lines
    )
    assert any(
        line.startswith("rtt min/p50/avg/p90/p99/max/stddev = ") for line in lines
    )
    assert "rtt histogram (ms):" in lines
    assert r.stderr == ""


def test_tcpPing(server: tuple[int, int]) -> None:
    """
    TCP ping mode over one connection: connect time reported once, then one
    line per probe; localhost resolves to the IPv4 server.
    """
    tcp, _ = server
    r = probe("-c", "3", "-i", "0.05", "-s", "100", "localhost", str(tcp))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(line.startswith("connected to 127.0.0.1:") for line in lines) == 1
    assert sum(line.startswith("100 bytes from ") for line in lines) == 3
    assert any(line.startswith("connect min/p50/") for line in lines)


def test_newConnection(server: tuple[int, int]) -> None:
    """
    C{--new-connection}: connect and exchange time on every probe line, and
    summarised apart.
    """
    tcp, _ = server
    r = probe("--new-connection", "-c", "3", "-i", "0.05", "127.0.0.1", str(tcp))
    assert r.returncode == 0, r.stderr
    probeLines = [line for line in r.stdout.splitlines() if " bytes from " in line]
    assert len(probeLines) == 3
    assert all(" connect=" in line and " time=" in line for line in probeLines)
    assert "connect min/p50/" in r.stdout and "rtt min/p50/" in r.stdout


@pytest.mark.parametrize("udp", [True, False])
def test_json(server: tuple[int, int], udp: bool) -> None:
    """
    C{--json}: one object, exactly the SPEC keys, nothing else on stdout.
    """
    tcp, udpPort = server
    args = ["--udp", str(udpPort)] if udp else [str(tcp)]
    r = probe("--json", "-c", "2", "-i", "0.05", *args[:-1], "127.0.0.1", args[-1])
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert list(obj) == PROBE_JSON_KEYS
    assert obj["protocol"] == ("udp" if udp else "tcp")
    assert (obj["sent"], obj["received"], obj["lost"]) == (2, 2, 0)
    assert set(obj["rtt_ms"]) == {"min", "p50", "avg", "p90", "p99", "max", "stddev"}
    if udp:
        assert obj["connect_ms"] is None
    else:
        assert set(obj["connect_ms"]) == set(obj["rtt_ms"])
    assert sum(count for _, count in obj["histogram"]) == 2
    assert obj["achieved_rate"] is None


@pytest.mark.parametrize("udp", [True, False])
def test_load(server: tuple[int, int], udp: bool) -> None:
    """
    Load mode at a modest rate: every probe answered, rate sustained, no
    per-probe lines, achieved rate in the JSON.
    """
    tcp, udpPort = server
    flags = ["--udp"] if udp else []
    port = udpPort if udp else tcp
    r = probe(
        "--json",
        "--rate",
        "2000",
        "--duration",
        "1",
        "--concurrency",
        "2",
        *flags,
        "127.0.0.1",
        str(port),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    obj = json.loads(r.stdout)
    assert obj["sent"] == obj["received"] == 2000
    assert obj["lost"] == obj["corrupted"] == 0
    assert 1900 <= obj["achieved_rate"] <= 2100


def test_loadText(server: tuple[int, int]) -> None:
    """
    Load mode's text output: a header, the summary with the achieved rate,
    no per-probe lines.
    """
    _, udp = server
    r = probe("--udp", "--rate", "500", "--duration", "0.5", "127.0.0.1", str(udp))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " bytes from " not in r.stdout
    assert "250 sent, 250 received, 0.0% lost" in r.stdout
    assert "rate 500/s requested, " in r.stdout


@pytest.mark.parametrize("udp", [True, False])
def test_plainEchoCorrupted(plainEcho: tuple[int, int], udp: bool) -> None:
    """
    Against a plain echo server every reply is corrupted: exit 1.
    """
    tcp, udpPort = plainEcho
    args = ["--udp", "127.0.0.1", str(udpPort)] if udp else ["127.0.0.1", str(tcp)]
    r = probe("-c", "3", "-i", "0.05", *args)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("corrupted\n") >= 3
    assert "3 sent, 0 received, 0.0% lost, 3 corrupted" in r.stdout


def test_refused() -> None:
    """
    Nothing listening: exit 2, one line on stderr, no traceback.
    """
    port = freePort()
    r = probe("-c", "2", "127.0.0.1", str(port))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"upperecho-client: connection refused by 127.0.0.1:{port}"
    ]
    r = probe("--udp", "-c", "2", "-i", "0.1", "127.0.0.1", str(port))
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "refused" in r.stderr
    assert "Traceback" not in r.stderr


def test_badOption() -> None:
    """
    A bad option: exit 2, one line on stderr.
    """
    r = probe("-s", "3")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "--size" in r.stderr


def _readUntil(stream: int, needle: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    seen = b""
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{needle!r} not seen in {seen!r}")
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream, 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_sigintSummary(server: tuple[int, int]) -> None:
    """
    C{-c 0} runs until SIGINT, which prints the summary and exits 0 when
    every probe was answered.
    """
    _, udp = server
    p = subprocess.Popen(
        [*PROBE, "--udp", "-c", "0", "-i", "0.05", "127.0.0.1", str(udp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None
        seen = _readUntil(p.stdout.fileno(), b"seq=3 ", 20)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = (seen + out).decode()
    assert p.returncode == 0, text + err.decode()
    assert "udp probe statistics ---" in text
    assert "0.0% lost" in text
    assert b"Traceback" not in err


def test_progressOnTerminal(server: tuple[int, int]) -> None:
    """
    In load mode with stderr on a terminal, a progress line is refreshed
    every second.
    """
    _, udp = server
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [*PROBE, "--udp", "--rate", "200", "--duration", "2.2", "127.0.0.1", str(udp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    try:
        seen = _readUntil(master, b"2/2.2 s", 20)
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert p.returncode == 0
    assert b"\r1/2.2 s  " in seen
    assert b"probes/s  loss 0.00%  p50 " in seen
    assert b"440 sent, 440 received" in out


def test_unknownHost() -> None:
    """
    An unknown host: exit 2 and one line.
    """
    r = probe("no-such-host.invalid", "12000")
    assert r.returncode == 2
    assert r.stderr.startswith("upperecho-client: unknown host")
    assert len(r.stderr.splitlines()) == 1


def test_socketFree() -> None:
    """
    The helper's loopback assumption holds (sanity for the tests above).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[0] == "127.0.0.1"


@pytest.mark.parametrize("mode", [["--udp"], [], ["--new-connection"]])
def test_outputClosedEarly(server: tuple[int, int], mode: list[str]) -> None:
    """
    C{upperecho-client --probe ... | head -1}: when the reader of the output
    goes away, the probe stops at once, exits 1 and prints no traceback.
    (C{-c 0} probes until stopped, so only the closed output can end it.)
    """
    tcp, udp = server
    port = udp if mode == ["--udp"] else tcp
    process = subprocess.Popen(
        [*PROBE, *mode, "-c", "0", "-i", "0.01", "127.0.0.1", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()
    try:
        code = process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    process.stderr.close()
    assert first.startswith(b"PROBE 127.0.0.1")
    assert code == 1
    assert stderr == b""
