"""`rapref generate`: sample from a trained policy, conditioned on a goal score.

    rapref generate runs/train --prompts runs/data --split test --out runs/gen.jsonl            # goal = top score
    rapref generate runs/train --prompts prompts.jsonl --goals 1,2,3,4,5,6,7,8,9,10 --out sweep.jsonl
    rapref generate runs/dpo --prompts prompts.jsonl --no-goal --out dpo.jsonl                  # a plain policy

The goal wording and placement are read from the model folder (`rapref_goal.json`, written by `rapref train`), so
training and inference cannot silently disagree. Output: one JSONL row per (prompt, goal, sample).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec, apply_goal_to_messages
from rapref.io import InputError, read_rows, write_jsonl_atomic


@dataclass
class SamplingConfig:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    num_samples: int = 1
    seed: int = 0
    batch_size: int = 16


@dataclass
class GenerateConfig:
    model: str
    prompts: str  # JSONL/JSON/Parquet file with `prompt` (+ `prompt_id`), or a `rapref augment` folder
    out: str
    split: str = "test"  # for augment folders: the unconditioned held-out split
    goals: list[float] | None = None  # None: the top of the training data's scale
    no_goal: bool = False  # sample unconditioned (baselines trained without goals)
    sampling: SamplingConfig = None
    backend: str = "auto"  # auto (vLLM when installed and a GPU is present), transformers, vllm
    limit: int | None = None

    def __post_init__(self):
        self.sampling = self.sampling or SamplingConfig()


def load_prompts(source: str, split: str = "test", limit: int | None = None) -> list[dict]:
    """Prompt rows {prompt_id, prompt, ...}; prompts are strings or message lists without any goal."""
    path = Path(source)
    if path.is_dir() and (path / "summary.json").is_file():  # a `rapref augment` folder
        import pyarrow.parquet as pq

        if not (path / f"{split}.parquet").is_file():
            raise InputError(f"{source}: no split {split!r} in this augment folder")
        table = pq.read_table(path / f"{split}.parquet")
        rows = [{"prompt_id": r["source_id"], "prompt": r["prompt"], "chosen": r["chosen"],
                 "rejected": r["rejected"], "score_chosen": r["score_chosen"], "score_rejected": r["score_rejected"]}
                for r in table.to_pylist()]
    else:
        rows = [dict(r, prompt_id=str(r.get("prompt_id", i))) for i, r in
                enumerate(next(iter(read_rows(source).values())))]
    if not rows:
        raise InputError(f"{source}: no prompts")
    for i, row in enumerate(rows):
        prompt = row.get("prompt")
        if not prompt or (isinstance(prompt, str) and not prompt.strip()):
            raise InputError(f"{source}: row {i}, field 'prompt': empty or missing")
    return rows[:limit] if limit else rows


def conditioned_prompt(prompt, spec: GoalSpec | None, goal: float | None):
    """The prompt the policy sees: the goal written in the trained placement, as messages."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if spec is None or goal is None:
        return messages
    return apply_goal_to_messages(messages, spec.text(goal), spec.placement, spec.separator)


def instruction_text(prompt) -> str:
    """The instruction of a prompt: the string itself, or the last user turn of a message list."""
    if isinstance(prompt, str):
        return prompt
    return next(m["content"] for m in reversed(prompt) if m["role"] == "user")


def model_goal_spec(model_dir: str, no_goal: bool) -> GoalSpec | None:
    if no_goal:
        return None
    if not (Path(model_dir) / GOAL_SETTINGS_FILE).is_file():
        raise InputError(f"{model_dir}: no {GOAL_SETTINGS_FILE} (goal wording and placement); this model was not "
                         "trained by `rapref train` on relabeled data. Pass --no-goal to sample it unconditioned.")
    return GoalSpec.load(model_dir)


def main(cfg: GenerateConfig) -> list[dict]:
    spec = model_goal_spec(cfg.model, cfg.no_goal)
    prompts = load_prompts(cfg.prompts, cfg.split, cfg.limit)
    goals = [None] if spec is None else (cfg.goals or [spec.top])
    jobs = [(row, goal, k) for goal in goals for row in prompts for k in range(cfg.sampling.num_samples)]
    texts = generate_texts(cfg.model, [conditioned_prompt(r["prompt"], spec, g) for r, g, _ in jobs], cfg.sampling,
                           cfg.backend)
    settings = asdict(cfg.sampling)
    rows = [{"prompt_id": row["prompt_id"], "goal": goal, "sample": k, "prompt": row["prompt"], "text": text,
             "model": cfg.model, "sampling": settings,
             **{key: row[key] for key in ("constraints", "answer", "key") if key in row}}
            for (row, goal, k), text in zip(jobs, texts)]
    write_jsonl_atomic(cfg.out, rows)
    return rows


def generate_texts(model_dir: str, conversations: list[list[dict]], sampling: SamplingConfig,
                   backend: str = "auto") -> list[str]:
    if backend == "vllm" or (backend == "auto" and _vllm_usable()):
        return _generate_vllm(model_dir, conversations, sampling)
    return _generate_transformers(model_dir, conversations, sampling)


def _vllm_usable() -> bool:
    import importlib.util

    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def _generate_transformers(model_dir, conversations, sampling: SamplingConfig) -> list[str]:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(model_dir)
    except OSError as err:
        raise InputError(f"{model_dir}: cannot load the model ({str(err).splitlines()[0]})") from None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = []
    for start in tqdm(range(0, len(conversations), sampling.batch_size), desc="Generating", unit="batch"):
        batch = conversations[start:start + sampling.batch_size]
        rendered = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in batch]
        inputs = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        torch.manual_seed(sampling.seed + start)  # each batch's draws follow from the seed alone
        with torch.no_grad():
            output = model.generate(
                **inputs, max_new_tokens=sampling.max_new_tokens, do_sample=sampling.temperature > 0,
                temperature=sampling.temperature if sampling.temperature > 0 else None, top_p=sampling.top_p,
                pad_token_id=tokenizer.pad_token_id, use_cache=True)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]  # (B, T_new)
        texts += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return [t.strip() for t in texts]


def _generate_vllm(model_dir, conversations, sampling: SamplingConfig) -> list[str]:  # pragma: no cover - GPU only
    from vllm import LLM, SamplingParams

    llm = LLM(model=model_dir, seed=sampling.seed)
    params = SamplingParams(max_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                            top_p=sampling.top_p, seed=sampling.seed)
    outputs = llm.chat(conversations, params, use_tqdm=True)
    return [o.outputs[0].text.strip() for o in outputs]


def read_generations(path: str) -> list[dict]:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path}: no such generations file")
    rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
    if not rows:
        raise InputError(f"{path}: no generations")
    return rows
