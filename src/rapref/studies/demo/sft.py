"""The demo's supervised stages, on TRL's SFTTrainer: the SFT start, and the goal-conditioned fine-tuning arm.

Both learn from pool completions. A fraction `goal_fraction` of the examples carries the judge's score of that
completion as a goal (written exactly as relabeled data writes it), the rest carry none: with 0 the start has never
seen a goal; with 0.5 it has learned to read goals, as the paper's instruct models read "Overall score: 10".
"""

from __future__ import annotations

import random

from rapref.goals import GoalSpec, goal_prompt
from rapref.models import load_model, load_tokenizer
from rapref.prompting import to_trl_example


def sft_examples(rows: list[dict], spec: GoalSpec, goal_fraction: float, seed: int) -> list[dict]:
    rng = random.Random(seed)
    examples = []
    for row in rows:
        for completion in row["completions"]:
            goal = completion["overall_score"] if rng.random() < goal_fraction else None
            examples.append({"prompt": goal_prompt(row["instruction"], spec if goal else None, goal),
                             "completion": completion["response"]})
    rng.shuffle(examples)
    return examples


def run_sft(model_dir: str, examples: list[dict], out: str, *, epochs: float, lr: float, batch_size: int,
            seed: int) -> dict:
    import datasets
    import torch
    from trl import SFTConfig, SFTTrainer

    on_gpu = torch.cuda.is_available()
    args = SFTConfig(output_dir=out, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch_size,
                     lr_scheduler_type="cosine", warmup_steps=0.05, seed=seed, bf16=False,
                     gradient_checkpointing=False, use_cpu=not on_gpu, report_to="none", save_strategy="no",
                     logging_steps=10, disable_tqdm=True, max_length=128)
    tokenizer = load_tokenizer(model_dir)
    examples = [to_trl_example(e, tokenizer) for e in examples]  # the prompt form training and generation share
    trainer = SFTTrainer(model=load_model(model_dir), args=args, train_dataset=datasets.Dataset.from_list(examples),
                         processing_class=tokenizer)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(out)
    trainer.processing_class.save_pretrained(out)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}
