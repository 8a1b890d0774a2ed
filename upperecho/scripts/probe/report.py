# -*- test-case-name: tests.unit.test_probe_report -*-
"""
What the probe command prints: one ping-style line per probe
(L{TextObserver}), and the summary of a run as text or JSON
(L{ProbeResult}).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from upperecho.scripts._common import ExitStatus
from upperecho.scripts.probe.drivers import LoadDriver
from upperecho.scripts.probe.session import ProbeSession
from upperecho.scripts.probe.stats import Distribution, Tally, Verdict, histogram

__all__ = ["ProbeResult", "TextObserver", "formatHistogram", "formatText"]


@dataclass
class ProbeResult:
    """
    Everything the summary and the JSON object say about one run.
    """

    target: str
    protocol: str
    tally: Tally
    elapsed: float
    rtt: Distribution
    connect: Distribution | None
    histogram: list[tuple[float, int]]
    rate: float | None = None
    achievedRate: float | None = None
    sustained: bool = True
    scheduled: int = 0
    unsent: int = 0
    sendErrors: int = 0
    #: replies per instance (C{--identify}), else C{None}
    instances: dict[str, int] | None = None

    @classmethod
    def fromSession(
        cls,
        session: ProbeSession,
        target: str,
        protocol: str,
        elapsed: float,
        load: LoadDriver | None = None,
    ) -> ProbeResult:
        """
        Summarise a finished session.
        """
        result = cls(
            target=target,
            protocol=protocol,
            tally=session.tally,
            elapsed=elapsed,
            rtt=Distribution.fromSamples(session.rtts),
            connect=(
                Distribution.fromSamples(session.connects)
                if protocol == "tcp"
                else None
            ),
            histogram=histogram(session.rtts),
            sendErrors=session.sendErrors,
            instances=dict(session.instances) if session.identify else None,
        )
        if load is not None:
            result.rate = load.rate
            result.achievedRate = load.achievedRate
            result.sustained = load.sustained
            result.scheduled = load.scheduled
            result.unsent = load.unsent
        return result

    @property
    def exitCode(self) -> ExitStatus:
        """
        L{ExitStatus.OK} when every probe got a correct reply, else
        L{ExitStatus.FAILED} (errors are decided by the caller).
        """
        t = self.tally
        failed = t.lost or t.corrupted or t.sent == 0
        return ExitStatus.FAILED if failed else ExitStatus.OK

    def asJSON(self) -> dict[str, Any]:
        """
        The C{--json} object, with exactly the keys docs/contract.rst lists
        (Probe mode), and C{instances} with C{--identify}.
        """
        t = self.tally
        found: dict[str, Any] = {
            "target": self.target,
            "protocol": self.protocol,
            "sent": t.sent,
            "received": t.received,
            "lost": t.lost,
            "corrupted": t.corrupted,
            "duplicated": t.duplicated,
            "reordered": t.reordered,
            "late": t.late,
            "elapsed_s": round(self.elapsed, 6),
            "rtt_ms": _rounded(self.rtt),
            "connect_ms": None if self.connect is None else _rounded(self.connect),
            "histogram": [[bound, count] for bound, count in self.histogram],
            "achieved_rate": self.achievedRate,
        }
        if self.instances is not None:
            found["instances"] = dict(sorted(self.instances.items()))
        return found


def _rounded(d: Distribution) -> dict[str, float | None]:
    """
    The fields of C{d} rounded to 0.1 microsecond (they are milliseconds):
    finer digits are timer noise.
    """
    return {k: None if v is None else round(v, 4) for k, v in d.asDict().items()}


def _ms(values: Sequence[float | None]) -> str:
    return "/".join("-" if v is None else f"{v:.3f}" for v in values)


def formatHistogram(buckets: Sequence[tuple[float, int]], width: int = 40) -> list[str]:
    """
    A small text histogram: one line per log-spaced bucket.
    """
    if not buckets:
        return []
    top = max(count for _, count in buckets)
    lines = ["rtt histogram (ms):"]
    for bound, count in buckets:
        bar = "#" * (math.ceil(count * width / top) if count else 0)
        lines.append(f"  <= {bound:<8g} {count:>9d} {bar}".rstrip())
    return lines


def formatText(result: ProbeResult) -> str:
    """
    The summary, ping style, then the histogram.
    """
    t = result.tally
    lostPct = 100.0 * t.lost / t.sent if t.sent else 0.0
    lines = [
        f"--- {result.target} {result.protocol} probe statistics ---",
        f"{t.sent} sent, {t.received} received, {lostPct:.1f}% lost, "
        f"{t.corrupted} corrupted, {t.duplicated} duplicated, "
        f"{t.reordered} reordered, time {result.elapsed:.1f} s",
    ]
    if not result.rtt.empty:
        lines.append(
            f"rtt min/p50/avg/p90/p99/max/stddev = {_ms(result.rtt.values())} ms"
        )
    if result.connect is not None and not result.connect.empty:
        lines.append(
            "connect min/p50/avg/p90/p99/max/stddev = "
            f"{_ms(result.connect.values())} ms"
        )
    if t.late:
        lines.append(f"{t.late} late (replies after the timeout, counted as lost)")
    if t.stray:
        lines.append(f"{t.stray} replies matched no probe")
    if result.sendErrors:
        lines.append(f"{result.sendErrors} probes could not be sent (counted as lost)")
    if result.instances is not None:
        spread = ", ".join(
            f"{name} {count}" for name, count in sorted(result.instances.items())
        )
        lines.append(f"replies per instance: {spread or 'none identified'}")
    if result.rate is not None and result.achievedRate is not None:
        if result.sustained:
            lines.append(
                f"rate {result.rate:g}/s requested, {result.achievedRate:.1f}/s achieved"
            )
        else:
            lines.append(
                f"rate {result.rate:g}/s NOT sustained: {result.achievedRate:.1f}/s "
                f"achieved, {result.unsent} of {result.scheduled} scheduled probes "
                "not sent"
            )
    lines.extend(formatHistogram(result.histogram))
    return "\n".join(lines) + "\n"


class TextObserver:
    """
    Writes one ping-style line per probe.

    @ivar onBroken: called once if the output goes away (C{| head}): there
        is no one left to tell, so the run should end.
    """

    def __init__(self, out: TextIO, target: str) -> None:
        self.out = out
        self.target = target
        self.broken = False
        self.onBroken: Callable[[], None] | None = None

    def _print(self, line: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except OSError:  # BrokenPipeError: the reader went away
            self.broken = True
            if self.onBroken is not None:
                self.onBroken()

    def replied(
        self,
        seq: int,
        verdict: Verdict,
        rttMs: float,
        size: int,
        connectMs: float | None,
    ) -> None:
        if verdict is Verdict.RECEIVED or verdict is Verdict.REORDERED:
            connect = "" if connectMs is None else f" connect={connectMs:.3f} ms"
            line = f"{size} bytes from {self.target}: seq={seq}{connect} time={rttMs:.3f} ms"
            if verdict is Verdict.REORDERED:
                line += " (reordered)"
        elif verdict is Verdict.CORRUPTED:
            line = f"seq={seq} corrupted"
        elif verdict is Verdict.DUPLICATE:
            line = f"seq={seq} duplicate"
        elif verdict is Verdict.LATE:
            line = f"seq={seq} late reply (after the timeout)"
        else:
            line = f"{size} bytes from {self.target} matching no probe"
        self._print(line)

    def timedOut(self, seq: int) -> None:
        self._print(f"seq={seq} timeout")
