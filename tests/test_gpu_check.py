"""The GPU check and benchmark rehearsed on a CPU (`--device cpu --tiny`): gradients compared per tensor, rapref's own
commit recorded; and provenance never records the commit of a repository that merely encloses the tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rapref.provenance import git_hash

ROOT = Path(__file__).resolve().parents[1]


def rehearse(script, tmp_path, *extra):
    out = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAPREF_COMMIT": "abc1234"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--device", "cpu", "--tiny", "--out",
                           str(out), *extra], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_packing_check_compares_gradients_on_cpu(tmp_path):
    report = rehearse("gpu_packing_check.py", tmp_path)
    assert report["git_hash"] == "abc1234"
    rows = [r for r in report["results"] if "skipped" not in r]
    assert {(r["attention"], r["lora"]) for r in rows} == {("sdpa", False), ("sdpa", True), ("eager", False),
                                                          ("eager", True)}
    for r in rows:  # fp32 on a CPU: the packed path's gradients are TRL's, and the gate let every batch pack
        assert r["gate"] == "packed" and r["packed_batches"] == 1
        assert r["grad_min_cosine"] > 0.99999 and r["grad_max_rel_diff"] < 1e-4 and r["max_abs_logprob_diff"] < 1e-4
        assert "max_rel_param_diff_after_step" not in r
        # LoRA's A has no gradient while B is zero: counted apart, not read as a disagreement
        assert r["grad_zero_in_both"] == (r["grad_tensors"] // 2 if r["lora"] else 0)


@pytest.mark.slow
def test_dpo_benchmark_rehearsal(tmp_path):
    report = rehearse("gpu_dpo_bench.py", tmp_path)
    results = {r["config"]: r for r in report["sizes"][0]["results"]}
    assert results["trl-liger"].get("skipped") == "liger-kernel is not installed"
    for name in ("trl-no-checkpointing", "rapref-defaults", "rapref-defaults+lora"):
        assert all(results[name]["checks"].values()), (name, results[name]["checks"])
    assert results["rapref-defaults+lora"]["vs_trl_defaults"]["grads"]["zero_in_both"] > 0


def test_provenance_records_rapref_own_commit_or_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("RAPREF_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if head:  # a checkout of rapref: its HEAD
        assert git_hash() == head
    other = tmp_path / "other"  # another project's repository, as on a machine the tree was copied into
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "not-rapref"\n')
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    subprocess.run([*git, "add", "pyproject.toml"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], cwd=other, check=True)
    assert git_hash(other) == "unknown"
    assert git_hash(tmp_path) == "unknown"  # no repository at all
    monkeypatch.setenv("RAPREF_COMMIT", "0123abc")
    assert git_hash(other) == "0123abc"


def test_the_gpu_tables_match_their_committed_json(tmp_path):
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("gpu_report", ROOT / "scripts" / "gpu_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.main(["--check"]) == 0, "run: python scripts/gpu_report.py"
    shutil.copytree(ROOT / "docs", tmp_path / "docs")  # a changed figure in the JSON is caught
    bench = tmp_path / "docs" / "bench" / "gpu-dpo.json"
    record = json.loads(bench.read_text())
    record["sizes"][0]["results"][4]["real_tokens_per_s"] += 1000
    bench.write_text(json.dumps(record))
    assert report.main(["--check", "--root", str(tmp_path)]) == 1
