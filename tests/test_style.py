"""The house style that a tool can check, on src, tests and scripts: `ruff format` (line length
100, set in pyproject.toml), lint clean (pyflakes, syntax errors, lines over 100 characters) and
small modules (400 lines at most)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ["src", "tests", "scripts"]
LIMIT = 400
#: modules still over the limit, each with how it will come under it; the list only shrinks
OVER_LIMIT: dict[str, str] = {}


def test_no_module_grows_past_400_lines():
    sizes = {
        str(p.relative_to(REPO)): len(p.read_text().splitlines())
        for p in (REPO / "src").rglob("*.py")
    }
    over = {path: n for path, n in sizes.items() if n > LIMIT and path not in OVER_LIMIT}
    assert not over, f"modules over {LIMIT} lines: {over}"
    under = [path for path in OVER_LIMIT if sizes.get(path, 0) <= LIMIT]
    assert not under, f"listed modules now under the limit, drop them: {under}"


def _ruff() -> str:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    return ruff


def test_lint_clean():
    result = subprocess.run(
        [_ruff(), "check", "--select", "F,E9,E501", "--no-cache", *CHECKED],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]


def test_formatted():
    result = subprocess.run(
        [_ruff(), "format", "--check", "--no-cache", *CHECKED],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, "run `ruff format src tests scripts`:\n" + result.stdout[-3000:]
