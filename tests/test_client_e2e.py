"""
The client over real sockets: its protocols against the real server
protocols on loopback (pytest-twisted), then the installed
C{upperecho-client} command against a real C{twistd -n upperecho}.
"""

from __future__ import annotations

import fcntl
import os
import pty
import random
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped]
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.testing import StringTransportWithDisconnection

from tests.helpers import BIN, Twistd, freePort, freePorts
from upperecho.client import (
    NoReplyError,
    UpperEchoClientProtocol,
    UpperEchoDatagramClientProtocol,
    UpperEchoPipeProtocol,
    _StdioSide,
)
from upperecho.tcp import UpperEchoFactory
from upperecho.transform import upper
from upperecho.udp import MAX_DATAGRAM, UpperEchoDatagramProtocol

CLIENT = str(BIN / "upperecho-client")

#: pytest-twisted's decorator (the package has no type information)
inlineCallbacks: Callable[
    [Callable[[], Generator[Any, Any, None]]], Callable[[], Any]
] = pytest_twisted.inlineCallbacks
MiB = 1 << 20


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# -- the client protocols against the server protocols, over loopback --


@inlineCallbacks
def test_pipelinedOverLoopback() -> Generator[Any, Any, None]:
    """
    Many requests sent at once over one real TCP connection come back in
    order, each the uppercase of its line.
    """
    reactor = _reactor()
    port = reactor.listenTCP(0, UpperEchoFactory(), interface="127.0.0.1")
    try:
        proto = yield TCP4ClientEndpoint(
            reactor, "127.0.0.1", port.getHost().port
        ).connect(Factory.forProtocol(UpperEchoClientProtocol))
        texts = [f"line {i} straße ǆ" * (i % 7) for i in range(300)]
        replies = yield defer.gatherResults([proto.upper(t) for t in texts])
        assert replies == [t.upper() for t in texts]
        proto.transport.loseConnection()
    finally:
        yield port.stopListening()


@inlineCallbacks
def test_datagramOverLoopback() -> Generator[Any, Any, None]:
    """
    A UDP request gets the server's reply; a large one is not truncated.
    """
    reactor = _reactor()
    server = reactor.listenUDP(
        0,
        UpperEchoDatagramProtocol(),
        interface="127.0.0.1",
        maxPacketSize=MAX_DATAGRAM,
    )
    client = UpperEchoDatagramClientProtocol(
        "127.0.0.1", server.getHost().port, timeout=2.0, retries=1
    )
    clientPort = reactor.listenUDP(
        0, client, interface="127.0.0.1", maxPacketSize=MAX_DATAGRAM
    )
    try:
        reply = yield client.upper("hello, straße")
        assert reply == "HELLO, STRASSE"
        big = yield client.exchange(b"a" * 60000)
        assert big == b"A" * 60000
        assert client.sent == 2
    finally:
        yield clientPort.stopListening()
        yield server.stopListening()


@inlineCallbacks
def test_datagramNoServer() -> Generator[Any, Any, None]:
    """
    With nothing listening, the request fails with L{NoReplyError} after
    1 + retries datagrams, about (1 + retries) * timeout later.
    """
    reactor = _reactor()
    client = UpperEchoDatagramClientProtocol(
        "127.0.0.1", freePort(socket.SOCK_DGRAM), timeout=0.1, retries=2
    )
    clientPort = reactor.listenUDP(0, client, interface="127.0.0.1")
    started = time.monotonic()
    try:
        with pytest.raises(NoReplyError):
            yield client.exchange(b"anyone?")
        elapsed = time.monotonic() - started
        assert client.sent == 3
        assert 0.29 <= elapsed < 3
    finally:
        yield clientPort.stopListening()


class _FakeStdio(StringTransportWithDisconnection):
    """
    Standard input and output for a pipe test: what is written is kept,
    and C{loseConnection} ends the stdio side as the real one does.
    """


@inlineCallbacks
def test_pipeOverLoopback() -> Generator[Any, Any, None]:
    """
    A megabyte of mixed text and binary through the pipe protocol comes
    back as the server's transform of it, byte for byte; the half-close at
    the end of the input makes the server close, which completes C{done}.
    """
    reactor = _reactor()
    port = reactor.listenTCP(0, UpperEchoFactory(), interface="127.0.0.1")
    try:
        pipe = UpperEchoPipeProtocol()
        yield TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: pipe)
        )
        stdio = _FakeStdio()
        side = _StdioSide(pipe)
        stdio.protocol = side
        side.makeConnection(stdio)
        data = _mixedData(1 * MiB, seed=1)
        for i in range(0, len(data), 65536):
            side.dataReceived(data[i : i + 65536])
        side.readConnectionLost()
        yield pipe.done
        assert stdio.value() == upper(data)
    finally:
        yield port.stopListening()


# -- the installed command against twistd --


def _mixedData(size: int, seed: int = 0) -> bytes:
    """
    C{size} bytes or a little more: UTF-8 text that uppercases to other
    lengths (straße, ǆ, fullwidth letters), mixed with random binary that
    is not valid UTF-8.
    """
    rng = random.Random(seed)
    parts = []
    total = 0
    text = "hello straße ǆ ａｂｃ 中文 ÿ\n".encode()
    while total < size:
        if rng.random() < 0.5:
            part = text * rng.randint(1, 60)
        else:
            part = rng.randbytes(rng.randint(1, 5000))
        parts.append(part)
        total += len(part)
    return b"".join(parts)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, int, str]]:
    """
    A C{twistd -n upperecho} serving TCP, UDP and a UNIX socket.
    """
    tcp, udp = freePorts()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "upperecho.sock")
        with Twistd(
            ["--tcp", str(tcp), "--udp", str(udp), "--listen", f"unix:{path}"]
        ) as t:
            t.waitBound(tcp=[tcp], udp=[udp], unix=[path])
            yield tcp, udp, path


def _run(
    args: list[str], data: bytes = b"", timeout: float = 30
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLIENT, *args], input=data, capture_output=True, timeout=timeout
    )


def _oneErrorLine(result: subprocess.CompletedProcess[bytes]) -> str:
    """
    Check that C{result} failed with exactly one line on stderr and no
    traceback, and return that line.
    """
    assert result.returncode != 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("upperecho-client: ")
    assert b"Traceback" not in result.stderr + result.stdout
    return lines[0]


#: Runs a command and writes its own peak RSS (kilobytes) and exit status to
#: a file.  The measuring parent must be small: a child's C{ru_maxrss} also
#: counts the pages it shared with its parent before C{exec}, so measuring
#: from the test process (with its megabytes of test data) would report the
#: test's size, not the client's.
_MEASURE = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def _runMeasured(
    args: list[str], stdin: Any, stdout: Any, timeout: float
) -> tuple[int, int, bytes]:
    """
    Run the client with C{args}, and return its peak RSS in bytes, its
    exit status and its stderr.
    """
    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "rusage"
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(report), CLIENT, *args],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr
        maxrss, status = map(int, report.read_text().split())
    return maxrss * 1024, status, result.stderr  # kilobytes on Linux


def test_pipeFiveMegabytes(server: tuple[int, int, str], tmp_path: Path) -> None:
    """
    A 5 MB file of mixed UTF-8 and binary, redirected in and out, comes
    back as C{upper(data)} byte for byte, with a bounded peak RSS.
    """
    tcp, _, _ = server
    data = _mixedData(5 * MiB)
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data)
    with src.open("rb") as stdin, dst.open("wb") as stdout:
        peak, status, stderr = _runMeasured(["127.0.0.1", str(tcp)], stdin, stdout, 60)
    assert (status, stderr) == (0, b"")
    assert dst.read_bytes() == upper(data)
    print(f"peak RSS of upperecho-client piping 5 MB: {peak / MiB:.1f} MiB")
    assert peak < 100 * MiB


def test_pipeThroughPipes(server: tuple[int, int, str]) -> None:
    """
    Piped through real pipes (not files) the output is exact too.
    """
    tcp, _, _ = server
    data = _mixedData(300_000, seed=2)
    result = _run(["127.0.0.1", str(tcp)], data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == upper(data)


def test_emptyInput(server: tuple[int, int, str]) -> None:
    """
    No input: no output, exit 0.
    """
    tcp, _, _ = server
    result = _run(["127.0.0.1", str(tcp)])
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


@pytest.mark.skipif(not os.path.exists("/proc/self/fdinfo"), reason="Linux /proc")
def test_pipeBackpressure(server: tuple[int, int, str], tmp_path: Path) -> None:
    """
    When nobody reads the client's output, it stops reading its input
    (memory stays flat) instead of buffering everything.
    """
    tcp, _, _ = server
    size = 48 * MiB
    src = tmp_path / "zeros"
    with src.open("wb") as f:
        f.truncate(size)  # sparse: no disk used, NULs uppercase to NULs
    with src.open("rb") as stdin:
        process = subprocess.Popen(
            [CLIENT, "127.0.0.1", str(tcp)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 20
        last, steady = -1, 0
        while steady < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
            fdinfo = Path(f"/proc/{process.pid}/fdinfo/0").read_text()
            position = int(fdinfo.split()[1])
            steady = steady + 1 if position == last and position > 0 else 0
            last = position
        status = Path(f"/proc/{process.pid}/status").read_text()
        hwm = int(status.split("VmHWM:")[1].split()[0]) * 1024
        print(f"stalled after reading {last / MiB:.1f} MiB; VmHWM {hwm / MiB:.1f} MiB")
        assert steady >= 5, "the input was still being read"
        assert 0 < last < size
        assert hwm < 100 * MiB
    finally:
        process.kill()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()


def test_readerQuits(server: tuple[int, int, str], tmp_path: Path) -> None:
    """
    Like C{upperecho-client < big | head -c 10}: when the output's reader
    goes away the client stops quietly, non-zero, instead of hanging.
    """
    tcp, _, _ = server
    src = tmp_path / "zeros"
    with src.open("wb") as f:
        f.truncate(16 * MiB)
    with src.open("rb") as stdin:
        process = subprocess.Popen(
            [CLIENT, "127.0.0.1", str(tcp)],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    assert process.stdout is not None and process.stderr is not None
    try:
        assert process.stdout.read(10) == b"\0" * 10
        process.stdout.close()
        assert process.wait(20) == 1
        assert process.stderr.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        process.stderr.close()


def test_udpLines(server: tuple[int, int, str]) -> None:
    """
    UDP: one datagram per line, sent without its line ending (LF or CRLF);
    each reply printed with a newline; an unterminated last line too.
    """
    _, udp, _ = server
    data = "hello\nstraße\r\n\nlast".encode()
    result = _run(["--udp", "127.0.0.1", str(udp)], data)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == b"HELLO\nSTRASSE\n\nLAST\n"


def test_udpNewlineTerminatedIsExact(server: tuple[int, int, str]) -> None:
    """
    For newline-terminated input the UDP output is exactly the uppercased
    input (SPEC section 5), here with the default host name.
    """
    _, udp, _ = server
    data = b"".join(f"line {i} ǆ\n".encode() for i in range(200))
    result = _run(["--udp", "localhost", str(udp)], data)
    assert (result.returncode, result.stdout) == (0, upper(data))


def test_udpNoServer() -> None:
    """
    UDP with nothing listening: one "no reply" line and a non-zero status,
    after about (1 + retries) * timeout.
    """
    port = freePort(socket.SOCK_DGRAM)
    started = time.monotonic()
    result = _run(
        ["--udp", "--timeout", "0.2", "--retries", "1", "127.0.0.1", str(port)],
        b"hello\n",
    )
    elapsed = time.monotonic() - started
    line = _oneErrorLine(result)
    assert line == (
        f"upperecho-client: no reply from 127.0.0.1:{port} "
        "after 2 datagrams (0.2 s timeout each)"
    )
    assert 0.4 <= elapsed < 10


def test_refused() -> None:
    """
    Nothing listening on the TCP port: one line, non-zero.
    """
    port = freePort()
    line = _oneErrorLine(_run(["127.0.0.1", str(port)], b"x\n"))
    assert (
        line
        == f"upperecho-client: cannot connect to 127.0.0.1:{port}: connection refused"
    )


@pytest.mark.parametrize("udp", [False, True])
def test_unknownHost(udp: bool) -> None:
    """
    A host name that does not resolve: one line, non-zero, over TCP and UDP.
    """
    args = ["--udp"] if udp else []
    line = _oneErrorLine(_run([*args, "no-such-host.invalid", "12000"], b"x\n"))
    assert line == "upperecho-client: unknown host: cannot resolve no-such-host.invalid"


def test_lostConnection() -> None:
    """
    A server that closes before the input has ended: one line, non-zero.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(20)
        port = listener.getsockname()[1]
        process = subprocess.Popen(
            [CLIENT, "127.0.0.1", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            conn, _ = listener.accept()
            conn.close()
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert _oneErrorLine(result).startswith("upperecho-client: connection lost")


@pytest.mark.parametrize("args", [["--bogus"], ["--retries", "x"], ["h", "0"]])
def test_badOptions(args: list[str]) -> None:
    """
    Bad options: one line, status 2.
    """
    result = _run(args)
    _oneErrorLine(result)
    assert result.returncode == 2


def test_connectEndpoints(server: tuple[int, int, str]) -> None:
    """
    C{--connect} takes any client endpoint string: TCP and a UNIX socket.
    """
    tcp, _, path = server
    data = "über\nstraße\n".encode()
    for endpoint in [f"tcp:127.0.0.1:{tcp}", f"unix:{path}"]:
        result = _run(["--connect", endpoint], data)
        assert (result.returncode, result.stderr) == (0, b""), endpoint
        assert result.stdout == upper(data), endpoint


def test_connectBadEndpoint() -> None:
    """
    A malformed endpoint string: one line naming it.
    """
    line = _oneErrorLine(_run(["--connect", "bogus:1"]))
    assert "--connect bogus:1" in line


def _readUntil(fd: int, expected: bytes, timeout: float = 20) -> bytes:
    """
    Read from C{fd} until C{expected} has been seen, for at most C{timeout}
    seconds.
    """
    seen = b""
    deadline = time.monotonic() + timeout
    while expected not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{expected!r} not seen in {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the other side is gone
                break
            if not chunk:
                break
            seen += chunk
    assert expected in seen, seen
    return seen


def test_interactive(server: tuple[int, int, str]) -> None:
    """
    On a terminal: each typed line is answered as soon as it is entered;
    Ctrl-D ends the session with status 0, and the terminal is not left
    in non-blocking mode.
    """
    tcp, _, _ = server
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [CLIENT, "127.0.0.1", str(tcp)],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    try:
        _readUntil(master, b"connected to 127.0.0.1:")
        os.write(master, "hello straße\n".encode())
        _readUntil(master, b"HELLO STRASSE\r\n")
        os.write(master, b"again\n")
        _readUntil(master, b"AGAIN\r\n")
        os.write(master, b"\x04")
        assert process.wait(20) == 0
        # the terminal is left blocking, as the shell expects it
        assert not fcntl.fcntl(slave, fcntl.F_GETFL) & os.O_NONBLOCK
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        os.close(slave)
        os.close(master)


def test_help() -> None:
    """
    C{--help} documents both forms and every option, status 0.
    """
    result = _run(["--help"])
    assert result.returncode == 0
    out = result.stdout.decode()
    for word in ["--udp", "--timeout", "--retries", "--encoding", "--connect", "PORT"]:
        assert word in out
