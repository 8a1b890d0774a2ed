# -*- test-case-name: tests.unit.test_logs,tests.integration.test_signals -*-
"""
Logs as operators handle them: JSON lines, and the signals of log rotation.

JSON: C{twist} has C{--log-format=json}; C{twistd} takes a log observer
factory, and L{jsonLogger} is one::

    twistd --logger upperecho.logs.jsonLogger upperecho --tcp 12000

It writes one JSON object per line (Twisted's own event serialisation, so
every field of an event stays a key: C{peer}, C{limit}, C{reason} ...) to
the file named by C{$UPPERECHO_LOG_FILE}, or to standard output when that is
unset or C{-} (a container's log).

Signals: C{SIGUSR1} rotates the log file, as C{twistd} has always done (and
does for L{jsonLogger}'s file too).  C{SIGHUP}, which used to end the
process silently, reopens the log file (what logrotate's C{postrotate} and
systemd's C{ExecReload=} expect after moving it away), logs that it did,
and serving goes on (L{HangupService}).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from twisted.application.service import Service
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python.logfile import BaseLogFile, LogFile

from upperecho._compat import twistdLogFile

__all__ = [
    "LOG_FILE_VARIABLE",
    "HangupService",
    "jsonLogger",
    "reopenLogFiles",
]

#: the variable naming L{jsonLogger}'s file (C{-} or unset: standard output)
LOG_FILE_VARIABLE = "UPPERECHO_LOG_FILE"

#: the files L{jsonLogger} opened, which SIGHUP reopens
_opened: list[BaseLogFile] = []

_log = Logger()


def jsonLogger() -> ILogObserver:
    """
    The C{twistd --logger} factory for JSON lines (see the module's
    docstring).  A file is a Twisted C{LogFile}, so it rotates as C{twistd}'s
    own does: by size, and on C{SIGUSR1}.
    """
    path = os.environ.get(LOG_FILE_VARIABLE, "")
    out: Any
    if path in ("", "-"):
        # taken now: twistd then replaces sys.stdout with a logging file
        out = sys.stdout
    else:
        logFile = LogFile.fromFullPath(path)
        _opened.append(logFile)
        _rotateOnUSR1(logFile)
        out = logFile
    observer: ILogObserver = jsonFileLogObserver(out, recordSeparator="")
    return observer


def _rotateOnUSR1(logFile: LogFile) -> None:
    """
    What C{twistd} does for its own log file: SIGUSR1 rotates it, unless
    something else handles SIGUSR1 already.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGUSR1) not in (None, signal.SIG_DFL):
        return

    def rotate(signum: int, frame: FrameType | None) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(logFile.rotate)  # type: ignore[attr-defined]

    signal.signal(signal.SIGUSR1, rotate)


def reopenLogFiles() -> list[str]:
    """
    Reopen every log file this process writes: C{twistd}'s own
    (C{--logfile}) and L{jsonLogger}'s.

    @return: their paths.
    """
    files = list(_opened)
    own = twistdLogFile()
    if own is not None and own not in files:
        files.append(own)
    for each in files:
        each.reopen()
    return [each.path for each in files]


class HangupService(Service):
    """
    Handles SIGHUP while it runs: the log files are reopened, the reopening
    logged (in the new file), and the server goes on.

    Installed only from the main thread (where Python delivers signals);
    the handler found before is put back when the service stops.
    """

    name = "SIGHUP"
    _previous: Any = None
    _installed = False

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def startService(self) -> None:
        Service.startService(self)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGHUP, self._handle)
            self._installed = True

    def stopService(self) -> None:
        Service.stopService(self)
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGHUP, self._previous or signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # in a signal handler: do the work in the reactor's own turn
        self.reactor.callFromThread(self.reopen)

    def reopen(self) -> None:
        """
        Reopen the log files, and say so.
        """
        try:
            paths = reopenLogFiles()
        except OSError as e:
            _log.error("SIGHUP: could not reopen the log file: {reason}", reason=e)
            return
        if paths:
            _log.info(
                "SIGHUP: reopened the log file {path}; still serving",
                path=", ".join(paths),
            )
        else:
            _log.info(
                "SIGHUP: no log file to reopen (logging to a stream); still serving"
            )
