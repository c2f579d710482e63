"""Every published figure matches its committed source: the README's results and bottom line, the demo page, the
real-model table and the performance tables are generated from `docs/**.json` and `docs/paper/reported.yaml` by
`scripts/readme_results.py`, and this test fails when a page differs from what its source says (so a figure can no
longer drift from its source); the GPU tables (`scripts/gpu_report.py`) and the demo's dispatch spread likewise."""

import importlib.util
import json
import shutil

import pytest

from helpers import ROOT, load_script


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


def _copy(tmp_path):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def _block(text: str, name: str) -> str:
    return text.split(f"<!-- {name}:start", 1)[1].split(f"<!-- {name}:end -->", 1)[0]


def _edit_json(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _grid_c1_holds(record):
    claim = next(c for c in record["cells"]["epochs-3"]["claims"] if c["name"] == "C1")
    claim.update(mean=0.05, low=0.02, high=0.08, verdict="holds")


PERTURBATIONS = {  # source file -> (how it changes, a text the regenerated bottom line must then hold)
    "docs/paper/reported.yaml": (lambda p: p.write_text(p.read_text().replace('dpo_ra: "31.17"', 'dpo_ra: "31.71"')),
                                 "Qwen2-7B-Instruct 21.46 -> 31.71"),
    "docs/demo/report.json": (lambda p: _edit_json(p, lambda r: next(c for c in r["claims"] if c["name"] == "C2")
                                                   .update(mean=1.5)), "C2 +1.500 [+1.163, +1.770] nats"),
    "docs/demo-grid/report.json": (lambda p: _edit_json(p, _grid_c1_holds), "C1 holds in 1 of 8 cells"),
    "docs/exp-ifeval/report.json": (lambda p: _edit_json(p, lambda r: r["claims"][0].update(high=0.25)),
                                    "C1 -0.32 [-0.85, +0.25] points"),
}


@pytest.mark.parametrize("source", sorted(PERTURBATIONS))
def test_the_bottom_line_follows_the_paper_file_and_every_report(tmp_path, source):
    """The README's bottom line is written from the paper file and the demo, grid and real-model reports: a change to
    any of them without the README fails --check, and regenerating writes the new figure into the paragraph."""
    root = _copy(tmp_path)
    change, expected = PERTURBATIONS[source]
    before = _block((root / "README.md").read_text(), "readme-bottom-line")
    assert expected not in " ".join(before.split())
    change(root / source)
    results = script()
    assert results.main(["--root", str(root), "--check"]) == 1
    assert results.main(["--root", str(root)]) == 0 and results.main(["--root", str(root), "--check"]) == 0
    assert expected in " ".join(_block((root / "README.md").read_text(), "readme-bottom-line").split())


def test_the_bottom_line_quotes_every_transcribed_figure_and_says_what_is_not():
    import yaml

    paper = yaml.safe_load((ROOT / "docs" / "paper" / "reported.yaml").read_text())
    line = " ".join(_block((ROOT / "README.md").read_text(), "readme-bottom-line").split())
    for figure in paper["figures"]:
        assert f"{figure['model']} {figure['dpo']} -> {figure['dpo_ra']}" in line, figure
        assert figure["where"] and figure["benchmark"] in paper["benchmarks"], figure
    for missing in paper["not_transcribed"]:
        assert missing["short"] in line and missing["why"], missing
    assert f"arXiv {paper['paper']['arxiv']}" in line


def test_the_results_table_gives_each_claim_its_unit():
    """C2 is in nats and C4 a Spearman rho: neither is headed "paired difference" in true reward."""
    table = [row for row in _block((ROOT / "README.md").read_text(), "readme-results").splitlines()
             if row.startswith("| C")]
    units = {row.split(" | ")[0].strip("| "): row.split(" | ")[2] for row in table}
    assert units["C2"].startswith("nats") and units["C4"].startswith("Spearman rho")
    assert units["C1"].startswith("true reward (0 to 1)")


def test_the_gpu_tables_match_their_committed_json(tmp_path):
    import shutil

    report = load_script(ROOT / "scripts" / "gpu_report.py")
    assert report.main(["--check"]) == 0, "run: python scripts/gpu_report.py"
    shutil.copytree(ROOT / "docs", tmp_path / "docs")  # a changed figure in the JSON is caught
    bench = tmp_path / "docs" / "bench" / "gpu-dpo.json"
    record = json.loads(bench.read_text())
    record["sizes"][0]["results"][4]["real_tokens_per_s"] += 1000
    bench.write_text(json.dumps(record))
    assert report.main(["--check", "--root", str(tmp_path)]) == 1


def test_published_dispatch_spread_is_the_published_demo_at_its_pinned_level():
    docs = ROOT / "docs" / "demo"
    report, spread = (json.loads((docs / name).read_text()) for name in ("report.json", "dispatch.json"))
    assert report["dispatch"]["kernels"] == "pinned" and spread["pinned"] == report["dispatch"]["level"]
    assert {level["level"] for level in spread["levels"]} >= {"avx2", "avx512", "default"}
    for claim, row in zip(report["claims"], spread["claims"]):
        assert row["name"] == claim["name"] and row["per_level"][spread["pinned"]]["mean"] == claim["mean"]
        means = [v["mean"] for v in row["per_level"].values()]
        assert row["min"] == min(means) and row["max"] == max(means)
