"""
docs/zh/README.rst, the learner's path told in Chinese, is true: every
command in it runs against a real server and prints what it shows, and
every file, class and name it cites is where it says, so that moving a
class or changing an output fails here instead of leaving the page stale.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.docsession import Result, Session, Terminal, isServer, outputMatches
from tests.rstdoc import ROOT, Document, inlineLiterals

DOC = Document(ROOT / "docs" / "zh" / "README.rst")

#: the sections with commands, each run by one test below
TCP_STORY = "TCP 的故事，一步一步"
BYTE_STREAM = "为什么服务器按字节流处理"
UDP_STORY = "UDP 的故事"
GBK = "中文和 GBK"
IMPAIRED = "亲眼看到 UDP 丢包和乱序"
SECTIONS = [TCP_STORY, BYTE_STREAM, UDP_STORY, GBK, IMPAIRED]

#: the commands the reader types into, and what they type
TERMINALS = {
    "python3 TCPClient.py": Terminal(("你好, straße",)),
    "python3 UDPClient.py": Terminal(("你好, straße",)),
    "upperecho-client localhost 12000": Terminal(("你好, straße",)),
    "upperecho-client --encoding gbk localhost 12000": Terminal(
        ("亂序, hello",), "gbk"
    ),
}
UDP_PROBE = "upperecho-client --probe --udp -c 1000 -i 0.002 localhost 12001"
TCP_PROBE = "upperecho-client --probe -c 1000 -i 0.002 localhost 12000"
#: the commands that exit with another status than 0, as the page says
STATUSES = {
    "echo 你好 | upperecho-client --udp --timeout 0.2 --retries 1 localhost 9": 1,
    UDP_PROBE: 1,
}

_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)*\.(?:py|rst)")
#: a class, or an attribute of one: UpperEchoFactory.buildProtocol
_CLASS = re.compile(r"([A-Z]\w*[a-z]\w*)(?:\.(\w+))?")
_DOTTED = re.compile(r"(?:upperecho|twisted)(?:\.\w+)+")
_SUMMARY = re.compile(
    r"(\d+) sent, (\d+) received, ([\d.]+)% lost, (\d+) corrupted, "
    r"(\d+) duplicated, (\d+) reordered"
)


class SessionTests(SynchronousTestCase):
    """
    Each section's commands, run in order against the server the page has
    running at that point, print what the page shows.
    """

    def runSection(self, title: str) -> dict[str, Result]:
        """
        Run the commands of section C{title}; if it does not start a server
        itself, start the one the page started last before it.
        """
        commands = DOC.commands()
        mine = [command for command in commands if command.section == title]
        self.assertTrue(mine, f"no commands in section {title!r}")
        session = Session(self, DOC.namedFiles(), TERMINALS, STATUSES)
        if not isServer(mine[0]):
            before = commands[: commands.index(mine[0])]
            session.startServer([c for c in before if isServer(c)][-1])
        return session.run(mine)

    def test_tcpStory(self) -> None:
        """
        The server starts on the welcome port; the textbook TCP client and
        upperecho-client, typed into and piped, get C{你好, STRASSE}.
        """
        self.runSection(TCP_STORY)

    def test_byteStream(self) -> None:
        """
        A character sent in two pieces half a second apart comes back whole.
        """
        self.runSection(BYTE_STREAM)

    def test_udpStory(self) -> None:
        """
        The textbook UDP client and upperecho-client --udp get their
        replies; a port with no server gives one line after the retries.
        """
        self.runSection(UDP_STORY)

    def test_gbk(self) -> None:
        """
        GBK bytes: damaged by the UTF-8 server, intact with --encoding gbk,
        piped over TCP and UDP and typed on a GBK terminal.
        """
        self.runSection(GBK)

    def test_udpLossAndReorder(self) -> None:
        """
        The impaired server logs its impairment; probed over UDP it loses
        about a tenth of the replies and reorders some (exit 1), over TCP
        nothing (exit 0), as the page reads the two summaries.
        """
        results = self.runSection(IMPAIRED)
        udp, tcp = results[UDP_PROBE].output, results[TCP_PROBE].output
        sent, received, lost, corrupted, duplicated, reordered = _summary(udp)
        self.assertEqual((sent, corrupted, duplicated), (1000, 0, 0))
        self.assertTrue(5 < lost < 15, udp)
        self.assertLess(received, sent)
        self.assertGreater(reordered, 0)
        self.assertRegex(udp, r"(?m)^64 bytes from .* ms \(reordered\)$")
        self.assertRegex(udp, r"(?m)^seq=\d+ timeout$")
        self.assertEqual(_summary(tcp), (1000, 1000, 0.0, 0, 0, 0))

    def test_everySectionWithCommandsIsRun(self) -> None:
        """
        No command of the page escapes the tests above, and the tables of
        typed and failing commands name commands the page has.
        """
        commands = {command.command for command in DOC.commands()}
        self.assertEqual({command.section for command in DOC.commands()}, set(SECTIONS))
        self.assertLessEqual(set(TERMINALS) | set(STATUSES), commands)


class CitationTests(SynchronousTestCase):
    """
    What the page says is where is there.
    """

    def test_citedFilesExist(self) -> None:
        """
        Every file the page cites exists in the project, or is one of the
        page's own files (C{TCPClient.py}).
        """
        paths = _cited(_PATH)
        self.assertIn("upperecho/udp.py", paths)
        for path in paths:
            if "/" in path:
                self.assertTrue((ROOT / path).is_file(), path)
            else:
                self.assertIn(path, DOC.namedFiles())

    def test_citedClassesAreWhereThePageSays(self) -> None:
        """
        Every class (or C{Class.attribute}) the page names is defined in a
        file the same paragraph cites, or, when it cites none, somewhere in
        the package.
        """
        package = sorted((ROOT / "upperecho").glob("*.py"))
        checked = set()
        for paragraph in DOC.paragraphs():
            literals = inlineLiterals(paragraph)
            cited = [
                ROOT / literal
                for literal in literals
                if _PATH.fullmatch(literal) and literal.endswith(".py")
            ]
            for literal in literals:
                match = _CLASS.fullmatch(literal)
                if match is None or _PATH.fullmatch(literal):
                    continue
                name, attribute = match.groups()
                where = [path for path in cited if path.is_file()] or package
                self.assertTrue(
                    any(attribute in _classes(path).get(name, ()) for path in where)
                    if attribute
                    else any(name in _classes(path) for path in where),
                    f"{literal} is not in {[str(p.relative_to(ROOT)) for p in where]}"
                    f"\n{paragraph}",
                )
                checked.add(literal)
        self.assertLessEqual(
            {
                "UpperEchoFactory.buildProtocol",
                "UpperEchoProtocol",
                "UpperEchoDatagramProtocol.datagramReceived",
                "Uppercaser",
            },
            checked,
        )

    def test_citedNamesImport(self) -> None:
        """
        Dotted names (C{twisted.internet.testing.StringTransport}) import.
        """
        names = _cited(_DOTTED)
        self.assertIn("twisted.internet.testing.StringTransport", names)
        for name in names:
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found: object = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                for part in parts[cut:]:
                    found = getattr(found, part)
                break
            else:
                self.fail(f"{name} does not import")

    def test_makeTargets(self) -> None:
        """
        The install block's make targets exist, and C{make run} serves the
        ports the page uses.
        """
        makefile = (ROOT / "Makefile").read_text()
        targets = re.findall(r"^make (\w+)", DOC.codeBlockAfter("安装和运行"), re.M)
        self.assertEqual(targets, ["run", "test"])
        for target in targets:
            self.assertRegex(makefile, rf"(?m)^{target}:")
        self.assertRegex(makefile, r"(?m)^TCP \?= 12000$")
        self.assertRegex(makefile, r"(?m)^UDP \?= 12001$")
        self.assertIn("upperecho --tcp $(TCP) --udp $(UDP)", makefile)

    def test_readmeLinksHere(self) -> None:
        """
        README.rst points Chinese readers here before anything else.
        """
        top = (ROOT / "README.rst").read_text(encoding="utf-8").splitlines()[:5]
        self.assertIn("中文: `docs/zh/README.rst <docs/zh/README.rst>`_", top)


class OutputMatchesTests(SynchronousTestCase):
    """
    The comparison the session tests rest on can fail.
    """

    def test_exact(self) -> None:
        self.assertTrue(outputMatches(["你好, STRASSE"], "你好, STRASSE\n"))
        self.assertFalse(outputMatches(["你好, STRASSE"], "你好, STRASSE\nmore\n"))
        self.assertFalse(outputMatches(["你好, STRASSE"], "你好, straße\n"))

    def test_ellipsis(self) -> None:
        """
        C{...} stands for any number of lines, none included.
        """
        shown = ["first", "...", "last"]
        self.assertTrue(outputMatches(shown, "first\nlast\n"))
        self.assertTrue(outputMatches(shown, "first\na\nb\nlast\n"))
        self.assertFalse(outputMatches(shown, "first\na\n"))

    def test_numbers(self) -> None:
        """
        Numbers may differ only when asked, and only numbers.
        """
        shown = ["1000 sent, 896 received, 10.4% lost"]
        other = "1000 sent, 901 received, 9.9% lost\n"
        self.assertFalse(outputMatches(shown, other))
        self.assertTrue(outputMatches(shown, other, anyNumber=True))
        self.assertFalse(
            outputMatches(shown, "1000 sent, 901 received, 9.9% LOST\n", anyNumber=True)
        )

    def test_more(self) -> None:
        self.assertFalse(outputMatches(["a"], "a\nb\n"))
        self.assertTrue(outputMatches(["a"], "a\nb\n", more=True))


def _cited(pattern: re.Pattern[str]) -> set[str]:
    """
    The inline literals of the page that C{pattern} matches whole.
    """
    return {
        literal
        for paragraph in DOC.paragraphs()
        for literal in inlineLiterals(paragraph)
        if pattern.fullmatch(literal)
    }


def _summary(output: str) -> tuple[int, int, float, int, int, int]:
    """
    The counts of a probe's summary line.
    """
    match = _SUMMARY.search(output)
    assert match is not None, output
    sent, received, lost, corrupted, duplicated, reordered = match.groups()
    return (
        int(sent),
        int(received),
        float(lost),
        int(corrupted),
        int(duplicated),
        int(reordered),
    )


@cache
def _classes(path: Path) -> dict[str, set[str]]:
    """
    The classes defined at the top of C{path}, each with the names its body
    defines.
    """
    classes = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ClassDef):
            names = set()
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name))
                elif isinstance(item, ast.AnnAssign) and isinstance(
                    item.target, ast.Name
                ):
                    names.add(item.target.id)
            classes[node.name] = names
    return classes
