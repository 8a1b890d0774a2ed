"""
Reading a reStructuredText document the way its tests need it: its literal
blocks, the shell sessions among them, and the inline literals of each
paragraph, so that what a document shows can be run and checked instead of
trusted.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

#: the project's checkout: documents cite paths relative to it
ROOT = Path(__file__).resolve().parent.parent

_INLINE_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)
_LIST_ITEM = re.compile(r"\s*(?:[-*]|\d+\.)\s")


@dataclass(frozen=True)
class LiteralBlock:
    """
    A literal block (the indented text after a paragraph ending in C{::}).

    @ivar section: the title of the section it is in.
    @ivar intro: the 0-based index of the line that ends in C{::}.
    @ivar text: the block, dedented, without trailing blank lines.
    """

    section: str
    intro: int
    text: str


@dataclass(frozen=True)
class Command:
    """
    One C{$ command} of a shell session shown in a literal block.

    @ivar section: the title of the section it is in.
    @ivar command: the command line, without the C{$ }.
    @ivar output: the lines shown after it, up to the next C{$} line.
    """

    section: str
    command: str
    output: tuple[str, ...]


class Document:
    """
    A reStructuredText file, read once.

    @param sectionUnderline: the underline character of the sections that
        L{LiteralBlock.section} names (subsections belong to their section).
    """

    def __init__(self, path: Path, sectionUnderline: str = "-") -> None:
        self.path = path
        self.lines = path.read_text(encoding="utf-8").splitlines()
        self.blocks: list[LiteralBlock] = []
        #: indices of the lines inside literal blocks
        self._inBlock: set[int] = set()
        self._read(sectionUnderline)

    def _read(self, underline: str) -> None:
        lines = self.lines
        section = ""
        i = 0
        while i < len(lines):
            line = lines[i]
            following = lines[i + 1] if i + 1 < len(lines) else ""
            if (
                line.strip()
                and not line[0].isspace()
                and len(following) >= 3
                and set(following) == {underline}
            ):
                section = line.strip()
            if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
                end = self._block(section, i)
                if end > i + 1:
                    i = end
                    continue
            i += 1

    def _block(self, section: str, intro: int) -> int:
        """
        Record the literal block introduced at line C{intro}, if there is
        one; return the index of the first line after it.
        """
        lines = self.lines
        start = intro + 1
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start == len(lines):
            return start
        indent = len(lines[start]) - len(lines[start].lstrip())
        if indent <= len(lines[intro]) - len(lines[intro].lstrip()):
            return intro + 1
        end = start
        while end < len(lines) and (
            not lines[end].strip()
            or len(lines[end]) - len(lines[end].lstrip()) >= indent
        ):
            end += 1
        last = end
        while not lines[last - 1].strip():
            last -= 1
        text = textwrap.dedent("\n".join(lines[start:last]))
        self.blocks.append(LiteralBlock(section, intro, text))
        self._inBlock.update(range(intro + 1, end))
        return end

    def codeBlockAfter(self, marker: str) -> str:
        """
        The first literal block introduced at or after the first line that
        contains C{marker}.
        """
        at = next(i for i, line in enumerate(self.lines) if marker in line)
        return next(block.text for block in self.blocks if block.intro >= at)

    def commands(self) -> list[Command]:
        """
        Every C{$ command} of the blocks that are shell sessions (those whose
        first line starts with C{$ }), in document order.
        """
        commands = []
        for block in self.blocks:
            if not block.text.startswith("$ "):
                continue
            for chunk in re.split(r"^\$ ", block.text, flags=re.MULTILINE)[1:]:
                command, *output = chunk.rstrip("\n").split("\n")
                commands.append(
                    Command(
                        block.section,
                        command,
                        tuple(line.rstrip() for line in output),
                    )
                )
        return commands

    def namedFiles(self) -> dict[str, str]:
        """
        The blocks that are files, named by a comment on their first line
        (C{# TCPClient.py}): name -> text.
        """
        files = {}
        for block in self.blocks:
            match = re.fullmatch(r"# ([\w.-]+)", block.text.split("\n", 1)[0])
            if match:
                files[match.group(1)] = block.text + "\n"
        return files

    def paragraphs(self) -> list[str]:
        """
        The text outside literal blocks, cut into paragraphs, list items and
        definitions: the units inside which a document says what is where.
        """
        chunks: list[list[str]] = [[]]
        for i, line in enumerate(self.lines):
            if i in self._inBlock or not line.strip():
                chunks.append([])
            elif _LIST_ITEM.match(line):
                chunks.append([line])
            else:
                chunks[-1].append(line)
        return ["\n".join(chunk) for chunk in chunks if chunk]


def inlineLiterals(text: str) -> list[str]:
    """
    The inline literals (C{``...``}) of C{text}, with line breaks inside
    one read as spaces.
    """
    return [" ".join(m.split()) for m in _INLINE_LITERAL.findall(text)]
