"""rapref's CUDA defaults (`rapref.train.cuda_defaults`), decided on a CPU with stand-ins for the device's memory and
the installed liger-kernel: what is chosen, why, what the recipe keeps, and each fallback's one-line reason."""

from types import SimpleNamespace as NS

import pytest

from rapref.train.config import TrainConfig
from rapref.train.cuda_defaults import GiB, choose, match_reference_kernels, peak_estimate

SMOLLM2_135M = NS(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, model_type="llama")
N_135M = 134_515_008


class FakeModel:
    def __init__(self, text=SMOLLM2_135M, n=N_135M):
        self.config = NS(get_text_config=lambda: text, model_type=text.model_type)
        self.n = n

    def parameters(self):
        return [NS(numel=lambda: self.n)]


def config(algorithm="dpo", lora=False, **training):
    cfg = TrainConfig()
    cfg.algorithm.name, cfg.lora.enabled = algorithm, lora
    cfg.training = {"per_device_train_batch_size": 32, "max_length": 1024, "max_steps": 20, **training}
    return cfg


def decide(cfg, memory_gib=140, installed=True, types=("llama",), model=None):
    return choose(cfg, model or FakeModel(), device_memory=int(memory_gib * GiB), liger_installed=installed,
                  liger_types=set(types))


def test_where_it_fits_checkpointing_goes_off_and_liger_on_with_reasons():
    chosen = decide(config())
    assert chosen.kwargs == {"gradient_checkpointing": False, "use_liger_kernel": True}
    record = chosen.record["gradient_checkpointing"]
    assert record["trl_default"] is True and record["reason"].startswith("fits: 51.9 GiB estimated")
    assert chosen.record["use_liger_kernel"]["trl_default"] is False
    assert chosen.notices[0].startswith("activation checkpointing off (51.9 GiB") and "Liger kernels on" in chosen.notices


def test_where_it_would_not_fit_checkpointing_stays_on_as_trl_has_it():
    chosen = decide(config(), memory_gib=40)
    assert "gradient_checkpointing" not in chosen.kwargs and "gradient_checkpointing" not in chosen.record
    assert any(n.startswith("activation checkpointing on, as TRL has it (would not fit") for n in chosen.notices)
    assert chosen.kwargs["use_liger_kernel"] is True  # same kernels on policy and reference: no ckpt restriction


@pytest.mark.parametrize("kwargs, reason", [
    (dict(installed=False), "liger-kernel is not installed (pip install 'rapref[gpu]')"),
    (dict(types=("qwen2",)), "Liger has no kernels for model type 'llama'"),
])
def test_liger_falls_back_with_a_recorded_reason(kwargs, reason):
    chosen = decide(config(), **kwargs)
    assert "use_liger_kernel" not in chosen.kwargs
    assert chosen.record["use_liger_kernel"] == {"value": False, "trl_default": False, "reason": reason}
    assert f"Liger kernels off ({reason})" in chosen.notices


def test_liger_only_for_dpo_and_not_with_packing():
    assert "not algorithm.name=simpo" in decide(config("simpo")).record["use_liger_kernel"]["reason"]
    assert "packing" in decide(config(packing=True)).record["use_liger_kernel"]["reason"]


def test_the_recipe_always_wins():
    chosen = decide(config(gradient_checkpointing=True, use_liger_kernel=False, precompute_ref_log_probs=False,
                           num_train_epochs=3.0, max_steps=-1))
    assert chosen.kwargs == {} and chosen.record == {}


def test_reference_log_probs_precomputed_for_several_epochs_only():
    several = decide(config(max_steps=-1, num_train_epochs=2.0))
    assert several.kwargs["precompute_ref_log_probs"] is True
    assert "2 epochs" in several.record["precompute_ref_log_probs"]["reason"]
    assert "precompute_ref_log_probs" not in decide(config(max_steps=-1, num_train_epochs=1.0)).kwargs
    assert "precompute_ref_log_probs" not in decide(config()).kwargs  # max_steps given: no epoch count to trust
    assert "precompute_ref_log_probs" not in decide(config(max_steps=-1, num_train_epochs=2.0,
                                                           sync_ref_model=True)).kwargs


def test_reference_log_probs_precomputed_when_a_resident_reference_would_not_fit():
    big = NS(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, model_type="llama")
    chosen = decide(config(per_device_train_batch_size=4), memory_gib=32, model=FakeModel(big, 1_711_376_384))
    assert chosen.kwargs["precompute_ref_log_probs"] is True
    assert "would not fit" in chosen.record["precompute_ref_log_probs"]["reason"]


def test_sharded_runs_keep_trls_checkpointing(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    chosen = decide(config())
    assert "gradient_checkpointing" not in chosen.kwargs
    assert any("FSDP" in n for n in chosen.notices)


def test_peak_estimate_orders_settings_and_matches_the_measured_peak():
    args = dict(n_params=N_135M, text_config=SMOLLM2_135M, pairs=32, max_length=1024)
    full = peak_estimate(**args, full=True, reference=True, checkpointing=False)
    assert peak_estimate(**args, full=True, reference=True, checkpointing=True) < full / 4
    assert peak_estimate(**args, full=False, reference=False, checkpointing=False) < full
    assert abs(full / GiB - 53.04) / 53.04 < 0.05  # docs/bench/gpu-dpo.json, TRL without checkpointing on an H200


def test_cuda_defaults_sit_below_the_recipe_in_trl_args(tmp_path):
    from rapref.train.run import trl_args

    cfg = config(gradient_checkpointing=False)
    cfg.output_dir = str(tmp_path)
    args = trl_args(cfg, on_gpu=False, chosen={"gradient_checkpointing": True, "precompute_ref_log_probs": True})
    assert args.gradient_checkpointing is False and args.precompute_ref_log_probs is True


def test_the_reference_gets_the_policys_liger_kernels():
    calls = []
    ref = object()
    trainer = NS(ref_model=ref, args=NS(use_liger_kernel=True, liger_kernel_config={"rope": True}),
                 accelerator=NS(unwrap_model=lambda m: m))
    assert match_reference_kernels(trainer, apply=lambda model, conf: calls.append((model, conf))) is True
    assert calls == [(ref, {"rope": True})]
    trainer.args.use_liger_kernel = False
    assert match_reference_kernels(trainer, apply=lambda *a: calls.append(a)) is False
    assert match_reference_kernels(NS(ref_model=None, args=NS(use_liger_kernel=True)), apply=None) is False
    assert len(calls) == 1
