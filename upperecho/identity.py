# -*- test-case-name: tests.unit.test_identity -*-
"""
C{--identify}: say which instance answered.

Behind a load balancer or a Kubernetes Service several upperecho servers
answer one address; a tester wants to see how the traffic was spread.  With
C{--identify} every TCP connection begins with one line C{upperecho
<name>\\n} and every UDP reply begins with C{<name>: }; the rest is exactly
the transform, so C{upperecho-client --probe --identify} can strip the name,
still check every reply, and count replies per instance.

Off by default: the default reply is only ever C{transform(input)}.

The protocols only offer hooks: the TCP factory's C{greeting}, and the
datagram protocol's L{ReplyWriter<upperecho.udp.ReplyWriter>}, which
L{PrefixWriter} is (wrapping the impairment's when there is one).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping

from upperecho.udp import Address, ReplyWriter

__all__ = [
    "NAME_PATTERN",
    "PrefixWriter",
    "defaultName",
    "greeting",
    "invalidName",
    "replyPrefix",
]

#: what a name may be: what a Kubernetes pod name or a host name is made of
#: (letters, digits, C{.}, C{_}, C{-}), so that it never contains the
#: C{": "} or the newline that ends it in a reply
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,253}")


def defaultName(environ: Mapping[str, str] | None = None) -> str:
    """
    C{$POD_NAME} (set from the Kubernetes downward API) when set, else the
    host name: what names the instance where it runs.

    @param environ: the environment; the process's by default.
    """
    found = (os.environ if environ is None else environ).get("POD_NAME")
    return found or socket.gethostname()


def invalidName(name: str) -> str | None:
    """
    Why C{name} cannot identify an instance, or C{None} if it can.
    """
    if NAME_PATTERN.fullmatch(name) is None:
        return "not 1-253 letters, digits, '.', '_' or '-'"
    return None


def greeting(name: str) -> bytes:
    """
    The line a TCP connection begins with.
    """
    return b"upperecho " + name.encode("ascii") + b"\n"


def replyPrefix(name: str) -> bytes:
    """
    What every UDP reply begins with.
    """
    return name.encode("ascii") + b": "


class PrefixWriter:
    """
    A L{ReplyWriter} that puts the instance's name before every UDP reply,
    then hands it to the next writer (the impairment), or sends it.

    A reply the prefix makes too long for one datagram fails to send, and is
    counted and logged by the protocol as a C{send-error} drop.
    """

    def __init__(self, prefix: bytes, then: ReplyWriter | None = None) -> None:
        self.prefix = prefix
        self.then = then

    def send(
        self, write: Callable[[bytes, Address], object], data: bytes, addr: Address
    ) -> None:
        data = self.prefix + data
        if self.then is None:
            write(data, addr)
        else:
            self.then.send(write, data, addr)
