"""
Running a document's shell sessions (L{tests.rstdoc.Command}) against a
real C{twistd -n upperecho}, as a reader would type them, and checking
that each prints what the document shows.

A session is the commands of one section, in order.  C{$ twistd -n
upperecho ...} (re)starts the server; every other command runs in bash,
piped, or on a pseudo-terminal when the reader types into it.  The only
change made to what the document says is the ports: 12000 and 12001 become
free ones, so that tests never collide with a server someone is running.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.helpers import BIN, Twistd, freePorts
from tests.rstdoc import Command

#: a number as the probe prints them (counts, milliseconds, percentages)
_NUMBER = r"\d+(?:\.\d+)?"
#: the timestamp twistd puts at the start of each log line
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ", re.MULTILINE)
#: the server command a document starts the server with
_SERVER = ["twistd", "-n", "upperecho"]


@dataclass(frozen=True)
class Terminal:
    """
    A command the reader runs on a terminal and types into.

    @ivar typed: the lines typed, in order (each followed by Enter).
    @ivar encoding: the terminal's character encoding.
    """

    typed: tuple[str, ...]
    encoding: str = "utf-8"


@dataclass(frozen=True)
class Result:
    """
    What a command printed (standard output and error together, as on a
    terminal) and its exit status.
    """

    output: str
    status: int


def outputMatches(
    shown: Iterable[str], actual: str, more: bool = False, anyNumber: bool = False
) -> bool:
    """
    Whether C{actual} is what the document shows: line for line, except
    that a line C{...} stands for any number of lines, and with
    C{anyNumber} every number may differ (measurements).  With C{more},
    anything may follow.
    """
    parts = []
    for line in shown:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            pieces = re.split(_NUMBER, line) if anyNumber else [line]
            parts.append(_NUMBER.join(map(re.escape, pieces)) + r"\n")
    if more:
        parts.append(r"(?:[^\n]*\n)*")
    text = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch("".join(parts), text) is not None


def isServer(command: Command) -> bool:
    """
    Whether C{command} starts the server (C{twistd -n upperecho ...}).
    """
    return shlex.split(command.command)[: len(_SERVER)] == _SERVER


class Session:
    """
    The server and the working directory of one run of a document's
    commands; stopped by the test case's cleanup.

    @param files: files the commands use (C{TCPClient.py}), name -> text.
    @param terminals: the commands typed into, by command as written.
    @param statuses: the exit status of commands that do not exit 0.
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        files: Mapping[str, str],
        terminals: Mapping[str, Terminal],
        statuses: Mapping[str, int],
    ) -> None:
        self.case = case
        self.terminals = terminals
        self.statuses = statuses
        self.tcp, self.udp = freePorts()
        directory = tempfile.TemporaryDirectory()
        case.addCleanup(directory.cleanup)
        self.dir = Path(directory.name)
        for name, text in files.items():
            (self.dir / name).write_text(self.ports(text), encoding="utf-8")
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "LC_ALL": "C.UTF-8",
        }
        self.server: Twistd | None = None
        case.addCleanup(self.stopServer)

    def ports(self, text: str) -> str:
        """
        C{text} with the document's ports replaced by this session's.
        """
        text = re.sub(r"\b12000\b", str(self.tcp), text)
        return re.sub(r"\b12001\b", str(self.udp), text)

    def run(self, commands: Iterable[Command]) -> dict[str, Result]:
        """
        Run C{commands} in order, checking each against the document.

        @return: each command's result, by command as written.
        """
        results = {}
        for command in commands:
            if isServer(command):
                self.startServer(command)
            else:
                results[command.command] = self._check(command)
        return results

    def startServer(self, command: Command) -> None:
        """
        Stop the server, start the one C{command} describes, wait until
        every port it serves is bound, and check that its log shows what
        the document shows (timestamps aside).
        """
        self.stopServer()
        args = shlex.split(self.ports(command.command))[len(_SERVER) :]
        self.server = Twistd(args)
        self.server.waitBound(
            tcp=[self.tcp] if "--tcp" in args else [],
            udp=[self.udp] if "--udp" in args else [],
        )
        shown = [_TIMESTAMP.sub("", self.ports(line)) for line in command.output]
        server = self.server
        self.case.assertTrue(
            _waitFor(
                lambda: outputMatches(shown, _TIMESTAMP.sub("", server.log()), True)
            ),
            f"$ {command.command}\nshown:\n"
            + "\n".join(shown)
            + f"\nlog:\n{server.log()}",
        )

    def stopServer(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _check(self, command: Command) -> Result:
        line = self.ports(command.command)
        terminal = self.terminals.get(command.command)
        shown = [self.ports(text) for text in command.output]
        if terminal is None:
            result = self._pipe(line)
        else:
            result = self._terminal(line, terminal, "".join(s + "\n" for s in shown))
        anyNumber = "--probe" in command.command
        self.case.assertTrue(
            outputMatches(shown, result.output, anyNumber=anyNumber),
            f"$ {line}\nshown:\n" + "\n".join(shown) + f"\nprinted:\n{result.output}",
        )
        self.case.assertEqual(
            result.status,
            self.statuses.get(command.command, 0),
            f"exit status of $ {line}",
        )
        return result

    def _pipe(self, line: str) -> Result:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        return Result(done.stdout.decode("utf-8", "backslashreplace"), done.returncode)

    def _terminal(self, line: str, terminal: Terminal, transcript: str) -> Result:
        """
        Run C{line} on a pseudo-terminal: type each line once the screen
        shows what the document shows before it, then end the input
        (Ctrl-D) once the whole transcript has had time to appear.
        """
        master, slave = pty.openpty()
        try:
            process = subprocess.Popen(
                ["bash", "-c", line],
                cwd=self.dir,
                env=self.env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
            )
        finally:
            os.close(slave)
        screen = _Screen(master, terminal.encoding)
        try:
            position = 0
            for typed in terminal.typed:
                at = transcript.index(typed, position)
                screen.readUntil(partial(screen.shows, at))
                os.write(master, (typed + "\n").encode(terminal.encoding))
                position = at + len(typed)
            screen.readUntil(partial(screen.shows, len(transcript)))
            # Ctrl-D; the program may have closed the terminal already
            with contextlib.suppress(OSError):
                os.write(master, b"\x04")
            screen.readUntil(lambda: False)
            status = process.wait(30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            os.close(master)
        return Result(screen.text(), status)


class _Screen:
    """
    What a program wrote to its terminal, as the reader sees it.
    """

    def __init__(self, fd: int, encoding: str) -> None:
        self.fd = fd
        self.encoding = encoding
        self.data = b""
        self.closed = False

    def text(self) -> str:
        return self.data.decode(self.encoding, "replace").replace("\r\n", "\n")

    def shows(self, length: int) -> bool:
        """
        Whether the screen holds at least C{length} characters.
        """
        return len(self.text()) >= length

    def readUntil(self, done: Callable[[], bool], timeout: float = 20.0) -> None:
        """
        Read until C{done()}, the program closes the terminal or C{timeout}
        seconds pass (a screen that falls short fails the comparison).
        """
        deadline = time.monotonic() + timeout
        while not self.closed and not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # EIO: every copy of the other side is closed
                    chunk = b""
                self.closed = not chunk
                self.data += chunk


def _waitFor(condition: Callable[[], bool], timeout: float = 10) -> bool:
    """
    Wait until C{condition()} holds (a server's log is written while it
    starts), for at most C{timeout} seconds; return whether it did.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
