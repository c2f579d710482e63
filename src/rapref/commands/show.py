"""`rapref show PATH`: a few rows of any rapref folder or file, as the model will see them.

    rapref show runs/data -n 2 --model runs/tiny     relabeled pairs: both copies of a pair, goal text and chat template
    rapref show runs/relabeled                         a trained policy: the exact inference prompt (goal = top score)
    rapref show runs/sweep.jsonl                       generations: the full prompt each answer was sampled from
    rapref show my_pairs.jsonl                         an input file: its rows and the layout rapref reads in it

Prompts go through `rapref.prompting` (the one home of "prompt -> what the model reads") and goals through
`rapref.goals.goal_prompt`, so what is printed is what training and generation use. Without a tokenizer (an augment
folder, no `--model`) the messages are printed by role.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rapref.commands.flags import add_flags, from_args
from rapref.data.schemas import detect_schema
from rapref.formats.dataset import is_augment_folder, read_split
from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec, check_goals, format_score, goal_prompt
from rapref.io import InputError, read_jsonl, read_jsonl_prefix, read_rows
from rapref.models import load_tokenizer
from rapref.prompting import prompt_text, response_text
from rapref.settings import at_least, check, setting

RULE = "-" * 100


@dataclass
class ShowConfig:
    """What `rapref show` prints (its flags are derived from these fields)."""

    path: str = setting(help="an augment folder, a trained policy folder, a generations or scores .jsonl, a judge "
                             "folder, or an input data file", positional=True)
    n: int = setting(3, "how many pairs (both copies of each) or rows", rule=at_least(1))
    split: str | None = setting(None, "augment folder: train, test or test_goal", shown="train")
    model: str | None = setting(None, "a model folder whose tokenizer renders the prompts through its chat template",
                                shown="the model a generations file names; none for an augment folder")
    goal: float | None = setting(None, "policy folder: the goal to show the prompt for", shown="the top score")
    prompt: str | None = setting(None, "policy folder: the instruction to show", shown="a placeholder")

    def __post_init__(self):
        check(self)


def show(cfg: ShowConfig | str, **settings) -> str:
    """The text `rapref show` prints for `cfg.path` (dispatched on what the path holds); `show(path, n=2, ...)`."""

    cfg = cfg if isinstance(cfg, ShowConfig) else ShowConfig(path=str(cfg), **settings)
    path, n, split, model, goal, prompt = cfg.path, cfg.n, cfg.split, cfg.model, cfg.goal, cfg.prompt
    target = Path(path)
    if not target.exists():
        raise InputError(f"{path}: no such file or folder")
    if target.is_dir() and is_augment_folder(target):
        return show_pairs(target, n, split or "train", model)
    if target.is_dir() and (target / "config.json").is_file():
        return show_policy(target, goal, prompt)
    if target.is_dir() and (target / "scores.jsonl").is_file():  # a judge folder
        return show_generations(target / "scores.jsonl", n, model)
    if target.is_file() and target.suffix == ".jsonl":
        first = read_jsonl_prefix(target)[:1]
        if first and {"prompt", "text", "model"} <= set(first[0]):
            return show_generations(target, n, model)
    if target.is_file() or target.is_dir():
        if model:
            raise InputError(f"{path}: an input data file is shown as its rows, with no prompt rendered; --model "
                             "applies to augment folders and generations files (augment it first)")
        return show_input(str(target), n)
    raise InputError(f"{path}: not a rapref folder or a data file")


# --- relabeled pairs --------------------------------------------------------------------------------------------------


def show_pairs(folder: Path, n: int, split: str, model: str | None) -> str:
    table = read_split(folder, split)
    summary = json.loads((folder / "summary.json").read_text())
    spec = GoalSpec.load(folder) if (folder / GOAL_SETTINGS_FILE).is_file() else None
    tokenizer = _tokenizer(model) if model else None
    rows = table.to_pylist()
    ids = list(dict.fromkeys(r["source_id"] for r in rows))[:n]  # the first n pairs, every copy of each
    lines = [f"{folder}: split {split!r}, {len(rows)} rows ({_copies(rows)}); schema {summary.get('schema')}, "
             f"goal placement {spec.placement if spec else 'none (plain pairs)'}",
             f"prompts {'through the chat template of ' + model if tokenizer else 'by role (pass --model MODEL to see the chat template applied)'}"]
    for source_id in ids:
        for row in (r for r in rows if r["source_id"] == source_id):
            goal = "no goal" if row["goal"] is None else f"goal {format_score(row['goal'])}"
            lines += [RULE, f"pair {source_id}, {row['copy']} copy, {goal}: chosen scored "
                            f"{format_score(row['score_chosen'])}, rejected {format_score(row['score_rejected'])}",
                      "PROMPT", _render(row["prompt"], tokenizer),
                      "CHOSEN", _text(row["chosen"]), "REJECTED", _text(row["rejected"])]
    return "\n".join(lines + [RULE])


def _copies(rows: list[dict]) -> str:
    from collections import Counter

    return ", ".join(f"{k} {v}" for k, v in Counter(r["copy"] for r in rows).items())


# --- a trained policy -------------------------------------------------------------------------------------------------


def show_policy(folder: Path, goal: float | None, prompt: str | None) -> str:
    spec = GoalSpec.load(folder) if (folder / GOAL_SETTINGS_FILE).is_file() else None
    tokenizer = _tokenizer(str(folder))
    if spec is not None:
        goal = check_goals([spec.top if goal is None else goal], spec)[0]
    instruction = prompt or "<your instruction>"
    lines = [f"{folder}: " + (f"goal-conditioned policy, scale {format_score(spec.scale[0])} to "
                              f"{format_score(spec.scale[1])}, placement {spec.placement}; the inference prompt "
                              f"for goal {format_score(goal)} (rapref generate asks for {format_score(spec.top)} "
                              "unless --goals says otherwise):" if spec else
                              "a policy without goals; its prompt:"),
             RULE, _render(goal_prompt(instruction, spec, goal), tokenizer), RULE]
    return "\n".join(lines)


# --- generations and judged scores ------------------------------------------------------------------------------------


def show_generations(path: Path, n: int, model: str | None) -> str:
    rows = read_jsonl(path)[:n]
    lines = [f"{path}: {len(read_jsonl(path))} rows; the first {len(rows)} with the full prompt each was sampled from"]
    cache: dict[str, tuple] = {}
    for row in rows:
        source = model or row.get("model")
        if source not in cache:
            cache[source] = _policy_view(source)
        tokenizer, spec = cache[source]
        goal = row.get("goal")
        full = goal_prompt(row["prompt"], spec, goal)
        unplaced = spec is None and goal is not None and row.get("goal_text") is not None
        head = f"prompt_id {row.get('prompt_id')!r}, goal {'none' if goal is None else format_score(goal)}, " \
               f"sample {row.get('sample', 0)}" + (f", score {row['score']:g}" if isinstance(row.get("score"),
                                                                                          (int, float)) else "")
        lines += [RULE, head]
        if row.get("goal_text") is not None:
            lines += ["GOAL TEXT (recorded)", row["goal_text"]]
        label = "PROMPT" + ("" if tokenizer else f" (by role: {source} is not a local model folder)")
        if unplaced:  # the file records the goal's text, not where it went: say so rather than show a bare prompt
            label += (f" WITHOUT its goal: {source} has no goal settings ({GOAL_SETTINGS_FILE}) saying where the "
                      "recorded goal text above went; pass --model with the policy folder that generated these")
        lines += [label, _render(full, tokenizer), "ANSWER", str(row.get("text"))]
    return "\n".join(lines + [RULE])


def _policy_view(source: str | None):
    """(tokenizer or None, goal settings or None) of the model a generations file names."""
    if not source or not Path(source).is_dir():
        return None, None
    folder = Path(source)
    spec = GoalSpec.load(folder) if (folder / GOAL_SETTINGS_FILE).is_file() else None
    return (_tokenizer(source) if (folder / "config.json").is_file() or _has_tokenizer(folder) else None), spec


# --- input files -------------------------------------------------------------------------------------------------------


def show_input(source: str, n: int) -> str:
    rows = read_rows(source)
    if not any(rows.values()):
        raise InputError(f"{source}: no rows")
    try:
        layout = f"layout: {detect_schema(rows, source)} (detected from the columns)"
    except InputError as err:
        layout = f"layout: not detected ({err})"
    first = [r for split_rows in rows.values() for r in split_rows][:n]
    return "\n".join([f"{source}: {sum(len(r) for r in rows.values())} rows; {layout}", RULE,
                      *(json.dumps(r, ensure_ascii=False, default=str) for r in first), RULE])


# --- rendering ---------------------------------------------------------------------------------------------------------


def _tokenizer(model: str):
    return load_tokenizer(model)


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def _render(prompt, tokenizer) -> str:
    """What the model reads: the chat template applied (with its generation prompt), or the messages by role."""
    if tokenizer is not None:
        return prompt_text(tokenizer, prompt)
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"[{m['role']}]\n{m['content']}" for m in prompt)


def _text(response) -> str:
    return response_text(response)


def add_arguments(p) -> None:
    add_flags(p, ShowConfig)


def run(args) -> str:
    text = show(from_args(ShowConfig, args).config)
    print(text)
    return text
