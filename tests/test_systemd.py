"""
systemd socket activation: C{--listen systemd:domain=INET:index=0} serves
the socket that systemd (or C{systemd-socket-activate}) bound and passed as
file descriptor 3 with C{LISTEN_FDS}/C{LISTEN_PID}.
"""

from __future__ import annotations

import select
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import (
    TWISTD,
    Twistd,
    freePort,
    halfCloseExchange,
    runTwistd,
)
from upperecho.transform import upper

#: does what systemd does for a socket unit: binds and listens, then execs
#: the service with the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID=its pid
EMULATOR = """\
import os, socket, sys
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(50)
if listener.fileno() != 3:
    os.dup2(listener.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = "upperecho"
os.execv(sys.argv[2], sys.argv[2:])
"""


def _check(server: Twistd, port: int) -> None:
    """
    The activated server answers two connections, then stops on SIGTERM.
    """
    for payload in (b"hello systemd \xc3\xa9\n", b"second connection\n"):
        assert halfCloseExchange(port, payload) == upper(payload)
    assert server.process.poll() is None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) in (0, -signal.SIGTERM)
    deadline = time.monotonic() + 5
    while "Main loop terminated" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


@pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate not installed (Debian package systemd)",
)
def test_systemdSocketActivate(tmp_path: Path) -> None:
    """
    Under C{systemd-socket-activate --fdname=upperecho -l 127.0.0.1:PORT
    twistd ...}: the first connection starts twistd, which serves it and the
    next.  (Twisted ignores passed sockets without C{LISTEN_FDNAMES}, which
    systemd itself always sets, hence C{--fdname}.)
    """
    port = freePort()
    runner = tmp_path / "activate"
    runner.write_text(
        f'#!/bin/sh\nexec systemd-socket-activate --fdname=upperecho -l 127.0.0.1:{port} "{TWISTD}" "$@"\n'
    )
    runner.chmod(0o755)
    server = Twistd(["--listen", "systemd:domain=INET:index=0"], runner=str(runner))
    try:
        assert server.process.stderr is not None
        ready, _, _ = select.select([server.process.stderr], [], [], 20)
        assert ready, "systemd-socket-activate printed nothing in 20 s"
        line = server.process.stderr.readline()
        assert f"Listening on 127.0.0.1:{port}" in line.decode(), line
        _check(server, port)
    finally:
        server.stop()


def test_emulatedActivation(tmp_path: Path) -> None:
    """
    The same where systemd is missing: a small wrapper binds the socket and
    execs twistd with it as fd 3, C{LISTEN_FDS=1} and C{LISTEN_PID} set to
    its own (and so twistd's) pid.
    """
    port = freePort()
    emulator = tmp_path / "emulator.py"
    emulator.write_text(EMULATOR)
    runner = tmp_path / "activate"
    runner.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{emulator}" {port} "{TWISTD}" "$@"\n'
    )
    runner.chmod(0o755)
    server = Twistd(["--listen", "systemd:domain=INET:index=0"], runner=str(runner))
    try:
        server.waitBound(tcp=[port])
        _check(server, port)
    finally:
        server.stop()


def test_noSocketPassed() -> None:
    """
    Without a socket from systemd, twistd exits non-zero with one line that
    names the option and says what is missing.
    """
    result = runTwistd(["--listen", "systemd:domain=INET:index=0"])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "--listen systemd:domain=INET:index=0: " in output
    assert "LISTEN_FDNAMES" in output
