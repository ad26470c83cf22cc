"""The documentation site builds with no broken link or missing API reference, and the README
stays a short door into it."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="the dev extra (mkdocs) is not installed")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    # the reference was rendered from the docstrings
    assert 'id="emorec.inference.api.Recognizer.predict"' in api


def test_a_broken_link_fails_the_build(tmp_path):
    pytest.importorskip("mkdocs", reason="the dev extra (mkdocs) is not installed")
    import shutil

    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    (tmp_path / "src").symlink_to(REPO / "src")
    with open(tmp_path / "docs" / "troubleshooting.md", "a") as page:
        page.write("\nSee [the missing page](no-such-page.md).\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode != 0 and "no-such-page.md" in proc.stderr


def test_the_readme_is_short_and_its_links_lead_somewhere():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 120
    assert readme.startswith("# emorec\n\n```bash\nbash scripts/setup.sh && .venv/bin/emorec demo")
    targets = [
        t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme) if not t.startswith("http")
    ]
    assert targets and all((REPO / t).exists() for t in targets), [
        t for t in targets if not (REPO / t).exists()
    ]


def test_the_sites_results_are_the_readmes_with_paths_for_links():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from make_readme import RESULTS_END, RESULTS_START, site_links
    finally:
        sys.path.remove(str(REPO / "benchmarks"))

    def block(path: Path) -> str:
        return path.read_text().split(RESULTS_START, 1)[1].split(RESULTS_END, 1)[0]

    readme, site = block(REPO / "README.md"), block(REPO / "docs" / "results.md")
    assert "| RAVDESS |" in readme and site == site_links(readme) and "](benchmarks/" not in site
