"""
Probe mode of the client: measure a path through an upperecho server.

C{upperecho-client --probe} sends probes whose uppercase reply is known in
advance, so every answer is checked, not merely counted: a reply is
B{received} only if it equals C{transform(probe)}.  A plain echo server or a
middlebox that rewrites payloads shows up as B{corrupted}.

The package is split by layer, each module using only those above it:

  - L{framing<upperecho.scripts.probe.framing>}: what a probe's bytes are;
  - L{stats<upperecho.scripts.probe.stats>}: counters and distributions;
  - L{session<upperecho.scripts.probe.session>}: the probes of one run,
    judged (the same for UDP and TCP);
  - L{channels<upperecho.scripts.probe.channels>}: the UDP sockets and TCP
    connections that carry them;
  - L{drivers<upperecho.scripts.probe.drivers>}: when probes are sent
    (ping mode, open-loop load mode);
  - L{report<upperecho.scripts.probe.report>}: the lines, the summary, the
    JSON;
  - L{command<upperecho.scripts.probe.command>}: the options and one run.
"""

from upperecho.scripts.probe.channels import (
    ProbeDatagramProtocol,
    ProbeStreamProtocol,
)
from upperecho.scripts.probe.command import ProbeOptions, ProbeRun, main
from upperecho.scripts.probe.drivers import LoadDriver, PingDriver
from upperecho.scripts.probe.framing import MIN_SIZE, makeProbe, probeSequence
from upperecho.scripts.probe.report import ProbeResult, TextObserver, formatText
from upperecho.scripts.probe.session import ProbeSession

__all__ = [
    "MIN_SIZE",
    "LoadDriver",
    "PingDriver",
    "ProbeDatagramProtocol",
    "ProbeOptions",
    "ProbeResult",
    "ProbeRun",
    "ProbeSession",
    "ProbeStreamProtocol",
    "TextObserver",
    "formatText",
    "main",
    "makeProbe",
    "probeSequence",
]
