"""
Helpers for end-to-end tests: free ports and a real C{twistd -n upperecho}
subprocess, started from the installed package (as a user would run it).
"""

from __future__ import annotations

import os
import random
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from twisted.trial.unittest import SynchronousTestCase

BIN = Path(sys.executable).parent

#: the keys of C{upperecho-client --probe --json}, in order, as docs/contract.rst (Probe mode) lists
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


def _ephemeralPorts() -> range:
    """
    The ports the kernel gives to client sockets that bind none.
    """
    try:
        low, high = map(
            int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


#: ports for test servers: unprivileged and outside the ephemeral range
_SERVER_PORTS = [p for p in range(10000, 65536) if p not in _ephemeralPorts()]


def freePort(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """
    A port that is free for C{kind} on C{host} right now, chosen at random
    outside the kernel's ephemeral range: a port the kernel picked (bind to
    port 0) is one it may give the next client socket of any process before
    the server under test binds it, which fails that test at random.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        port = random.choice(_SERVER_PORTS)
        with socket.socket(family, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
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


def ipv6Loopback() -> bool:
    """
    Whether this machine can bind IPv6 loopback (C{::1}); tests of IPv6 and
    dual-stack skip without it.
    """
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


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


def boundSockets(pid: int) -> set[tuple[str, int | str]]:
    """
    What process C{pid} has bound: C{("tcp", port)} for each listening TCP
    socket, C{("udp", port)} for each UDP socket and C{("unix", path)} for
    each UNIX socket, IPv4 and IPv6 alike, read from C{/proc/net/*} and
    matched to the process by the sockets' inodes in C{/proc/PID/fd}.
    """
    inodes = set()
    fdDir = f"/proc/{pid}/fd"
    for fd in os.listdir(fdDir):
        try:
            link = os.readlink(os.path.join(fdDir, fd))
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found: set[tuple[str, int | str]] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        kind = table.rstrip("6")
        for line in Path("/proc/net", table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            # a TCP socket counts once it listens (state 0A)
            if inode in inodes and (kind == "udp" or state == "0A"):
                found.add((kind, int(local.rsplit(":", 1)[1], 16)))
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[6] in inodes:
            found.add(("unix", fields[7]))
    return found


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


class Twistd:
    """
    A C{twistd -n upperecho ...} subprocess with its log in a file.
    """

    def __init__(
        self,
        args: Sequence[str],
        runner: str = TWISTD,
        env: Mapping[str, str] | None = None,
        twistdArgs: Sequence[str] = (),
    ) -> None:
        self.args = list(args)
        self.dir = tempfile.TemporaryDirectory()
        self.logPath = Path(self.dir.name) / "twistd.log"
        argv = [
            runner,
            "-n",
            "--pidfile=",
            "-l",
            str(self.logPath),
            *twistdArgs,
            "upperecho",
            *self.args,
        ]
        if runner.endswith("twist"):
            argv = [
                runner,
                "--log-file",
                str(self.logPath),
                *twistdArgs,
                "upperecho",
                *self.args,
            ]
        self.process = subprocess.Popen(
            argv,
            cwd=self.dir.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"},
        )

    def waitBound(
        self,
        tcp: Sequence[int] = (),
        udp: Sequence[int] = (),
        unix: Sequence[str] = (),
        timeout: float = 30.0,
    ) -> None:
        """
        Wait until this server has bound every port given (TCP listening,
        UDP bound, UNIX socket paths), as the kernel reports it; a test sends
        nothing before, so it never races the server's start-up.

        @raise RuntimeError: the server exited first (with its output).
        @raise TimeoutError: not all were bound within C{timeout} seconds.
        """
        wanted: set[tuple[str, int | str]] = {("tcp", p) for p in tcp}
        wanted |= {("udp", p) for p in udp} | {("unix", p) for p in unix}
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                err = self.process.stderr.read() if self.process.stderr else b""
                raise RuntimeError(
                    f"twistd exited ({self.process.returncode}) before binding "
                    f"{sorted(map(str, wanted))}: {err.decode(errors='replace')}"
                    f"{self.log()}"
                )
            try:
                missing = wanted - boundSockets(self.process.pid)
            except FileNotFoundError:  # the process is gone
                continue
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"not bound after {timeout} s: {sorted(map(str, missing))}"
                )
            time.sleep(0.02)

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


@dataclass
class Certs:
    """
    A throw-away CA and a server certificate for C{localhost}/127.0.0.1.
    """

    ca: trustme.CA
    caPath: Path
    keyPath: Path
    certPath: Path

    def clientContext(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context

    def tlsClient(self, port: int, root: Path) -> str:
        """
        A Twisted C{tls:} client endpoint for C{localhost:port} that trusts
        only this CA, whose certificate is written into the directory
        C{root}.
        """
        root.mkdir(exist_ok=True)
        (root / "ca.pem").write_bytes(self.caPath.read_bytes())
        return (
            f"tls:localhost:{port}:trustRoots={root}:endpoint=tcp\\:127.0.0.1\\:{port}"
        )

    def listen(self, port: int = 0) -> str:
        return (
            f"ssl:{port}:interface=127.0.0.1:privateKey={self.keyPath}"
            f":certKey={self.certPath}"
        )


def makeCerts(directory: Path) -> Certs:
    """
    A new CA and a certificate for C{localhost}/127.0.0.1 it signed, as PEM
    files in C{directory}.
    """
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    paths = Certs(
        ca, directory / "ca.pem", directory / "key.pem", directory / "cert.pem"
    )
    ca.cert_pem.write_to_path(str(paths.caPath))
    cert.private_key_pem.write_to_path(str(paths.keyPath))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(paths.certPath), append=i > 0)
    return paths


def readUntil(fd: int, expected: bytes, timeout: float = 20) -> bytes:
    """
    Read from C{fd} (a pipe or a terminal) until C{expected} has been seen,
    for at most C{timeout} seconds.

    @return: everything read.
    @raise TimeoutError: C{expected} did not come in time.
    @raise AssertionError: the other side closed before it came.
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
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side of a terminal is gone
                break
            if not chunk:
                break
            seen += chunk
    assert expected in seen, seen
    return seen


#: L{requireCompiled}'s "not given"
_UNSET: Any = object()


def requireCompiled(case: Any, name: str, available: Any = _UNSET) -> Any:
    """
    The C accelerator's function C{name} (L{upperecho.compiled}), or
    C{available} if given; where it is missing, skip C{case}'s test, or
    fail it under C{UPPERECHO_REQUIRE_ACCEL=1} (C{make test}, tox, CI),
    where the accelerator must be built.
    """
    from twisted.trial.unittest import SkipTest

    from upperecho.compiled import compiled

    found = compiled(name) if available is _UNSET else available
    if found is None:
        if os.environ.get("UPPERECHO_REQUIRE_ACCEL", "") == "1":
            case.fail(f"the C accelerator's {name} is not built")
        raise SkipTest("the C accelerator is not built")
    return found
