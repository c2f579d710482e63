"""Goal text: how a goal score is written into a prompt.

The authors' wording (arXiv 2410.08067), with the scale taken from the data:

>>> spec = GoalSpec(scale=(1, 10))
>>> print(spec.text(8.0))
You are an assistant that generates responses for the instruction while implicitly achieving the following target scores (on a scale of 1-10, where 1 is lowest and 10 is highest):
Overall score: 8.
>>> format_score(7.5), format_score(8.0), format_score(3)
('7.5', '8', '3')

Placement (`system`, `user`, `user-suffix`) says where that text goes. This module is the one home of that layout:
`write_goal` writes goals into whole Arrow columns (relabeling), `goal_prompt` into one prompt (training, generation,
diagnosis, the demo) by calling `write_goal` on a one-row column, and `split_goal` reads the layout back (goal-safe
trimming of long prompts).

>>> goal_prompt("Sort: c a b", GoalSpec(placement="user", header="Goal:", line="{score}"), 9)
'Goal:\\n9\\n\\nSort: c a b'
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rapref.io import InputError, write_json_atomic
from rapref.settings import setting

PLACEMENTS = ("system", "user", "user-suffix")
STYLES = ("digits", "thermometer", "opaque")  # how a score looks to the model: see `render_score`

DEFAULT_HEADER = (
    "You are an assistant that generates responses for the instruction while implicitly achieving the following "
    "target scores (on a scale of {lo}-{hi}, where {lo} is lowest and {hi} is highest):"
)
DEFAULT_LINE = "{name} score: {score}."
GOAL_SETTINGS_FILE = "rapref_goal.json"


def format_score(score: float) -> str:
    """A whole number prints without ".0" (8.0 -> "8"); any other value with at most 10 significant digits, so float
    noise from arithmetic never reaches the goal text (0.1 + 0.2 -> "0.3", 7.5 -> "7.5").

    >>> format_score(0.1 + 0.2), format_score(2 / 3)
    ('0.3', '0.6666666667')
    """
    value = float(f"{float(score):.10g}")
    return str(int(value)) if value.is_integer() else repr(value)


def _template_problem(template, fields: tuple[str, ...], required: str | None = None) -> str | None:
    """What is wrong with a goal text template, found by filling it in as `GoalSpec` does (with text: the score is
    formatted by then), or None.

    >>> _template_problem("{name}: {score:.1f}", ("name", "score"), "score")[:74]
    "cannot be filled in (Unknown format code 'f' for object of type 'str'); it"
    """
    if not isinstance(template, str):
        return f"must be text, got {template!r}"
    try:
        named = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        template.format(**{f: "8" for f in fields})
    except KeyError as err:
        problem = f"unknown field {{{err.args[0]}}}"
    except (IndexError, ValueError, AttributeError) as err:
        problem = str(err) or type(err).__name__
    else:
        if required and required not in named:
            return f"must contain '{{{required}}}', got {template!r}"
        return None
    names = ", ".join("{" + f + "}" for f in fields)
    return (f"cannot be filled in ({problem}); it may use {names} (filled in as text) and {{{{ }}}} "
            f"for a brace, got {template!r}")


@dataclass(frozen=True)
class GoalSpec:
    """Everything needed to turn a goal score into text and put it in a prompt.

    Saved next to every relabeled dataset and trained model (`rapref_goal.json`) so that training, generation and
    evaluation use the same wording and placement.
    """

    scale: tuple[float, float] = (1, 10)
    placement: str = setting("system", "where the goal goes: the system message (Qwen2, Llama-3.1), or the first "
                                       "user turn before (user; Gemma-2, Mistral) or after (user-suffix) the "
                                       "instruction", choices=PLACEMENTS, group="goal")
    header: str = setting(DEFAULT_HEADER, "goal text header; {lo} and {hi} are the scale ('': none, the score "
                                          "lines alone)", flag="goal-header", group="goal", empty=True,
                          rule=lambda v: _template_problem(v, ("lo", "hi")))
    line: str = setting(DEFAULT_LINE, "one line per goal score; {name} and {score}", flag="goal-line", group="goal",
                        rule=lambda v: _template_problem(v, ("name", "score"), required="score"))
    attributes: tuple[str, ...] = ("Overall",)
    separator: str = "\n\n"  # between goal and instruction in `user` / `user-suffix` placement
    style: str = setting("digits", "how a score looks: digits (8), thermometer (#######...), opaque (<g8>)",
                         choices=STYLES, flag="goal-style", group="goal")

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise InputError(f"goal placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        lo, hi = self.scale
        if not float(lo) < float(hi):
            raise InputError(f"goal scale must be (low, high) with low < high, got {self.scale!r}")
        object.__setattr__(self, "scale", (float(lo), float(hi)))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if self.style not in STYLES:
            raise InputError(f"goal style must be one of {', '.join(STYLES)}, got {self.style!r}")
        for name, fields, required in (("header", ("lo", "hi"), None), ("line", ("name", "score"), "score")):
            problem = _template_problem(getattr(self, name), fields, required)
            if problem:
                raise InputError(f"goal {name} template {problem}")

    @property
    def top(self) -> float:
        return self.scale[1]

    def header_text(self) -> str:
        """The header with the scale written in: "1-10"; a scale with a negative end reads "-3 to 5" where the
        header writes "{lo}-{hi}" ("-3-5" would read as a subtraction).

        >>> GoalSpec(scale=(-3, 5), header="scale {lo}-{hi}, {lo} lowest").header_text()
        'scale -3 to 5, -3 lowest'
        """
        lo, hi = (format_score(s) for s in self.scale)
        header = self.header
        if min(self.scale) < 0:
            header = header.replace("{lo}-{hi}", "{lo} to {hi}")
        return header.format(lo=lo, hi=hi)

    def text(self, score: float | dict[str, float]) -> str:
        """The goal text for one score, or for several named attribute scores (multi-attribute goals)."""
        head = [self.header_text()] if self.header else []  # '': the score lines alone
        if isinstance(score, dict):
            lines = [self.line.format(name=name, score=self.render_score(score[name])) for name in self.attributes]
        else:
            lines = [self.line.format(name=self.attributes[0], score=self.render_score(score))]
        return "\n".join([*head, *lines])

    def render_score(self, score: float) -> str:
        """digits: "8"; thermometer: one '#' per point above the bottom of the scale, '.' for the rest, so order is
        visible in the marks; opaque: a tag like "<g8>" whose order a model cannot see from its form.

        >>> spec = GoalSpec(scale=(1, 5), style="thermometer")
        >>> spec.render_score(3), GoalSpec(style="opaque").render_score(7.5)
        ('##..', '<g7.5>')
        """
        if self.style == "thermometer":
            lo, hi = self.scale
            marks = int(round(float(score) - lo))
            return "#" * marks + "." * int(round(hi - lo - marks))
        if self.style == "opaque":
            return f"<g{format_score(score)}>"
        return format_score(score)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> GoalSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown goal settings: {sorted(unknown)}")
        data = dict(data)
        if "scale" in data:
            data["scale"] = tuple(data["scale"])
        if "attributes" in data:
            data["attributes"] = tuple(data["attributes"])
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        return write_json_atomic(Path(folder) / GOAL_SETTINGS_FILE, self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> GoalSpec:
        path = Path(folder) / GOAL_SETTINGS_FILE
        if not path.is_file():
            raise InputError(
                f"{path}: no goal settings here; this folder was not written by `rapref augment` or `rapref train`"
            )
        return cls.from_json(json.loads(path.read_text()))


def write_goal(prompts, texts, placement: str, separator: str = "\n\n") -> pa.Array:
    """Write each row's goal text into its prompt: THE goal layout of rapref, used by relabeling (whole columns) and,
    through `goal_prompt`, by training, generation, diagnosis and the demo (one row).

    `system`: the goal becomes the system message (in front of an existing one, separated by `separator`).
    `user` / `user-suffix`: the goal is written before / after the first user turn's text (or the string prompt).
    """
    prompts = _one_chunk(prompts)
    texts = _one_chunk(texts)
    if pa.types.is_string(prompts.type) or pa.types.is_large_string(prompts.type):
        if placement == "user":
            return pc.binary_join_element_wise(texts, prompts, separator)
        if placement == "user-suffix":
            return pc.binary_join_element_wise(prompts, texts, separator)
        raise InputError("system placement needs conversational prompts; rapref converts string prompts first")
    if not pa.types.is_list(prompts.type) and not pa.types.is_large_list(prompts.type):
        raise TypeError(f"prompt column must be strings or message lists, got {prompts.type}")
    if placement == "system":
        return _with_system_goal(prompts, texts, separator)
    return _with_user_goal(prompts, texts, placement, separator)


def _one_chunk(array):
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _offsets(lists: pa.Array) -> np.ndarray:
    lengths = pc.list_value_length(lists).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _replace_content(messages: pa.StructArray, content: pa.Array) -> pa.StructArray:
    names = [messages.type.field(i).name for i in range(messages.type.num_fields)]
    fields = [content if name == "content" else messages.field(name) for name in names]
    return pa.StructArray.from_arrays(fields, names=names)


def _with_user_goal(prompts: pa.Array, texts: pa.Array, placement: str, separator: str) -> pa.Array:
    messages = prompts.flatten()  # (M,) structs
    parents = pc.list_parent_indices(prompts)  # (M,) row of each message
    is_user = pc.equal(messages.field("role"), "user").to_numpy(zero_copy_only=False)
    parents_np = parents.to_numpy()
    user_rows, first = np.unique(parents_np[is_user], return_index=True)
    if len(user_rows) != len(prompts):
        raise InputError("every conversational prompt needs a user turn to carry the goal")
    target = np.zeros(len(messages), dtype=bool)
    target[np.flatnonzero(is_user)[first]] = True
    row_text = pc.take(texts, parents)
    content = messages.field("content")
    joined = (pc.binary_join_element_wise(row_text, content, separator) if placement == "user"
              else pc.binary_join_element_wise(content, row_text, separator))
    new_content = pc.if_else(pa.array(target), joined, content)
    return pa.ListArray.from_arrays(pa.array(_offsets(prompts), pa.int32()), _replace_content(messages, new_content))


def _with_system_goal(prompts: pa.Array, texts: pa.Array, separator: str) -> pa.Array:
    messages = prompts.flatten()
    offsets = _offsets(prompts)
    n, m = len(prompts), len(messages)
    roles = messages.field("role").to_numpy(zero_copy_only=False)
    starts = offsets[:-1]
    nonempty = offsets[1:] > starts
    has_system = np.zeros(n, dtype=bool)
    has_system[nonempty] = roles[starts[nonempty]] == "system"
    parents = pc.list_parent_indices(prompts)
    if has_system.any():  # rows that open with a system message: the goal goes in front of its content
        first_system = np.zeros(m, dtype=bool)
        first_system[starts[has_system]] = True
        content = messages.field("content")
        joined = pc.binary_join_element_wise(pc.take(texts, parents), content, separator)
        messages = _replace_content(messages, pc.if_else(pa.array(first_system), joined, content))
    # Other rows: a new system message is inserted in front.
    insert = ~has_system
    new_system = _system_messages(messages.type, pc.filter(texts, pa.array(insert)))
    shift = np.cumsum(insert)  # inserted messages up to and including each row
    new_offsets = offsets + np.concatenate([[0], shift])
    gather = np.empty(m + int(insert.sum()), dtype=np.int64)
    gather[np.arange(m) + shift[parents.to_numpy()]] = np.arange(m)
    gather[new_offsets[:-1][insert]] = m + np.arange(int(insert.sum()))
    values = pa.concat_arrays([messages, new_system]).take(pa.array(gather))
    return pa.ListArray.from_arrays(pa.array(new_offsets, pa.int32()), values)


def _system_messages(struct_type: pa.StructType, texts: pa.Array) -> pa.StructArray:
    k = len(texts)
    fields, names = [], []
    for i in range(struct_type.num_fields):
        f = struct_type.field(i)
        names.append(f.name)
        if f.name == "role":
            fields.append(pa.array(["system"] * k, f.type))
        elif f.name == "content":
            fields.append(texts.cast(f.type))
        else:
            fields.append(pa.nulls(k, f.type))
    return pa.StructArray.from_arrays(fields, names=names)


def goal_prompt(prompt, spec: GoalSpec | None, goal: float | dict | None):
    """One prompt (a string or a message list) with `goal` written in `spec`'s placement; no goal -> unchanged.

    A string prompt with the `system` placement becomes a one-turn conversation, as `rapref augment` stores it.
    The input is never mutated.
    """
    if spec is None or goal is None:
        return prompt if isinstance(prompt, str) else [dict(m) for m in prompt]
    if isinstance(prompt, str) and spec.placement == "system":
        prompt = [{"role": "user", "content": prompt}]
    return apply_goal(prompt, spec.text(goal), spec.placement, spec.separator)


def apply_goal(prompt, goal_text: str, placement: str, separator: str = "\n\n"):
    """One prompt (string or message list) with an already written goal text: `write_goal` on a one-row column.
    Message keys Arrow had to fill with nulls (present in no message of this prompt) are dropped again."""
    out = write_goal(pa.array([prompt]), pa.array([goal_text], pa.string()), placement, separator).to_pylist()[0]
    if isinstance(out, str):
        return out
    return [{k: v for k, v in m.items() if v is not None or k in ("role", "content")} for m in out]


def split_goal(text: str, spec: GoalSpec | None) -> tuple[str, str, str]:
    """The inverse of the user-turn layout: (before, instruction, after) of a user turn or string prompt, the goal
    and its separator in `before` (`user`) or `after` (`user-suffix`). Text without a goal is all instruction.

    >>> spec = GoalSpec(placement="user", header="Goal:", line="{score}")
    >>> split_goal(goal_prompt("Sort: c a b", spec, 9), spec)
    ('Goal:\\n9\\n\\n', 'Sort: c a b', '')
    """
    if spec is None or spec.placement == "system":
        return "", text, ""
    header = spec.header_text()
    if spec.placement == "user" and text.startswith(header):
        cut = text.find(spec.separator, len(header))
        if cut >= 0:
            cut += len(spec.separator)
            return text[:cut], text[cut:], ""
    if spec.placement == "user-suffix":
        cut = text.rfind(spec.separator + header)
        if cut >= 0:
            return "", text[:cut], text[cut:]
    return "", text, ""


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?"
_SCALE = re.compile(rf"[\s\[(]*({_NUMBER})\s*(?:\.\.|to|-|,|:|;|/|\s)\s*({_NUMBER})[\s\])]*", re.I)


def scale_field(value) -> tuple[float, float]:
    """Parse a scale given as '1-10', '0,4', '1:5', '1..5', '1 to 5', '[-3, 5]' or a pair of numbers; either end may
    be negative ('-3-5', '-3,5', '-3:5', '-5--1') or in exponent notation ('1e1-2e1'); both ends finite. The low end
    must come first.

    >>> scale_field("-3-5"), scale_field("[-3, 5]"), scale_field("-5--1"), scale_field("1 to 10")
    ((-3.0, 5.0), (-3.0, 5.0), (-5.0, -1.0), (1.0, 10.0))
    """
    if isinstance(value, str):
        match = _SCALE.fullmatch(value)
        if not match:
            raise InputError(f"cannot read a score scale from {value!r}; write it as LOW-HIGH with two finite numbers, e.g. 1-10 or -3,5")
        lo, hi = float(match.group(1)), float(match.group(2))
    else:
        lo, hi = (float(v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise InputError(f"score scale {value!r}: both ends must be finite numbers, e.g. 1-10 or -3,5")
    if not lo < hi:
        low, high = min(lo, hi), max(lo, hi) if lo != hi else lo + 1
        raise InputError(f"score scale {value!r}: the low end must come first and be below the high end "
                         f"(e.g. {format_score(low)}-{format_score(high)})")
    return (lo, hi)


def check_goals(goals, spec: GoalSpec) -> list[float]:
    """Goals requested at inference must lie on the scale the policy was trained with."""
    lo, hi = spec.scale
    outside = [g for g in goals if not lo <= float(g) <= hi]
    if outside:
        raise InputError(f"goal {format_score(outside[0])} lies outside the policy's score scale "
                         f"{format_score(lo)}-{format_score(hi)}")
    return [float(g) for g in goals]


__all__ = [
    "PLACEMENTS",
    "GoalSpec",
    "format_score",
    "write_goal",
    "goal_prompt",
    "split_goal",
    "check_goals",
    "apply_goal",
    "scale_field",
    "GOAL_SETTINGS_FILE",
]
