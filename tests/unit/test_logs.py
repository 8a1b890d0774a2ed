"""
Tests for L{upperecho.logs}: the JSON log observer factory, and SIGHUP
reopening log files.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any, cast

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from upperecho import logs


class SyncReactor(Clock):
    """
    Runs C{callFromThread} calls at once.
    """

    def callFromThread(self, f: Any, *args: Any, **kw: Any) -> None:
        f(*args, **kw)


class JSONLoggerTests(SynchronousTestCase):
    """
    C{twistd --logger upperecho.logs.jsonLogger}.
    """

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGUSR1)
        self.addCleanup(signal.signal, signal.SIGUSR1, previous)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self.addCleanup(logs._opened.clear)

    def test_fileLines(self) -> None:
        """
        One JSON object per line in $UPPERECHO_LOG_FILE, every field kept;
        SIGUSR1 is set to rotate that file.
        """
        path = os.path.abspath(self.mktemp())
        self.patch(os, "environ", {logs.LOG_FILE_VARIABLE: path})
        observer = logs.jsonLogger()
        self.addCleanup(logs._opened[0].close)
        publisher = LogPublisher(observer)
        log = Logger(observer=publisher, namespace="upperecho.test")
        log.warn("refused {peer}: {limit} reached", peer="1.2.3.4:5", limit=10)
        log.info("second")
        with open(path) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        first = json.loads(lines[0])
        self.assertEqual((first["peer"], first["limit"]), ("1.2.3.4:5", 10))
        self.assertEqual(first["log_namespace"], "upperecho.test")
        self.assertEqual(first["log_level"]["name"], "warn")
        self.assertEqual(
            signal.getsignal(signal.SIGUSR1).__name__,  # type: ignore[union-attr]
            "rotate",
        )

    def test_standardOutput(self) -> None:
        """
        Without the variable (or with -), it writes to standard output and
        opens nothing.
        """
        for environ in ({}, {logs.LOG_FILE_VARIABLE: "-"}):
            self.patch(os, "environ", environ)
            logs.jsonLogger()
            self.assertEqual(logs._opened, [])


class HangupTests(SynchronousTestCase):
    """
    L{logs.HangupService}: SIGHUP reopens log files and serving goes on.
    """

    def setUp(self) -> None:
        for number in (signal.SIGUSR1, signal.SIGHUP):
            self.addCleanup(signal.signal, number, signal.getsignal(number))
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        self.addCleanup(logs._opened.clear)
        self.events: list[dict[str, Any]] = []
        self.patch(logs, "_log", Logger(observer=cast(Any, self.events.append)))

    def test_reopen(self) -> None:
        """
        After the file is moved away, SIGHUP's reopening writes a new file
        at the path, and says so.
        """
        path = os.path.abspath(self.mktemp())
        logFile = LogFile.fromFullPath(path)
        self.addCleanup(logFile.close)
        logs._opened.append(logFile)
        logFile.write("before\n")
        logFile.flush()
        os.rename(path, path + ".1")
        logs.HangupService(SyncReactor()).reopen()
        logFile.write("after\n")
        logFile.flush()
        with open(path) as f:
            self.assertEqual(f.read(), "after\n")
        with open(path + ".1") as f:
            self.assertEqual(f.read(), "before\n")
        [event] = self.events
        self.assertEqual(event["path"], path)

    def test_nothingToReopen(self) -> None:
        """
        Logging to a stream, SIGHUP only says so.
        """
        logs.HangupService(SyncReactor()).reopen()
        [event] = self.events
        self.assertIn("no log file to reopen", event["log_format"])

    def test_signal(self) -> None:
        """
        The service handles SIGHUP while it runs, and puts back the handler
        it found.
        """
        before = signal.getsignal(signal.SIGHUP)
        svc = logs.HangupService(SyncReactor())
        svc.startService()
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        os.kill(os.getpid(), signal.SIGHUP)
        self.assertEqual(len(self.events), 1)
        svc.stopService()
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
