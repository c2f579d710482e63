"""Every published figure matches its committed JSON: the README's results, the demo page, the real-model table and
the performance tables are generated from `docs/**.json` by `scripts/readme_results.py`, and this test fails when a
page differs from what its JSON says (so a figure can no longer drift from its source)."""

import importlib.util
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def script():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "scripts" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pages_match_their_committed_json():
    assert script().main(["--check"]) == 0, "run: python scripts/readme_results.py"


def test_a_changed_figure_in_a_json_is_caught(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    bench = tmp_path / "docs" / "bench" / "train-smollm2.json"
    record = json.loads(bench.read_text())
    record["results"][2]["speedup"] += 0.5
    bench.write_text(json.dumps(record))
    results = script()
    assert results.main(["--root", str(tmp_path), "--check"]) == 1
    assert results.main(["--root", str(tmp_path)]) == 0 and results.main(["--root", str(tmp_path), "--check"]) == 0


def test_every_benchmark_record_says_how_it_was_made():
    for path in sorted((ROOT / "docs" / "bench").glob("*.json")):
        record = json.loads(path.read_text())
        assert record["command"].startswith("python benchmarks/"), path
        assert record["machine"]["cpus"] and record["packages"]["torch"] and record["git_hash"], path


def test_the_grid_report_matches_its_json():
    """docs/demo-grid/report.md is what `python -m rapref.studies.demo.grid_report docs/demo-grid` renders from the
    committed report.json (the map's tables and its "where it helps" paragraph are never edited by hand)."""
    from rapref.studies.demo.grid_report import markdown

    report = json.loads((ROOT / "docs" / "demo-grid" / "report.json").read_text())
    assert markdown(report) == (ROOT / "docs" / "demo-grid" / "report.md").read_text()
    assert not report["smoke_run"] and len(report["cells"]) == 8 and report["grid_file"] == "docs/demo-grid.yaml"
