# -*- test-case-name: tests.unit.test_scripts_common -*-
"""
What the commands share: exit statuses, the one-line messages, the
resolver, and running a command under L{twisted.internet.task.react}.
(Their option coercers are L{upperecho.options}, shared with C{twistd}'s.)

Both C{upperecho-client} and C{upperecho-client --probe} speak through
this module, so a failure is worded one way and a status means one thing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from enum import IntEnum
from typing import Any, TextIO

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.python import usage
from twisted.python.failure import Failure

from upperecho.client import ConnectionClosedError, NoReplyError

__all__ = [
    "PROGRAM",
    "ExitStatus",
    "ResolveError",
    "Run",
    "describe",
    "resolve",
    "runCommand",
    "say",
    "statusOf",
]

PROGRAM = "upperecho-client"


class ExitStatus(IntEnum):
    """
    The exit status of both commands; each value means one thing.
    """

    #: everything asked for was done, and every reply was right
    OK = 0
    #: the exchange took place but fell short: a probe lost or corrupted, a
    #: UDP request unanswered, a connection lost midway, the output closed
    FAILED = 1
    #: nothing could be exchanged: a bad option, an unknown host, a refused
    #: or failed connection
    ERROR = 2
    #: stopped by a signal (128 + SIGINT, as shells report it)
    INTERRUPTED = 130


def say(message: str, err: TextIO | None = None) -> None:
    """
    Print one line on standard error (or C{err}), prefixed with the
    program's name.
    """
    err = sys.stderr if err is None else err
    err.write(f"{PROGRAM}: {message}\n")
    err.flush()


class ResolveError(Exception):
    """
    A host name that does not resolve to an IP address.
    """

    def __init__(self, host: str) -> None:
        super().__init__(host)
        self.host = host


def describe(reason: Failure, target: str) -> str:
    """
    One line saying what went wrong, for people, not programmers.

    @param reason: the failure.
    @param target: the server, as given (C{host:port} or an endpoint).
    """
    value = reason.value
    if isinstance(value, ResolveError):
        return f"unknown host: cannot resolve {value.host}"
    if reason.check(error.DNSLookupError):
        return f"unknown host: cannot resolve {target}"
    if reason.check(error.ConnectionRefusedError):
        return f"cannot connect to {target}: connection refused"
    if reason.check(error.TimeoutError, error.UserError):
        return f"cannot connect to {target}: timed out"
    if reason.check(error.ConnectError):
        detail = getattr(value, "osError", None) or getattr(value, "args", None)
        text = reason.getErrorMessage()
        if isinstance(detail, tuple) and detail and isinstance(detail[0], str):
            text = detail[0]
        return f"cannot connect to {target}: {text}"
    if reason.check(NoReplyError):
        return str(value)
    if reason.check(ConnectionClosedError):
        return f"{value} ({target})"
    if reason.check(error.ConnectionLost, error.ConnectionDone):
        return f"connection lost: {target} went away"
    if reason.check(error.MessageLengthError):
        return "a line is too long for one datagram"
    if isinstance(value, OSError) and value.errno == errno.EPIPE:
        return "output closed"
    if isinstance(value, OSError) and value.strerror:
        return f"{target}: {value.strerror}"
    return f"{target}: {reason.getErrorMessage()}"


def statusOf(reason: Failure) -> ExitStatus:
    """
    The exit status for a run that ended with C{reason}: L{ExitStatus.ERROR}
    when nothing could be exchanged (no address, no connection), else
    L{ExitStatus.FAILED}.
    """
    if reason.check(ResolveError, error.DNSLookupError, error.ConnectError):
        return ExitStatus.ERROR
    return ExitStatus.FAILED


def isOutputClosed(reason: Failure) -> bool:
    """
    Whether C{reason} is the output closed by its reader (as C{| head}
    does): like any filter, a command then just stops, saying nothing.
    """
    return isinstance(reason.value, OSError) and reason.value.errno == errno.EPIPE


async def resolve(reactor: Any, host: str, port: int, kind: int) -> tuple[int, str]:
    """
    Resolve C{host} to one address, in the reactor's thread pool, IPv4
    first: the server binds IPv4 addresses unless told otherwise
    (C{--interface ::}), and C{localhost} often lists C{::1} first.

    @param kind: C{socket.SOCK_DGRAM} or C{socket.SOCK_STREAM}.
    @return: the address family and the IP address.
    @raise ResolveError: if it does not resolve.
    """
    from twisted.internet.threads import deferToThreadPool

    try:
        infos = await deferToThreadPool(
            reactor,
            reactor.getThreadPool(),
            socket.getaddrinfo,
            host,
            port,
            socket.AF_UNSPEC,
            kind,
        )
    except (OSError, UnicodeError):
        raise ResolveError(host) from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    for family, _, _, _, address in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return int(family), str(address[0])
    raise ResolveError(host)


class _Blocking:
    """
    Remember the blocking mode of standard input and output, which
    L{twisted.internet.stdio.StandardIO} makes non-blocking, and put it back
    at exit: a terminal's file status flags are shared with the shell, and
    programs run after this one do not expect a non-blocking terminal.
    """

    def __init__(self, fds: Sequence[int] = (0, 1)) -> None:
        self._flags: dict[int, int] = {}
        for fd in fds:
            with contextlib.suppress(OSError):
                self._flags[fd] = fcntl.fcntl(fd, fcntl.F_GETFL)

    def restore(self) -> None:
        for fd, flags in self._flags.items():
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, fcntl.F_SETFL, flags)


class Run:
    """
    One run of a command under C{react}.

    @ivar status: the exit status, once the work is done.
    @ivar interrupted: the reactor began to stop (a signal) before the work
        was done; what fails after that is a consequence, not worth a message.
    @ivar err: where messages go.
    """

    status: ExitStatus | None = None
    interrupted = False

    def __init__(self, err: TextIO | None = None) -> None:
        self.err = err

    def say(self, message: str) -> None:
        """
        L{say}, unless the run was interrupted.
        """
        if not self.interrupted:
            say(message, self.err)


Work = Callable[[Any, Any, Run], Coroutine[Any, Any, ExitStatus]]


def runCommand(
    options: usage.Options,
    argv: Sequence[str],
    work: Work,
    err: TextIO | None = None,
) -> int:
    """
    Parse C{argv} with C{options}, then run C{work(reactor, options, run)}
    under L{twisted.internet.task.react}: the one way both commands start.

    @return: the exit status: L{ExitStatus.ERROR} for a bad option, the
        status C{work} returns, or L{ExitStatus.INTERRUPTED} when a signal
        stopped the reactor first.
    """
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        say(f"{e} (see --help)", err)
        return ExitStatus.ERROR
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else ExitStatus.OK
    from twisted.internet.task import react

    run = Run(err)

    async def main(reactor: Any) -> None:
        def stopping() -> None:
            if run.status is None:
                run.interrupted = True

        reactor.addSystemEventTrigger("before", "shutdown", stopping)
        try:
            run.status = await work(reactor, options, run)
        except Exception:
            run.say(f"internal error: {Failure().getErrorMessage()}")
            run.status = ExitStatus.ERROR
        if run.status:
            raise SystemExit(int(run.status))

    blocking = _Blocking()
    try:
        react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    except SystemExit:
        pass
    finally:
        blocking.restore()
    if run.interrupted or run.status is None:
        return ExitStatus.INTERRUPTED
    return int(run.status)
