"""
Helpers for end-to-end tests: free ports and a real C{twistd -n upperecho}
subprocess, started from the installed package (as a user would run it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

BIN = Path(sys.executable).parent

#: the keys of C{upperecho-client --probe --json}, in order, as SPEC 9.1 lists
#: them (written out here, not imported, so the tests can catch a change)
PROBE_JSON_KEYS = [
    "target",
    "protocol",
    "sent",
    "received",
    "lost",
    "corrupted",
    "duplicated",
    "reordered",
    "late",
    "elapsed_s",
    "rtt_ms",
    "connect_ms",
    "histogram",
    "achieved_rate",
]
TWISTD = str(BIN / "twistd")


def freePort(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """
    A port that is free for C{kind} on C{host} right now.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def freePorts() -> tuple[int, int]:
    """
    A TCP port and a UDP port, distinct from each other.
    """
    tcp = freePort(socket.SOCK_STREAM)
    while True:
        udp = freePort(socket.SOCK_DGRAM)
        if udp != tcp:
            return tcp, udp


def waitForTCP(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """
    Wait until something accepts TCP connections on C{(host, port)}.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def halfCloseExchange(
    port: int, payload: bytes, host: str = "127.0.0.1", timeout: float = 30.0
) -> bytes:
    """
    One well-behaved TCP client, like C{nc -N}: send C{payload}, shut the
    sending side, read until the server closes.
    """
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def udpExchange(
    port: int, payload: bytes, host: str = "127.0.0.1", timeout: float = 2.0
) -> bytes:
    """
    Send one datagram and return the reply (raises C{socket.timeout}).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (host, port))
        data, _ = s.recvfrom(70000)
        return data


def waitForUDP(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """
    Wait until a UDP upperecho answers on C{(host, port)}.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if udpExchange(port, b"ping", host, 0.2) == b"PING":
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no UDP reply on {host}:{port}")


class Twistd:
    """
    A C{twistd -n upperecho ...} subprocess with its log in a file.
    """

    def __init__(self, args: Sequence[str], runner: str = TWISTD) -> None:
        self.args = list(args)
        self.dir = tempfile.TemporaryDirectory()
        self.logPath = Path(self.dir.name) / "twistd.log"
        argv = [
            runner,
            "-n",
            "--pidfile=",
            "-l",
            str(self.logPath),
            "upperecho",
            *self.args,
        ]
        if runner.endswith("twist"):
            argv = [runner, "--log-file", str(self.logPath), "upperecho", *self.args]
        self.process = subprocess.Popen(
            argv,
            cwd=self.dir.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def log(self) -> str:
        try:
            return self.logPath.read_text()
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """
        Send C{sig} and wait for the exit status.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.dir.cleanup()

    def __enter__(self) -> Twistd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def runTwistd(
    args: Sequence[str], timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd -n upperecho ARGS} expecting it to exit on its own.
    """
    with tempfile.TemporaryDirectory() as d:
        return subprocess.run(
            [TWISTD, "-n", "--pidfile=", "upperecho", *args],
            cwd=d,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def assertNear(
    case: SynchronousTestCase, value: float, expected: float, delta: float
) -> None:
    """
    C{value} is within C{delta} of C{expected} (trial's C{assertAlmostEqual}
    ignores C{delta}).
    """
    case.assertTrue(
        abs(value - expected) <= delta, f"{value!r} not within {delta} of {expected!r}"
    )
