"""
Soak test for upperecho: a real C{twistd -n upperecho} on loopback under a
mix of well-behaved and abusive clients for a bounded time.

Well-behaved clients check every reply byte (TCP: random-sized pieces of a
numbered pattern, half-close, read to EOF; UDP: one datagram, one reply).
Abusive ones: non-readers that stuff the server until it stops reading,
resetters (SO_LINGER 0 mid-stream), a UDP flood from one source with
nobody reading the replies, senders that vanish before their UDP reply
(ICMP port unreachable), and slowloris-style idle connections that only the
idle timeout closes.

Every INTERVAL seconds one line: server RSS, open fds, TCP connections
the server holds, replies verified, errors.  At the end the server is
stopped with SIGTERM and its log is searched for tracebacks.  Exit status
0 when nothing went wrong.

    python -m soak.soak [--duration 60] [--interval 5]

(from the top of a checkout, which puts it on the module path: the soak
uses the end-to-end helpers of C{tests}, and imports them as any module).
"""

from __future__ import annotations

import argparse
import random
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

from tests.abuse import Pattern, fdCount, rssKiB
from tests.helpers import Twistd, freePorts


class Counters:
    """
    Thread-safe named counters.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] = self.values.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self.values.get(name, 0)


class Soak:
    """
    The clients, each a thread looping until L{stop} is set.
    """

    def __init__(self, tcp: int, udp: int, counters: Counters) -> None:
        self.tcp = tcp
        self.udp = udp
        self.c = counters
        self.stop = threading.Event()
        self.pattern = Pattern(4096)
        self.errors: list[str] = []

    def error(self, what: str) -> None:
        self.c.add("errors")
        if len(self.errors) < 20:
            self.errors.append(what)

    def tcpVerifier(self, seed: int) -> None:
        """
        Connect, send a random-sized piece of the pattern, half-close, read
        to EOF, compare.
        """
        rng = random.Random(seed)
        while not self.stop.is_set():
            offset = rng.randrange(1 << 20)
            size = rng.choice([1, 10, 100, 1000, 10_000, 100_000, 1_000_000])
            payload = self.pattern.chunk(offset, size)
            try:
                with socket.create_connection(("127.0.0.1", self.tcp), timeout=10) as s:
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    got = bytearray()
                    while chunk := s.recv(65536):
                        got += chunk
            except OSError as e:
                self.error(f"tcp verifier: {e!r}")
                continue
            if bytes(got) == payload.upper():
                self.c.add("tcp verified")
                self.c.add("tcp bytes verified", size)
            else:
                self.error(f"tcp verifier: wrong reply ({len(got)} of {size} bytes)")

    def udpVerifier(self) -> None:
        """
        One datagram, one reply, at about 300 per second (under the default
        --udp-rate of 1000).  A reply that does not come within 2 s counts
        as lost, not as an error: the flood can overflow the server's socket
        buffer, and UDP may drop datagrams.
        """
        rng = random.Random(7)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            n = 0
            while not self.stop.is_set():
                n += 1
                payload = b"%d:" % n + bytes(
                    rng.choices(b"abcxyz", k=rng.randrange(1000))
                )
                s.sendto(payload, ("127.0.0.1", self.udp))
                try:
                    while True:
                        data, _ = s.recvfrom(70000)
                        if data.split(b":")[0] == b"%d" % n:
                            break
                except TimeoutError:
                    # UDP may lose datagrams: the flood fills the server's
                    # socket buffer and the kernel drops what does not fit
                    self.c.add("udp lost")
                    continue
                if data == payload.upper():
                    self.c.add("udp verified")
                else:
                    self.error(f"udp verifier: wrong reply to #{n}")
                time.sleep(0.003)

    def nonReaders(self, count: int = 20) -> None:
        """
        Keep C{count} connections that send without reading; replace one
        every 0.5 s.
        """
        conns: list[socket.socket] = []
        sent: dict[socket.socket, int] = {}
        try:
            while not self.stop.is_set():
                while len(conns) < count:
                    try:
                        c = socket.create_connection(("127.0.0.1", self.tcp), timeout=5)
                    except OSError:
                        break
                    c.setblocking(False)
                    conns.append(c)
                    sent[c] = 0
                for c in conns:
                    try:
                        n = c.send(self.pattern.chunk(sent[c], 65536))
                        sent[c] += n
                        self.c.add("non-reader bytes", n)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self.c.add("non-readers closed by server")
                        conns.remove(c)
                        c.close()
                        break
                old = conns.pop(0)
                old.close()
                self.c.add("non-readers dropped")
                self.stop.wait(0.5)
        finally:
            for c in conns:
                c.close()

    def resetter(self) -> None:
        """
        Connect, send, reset (SO_LINGER 0), about 100 times a second.
        """
        linger0 = struct.pack("ii", 1, 0)
        rng = random.Random(3)
        while not self.stop.is_set():
            try:
                c = socket.create_connection(("127.0.0.1", self.tcp), timeout=5)
                c.sendall(self.pattern.chunk(0, rng.randrange(1, 200_000)))
                if rng.random() < 0.5:
                    c.recv(100)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
                c.close()
                self.c.add("resets")
            except OSError:
                self.c.add("reset errors (expected)")
            self.stop.wait(0.01)

    def udpFlood(self) -> None:
        """
        Bursts of 2,000 datagrams from one socket that never reads (the
        rate limit drops most), and senders gone before their reply.
        """
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.2", 0))
            while not self.stop.is_set():
                for i in range(2000):
                    try:
                        s.sendto(b"flood %d" % i, ("127.0.0.1", self.udp))
                        self.c.add("udp flood sent")
                    except OSError:
                        self.c.add("udp flood send errors")
                for _ in range(50):
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
                        gone.bind(("127.0.0.3", 0))
                        gone.sendto(b"gone", ("127.0.0.1", self.udp))
                        self.c.add("udp senders gone")
                self.stop.wait(0.5)

    def slowloris(self, count: int = 200) -> None:
        """
        Keep C{count} connections open that send one byte and then nothing;
        the idle timeout must close them.
        """
        conns: list[socket.socket] = []
        try:
            while not self.stop.is_set():
                for c in list(conns):
                    try:
                        c.setblocking(False)
                        if c.recv(10) == b"":
                            self.c.add("idle closed by server")
                            conns.remove(c)
                            c.close()
                    except BlockingIOError:
                        pass
                    except OSError:
                        conns.remove(c)
                        c.close()
                while len(conns) < count and not self.stop.is_set():
                    try:
                        c = socket.create_connection(("127.0.0.1", self.tcp), timeout=5)
                        c.sendall(b"x")
                        conns.append(c)
                    except OSError:
                        break
                self.stop.wait(0.5)
        finally:
            for c in conns:
                c.close()


def tcpConnections(port: int) -> int:
    """
    Established TCP connections on local port C{port} (from /proc/net/tcp).
    """
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
                n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--interval", type=float, default=5)
    parser.add_argument("--idle-timeout", default="10")
    args = parser.parse_args(argv)

    tcp, udp = freePorts()
    counters = Counters()
    server = Twistd(
        ["--tcp", str(tcp), "--udp", str(udp), "--idle-timeout", args.idle_timeout]
    )
    pid = server.process.pid
    try:
        server.waitBound(tcp=[tcp], udp=[udp])
    except BaseException:
        server.stop()
        raise
    soak = Soak(tcp, udp, counters)
    workers: list[Callable[[], None]] = [
        lambda: soak.tcpVerifier(1),
        lambda: soak.tcpVerifier(2),
        soak.udpVerifier,
        soak.nonReaders,
        soak.resetter,
        soak.udpFlood,
        soak.slowloris,
    ]
    threads = [threading.Thread(target=w, daemon=True) for w in workers]
    start = time.monotonic()
    rss0, fds0 = rssKiB(pid), fdCount(pid)
    print(
        f"soak: twistd pid {pid}, tcp {tcp}, udp {udp}, {args.duration:.0f} s, "
        f"--idle-timeout {args.idle_timeout}; start RSS {rss0} KiB, {fds0} fds",
        flush=True,
    )
    header = (
        f"{'t/s':>5} {'RSS KiB':>8} {'fds':>5} {'conns':>5} {'tcp ok':>7} "
        f"{'MB ok':>6} {'udp ok':>7} {'lost':>5} {'resets':>6} {'flood':>7} {'idle-cl':>7} "
        f"{'errors':>6}"
    )
    print(header, flush=True)
    for t in threads:
        t.start()
    peakRSS, peakFds = rss0, fds0
    status = 0
    try:
        while (elapsed := time.monotonic() - start) < args.duration:
            time.sleep(min(args.interval, args.duration - elapsed))
            if server.process.poll() is not None:
                print("soak: the server died", flush=True)
                status = 1
                break
            rss, fds = rssKiB(pid), fdCount(pid)
            peakRSS, peakFds = max(peakRSS, rss), max(peakFds, fds)
            g = counters.get
            print(
                f"{time.monotonic() - start:5.0f} {rss:8d} {fds:5d} "
                f"{tcpConnections(tcp):5d} {g('tcp verified'):7d} "
                f"{g('tcp bytes verified') / 1e6:6.0f} {g('udp verified'):7d} "
                f"{g('udp lost'):5d} "
                f"{g('resets'):6d} {g('udp flood sent'):7d} "
                f"{g('idle closed by server'):7d} {g('errors'):6d}",
                flush=True,
            )
    finally:
        soak.stop.set()
        for t in threads:
            t.join(15)
        stuck = [t for t in threads if t.is_alive()]
        stopAt = time.monotonic()
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
        code: int | None
        try:
            code = server.process.wait(10)
        except Exception:
            code = None
        stopTime = time.monotonic() - stopAt
        log = server.log()
        server.stop()
    bad = [w for w in ("Traceback", "Unhandled Error") if w in log]
    print(f"soak: counters {dict(sorted(counters.values.items()))}")
    print(
        f"soak: peak RSS {peakRSS} KiB (start {rss0}), peak fds {peakFds} "
        f"(start {fds0}); SIGTERM -> exit {code} in {stopTime:.2f} s; "
        f"log: {len(log.splitlines())} lines, {bad or 'no traceback'}"
    )
    for e in soak.errors:
        print(f"soak: error: {e}")
    if bad or counters.get("errors") or stuck or code != -signal.SIGTERM or status:
        for line in log.splitlines()[-40:]:
            print(f"  log: {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
