"""`rapref generate`: sample from a trained policy, conditioned on a goal score.

    rapref generate runs/train --prompts runs/data --split test --out runs/gen.jsonl            # goal = top score
    rapref generate runs/train --prompts prompts.jsonl --goals 1,2,3,4,5,6,7,8,9,10 --out sweep.jsonl
    rapref generate runs/dpo --prompts prompts.jsonl --no-goal --out dpo.jsonl                  # a plain policy

The goal wording and placement are read from the model folder (`rapref_goal.json`, written by `rapref train`), so
training and inference cannot silently disagree. Output: one JSONL row per (prompt, goal, sample).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec, check_goals
from rapref.io import InputError, read_jsonl, read_jsonl_prefix, read_rows, write_jsonl_atomic
from rapref.outputs import RunFile
from rapref.prompting import goal_prompt
from rapref.settings import setting



# a sampling temperature other than 0 (greedy) lies in this range: logits / 1e-300 overflow float32 (a crash), and
# vLLM raises anything in (0, 0.01) to 0.01 for the same reason; at 100 every token is about equally likely
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 100.0


@dataclass
class SamplingConfig:
    max_new_tokens: int = setting(256, "longest answer, in tokens")
    temperature: float = setting(0.7, "sampling temperature; 0 decodes greedily")
    top_p: float = setting(1.0, "nucleus sampling threshold")
    num_samples: int = setting(1, "answers per prompt and goal")
    seed: int = setting(0, "sampling seed: the same seed gives every policy the same draws")
    batch_size: int = setting(16, "prompts per generation batch")

    def __post_init__(self):
        import math

        for flag, value in (("--max-new-tokens", self.max_new_tokens), ("--num-samples", self.num_samples),
                            ("--batch-size", self.batch_size), ("--seed", self.seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{flag} must be a whole number, got {value!r}")
        for flag, value in (("--temperature", self.temperature), ("--top-p", self.top_p)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{flag} must be a finite number, got {value!r}")
        for flag, value, ok, rule in (
                ("--max-new-tokens", self.max_new_tokens, self.max_new_tokens >= 1, "be at least 1"),
                ("--temperature", self.temperature, self.temperature == 0 or MIN_TEMPERATURE <= self.temperature
                 <= MAX_TEMPERATURE, f"be 0 (greedy) or from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g} (below, "
                 "logits divided by it overflow to inf/NaN; above, sampling is uniform noise)"),
                ("--top-p", self.top_p, 0 < self.top_p <= 1, "lie in (0, 1]"),
                ("--num-samples", self.num_samples, self.num_samples >= 1, "be at least 1"),
                ("--batch-size", self.batch_size, self.batch_size >= 1, "be at least 1")):
            if not ok:
                raise InputError(f"{flag} must {rule}, got {value:g}")


@dataclass
class GenerateConfig:
    model: str
    prompts: str  # JSONL/JSON/Parquet file with `prompt` (+ `prompt_id`), or a `rapref augment` folder
    out: str
    split: str = "test"  # for augment folders: the unconditioned held-out split
    goals: list[float] | None = None  # None: the top of the training data's scale
    no_goal: bool = False  # sample unconditioned (baselines trained without goals)
    sampling: SamplingConfig = None
    backend: str = "auto"  # auto and transformers: transformers' generate here; endpoint: a server (`endpoint`)
    limit: int | None = None
    overwrite: bool = False
    workers: int = 1  # transformers backend: sampling processes, one thread each when more than one
    endpoint: str | None = None  # an OpenAI-compatible server on this model (`rapref.evaluate.serving`)
    served_model: str | None = None  # the server's name for the model, where it does not report the folder
    concurrency: int = 8  # endpoint: requests in flight
    network: object = None  # endpoint: timeouts and retry time (`rapref.evaluate.serving.NetworkConfig`)

    def __post_init__(self):
        self.sampling = self.sampling or SamplingConfig()
        if self.workers < 1:
            raise InputError(f"--workers must be at least 1, got {self.workers}")
        if self.concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.endpoint and self.backend not in ("auto", "endpoint"):
            raise InputError(f"--endpoint and --backend {self.backend}: the server samples; leave out --backend")
        if self.backend == "vllm":
            raise InputError("--backend vllm: rapref samples with vLLM through its server, in vLLM's own environment: "
                             "start `vllm serve MODEL` and pass --endpoint URL (or --serve in onpolicy / experiment)")
        if self.endpoint and self.workers > 1:
            raise InputError("--workers is for sampling in this process's workers; through --endpoint the server "
                             "batches: use --concurrency")
        if self.served_model and not self.endpoint:
            raise InputError("--served-model names the model of an --endpoint server; give --endpoint URL")
        if self.endpoint:
            self.backend = "endpoint"
        elif self.backend == "endpoint":
            raise InputError("--backend endpoint needs --endpoint URL")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1 (leave it out for every prompt), got {self.limit}")
        if self.goals is not None:
            self._check_goals()
        if self.goals is not None and self.no_goal:
            raise InputError("--goals and --no-goal contradict each other: a goal sweep needs a goal-conditioned "
                             "policy, --no-goal samples a plain one")

    def _check_goals(self) -> None:
        """A sweep names each goal once (a goal given twice would be sampled, judged and counted twice), and every
        goal is a finite number (the scale check follows once the policy's scale is read)."""
        import math

        if not self.goals:
            raise InputError("--goals is empty; give goals like 1,5,10 (or leave it out for the top score)")
        bad = next((g for g in self.goals if not math.isfinite(float(g))), None)
        if bad is not None:
            raise InputError(f"--goals: {bad!r} is not a finite number")
        seen = set()
        for g in self.goals:
            if float(g) in seen:
                raise InputError(f"--goals names goal {float(g):g} twice; each goal of a sweep once")
            seen.add(float(g))


# Fields of benchmark question files carried into the generations, so `rapref export` can write them back.
SOURCE_FIELDS = ("question_id", "category", "cluster", "dataset", "instruction", "constraints", "answer", "key",
                 "instruction_id_list", "kwargs")  # the last two: IFEval / IFBench checkers


def load_prompts(source: str, split: str = "test", limit: int | None = None) -> list[dict]:
    """Prompt rows {prompt_id, prompt, turns, ...}; prompts are strings or message lists without any goal.

    Besides rapref's own files (`prompt`, optional `prompt_id`) and `rapref augment` folders, the benchmarks' own
    question files are read as they are: MT-Bench `question.jsonl` (`question_id`, `turns`: strings),
    Arena-Hard (`question_id`, `turns`: {content}) and AlpacaEval (`instruction`, `dataset`).
    """
    from rapref.augment import is_augment_folder, read_split

    if is_augment_folder(source):
        table = read_split(source, split)
        rows = [{"prompt_id": split_id(r["source_id"], split), "prompt": r["prompt"], "chosen": r["chosen"],
                 "rejected": r["rejected"], "score_chosen": r["score_chosen"], "score_rejected": r["score_rejected"]}
                for r in table.to_pylist()]
    else:
        rows = [_prompt_row(source, i, r) for i, r in enumerate(next(iter(read_rows(source).values())))]
    if not rows:
        raise InputError(f"{source}: no prompts")
    for i, row in enumerate(rows):
        prompt = row.get("prompt")
        if not prompt or (isinstance(prompt, str) and not prompt.strip()):
            raise InputError(f"{source}: row {i}, field 'prompt': empty or missing (a prompt file needs `prompt`; "
                             "benchmark files need `turns` (MT-Bench, Arena-Hard) or `instruction` (AlpacaEval))")
    return rows[:limit] if limit else rows


def split_id(source_id: str, split: str) -> str:
    """A held-out row's id named by the split it is read from: `test:4` for the input's row `train:4` held out for
    test (the number still points at the input row).

    >>> split_id("train:4", "test"), split_id("test:7", "test"), split_id("q12", "test")
    ('test:4', 'test:7', 'test:q12')
    """
    source_id = str(source_id)
    _, sep, rest = source_id.partition(":")
    return f"{split}:{rest if sep and '|' not in source_id else source_id}"


def _prompt_row(source: str, i: int, row: dict) -> dict:
    if "prompt" not in row and isinstance(row.get("turns"), list):  # MT-Bench / Arena-Hard questions
        turns = [t.get("content") if isinstance(t, dict) else t for t in row["turns"]]
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise InputError(f"{source}: row {i}, field 'turns': every turn must be non-empty text")
        qid = row.get("question_id", i)
        return {**row, "prompt_id": str(qid), "question_id": qid, "prompt": turns[0], "turns": turns}
    if "prompt" not in row and "instruction" in row:  # AlpacaEval
        return {**row, "prompt_id": str(row.get("prompt_id", i)), "prompt": row["instruction"]}
    return dict(row, prompt_id=str(row.get("prompt_id", i)))


def model_goal_spec(model: str, no_goal: bool) -> GoalSpec | None:
    """The goal settings saved with the model: a local folder or a Hub id (`rapref_goal.json` in the repo)."""
    if no_goal:
        return None
    folder = Path(model)
    if not folder.exists():
        from rapref.io import hub_offline, looks_like_hub_id

        if not looks_like_hub_id(model):
            raise InputError(f"{model}: no such model folder")
        if hub_offline():
            raise InputError(f"{model}: no such local folder, and the Hugging Face hub cannot be reached (offline)")
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            folder = Path(hf_hub_download(model, GOAL_SETTINGS_FILE)).parent
        except EntryNotFoundError:
            folder = Path("/nonexistent")
        except Exception as err:  # noqa: BLE001 - network, auth, missing repo: one line
            raise InputError(f"{model}: cannot read {GOAL_SETTINGS_FILE} from the Hub "
                             f"({str(err).splitlines()[0]})") from None
    if not (folder / GOAL_SETTINGS_FILE).is_file():
        raise InputError(f"{model}: no {GOAL_SETTINGS_FILE} (goal wording and placement); this model was not "
                         "trained by `rapref train` on relabeled data. Pass --no-goal to sample it unconditioned.")
    return GoalSpec.load(folder)


def main(cfg: GenerateConfig) -> list[dict]:
    with RunFile(cfg.out, "generate", overwrite=cfg.overwrite, inputs=(cfg.prompts,)) as run:
        rows, resume = _generate(cfg, run.path)
    resume.remove()  # after the file and its ownership record: a kill before leaves a resumable run, never a lost one
    return rows


def _generate(cfg: GenerateConfig, out: Path) -> tuple[list[dict], ResumeFile]:
    spec = model_goal_spec(cfg.model, cfg.no_goal)
    goals = [None] if spec is None else check_goals(cfg.goals or [spec.top], spec)
    prompts = load_prompts(cfg.prompts, cfg.split, cfg.limit)
    jobs = [(row, goal, k) for goal in goals for row in prompts for k in range(cfg.sampling.num_samples)]
    settings = asdict(cfg.sampling)
    engine = None
    if cfg.endpoint:
        from rapref.evaluate.serving import Endpoint
        from rapref.models import load_tokenizer

        engine = Endpoint(cfg.endpoint, cfg.network)
        engine.check(cfg.model, cfg.served_model, load_tokenizer(cfg.model))
    elif cfg.network is not None:
        raise InputError("the timeouts and retry time are for sampling through a server; give --endpoint URL")
    first = [(row, goal) for goal in goals for row in prompts]  # checked before anything is written
    from rapref.models import load_tokenizer, model_context

    if model_context(cfg.model) is not None:  # a context to check against (a hub id offline has no config here)
        check_context(cfg.model, batch_prompt_ids(load_tokenizer(cfg.model), [goal_prompt(r["prompt"], spec, g)
                                                                                for r, g in first]),
                      cfg.sampling.max_new_tokens, [f"prompt_id {r['prompt_id']!r}" for r, _ in first])
    resume = ResumeFile(out, resume_settings(cfg, goals, prompts))
    outcome = "interrupted"
    try:
        rows = _sample_turns(cfg, jobs, spec, settings, resume, engine)
        outcome = "finished"
    except InputError as err:
        outcome = "refused"
        if engine is None:
            raise
        raise InputError(f"{err}; the answers so far are kept in {resume.path} (a rerun resumes from them)") from None
    finally:
        if engine is not None:  # however the run ends, a refusal or Ctrl-C included
            from rapref.evaluate.serving import record_requests

            record_requests(engine, Path(f"{out}.requests.json"), "rapref generate", resumed=bool(resume.done),
                            outcome=outcome)
    write_jsonl_atomic(out, rows)
    return rows, resume


def _sample_turns(cfg: GenerateConfig, jobs: list, spec, settings: dict, resume, engine) -> list[dict]:
    conversations = [row["prompt"] for row, _, _ in jobs]
    rows, turn = [], 0
    active = list(range(len(jobs)))
    while active:  # turn by turn: a later turn (MT-Bench) is asked with the earlier answers in context
        sampling = replace(cfg.sampling, seed=cfg.sampling.seed + turn)
        done = {pos: resume.done[(turn, i)] for pos, i in enumerate(active) if (turn, i) in resume.done}
        texts = generate_texts(cfg.model, [goal_prompt(conversations[i], spec, jobs[i][1]) for i in active],
                               sampling, cfg.backend, description=f"Generating turn {turn + 1}" if turn else
                               "Generating", done=done, workers=cfg.workers, endpoint=engine,
                               concurrency=cfg.concurrency,
                               names=[f"prompt_id {jobs[i][0]['prompt_id']!r}" + (f", turn {turn + 1}" if turn else "")
                                      for i in active],
                               on_batch=lambda idx, texts, t=turn, a=active: resume.add(t, [a[j] for j in idx], texts))
        answers = dict(zip(active, texts))
        for i, text in answers.items():
            row, goal, k = jobs[i]
            rows.append({"prompt_id": row["prompt_id"], "goal": goal, "sample": k, "turn": turn,
                         "goal_text": None if spec is None or goal is None else spec.text(goal),  # what it read
                         "prompt": conversations[i], "text": text, "model": cfg.model, "sampling": settings,
                         **{key: row[key] for key in SOURCE_FIELDS if key in row}})
        turn += 1
        active = [i for i in active if len(jobs[i][0].get("turns", ())) > turn]
        for i in active:
            history = conversations[i] if isinstance(conversations[i], list) else \
                [{"role": "user", "content": conversations[i]}]
            conversations[i] = history + [{"role": "assistant", "content": answers[i]},
                                          {"role": "user", "content": jobs[i][0]["turns"][turn]}]
    return rows


def resume_settings(cfg: GenerateConfig, goals: list, prompts: list[dict]) -> dict:
    """What a resume file must match: the model, the prompts (their content too), the goals and the sampling."""
    from rapref.models import model_fingerprint

    return {"model": str(cfg.model), "model_fingerprint": model_fingerprint(cfg.model), "prompts": str(cfg.prompts),
            "split": cfg.split, "goals": goals,
            "limit": cfg.limit, "sampling": asdict(cfg.sampling), "samples": cfg.sampling.num_samples,
            "backend": "endpoint" if cfg.endpoint else "local",  # engines draw differently: never mixed
            "prompt_digest": _digest([(r["prompt_id"], r["prompt"]) for r in prompts])}


class ResumeFile:
    """`OUT.partial`: finished batches, appended as they come, so an interrupted `rapref generate` resumes where it
    stopped. Its first line holds the run's settings; a file from other settings is started afresh. It is removed
    once OUT is written (atomically, as always)."""

    def __init__(self, out: Path, settings: dict):
        self.path = Path(f"{out}.partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.header = {"rapref_generate_partial": json.loads(json.dumps(settings, default=str))}
        self.done: dict[tuple[int, int], str] = {}
        if self.path.is_file():
            rows = read_jsonl_prefix(self.path)
            if rows and rows[0] == self.header:
                self.done = {(r["turn"], r["job"]): r["text"] for r in rows[1:]}
                if self.done:
                    from rapref.progress import say

                    say(f"rapref generate: resuming, {len(self.done)} answers already in {self.path}")
                return
        self.path.write_text(json.dumps(self.header) + "\n", encoding="utf-8")

    def add(self, turn: int, jobs: list[int], texts: list[str]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps({"turn": turn, "job": j, "text": t}, ensure_ascii=False) + "\n"
                                 for j, t in zip(jobs, texts)))
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _digest(value) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def generate_texts(model_dir: str, prompts: list, sampling: SamplingConfig, backend: str = "auto",
                   description: str = "Generating", done: dict[int, str] | None = None, on_batch=None,
                   workers: int = 1, endpoint=None, concurrency: int = 8, names: list[str] | None = None) -> list[str]:
    """One sampled response per goal-conditioned prompt (string or messages), in the trained prompt form.

    Transformers backend and endpoint: `done` (prompt position -> text) skips finished work, `on_batch(positions,
    texts)` sees each batch (request) as it finishes. Transformers: `workers` > 1 samples in that many single-thread
    processes (`rapref.evaluate.sampler`). Endpoint (`rapref.evaluate.serving.Endpoint`, checked to serve this model):
    the same token ids, `concurrency` requests in flight. Prompt and answer must fit the model's context
    (`check_context`; `names` label the prompts in its refusal).
    """
    if endpoint is not None:
        from rapref.evaluate.serving import generate_endpoint
        from rapref.models import load_tokenizer

        ids = batch_prompt_ids(load_tokenizer(model_dir), prompts)
        check_context(model_dir, ids, sampling.max_new_tokens, names)
        return generate_endpoint(endpoint, model_dir, ids, sampling, concurrency=concurrency,
                                 description=description, done=done, on_batch=on_batch)
    from rapref.evaluate.sampler import sample_batches
    from rapref.models import load_tokenizer

    ids = batch_prompt_ids(load_tokenizer(model_dir), prompts)
    check_context(model_dir, ids, sampling.max_new_tokens, names)
    return sample_batches(model_dir, ids, sampling, description=description, done=done, on_batch=on_batch,
                          workers=workers, threads=1 if workers > 1 else None)


def check_context(model_dir: str, ids: list[list[int]], max_new_tokens: int, names: list[str] | None = None) -> None:
    """Refuse, before any sampling, a prompt that cannot be answered within the model's context: a prompt at or past
    it would be read at positions the model never learned (transformers only warns), and --max-new-tokens past it
    can never be honoured (a huge value would only reserve memory).

    >>> check_context("/no/such/model", [[1, 2]], 10**12)  # no config: nothing known to check against
    """
    from rapref.models import model_context

    context = model_context(model_dir)
    if context is None or not ids:
        return
    if max_new_tokens >= context:
        raise InputError(f"--max-new-tokens {max_new_tokens} is not below the model's context of {context} tokens "
                         f"({model_dir}); answers can be at most {context - 1} tokens, fewer the longer the prompt")
    longest = max(range(len(ids)), key=lambda i: len(ids[i]))
    if len(ids[longest]) + max_new_tokens > context:
        name = names[longest] if names else f"prompt {longest + 1}"
        room = context - len(ids[longest])
        raise InputError(f"{name}: {len(ids[longest])} prompt tokens + --max-new-tokens {max_new_tokens} exceed the "
                         f"model's context of {context} tokens ({model_dir}); "
                         + (f"lower --max-new-tokens to {room} or shorten the prompt" if room > 0 else
                            "the prompt alone fills it: shorten or leave out this prompt"))


def batch_prompt_ids(tokenizer, prompts: list) -> list[list[int]]:
    """The prompt token ids the model is fed: exactly those training conditioned on (`rapref.prompting`)."""
    from rapref.prompting import prompt_ids

    return [prompt_ids(tokenizer, p) for p in prompts]


def read_generations(path: str) -> list[dict]:
    rows = read_jsonl(path)
    if not rows:
        raise InputError(f"{path}: no generations")
    missing = [k for k in ("prompt_id", "text") if k not in rows[0]]
    if missing:
        raise InputError(f"{path}:1: not a generations file (no {', '.join(map(repr, missing))}); "
                         "write one with `rapref generate`")
    for i, row in enumerate(rows, start=1):
        for key in ("prompt_id", "prompt", "text"):
            if row.get(key) is None:
                raise InputError(f"{path}: row {i}, field {key!r}: missing (every generation needs prompt_id, "
                                 "prompt and text)")
        if not isinstance(row["text"], str):
            raise InputError(f"{path}: row {i}, field 'text': expected text, got {type(row['text']).__name__}")
        prompt = row["prompt"]
        if not (isinstance(prompt, str) or isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt)):
            raise InputError(f"{path}: row {i}, field 'prompt': expected text or a list of messages")
    return rows
