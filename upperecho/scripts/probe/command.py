# -*- test-case-name: tests.unit.test_probe_command -*-
"""
The C{upperecho-client --probe} command: its options, and one run against
a real reactor (L{ProbeRun}), started by L{main} under C{react}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import IDelayedCall
from twisted.python import usage
from twisted.python.failure import Failure

from upperecho.address import hostPort
from upperecho.options import encoding, number
from upperecho.options import port as portNumber
from upperecho.scripts._common import (
    ExitStatus,
    Run,
    describe,
    resolve,
    runCommand,
    say,
)
from upperecho.scripts.probe.channels import (
    ProbeDatagramProtocol,
    ProbeStreamProtocol,
    StreamFactory,
    enlargeBuffers,
)
from upperecho.scripts.probe.drivers import LoadDriver, PingDriver
from upperecho.scripts.probe.framing import MAX_SIZE, MIN_SIZE
from upperecho.scripts.probe.report import ProbeResult, TextObserver, formatText
from upperecho.scripts.probe.session import ProbeSession
from upperecho.scripts.probe.stats import percentile

__all__ = ["ProbeOptions", "ProbeRun", "main"]


#: the numeric options: name, kind and least value
_NUMBERS = (
    ("count", int, 0),
    ("interval", float, 0.001),
    ("size", int, MIN_SIZE),
    ("timeout", float, 0.001),
    ("rate", float, 0.001),
    ("duration", float, 0.001),
    ("concurrency", int, 1),
)


class ProbeOptions(usage.Options):
    """
    The command line of C{upperecho-client --probe}.
    """

    synopsis = (
        "Usage: upperecho-client --probe [--udp] [-c COUNT] [-i INTERVAL] [-s SIZE] [-W TIMEOUT] "
        "[--new-connection] [--identify] [--json] [HOST] [PORT]\n"
        "       upperecho-client --probe --rate R --duration S [--concurrency C] [--udp] [--json] "
        "[HOST] [PORT]"
    )
    longdesc = (
        "Measure the path to an upperecho server with probes whose uppercase "
        "replies are checked.  Exit status: 0 every probe got a correct reply, "
        "1 some were lost or corrupted, 2 error."
    )
    optFlags = [
        ["probe", None, "Probe mode (accepted and ignored here)."],
        ["udp", None, "Probe over UDP instead of TCP."],
        ["new-connection", None, "TCP: open a new connection for every probe."],
        ["json", None, "Print one JSON object at the end instead of text."],
        [
            "identify",
            None,
            "The server runs with --identify: strip the instance's name from "
            "each reply and count replies per instance.",
        ],
    ]
    optParameters = [
        [
            "count",
            "c",
            10,
            "Probes to send; 0 = until SIGINT.",
        ],
        [
            "interval",
            "i",
            1.0,
            "Seconds between probes.",
        ],
        [
            "size",
            "s",
            64,
            f"Bytes per probe ({MIN_SIZE}..{MAX_SIZE}).",
        ],
        [
            "timeout",
            "W",
            1.0,
            "Seconds to wait for each reply.",
        ],
        [
            "rate",
            None,
            None,
            "Load mode: probes per second (open loop).",
        ],
        [
            "duration",
            None,
            None,
            "Load mode: seconds to run (default 10).",
        ],
        [
            "concurrency",
            None,
            1,
            "Load mode: TCP connections or UDP sockets.",
        ],
        ["encoding", None, "utf-8", "Encoding the server uppercases with."],
    ]

    def parseArgs(self, host: str = "localhost", port: str = "12000") -> None:
        """
        HOST (default localhost) and PORT (default 12000).
        """
        self["host"] = host
        self["port"] = portNumber("PORT", port, 1)

    def postOptions(self) -> None:
        """
        Check the options against each other and fill in load defaults.
        """
        for name, kind, least in _NUMBERS:
            if self[name] is not None:
                self[name] = number(f"--{name}", str(self[name]), kind, least)
        if self["size"] > MAX_SIZE:
            raise usage.UsageError(
                f"--size must be at most {MAX_SIZE}, not {self['size']}"
            )
        self["encoding"] = encoding(self["encoding"])
        load = self["rate"] is not None
        if not load:
            if self["duration"] is not None:
                raise usage.UsageError("--duration needs --rate (load mode)")
            if self["concurrency"] != 1:
                raise usage.UsageError("--concurrency needs --rate (load mode)")
        else:
            if self["duration"] is None:
                self["duration"] = 10.0
            if self["new-connection"]:
                raise usage.UsageError("--new-connection is for ping mode, not --rate")
            if self["concurrency"] > 1000:
                raise usage.UsageError("--concurrency must be at most 1000")
        if self["udp"] and self["new-connection"]:
            raise usage.UsageError("--new-connection is for TCP, not --udp")


class ProbeRun:
    """
    One run of the probe command against a real reactor: opens the sockets
    or connections, drives a L{PingDriver} or a L{LoadDriver}, and prints the
    result.

    @ivar done: fires with the exit status.
    """

    def __init__(
        self,
        config: ProbeOptions,
        reactor: Any,
        family: int,
        ip: str,
        out: TextIO,
        err: TextIO,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.family = family
        self.ip = ip
        self.port: int = config["port"]
        self.out = out
        self.err = err
        self.timer = timer
        self.target = hostPort(ip, self.port)
        self.protocol = "udp" if config["udp"] else "tcp"
        self.load = config["rate"] is not None
        self.json = bool(config["json"])
        observer = None if self.load or self.json else TextObserver(out, self.target)
        #: the output's reader went away; the run ends with status 1
        self.outputBroken = False
        if observer is not None:
            observer.onBroken = self._outputGone
        self.session = ProbeSession(
            reactor,
            size=config["size"],
            timeout=config["timeout"],
            encoding=config["encoding"],
            timer=timer,
            observer=observer,
            sweepGranularity=0.005 if self.load else 0.0,
        )
        self.session.onIdle = self._maybeFinish
        self.session.targetName = self.target
        self.session.identify = bool(config["identify"])
        self.done: Deferred[int] = Deferred()
        self._driver: PingDriver | LoadDriver | None = None
        self._channels: list[Any] = []
        self._start = 0.0
        self._finished = False
        self._interrupted = 0
        self._progressCall: IDelayedCall | None = None

    # -- starting

    def start(self) -> Deferred[int]:
        """
        Open the channels, then start sending.
        """
        self._start = self.timer()
        if self.config["udp"]:
            self._startUDP()
        elif self.config["new-connection"]:
            self._header()
            self._startDriver()
        else:
            self._startTCP()
        return self.done

    def _header(self) -> None:
        if self.json:
            return
        c = self.config
        if self.load:
            unit = "socket(s)" if c["udp"] else "connection(s)"
            self._say(
                f"LOAD {self.target} {self.protocol}: {c['rate']:g} probes/s for "
                f"{c['duration']:g} s over {c['concurrency']} {unit}, "
                f"{c['size']} bytes per probe\n"
            )
        else:
            self._say(
                f"PROBE {c['host']} ({self.target}) {self.protocol}: "
                f"{c['size']} bytes per probe\n"
            )

    def _say(self, text: str) -> None:
        """
        Write to the output, unless its reader has gone away (C{| head}):
        then end the run instead of raising out of a reactor callback.
        """
        if self.outputBroken:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except OSError:  # BrokenPipeError
            self._outputGone()

    def _startUDP(self) -> None:
        interface = "::" if self.family == socket.AF_INET6 else ""
        try:
            for flow in range(self.config["concurrency"]):
                proto = ProbeDatagramProtocol(self.session, flow)
                self.reactor.listenUDP(
                    0, proto, interface=interface, maxPacketSize=65535
                )
                proto.transport.connect(self.ip, self.port)
                enlargeBuffers(proto.transport)
                self._channels.append(proto)
        except Exception:
            self._fatal(Failure())
            return
        self._header()
        self._startDriver()

    def _startTCP(self) -> None:
        wanted = self.config["concurrency"]
        self._header()
        began = self.timer()

        def connected(proto: ProbeStreamProtocol) -> None:
            self.session.connects.append((self.timer() - began) * 1000.0)
            self._channels.append(proto)
            if len(self._channels) == wanted:
                if not self.json and not self.load:
                    self._say(
                        f"connected to {self.target} in {self.session.connects[0]:.3f} ms\n"
                    )
                self._startDriver()

        def failed(reason: Failure) -> None:
            self._fatal(reason)

        factory = StreamFactory(self.session, False, connected, failed)
        for _ in range(wanted):
            self.reactor.connectTCP(
                self.ip, self.port, factory, timeout=max(self.config["timeout"], 1.0)
            )

    def _startDriver(self) -> None:
        if self._finished:
            return
        if self.load:
            load = LoadDriver(
                self.reactor,
                self.timer,
                self._channels,
                self.config["rate"],
                self.config["duration"],
                grace=max(1.0, self.config["timeout"]),
            )
            load.onDone = self._maybeFinish
            self._driver = load
            self._start = self.timer()
            load.begin()
            if self.err.isatty():
                self._progressCall = self.reactor.callLater(1.0, self._progress)
        else:
            send: Callable[[], None]
            if self.config["new-connection"]:
                send = self._sendNewConnection
            else:
                channel = self._channels[0]

                def send() -> None:
                    channel.sendProbe(self.timer())

            ping = PingDriver(
                self.reactor, send, self.config["count"], self.config["interval"]
            )
            ping.onDone = self._maybeFinish
            self._driver = ping
            self._start = self.timer()
            ping.start()

    def _sendNewConnection(self) -> None:
        """
        C{--new-connection}: this probe's own connection, timed on its own.
        """
        began = self.timer()
        seq, probe, replyLength = self.session.newProbe(began)

        def connected(proto: ProbeStreamProtocol) -> None:
            if not self.session.tally.isPending(seq):
                proto.close()
                return
            self.session.exchangeStarted(seq, (self.timer() - began) * 1000.0)
            proto.sendPrepared(seq, probe, replyLength)

        def failed(reason: Failure) -> None:
            if reason.check(TimeoutError):
                return  # the probe times out on its own
            self.session.fail(reason)

        factory = StreamFactory(self.session, True, connected, failed)
        self.reactor.connectTCP(
            self.ip, self.port, factory, timeout=self.config["timeout"]
        )

    # -- progress and the end

    def _progress(self) -> None:
        """
        Refresh the progress line on the terminal (load mode).
        """
        load = self._driver
        if self._finished or not isinstance(load, LoadDriver):
            return
        elapsed = self.timer() - self._start
        t = self.session.tally
        resolved = t.received + t.corrupted + t.lost
        loss = 100.0 * t.lost / resolved if resolved else 0.0
        # at most ~20,000 evenly spread samples: sorting a long run's whole
        # history every second would steal the time the probes need
        rtts = self.session.rtts
        ordered = sorted(rtts[:: len(rtts) // 20000 + 1])
        p50, p99 = (percentile(ordered, p) for p in (50, 99))
        p50s = "-" if p50 is None else f"{p50:.3f}"
        p99s = "-" if p99 is None else f"{p99:.3f}"
        rate = load.sent / elapsed if elapsed > 0 else 0.0
        self.err.write(
            f"\r{min(elapsed, load.duration):.0f}/{load.duration:g} s  "
            f"{rate:.0f} probes/s  loss {loss:.2f}%  "
            f"p50 {p50s} ms  p99 {p99s} ms\x1b[K"
        )
        self.err.flush()
        self._progressCall = self.reactor.callLater(1.0, self._progress)

    def interrupt(self) -> None:
        """
        SIGINT: the first one stops sending and waits for the probes in
        flight (at most one timeout); a second one stops waiting.
        """
        self._interrupted += 1
        if self._interrupted > 1:
            self.session.abandon()
            self._finish()
            return
        if self._driver is None:
            self._finish()
        elif isinstance(self._driver, LoadDriver):
            self._driver.interrupt()
        else:
            self._driver.stopSending()

    def _fatal(self, reason: Failure) -> None:
        self.session.fail(reason)
        self._finish()

    def _maybeFinish(self) -> None:
        """
        End the run on an error, or once sending is over and nothing is
        outstanding.
        """
        if self.session.error is not None:
            self._finish()
            return
        driver = self._driver
        if driver is not None and driver.done and self.session.tally.pending == 0:
            self._finish()

    def _finish(self) -> None:
        """
        Stop everything, print the summary or JSON and fire L{done}.
        """
        if self._finished:
            return
        self._finished = True
        if self._progressCall is not None and self._progressCall.active():
            self._progressCall.cancel()
            self.err.write("\r\x1b[K")
        if self._driver is not None:
            self._driver.stopSending()
        self.session.abandon()
        for channel in self._channels:
            channel.close()
        elapsed = self.timer() - self._start
        code = self.session.errorStatus
        if self.session.tally.sent:
            load = self._driver if isinstance(self._driver, LoadDriver) else None
            result = ProbeResult.fromSession(
                self.session, self.target, self.protocol, elapsed, load
            )
            if self.json:
                self._say(json.dumps(result.asJSON()) + "\n")
            else:
                self._say(formatText(result))
            if load is not None and not result.sustained and self.json:
                say(
                    f"rate {load.rate:g}/s not sustained "
                    f"({result.achievedRate:.1f}/s achieved)",
                    self.err,
                )
            if code == 0:
                code = result.exitCode
        elif code == 0:
            code = ExitStatus.FAILED
        if self.outputBroken and code == 0:
            code = ExitStatus.FAILED
        if self.session.error is not None:
            say(self.session.error, self.err)
        self.err.flush()
        self.done.callback(code)

    def _outputGone(self) -> None:
        """
        Nobody reads the output any more: stop, once this callback is over.
        """
        self.outputBroken = True
        self.reactor.callLater(0, self._finish)


def main(argv: list[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """
    Run C{upperecho-client --probe ...}.

    @param argv: the arguments without the program name (C{--probe} may be
        among them).
    @return: the exit status (L{ExitStatus}): 0 all correct, 1 lost or
        corrupted, 2 error.
    """
    output = sys.stdout if out is None else out
    runs: list[ProbeRun] = []

    async def work(reactor: Any, config: ProbeOptions, run: Run) -> ExitStatus:
        kind = socket.SOCK_DGRAM if config["udp"] else socket.SOCK_STREAM
        try:
            family, ip = await resolve(reactor, config["host"], config["port"], kind)
        except Exception:
            run.say(describe(Failure(), config["host"]))
            return ExitStatus.ERROR
        probe = ProbeRun(config, reactor, family, ip, output, err or sys.stderr)
        runs.append(probe)
        signal.signal(signal.SIGINT, lambda *_: reactor.callFromThread(probe.interrupt))
        return ExitStatus(await probe.start())

    code = runCommand(ProbeOptions(), argv, work, err)
    if runs and runs[0].outputBroken and output is sys.stdout:
        # as the Python docs advise: no "Exception ignored" at exit when the
        # interpreter flushes a stdout whose reader is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code
