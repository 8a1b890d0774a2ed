"""
Signals and logs as operators use them, on a real C{twistd}, foreground and
daemonized: SIGUSR1 rotates the log file, SIGHUP reopens it (after
logrotate moved it away) and serving goes on, SIGTERM stops cleanly; JSON
logs from C{twistd --logger upperecho.logs.jsonLogger} and C{twist
--log-format=json} keep every field of upperecho's events.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import (
    BIN,
    TWISTD,
    Twistd,
    boundSockets,
    freePort,
    halfCloseExchange,
    udpExchange,
)


def waitFor(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def contains(path: Path, text: str) -> Callable[[], bool]:
    return lambda: path.exists() and text in path.read_text()


def assertServing(tcp: int, udp: int) -> None:
    assert halfCloseExchange(tcp, b"still here") == b"STILL HERE"
    assert udpExchange(udp, b"still here") == b"STILL HERE"


def rotateAndReopen(pid: int, log: Path, tcp: int, udp: int) -> None:
    """
    SIGUSR1 rotates; then, as logrotate does, move the file away and send
    SIGHUP: a new file at the path says it was reopened; serving goes on.
    """
    os.kill(pid, signal.SIGUSR1)
    rotated = log.with_name(log.name + ".1")
    waitFor(rotated.exists, "SIGUSR1 did not rotate the log")
    assertServing(tcp, udp)
    moved = log.with_name(log.name + ".moved")
    log.rename(moved)
    os.kill(pid, signal.SIGHUP)
    waitFor(contains(log, "SIGHUP: reopened the log file"), "SIGHUP: no reopen")
    assertServing(tcp, udp)
    assert "SIGHUP" not in moved.read_text()


def test_foreground() -> None:
    """
    twistd -n: SIGUSR1, SIGHUP, then SIGTERM ends it cleanly.
    """
    tcp, udp = freePort(), freePort(socket.SOCK_DGRAM)
    server = Twistd(["--tcp", str(tcp), "--udp", str(udp)])
    try:
        server.waitBound(tcp=[tcp], udp=[udp])
        rotateAndReopen(server.process.pid, server.logPath, tcp, udp)
        log = server.logPath
        os.kill(server.process.pid, signal.SIGTERM)
        # Twisted ends a clean SIGTERM shutdown by re-raising the signal
        assert server.process.wait(20) == -signal.SIGTERM
        assert "Server Shut Down." in log.read_text()
    finally:
        server.stop()


def test_daemon() -> None:
    """
    twistd daemonized: the same signals, then SIGTERM removes the pid file.
    """
    tcp, udp = freePort(), freePort(socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory() as d:
        log, pidfile = Path(d, "upperecho.log"), Path(d, "upperecho.pid")
        subprocess.run(
            [
                TWISTD,
                "--pidfile",
                str(pidfile),
                "--logfile",
                str(log),
                "upperecho",
                "--tcp",
                str(tcp),
                "--udp",
                str(udp),
            ],
            cwd=d,
            check=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        waitFor(pidfile.exists, "no pid file")
        pid = int(pidfile.read_text())
        try:
            waitFor(
                lambda: {("tcp", tcp), ("udp", udp)} <= boundSockets(pid),
                "the daemon did not bind",
            )
            rotateAndReopen(pid, log, tcp, udp)
        finally:
            os.kill(pid, signal.SIGTERM)
        waitFor(lambda: not Path(f"/proc/{pid}").exists(), "the daemon lives on")
        assert not pidfile.exists()
        assert "Server Shut Down." in log.read_text()


def jsonEvents(text: str) -> list[dict[str, object]]:
    return [json.loads(line.lstrip("\x1e")) for line in text.splitlines() if line]


def test_jsonLogger() -> None:
    """
    twistd --logger upperecho.logs.jsonLogger: one JSON object per line in
    $UPPERECHO_LOG_FILE, a refusal keeps its peer and limit; SIGHUP reopens.
    """
    tcp, udp = freePort(), freePort(socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory() as d:
        log = Path(d, "upperecho.json")
        env = {**os.environ, "UPPERECHO_LOG_FILE": str(log)}
        with Twistd(
            ["--tcp", str(tcp), "--udp", str(udp), "--max-connections", "1"],
            env=env,
            twistdArgs=["--logger", "upperecho.logs.jsonLogger"],
        ) as server:
            server.waitBound(tcp=[tcp], udp=[udp])
            with socket.create_connection(("127.0.0.1", tcp)) as first:
                first.sendall(b"a")
                assert first.recv(1) == b"A"
                with socket.create_connection(("127.0.0.1", tcp)) as second:
                    assert second.recv(1) == b""
            waitFor(contains(log, "max-connections"), "no refusal logged")
            events = jsonEvents(log.read_text())
            [refused] = [e for e in events if "limit" in e]
            assert refused["limit"] == 1
            assert str(refused["peer"]).startswith("127.0.0.1:")
            assert refused["log_namespace"] == "upperecho.tcp.UpperEchoFactory"
            log.rename(log.with_name("moved.json"))
            os.kill(server.process.pid, signal.SIGHUP)
            waitFor(contains(log, "SIGHUP"), "SIGHUP: no reopen")
            [reopened] = jsonEvents(log.read_text())
            assert reopened["path"] == str(log)
            assertServing(tcp, udp)
            assert server.stop() == -signal.SIGTERM


def test_twistJSON() -> None:
    """
    twist --log-format=json: JSON text sequences (RFC 7464), fields kept.
    """
    tcp, udp = freePort(), freePort(socket.SOCK_DGRAM)
    with Twistd(
        ["--tcp", str(tcp), "--udp", str(udp)],
        runner=str(BIN / "twist"),
        twistdArgs=["--log-format=json"],
    ) as server:
        server.waitBound(tcp=[tcp], udp=[udp])
        waitFor(lambda: "reactor" in server.log(), "no start-up event")
        assert server.log().startswith("\x1e")
        [start] = [e for e in jsonEvents(server.log()) if "version" in e]
        assert start["log_namespace"] == "upperecho.tap.UpperEchoService"
        assert server.stop() == -signal.SIGTERM
