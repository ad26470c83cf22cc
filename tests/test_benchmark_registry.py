"""The benchmark registry: every file says what it measures and names results that exist, the pages
are generated from it alone, and no result file lies in the tree unregistered and unreferenced."""

import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"


@pytest.fixture(scope="module")
def make_readme():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import make_readme

        yield make_readme
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_every_registry_file_reads_and_renders(make_readme):
    benchmarks = make_readme.registry()
    assert len(benchmarks) >= 10
    for b in benchmarks:
        assert b.measures and b.corpus and b.protocol and b.command, b.name
        assert not re.search(r"\d+\.\d+ %", b.measures + b.protocol), (
            f"{b.name}: a figure in the registry's words"
        )
        assert b.render(), b.name
    assert [b.readme for b in benchmarks].count("headline") == 1


def test_a_registered_result_records_the_command_the_registry_gives(make_readme):
    for b in make_readme.registry():
        recorded = json.loads(b.paths[0].read_text())
        if isinstance(recorded, dict) and recorded.get("command") and len(b.paths) == 1:
            assert recorded["command"] == b.command, b.name


def test_the_pages_are_what_the_registry_generates(make_readme):
    benchmarks = make_readme.registry()
    assert (BENCHMARKS / "README.md").read_text() == make_readme.page(benchmarks)
    readme = (REPO / "README.md").read_text()
    block = readme.split(make_readme.RESULTS_START, 1)[1].split(make_readme.RESULTS_END, 1)[0]
    assert (
        make_readme.RESULTS_START + block + make_readme.RESULTS_END
        == make_readme.readme_results(benchmarks)
    )


def test_no_result_file_is_left_unregistered(make_readme):
    """A result is registered, read by a registered result (a source or a member), or the report of
    a released model (its card names it); a superseded run leaves the tree and HISTORY.md keeps its
    line."""
    registered = {p.resolve() for b in make_readme.registry() for p in b.paths}
    texts = [p.read_text() for p in registered]
    texts += [p.read_text() for p in (REPO / "src" / "emorec").rglob("MODEL_CARD.md")]
    found = [
        p
        for p in (BENCHMARKS / "results").rglob("*.json")
        if "loco" not in p.relative_to(BENCHMARKS / "results").parts[:1]
    ]
    orphans = [
        str(p.relative_to(BENCHMARKS))
        for p in found
        if p.resolve() not in registered
        and not p.name.startswith("release")  # a release's report
        and not any(str(p.relative_to(BENCHMARKS)) in t for t in texts)
    ]
    assert not orphans, f"unregistered result files: {orphans}"


def test_a_registry_file_that_names_a_missing_result_is_refused(make_readme, tmp_path, monkeypatch):
    (tmp_path / "x.yaml").write_text(
        "title: X\nsection: S\norder: 1\nmeasures: m\ncorpus: c\nprotocol: "
        "p\ncommand: python x.py\n"
        "results: [results/not_there.json]\ntable: cv\n"
    )
    monkeypatch.setattr(make_readme, "REGISTRY", tmp_path)
    with pytest.raises(SystemExit, match="not_there.json"):
        make_readme.registry()
