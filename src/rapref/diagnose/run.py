"""`rapref diagnose`: what the paper claims, measured on your models.

    rapref diagnose unlearning --policy runs/relabeled --dpo runs/dpo --reference runs/sft --data runs/data --out D
    rapref diagnose accuracy --policy runs/relabeled --reference runs/sft --data runs/data --out D
    rapref diagnose controllability runs/judge/scores.jsonl --out D         (scores of a goal sweep)
    rapref diagnose implicit-relabel --policy runs/dpo --reference runs/sft --data pairs.jsonl --out relabeled.jsonl

Each writes `<name>.json`, `<name>.md` and, where there is a curve or bars, `<name>.png` into the output folder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


from rapref.formats.prompts import load_prompts
from rapref.formats.scores import check_score_row, read_scores, scores_path
from rapref.goals import GOAL_SETTINGS_FILE, format_score, scale_field
from rapref.inference.logprobs import (LogProbModel, implicit_relabel_rows, implicit_reward_accuracy,
        implicit_rewards, unlearning_probe)
from rapref.inference.sampler import finite_number, whole_number
from rapref.io import InputError, write_json_atomic, write_jsonl_atomic
from rapref.models import model_goal_spec
from rapref.reports import markdown_table, save_figure, write_text_atomic
from rapref.runs.folder import RunFile, RunFolder
from rapref.settings import SettingError, check, setting
from rapref.stats import Undefined, spearman, summary


def _braces(text: str) -> str:
    """Text put into a SettingError's template as it is (a path may hold braces)."""
    return str(text).replace("{", "{{").replace("}", "}}")


KINDS = ("unlearning", "accuracy", "controllability", "implicit-relabel")
# the settings each diagnosis reads (besides kind, out and overwrite); any other one given is refused, never ignored
READS = {"controllability": ("scores", "score_range"),
         "accuracy": ("policy", "reference", "data", "split", "beta", "limit"),
         "unlearning": ("policy", "reference", "dpo", "data", "split", "band", "limit"),
         "implicit-relabel": ("policy", "reference", "data", "split", "beta", "scale", "limit")}


def _limit(value) -> str | None:
    problem = whole_number(1)(value)
    return problem and problem.replace("at least 1", "at least 1 (leave it out for every pair)")


def _scale_text(scale) -> str:
    return f"{format_score(scale[0])}-{format_score(scale[1])}"


@dataclass
class DiagnoseConfig:
    """What `rapref diagnose KIND` measures (its flags are derived from these fields, `rapref.settings`); each kind
    reads the settings `READS` names."""

    kind: str = setting(help="what to measure", positional=True, choices=KINDS)
    out: str = setting(help="output folder (a JSONL file for implicit-relabel)")
    policy: str | None = setting(None, "goal-conditioned policy folder (implicit-relabel: the DPO policy)")
    reference: str | None = setting(None, "the start (SFT / reference) model folder")
    dpo: str | None = setting(None, "unlearning: a plain-DPO policy to compare")
    data: str | None = setting(None, "held-out pairs: a `rapref augment` folder or a pairs file")
    split: str = setting("test", "split of an augment folder")
    scores: str | None = setting(None, "controllability: a judged goal sweep (a `rapref judge` folder or its "
                                       "scores.jsonl)")
    beta: float = setting(0.1, "accuracy, implicit-relabel: implicit reward scale",
                          rule=finite_number(lambda b: b > 0, "be above 0"))
    band: float = setting(5.0, "unlearning: high-quality threshold (score >= band)", rule=finite_number())
    scale: tuple[float, float] = setting((1.0, 10.0), "implicit-relabel: goal scale LOW-HIGH", parse=scale_field,
                                         show=_scale_text)
    score_range: tuple[float, float] | None = setting(
        None, "controllability: the scorer's range LOW-HIGH, e.g. 0-1 (plot axis and interval clipping)",
        parse=scale_field, show=_scale_text, shown="unbounded")
    limit: int | None = setting(None, "first N pairs only", rule=_limit, shown="every pair")
    overwrite: bool = setting(False, "replace an output that rapref diagnose wrote")

    def __post_init__(self):
        for name in ("scale", "score_range"):  # a pair from Python, read as the command line reads it
            if getattr(self, name) is not None:
                setattr(self, name, scale_field(getattr(self, name)))
        check(self)
        for name in ("scores", "data", "policy", "reference", "dpo"):
            if getattr(self, name) and Path(getattr(self, name)).resolve() == Path(self.out).resolve():
                raise SettingError(f"{{}} {_braces(self.out)} is the {{}} input of this run; give the output a path "
                                   "of its own", "out", name)
        defaults = DiagnoseConfig.__dataclass_fields__
        for name in ("policy", "reference", "dpo", "data", "split", "scores", "beta", "band", "scale", "score_range",
                     "limit"):
            if name not in READS[self.kind] and getattr(self, name) != defaults[name].default:
                readers = [k for k, names in READS.items() if name in names]
                raise SettingError(f"{{}} is not read by diagnose {self.kind} (it is for {', '.join(readers)})",
                                   name)
        if self.kind == "controllability" and not self.scores:
            raise SettingError("diagnose controllability needs {} (a judged goal sweep: a `rapref judge` folder or its "
                               "scores.jsonl)", "scores")
        if self.kind != "controllability" and not (self.policy and self.reference and self.data):
            raise SettingError(f"diagnose {self.kind} needs {{}}, {{}} and {{}}", "policy", "reference", "data")


def controllability(rows: list[dict], source: str = "scores", score_range: tuple[float, float] | None = None) -> dict:
    """Mean achieved score per goal and Spearman's rank correlation between goal and score over all samples.

    Reads what `rapref judge` writes, unscored rows included: a row whose score is null (an LLM judge's reply
    without a grade) is counted in `unscored`, never averaged; rows without a goal (unconditioned samples) in
    `without_goal`. A row that is not a number (text, NaN, infinity, a score outside `score_range`), or that repeats
    another row's (prompt, goal, sample, turn) and would be counted twice, is refused with its row number. Scores
    that are all the same have no rank correlation: refused with that reason, never written as NaN.
    """
    import math

    kept, unscored, without_goal, seen = [], 0, 0, {}
    for i, r in enumerate(rows, start=1):
        check_score_row(r, i, source)
        if r.get("goal") is None:
            without_goal += 1
            continue
        goal = _number(r["goal"], source, i, "goal")
        if r["score"] is None:
            unscored += 1
            continue
        score = _number(r["score"], source, i, "score")
        if score_range and not score_range[0] <= score <= score_range[1]:
            raise InputError(f"{source}: row {i}, field 'score': {score:g} lies outside the score range "
                             f"{score_range[0]:g}-{score_range[1]:g}")
        identity = r.get("prompt_id", r.get("prompt"))  # rows without one (hand-made files) cannot be matched
        key = (str(identity), goal, _index(r, "sample", source, i), _index(r, "turn", source, i))
        if identity is not None and key in seen:
            raise InputError(f"{source}: row {i} repeats row {seen[key]} (prompt_id {key[0]!r}, goal {goal:g}, "
                             f"sample {key[2]}, turn {key[3]}); it would be counted twice (two files joined?)")
        seen[key] = i
        kept.append((goal, score))
    if not kept and unscored:
        raise InputError(f"{source}: no row has a score ({unscored} unscored: the judge gave no grade); nothing to "
                         "measure; see the judge's replies and rerun `rapref judge`")
    if len({g for g, _ in kept}) < 2:
        raise InputError(f"{source}: controllability needs scores of a goal sweep (at least two goals, found "
                         f"{len({g for g, _ in kept})} among the scored rows); run `rapref generate --goals 1,2,...` "
                         "then `rapref judge`")
    if len(kept) < 3:
        raise InputError(f"{source}: {len(kept)} scored samples; a rank correlation and its test need at least 3")
    if len({v for _, v in kept}) == 1:
        raise InputError(f"{source}: every scored sample has the score {kept[0][1]:g}; a rank correlation with a "
                         "constant is undefined (does the scorer tell these answers apart?)")
    by_goal = defaultdict(list)
    for goal, score in kept:
        by_goal[goal].append(score)
    try:
        test = spearman([g for g, _ in kept], [v for _, v in kept])
    except Undefined as err:
        raise InputError(f"{source}: {err}; controllability is undefined (does the judge score these answers?)") \
            from None
    if not math.isfinite(test["rho"]):
        raise InputError(f"{source}: the rank correlation is undefined for these scores")
    curve = []
    for goal, scores in sorted(by_goal.items()):
        try:
            curve.append({"goal": goal, **summary(scores)})
        except Undefined as err:
            raise InputError(f"{source}: field 'score' at goal {goal:g}: {err}; are these scores on the judge's "
                             "scale?") from None
    result = {"spearman_rho": test["rho"], "p_value": test["p_value"], "n": len(kept), "unscored": unscored,
              "without_goal": without_goal, "curve": curve}
    refuse_non_finite(result, source)
    return result


def refuse_non_finite(value, source: str, where: str = "result") -> None:
    """A result holds only finite numbers (JSON has no NaN or infinity: a reader would fail or read a string):
    refuse the first that is not, naming where it is."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{source}: the {where} is {value}, not a finite number; refused rather than written")
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_non_finite(item, source, f"{where}.{key}" if where != "result" else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            refuse_non_finite(item, source, f"{where}[{i}]")


def _index(row: dict, field: str, source: str, i: int) -> int:
    """A row's sample or turn: a whole number of 0 or more (0 when absent)."""
    value = row.get(field)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{source}: row {i}, field {field!r}: expected a whole number of 0 or more, got {value!r}")
    return value


def _number(value, source: str, row: int, field: str) -> float:
    """A finite number from a scores row, or one line naming the row and field."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{source}: row {row}, field {field!r}: expected a number, got {str(value)[:40]!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise InputError(f"{source}: row {row}, field {field!r}: a {len(str(value))}-digit integer is too large for "
                         "a number") from None
    if not math.isfinite(number):
        raise InputError(f"{source}: row {row}, field {field!r}: {value} is not a finite number")
    return number


def plot_curve(curve: list[dict], path: Path, title: str, ylabel: str = "achieved score",
               score_range: tuple[float, float] | None = None) -> None:
    """Mean achieved score per goal with 95% intervals; with a known score range the axis spans it and the
    intervals are clipped to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    goals = [c["goal"] for c in curve]
    means = [c["mean"] for c in curve]
    half = [_half_width(c["stderr"]) for c in curve]
    low, high = [m - h for m, h in zip(means, half)], [m + h for m, h in zip(means, half)]
    if score_range:
        low, high = [max(score_range[0], v) for v in low], [min(score_range[1], v) for v in high]
        ax.set_ylim(*score_range)
    ax.errorbar(goals, means, yerr=[[m - v for m, v in zip(means, low)], [v - m for m, v in zip(means, high)]],
                marker="o", capsize=3)
    ax.set_xlabel("goal given at inference")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.text(0.01, 0.01, "mean per goal; bars: 95% normal interval (1.96 standard errors over samples)"
             + (f", clipped to {score_range[0]:g}-{score_range[1]:g}" if score_range else ""), fontsize=7)
    save_figure(fig, path)


def plot_unlearning(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['policy']}, goal: {r['condition']}" for r in rows]
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.45 * len(rows)))
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r["mean_delta_logp"] for r in rows], xerr=[_half_width(r["stderr"]) for r in rows], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("change in log p vs the reference (nats)")
    ax.set_title(f"held-out high-quality rejected responses ({rows[0]['band']})", fontsize=10)
    fig.text(0.01, 0.01, "bars: mean over responses; whiskers: 95% normal interval (1.96 standard errors)",
             fontsize=7)
    save_figure(fig, path)


def _half_width(stderr) -> float:
    """95% normal half-width of an error bar; none (NaN, not drawn) where there is no standard error."""
    return float("nan") if stderr is None else 1.96 * stderr


def main(cfg: DiagnoseConfig) -> dict:
    inputs = (cfg.data, cfg.scores, cfg.policy, cfg.reference, cfg.dpo)
    if cfg.kind == "implicit-relabel":
        run = RunFile(cfg.out, "diagnose", overwrite=cfg.overwrite, inputs=inputs)
    else:
        run = RunFolder(cfg.out, "diagnose", overwrite=cfg.overwrite, inputs=inputs, continue_unfinished=True)
    with run:
        return _diagnose(cfg, run.path)


def _diagnose(cfg: DiagnoseConfig, out: Path) -> dict:
    if cfg.kind == "controllability":
        result = controllability(read_scores(cfg.scores), str(scores_path(cfg.scores)), cfg.score_range)
        plot_curve(result["curve"], out / "controllability.png",
                   f"controllability (Spearman rho {result['spearman_rho']:.2f})", score_range=cfg.score_range)
        dropped = "".join(f", {result[k]} {k.replace('_', ' ')}" for k in ("unscored", "without_goal") if result[k])
        _write(out, "controllability", result,
               f"Spearman rho = {result['spearman_rho']:.3f} (p = {result['p_value']:.2g}, n = {result['n']}{dropped})\n\n"
               + markdown_table(result["curve"], ["goal", "n", "mean", "stderr"]))
        return result
    pairs = load_prompts(cfg.data, cfg.split, cfg.limit)
    if "chosen" not in pairs[0]:
        raise InputError(f"{cfg.data}: diagnose {cfg.kind} needs pairs with chosen and rejected responses")
    policy, reference = LogProbModel(cfg.policy), LogProbModel(cfg.reference)
    policy.check_compatible(reference)
    if cfg.kind == "implicit-relabel":
        chosen, rejected = implicit_rewards(pairs, policy, reference, cfg.beta)
        rows, mapping = implicit_relabel_rows(pairs, chosen, rejected, cfg.scale)
        write_jsonl_atomic(out, rows)
        return {"rows": len(rows), "mapping": mapping, "out": str(out)}
    if Path(cfg.policy).is_dir() and not (Path(cfg.policy) / GOAL_SETTINGS_FILE).is_file():
        raise InputError(f"{cfg.policy}: no {GOAL_SETTINGS_FILE}; diagnose {cfg.kind} measures a goal-conditioned policy "
                         "(trained on relabeled data)" + ("; give a plain DPO policy as --dpo" if cfg.kind == "unlearning"
                                                          else ""))
    spec = model_goal_spec(cfg.policy, no_goal=False)
    if cfg.kind == "accuracy":
        result = {}
        for condition, goal in (("top", spec.top), ("none", None)):
            c, r = implicit_rewards(pairs, policy, reference, cfg.beta, spec if goal else None, goal)
            result[condition] = implicit_reward_accuracy(c, r)
        _write(out, "accuracy", result, markdown_table([{"condition": k, **v} for k, v in result.items()],
                                                       ["condition", "n", "accuracy", "stderr"]))
        return result
    if cfg.kind == "unlearning":
        rows = unlearning_probe(pairs, policy, reference, spec, ("own", "top", "none"), cfg.band, "relabeled")
        if cfg.dpo:
            dpo = LogProbModel(cfg.dpo)
            dpo.check_compatible(reference)
            rows += unlearning_probe(pairs, dpo, reference, None, ("none",), cfg.band, "dpo")
        high = [r for r in rows if r["response"] == "rejected" and r["band"].startswith(">=")]
        if high:
            plot_unlearning(high, out / "unlearning.png")
        _write(out, "unlearning", {"rows": rows, "band_threshold": cfg.band},
               markdown_table(rows, ["policy", "condition", "response", "band", "n", "mean_delta_logp", "stderr"]))
        return {"rows": rows}
    raise InputError(f"unknown diagnosis {cfg.kind!r}")


def _write(out: Path, name: str, result: dict, markdown: str) -> None:
    refuse_non_finite(result, f"diagnose {name}")
    write_json_atomic(out / f"{name}.json", result)
    write_text_atomic(out / f"{name}.md", f"# {name}\n\n{markdown}\n")
