"""
pytest settings for the suite.

C{make test} runs every test once: trial runs the trial-style classes
(L{twisted.trial.unittest.SynchronousTestCase} and its subclasses), pytest
everything else.  pytest can run the trial classes too (plain C{pytest} does,
for a single command that runs all); C{--no-trial-classes} leaves them to
trial.
"""

from __future__ import annotations

import pytest
from twisted.trial.unittest import SynchronousTestCase


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-trial-classes",
        action="store_true",
        help="leave trial-style test classes to trial (make test runs both)",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if not config.getoption("--no-trial-classes"):
        return
    keep: list[pytest.Item] = []
    trial: list[pytest.Item] = []
    for item in items:
        cls = getattr(item, "cls", None)
        isTrial = cls is not None and issubclass(cls, SynchronousTestCase)
        (trial if isTrial else keep).append(item)
    if trial:
        config.hook.pytest_deselected(items=trial)
        items[:] = keep
