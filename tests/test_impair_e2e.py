"""
End-to-end tests of UDP impairment: a real C{twistd -n upperecho} with
C{--udp-loss}, C{--udp-duplicate} or C{--udp-delay}/C{--udp-jitter}, talked
to with plain UDP sockets over loopback.

Each server also serves TCP (never impaired) so that readiness is checked
without sending a datagram: the first datagrams the server sees are the
test's, so with a fixed C{--udp-seed} the server must make exactly the
choices a local L{Impairment} with the same seed makes.
"""

from __future__ import annotations

import signal
import socket
import time
from itertools import pairwise

from twisted.internet.task import Clock

from tests.helpers import Twistd, freePorts, runTwistd
from upperecho.impair import Impairment
from upperecho.udp import Address

COUNT = 100


class ImpairedServer:
    """
    A C{twistd -n upperecho} on fresh ports with impairment options.

    @ivar udp: its UDP port.
    @ivar finalLog: its whole log, once L{stop} has run.
    """

    def __init__(self, *options: str) -> None:
        tcp, self.udp = freePorts()
        self.finalLog = ""
        self._stopped = False
        self._twistd = Twistd(["--tcp", str(tcp), "--udp", str(self.udp), *options])
        try:
            self._twistd.waitBound(tcp=[tcp], udp=[self.udp])
        except BaseException:
            self._twistd.stop()
            raise

    def log(self) -> str:
        return self._twistd.log()

    def stop(self) -> float:
        """
        SIGTERM; check the exit was clean; return how long it took.  Once.
        """
        if self._stopped:
            return 0.0
        self._stopped = True
        process = self._twistd.process
        started = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        finally:
            elapsed = time.monotonic() - started
            self.finalLog = self._twistd.log()
            self._twistd.stop()
        assert "Traceback" not in self.finalLog, self.finalLog
        assert "Unhandled" not in self.finalLog, self.finalLog
        return elapsed

    def __enter__(self) -> ImpairedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def exchange(udp: int, count: int = COUNT) -> list[tuple[float, bytes]]:
    """
    Send C{count} numbered datagrams in a burst, then collect replies until
    none has come for 0.5 s (10 s at most), with their arrival times
    relative to the first send.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        start = time.monotonic()
        for i in range(count):
            s.sendto(b"seq %03d" % (i,), ("127.0.0.1", udp))
        replies = []
        deadline = start + 10
        s.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(2048)
            except TimeoutError:
                break
            replies.append((time.monotonic() - start, data))
        return replies


def predicted(count: int = COUNT, **kwargs: float) -> list[bytes]:
    """
    The replies a local L{Impairment} with these settings sends for the same
    datagrams, in order (no delay).
    """
    sent: list[bytes] = []

    def write(data: bytes, addr: Address) -> None:
        sent.append(data)

    impairment = Impairment(Clock(), **kwargs)  # type: ignore[arg-type]
    for i in range(count):
        impairment.send(write, b"SEQ %03d" % (i,), ("127.0.0.1", 40000))
    return sent


def test_loss() -> None:
    """
    C{--udp-loss 30 --udp-seed 1}: about 30 % of the replies never come, and
    exactly the ones the seed predicts; start-up says replies are impaired.
    """
    with ImpairedServer("--udp-loss", "30", "--udp-seed", "1") as server:
        replies = [data for _, data in exchange(server.udp)]
    log = server.finalLog
    expected = predicted(loss=30, seed=1)
    assert replies == expected
    assert 15 <= COUNT - len(replies) <= 45
    (line,) = [line for line in log.splitlines() if "impaired" in line]
    assert "30% lost" in line and "seed 1" in line


def test_duplicate() -> None:
    """
    C{--udp-duplicate 50 --udp-seed 2}: every datagram is answered, about
    half of them twice, exactly as the seed predicts.
    """
    with ImpairedServer("--udp-duplicate", "50", "--udp-seed", "2") as server:
        replies = [data for _, data in exchange(server.udp)]
    assert replies == predicted(duplicate=50, seed=2)
    assert set(replies) == {b"SEQ %03d" % (i,) for i in range(COUNT)}
    assert 25 <= len(replies) - COUNT <= 75


def test_delayAndJitterReorder() -> None:
    """
    C{--udp-delay 20 --udp-jitter 30}: every reply comes, none sooner than
    20 ms after its datagram left, and they overtake each other.  Stopping
    the server cancels nothing it still owed here, and says so.
    """
    with ImpairedServer(
        "--udp-delay", "20", "--udp-jitter", "30", "--udp-seed", "3"
    ) as server:
        replies = exchange(server.udp)
    order = [int(data.split()[1]) for _, data in replies]
    assert sorted(order) == list(range(COUNT))
    assert min(when for when, _ in replies) >= 0.020
    overtaken = sum(1 for a, b in pairwise(order) if a > b)
    assert overtaken >= 10, order
    assert f"{COUNT} delayed" in server.finalLog
    assert "0 pending cancelled" in server.finalLog


def test_stopCancelsPending() -> None:
    """
    SIGTERM with replies still delayed: the server exits within 5 s and
    cleanly, the pending replies cancelled and never sent.
    """
    server = ImpairedServer("--udp-delay", "60000")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i in range(5):
                s.sendto(b"never %d" % (i,), ("127.0.0.1", server.udp))
            # No reply can tell that the server has read them: give it time.
            time.sleep(0.5)
            assert server.stop() < 5
            s.settimeout(0.2)
            try:
                data: bytes | None = s.recv(2048)
            except TimeoutError:
                data = None
            assert data is None
    finally:
        server.stop()
    assert "5 delayed" in server.finalLog
    assert "5 pending cancelled" in server.finalLog


def test_badValue() -> None:
    """
    C{--udp-loss 150} ends twistd at once: non-zero status, one clear line
    naming the option and the value, no traceback.
    """
    result = runTwistd(["--udp", "0", "--udp-loss", "150"], timeout=30)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "--udp-loss 150" in line]
    assert len(lines) == 1, output
    assert "not a percentage" in lines[0]
