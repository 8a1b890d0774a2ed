"""
Packaging: the wheel ships the plugin (and nothing of Twisted's own), and a
plain, non-editable install makes C{twistd --help} list upperecho.

The twisted/plugins folder has no __init__.py, so packaging tools drop it
unless told; this test is what notices.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (path,) = out.glob("upperecho-*.whl")
    return path


def test_wheelContents(wheel: Path) -> None:
    """
    The plugin file is in the wheel; Twisted's own package markers are not,
    and neither are the tests.
    """
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/upperecho_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "upperecho/py.typed" in names
    assert not any(n.startswith("tests/") for n in names)


def test_freshInstallListsPlugin(wheel: Path, tmp_path: Path) -> None:
    """
    In a new virtual environment, C{pip install} of the wheel (not editable)
    is enough for C{twistd --help} to list upperecho.
    """
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    subprocess.run(
        [
            str(env / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    out = subprocess.run(
        [str(env / "bin" / "twistd"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "upperecho" in out.stdout
