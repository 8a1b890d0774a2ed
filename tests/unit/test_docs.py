"""
Every reStructuredText page of the project parses cleanly.

The README tests (C{tests/integration/test_readme.py}) run the commands a
page shows with the project's own small reader (C{tests/rstdoc.py}), which
does not check the markup itself: a table whose text runs into a column's
margin, say, renders as an error block on PyPI and in every viewer, and
only docutils, the reference implementation, says so.
"""

from __future__ import annotations

import io
from pathlib import Path

import docutils.core
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.rst", *(ROOT / "docs").rglob("*.rst")])


def problems(page: Path) -> str:
    """
    What docutils reports about C{page} at warning level or above.
    """
    report = io.StringIO()
    docutils.core.publish_doctree(
        page.read_text(encoding="utf-8"),
        source_path=str(page),
        settings_overrides={
            "report_level": 2,
            "halt_level": 5,
            "warning_stream": report,
        },
    )
    return report.getvalue()


class PagesTests(SynchronousTestCase):
    def test_pagesFound(self) -> None:
        """
        The pages checked include the README, the docs and the Chinese
        README (a glob that found nothing would pass every page).
        """
        names = {p.relative_to(ROOT).as_posix() for p in PAGES}
        for name in ("README.rst", "docs/contract.rst", "docs/zh/README.rst"):
            self.assertIn(name, names)

    def test_parsesCleanly(self) -> None:
        """
        No page has a docutils warning or error.
        """
        found = {p.relative_to(ROOT).as_posix(): problems(p) for p in PAGES}
        self.assertEqual({name: text for name, text in found.items() if text}, {})

    def test_detects(self) -> None:
        """
        The check fails on a table whose text runs into a column margin,
        the mistake it was written for.
        """
        page = Path(self.mktemp() + ".rst")
        page.write_text("=====  =====\na      b\nlonger text\n=====  =====\n")
        self.assertIn("Malformed table", problems(page))
