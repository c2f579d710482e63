"""The GPU check and benchmark rehearsed on a CPU (`--device cpu --tiny`): gradients compared per tensor, rapref's own
commit recorded, one process per benchmark configuration (a failure, a kill or a timeout recorded, the rest run),
Liger's first-loss question answered from its isolated pair."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, load_script


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


def bench():
    return load_script(ROOT / "benchmarks" / "gpu_dpo_bench.py")


def test_dpo_benchmark_rehearsal_one_process_per_config(tmp_path):
    """Two configurations run (TRL's defaults and rapref's), each in its own process; the Liger pair is skipped with
    its reason (no Triton here); rapref's run is compared with TRL's across the two processes."""
    report = rehearse("gpu_dpo_bench.py", tmp_path, "--configs",
                      "trl-defaults,trl-liger,trl-liger+ref-kernels,rapref-defaults")
    assert report["isolation"] == "one process per config" and report["git_hash"] == "abc1234"
    results = {r["config"]: r for r in report["sizes"][0]["results"]}
    assert list(results) == ["trl-defaults", "trl-liger", "trl-liger+ref-kernels", "rapref-defaults"]
    for name in ("trl-liger", "trl-liger+ref-kernels"):
        assert results[name] == {"config": name, "skipped": "liger-kernel is not installed"}
    ran = [results["trl-defaults"], results["rapref-defaults"]]
    assert len({r["pid"] for r in ran}) == 2 and os.getpid() not in {r["pid"] for r in ran}
    for r in ran:
        assert r["peak_gib"] is None and 0.1 < r["peak_rss_gib"] < 8 and r["process_s"] > 0
        assert abs(r["first_loss_minus_ln2"]) < 1e-6 and r["checks"]["first_loss_is_ln2"]
        # no Liger: policy and reference run transformers' own kernels, as observed on the instances
        assert r["kernels"]["policy"] == r["kernels"]["reference"] == {
            "norm": "LlamaRMSNorm.forward", "mlp": "LlamaMLP.forward", "rotary": "transformers:apply_rotary_pos_emb"}
        assert r["reference_kernels_matched"] is True and r["reference_kernels_patched"] is False
        assert (tmp_path / "check-logs" / f"tiny-{r['config']}.log").is_file()
    rapref = results["rapref-defaults"]
    assert all(rapref["checks"].values()), rapref["checks"]
    vs = rapref["vs_trl_defaults"]  # bf16 autocast (TRL) against fp32 (rapref on a CPU): close, not equal
    assert 0 < vs["max_token_logprob_diff"] < 0.05 and vs["grads"]["min_cosine"] > 0.999
    assert vs["grads"]["tensors"] == 20 and vs["grads"]["missing"] == 0
    assert report["sizes"][0]["liger_first_loss"] is None  # nothing with Liger ran
    table = load_script(ROOT / "scripts" / "gpu_report.py").dpo_table(report)  # the page's table reads it
    assert "| tiny | 4 | trl-liger | liger-kernel is not installed |" in table
    assert "each configuration in its own process" in table


@pytest.mark.slow
def test_dpo_benchmark_rehearsal_whole_tiny_plan(tmp_path):
    report = rehearse("gpu_dpo_bench.py", tmp_path)
    results = {r["config"]: r for r in report["sizes"][0]["results"]}
    for name in ("rapref-defaults", "rapref-defaults+lora"):
        assert all(results[name]["checks"].values()), (name, results[name]["checks"])
    assert results["rapref-defaults+lora"]["vs_trl_defaults"]["grads"]["zero_in_both"] > 0
    assert results["trl-defaults+lora"]["reference_model"] == "the policy without its adapters"
    assert len({r["pid"] for r in results.values() if "pid" in r}) == 4


def test_a_failed_configuration_is_recorded_and_the_process_group_ended(tmp_path):
    """What each configuration's process can do to the benchmark: write its result, fail with an error line, be
    killed (the kernel's OOM killer sends SIGKILL) or pass its time, with a child of its own still running."""
    run_isolated = bench().run_isolated
    result = tmp_path / "result.json"

    def run(code, timeout=60):
        return run_isolated([sys.executable, "-c", code], timeout, tmp_path / "one.log", result)

    ok = run(f"import json; open({str(result)!r}, 'w').write(json.dumps({{'real_tokens_per_s': 5.0}}))")
    assert ok["real_tokens_per_s"] == 5.0 and "process_exit" not in ok and ok["process_s"] >= 0
    result.unlink()
    failed = run("print('loading'); raise RuntimeError('CUDA out of memory. Tried to allocate 2 GiB')")
    assert failed["error"] == "exit code 1: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB"
    killed = run("import os, signal; print('step 3'); os.kill(os.getpid(), signal.SIGKILL)")
    assert killed["error"] == "killed by SIGKILL: step 3"
    marker = tmp_path / "grandchild.pid"
    slow = run(f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; "
               f"time.sleep(60)']); open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)", timeout=3)
    assert slow["error"] == "timed out after 3 s" and slow["process_s"] < 30
    grandchild = int(marker.read_text())
    for _ in range(50):  # the whole group was killed: the grandchild too (reaped by init, or a zombie meanwhile)
        state = Path(f"/proc/{grandchild}/stat")
        if not state.exists() or state.read_text().split(")")[-1].split()[0] == "Z":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the configuration's own child outlived the timeout")


def test_configurations_past_the_budget_are_recorded_as_not_started(tmp_path):
    import argparse

    module = bench()
    size = module.Size("tiny", 4, 4, 0, 10, ("trl-defaults", "trl-liger", "rapref-defaults"))
    record, report = {"results": []}, {"device": "cpu", "sizes": []}
    args = argparse.Namespace(configs="", device="cpu")
    module.run_size(size, record, report, tmp_path, tmp_path, time.perf_counter() + 5.3, args, 97, 64,
                    tmp_path / "out.json")
    assert record["results"] == [
        {"config": "trl-defaults", "skipped": "not started: 5 s left of the benchmark's time budget"},
        {"config": "trl-liger", "skipped": "liger-kernel is not installed"},
        {"config": "rapref-defaults", "skipped": "not started: 5 s left of the benchmark's time budget"}]


def liger_row(config, checkpointing, matched, minus_ln2):
    return {"config": config, "lora": False, "use_liger_kernel": True, "gradient_checkpointing": checkpointing,
            "reference_kernels_matched": matched, "first_loss": math.log(2) + minus_ln2,
            "first_loss_minus_ln2": minus_ln2, "policy_vs_reference_max_token_diff": abs(minus_ln2) * 30}


def test_the_liger_question_is_answered_from_the_isolated_pair():
    answer = bench().liger_first_loss
    pair = [liger_row("trl-liger", True, False, 5.4e-4), liger_row("trl-liger+ref-kernels", True, True, 2e-8),
            liger_row("trl-liger-no-checkpointing", False, False, 3e-4), liger_row("rapref-defaults", False, True, 0)]
    got = answer(pair + [{"config": "trl-defaults", "use_liger_kernel": False, "first_loss": 0.7}])
    assert got["answer"].startswith("explained: every run whose reference kept transformers' kernels is off ln 2 "
                                    "(trl-liger, trl-liger-no-checkpointing)")
    assert [r["config"] for r in got["rows"]] == [r["config"] for r in pair]
    assert answer([pair[0], liger_row("trl-liger+ref-kernels", True, True, 5e-4)])["answer"].startswith(
        "not explained: with the reference on the policy's kernels the first loss is still off ln 2 "
        "(trl-liger+ref-kernels)")
    assert answer([liger_row("trl-liger", True, False, 1e-5)])["answer"].startswith("nothing to explain")
    assert answer([pair[0]])["answer"].startswith("undecided")
    assert answer([{**pair[0], "lora": True}]) is None  # LoRA has no separate reference model
