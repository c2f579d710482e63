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

from rapref.formats.prompts import SOURCE_FIELDS, load_prompts
from rapref.goals import check_goals
from rapref.inference.sampler import SamplingConfig, batch_prompt_ids, check_context, generate_texts, whole_number
from rapref.inference.serving import Endpoint, NetworkConfig, record_requests
from rapref.io import InputError, read_jsonl_prefix, write_jsonl_atomic
from rapref.models import load_tokenizer, model_context, model_fingerprint, model_goal_spec
from rapref.progress import say
from rapref.prompting import goal_prompt
from rapref.runs.folder import RunFile
from rapref.settings import SettingError, check, comma_separated, nested, setting


def _braces(text: str) -> str:
    """Text put into a SettingError's template as it is (a path may hold braces)."""
    return str(text).replace("{", "{{").replace("}", "}}")


BACKENDS = ("auto", "transformers", "vllm")
CONCURRENCY = 8  # requests in flight through --endpoint, unless --concurrency says otherwise


def _limit(value) -> str | None:
    problem = whole_number(1)(value)
    return problem and problem.replace("at least 1", "at least 1 (leave it out for every prompt)")


@dataclass
class GenerateConfig:
    """What `rapref generate` does (its flags are derived from these fields, `rapref.settings`)."""

    model: str = setting(help="a folder written by `rapref train`, or its Hub id (its goal settings are reused)",
                         positional=True)
    prompts: str = setting(help="prompt file (JSONL with `prompt`), a `rapref augment` folder, or a benchmark's "
                                "question file (MT-Bench / Arena-Hard question.jsonl, AlpacaEval JSON)")
    out: str = setting(help="output JSONL")
    split: str = setting("test", "split of an augment folder", shown="test, unconditioned")
    goals: tuple[float, ...] | None = setting(None, "goal sweep, e.g. 1,2,3,4,5,6,7,8,9,10",
                                              parse=comma_separated(float), shown="the top score")
    no_goal: bool = setting(False, "sample without a goal (plain policies)")
    sampling: SamplingConfig = nested(SamplingConfig)
    limit: int | None = setting(None, "first N prompts only", rule=_limit, shown="every prompt")
    workers: int = setting(1, "transformers backend: sampling processes, one thread each (on a CPU two single-thread "
                              "workers beat one two-thread process); an interrupted run resumes from OUT.partial "
                              "either way", rule=whole_number(1))
    backend: str = setting("auto", "transformers' generate in this process; vLLM runs as a server in its own "
                                   "environment: use --endpoint (vllm here says how)", choices=BACKENDS)
    endpoint: str | None = setting(None, "sample through an OpenAI-compatible server on this model (vllm serve, "
                                         "SGLang, TGI, llama.cpp), e.g. http://127.0.0.1:8000/v1; prompts are sent as "
                                         "the token ids training saw", metavar="URL")
    served_model: str | None = setting(None, "--endpoint: the server's name for the model, where its model list does "
                                             "not show the folder", metavar="NAME",
                                       shown="the one whose model list names the folder")
    concurrency: int | None = setting(None, "--endpoint: requests in flight", rule=whole_number(1),
                                      shown=str(CONCURRENCY))
    network: NetworkConfig = nested(NetworkConfig, group="reaching the --endpoint server")
    overwrite: bool = setting(False, "replace an output file that rapref generate wrote")

    def __post_init__(self):
        if self.sampling is None:  # a caller's "the defaults"
            self.sampling = SamplingConfig()
        if self.network is None:
            self.network = NetworkConfig()
        check(self)
        if self.endpoint and self.backend != "auto":
            raise SettingError(f"{{}} and {{}} {self.backend}: the server samples; leave out {{}}",
                               "endpoint", "backend", "backend")
        if self.backend == "vllm":
            raise SettingError("{} vllm: rapref samples with vLLM through its server, in vLLM's own environment: "
                               "start `vllm serve MODEL` and pass --endpoint URL (or --serve in onpolicy / experiment)",
                               "backend")
        if self.endpoint and self.workers > 1:
            raise SettingError("{} is for sampling in this process's workers; through {} the server batches: use {}",
                               "workers", "endpoint", "concurrency")
        given = [n for n in ("served_model", "concurrency") if getattr(self, n) is not None] + \
            [f"network.{n}" for n in self.network.given()]
        if given and not self.endpoint:
            listed = ", ".join(["{}"] * (len(given) - 1)) + " and {}" if len(given) > 1 else "{}"
            raise SettingError(f"{listed} {'are' if len(given) > 1 else 'is'} for sampling through a server; give {{}} "
                               "URL", *given, "endpoint")
        if self.goals is not None:
            self._check_goals()
        if self.goals is not None and self.no_goal:
            raise SettingError("{} and {} contradict each other: a goal sweep needs a goal-conditioned policy, {} "
                               "samples a plain one", "goals", "no_goal", "no_goal")

    def _check_goals(self) -> None:
        """A sweep names each goal once (a goal given twice would be sampled, judged and counted twice), and every
        goal is a finite number (the scale check follows once the policy's scale is read)."""
        import math

        if not self.goals:
            raise SettingError("{} is empty; give goals like 1,5,10 (or leave it out for the top score)", "goals")
        bad = next((g for g in self.goals if not math.isfinite(float(g))), None)
        if bad is not None:
            raise SettingError(f"{{}}: {_braces(repr(bad))} is not a finite number", "goals")
        seen = set()
        for g in self.goals:
            if float(g) in seen:
                raise SettingError(f"{{}} names goal {float(g):g} twice; each goal of a sweep once", "goals")
            seen.add(float(g))

    @property
    def requests_in_flight(self) -> int:
        return CONCURRENCY if self.concurrency is None else self.concurrency


def main(cfg: GenerateConfig) -> list[dict]:
    with RunFile(cfg.out, "generate", overwrite=cfg.overwrite, inputs=(cfg.prompts, cfg.model)) as run:
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
        engine = Endpoint(cfg.endpoint, cfg.network)
        engine.check(cfg.model, cfg.served_model, load_tokenizer(cfg.model))
    first = [(row, goal) for goal in goals for row in prompts]  # checked before anything is written
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
                               concurrency=cfg.requests_in_flight,
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


