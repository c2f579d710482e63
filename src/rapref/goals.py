"""Goal text: how a goal score is written into a prompt.

The authors' wording (arXiv 2410.08067), with the scale taken from the data:

>>> spec = GoalSpec(scale=(1, 10))
>>> print(spec.text(8.0))
You are an assistant that generates responses for the instruction while implicitly achieving the following target scores (on a scale of 1-10, where 1 is lowest and 10 is highest):
Overall score: 8.
>>> format_score(7.5), format_score(8.0), format_score(3)
('7.5', '8', '3')

Placement (`system`, `user`, `user-suffix`) says where that text goes; `apply_goal_to_text` and
`apply_goal_to_messages` are the per-row reference versions of what `relabel` does on whole Arrow columns.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

PLACEMENTS = ("system", "user", "user-suffix")
STYLES = ("digits", "thermometer", "opaque")  # how a score looks to the model: see `render_score`

DEFAULT_HEADER = (
    "You are an assistant that generates responses for the instruction while implicitly achieving the following "
    "target scores (on a scale of {lo}-{hi}, where {lo} is lowest and {hi} is highest):"
)
DEFAULT_LINE = "{name} score: {score}."
GOAL_SETTINGS_FILE = "rapref_goal.json"


def format_score(score: float) -> str:
    """A whole number prints without ".0" (8.0 -> "8"); any other value as Python prints it (7.5 -> "7.5")."""
    value = float(score)
    return str(int(value)) if value.is_integer() else repr(value)


@dataclass(frozen=True)
class GoalSpec:
    """Everything needed to turn a goal score into text and put it in a prompt.

    Saved next to every relabeled dataset and trained model (`rapref_goal.json`) so that training, generation and
    evaluation use the same wording and placement.
    """

    scale: tuple[float, float] = (1, 10)
    placement: str = "system"
    header: str = DEFAULT_HEADER
    line: str = DEFAULT_LINE
    attributes: tuple[str, ...] = ("Overall",)
    separator: str = "\n\n"  # between goal and instruction in `user` / `user-suffix` placement
    style: str = "digits"  # digits ("8"), thermometer ("########.." out of the scale) or opaque ("<g8>")

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"goal placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        lo, hi = self.scale
        if not float(lo) < float(hi):
            raise ValueError(f"goal scale must be (low, high) with low < high, got {self.scale!r}")
        object.__setattr__(self, "scale", (float(lo), float(hi)))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if self.style not in STYLES:
            raise ValueError(f"goal style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if "{score}" not in self.line:
            raise ValueError(f"goal line template must contain '{{score}}', got {self.line!r}")

    @property
    def top(self) -> float:
        return self.scale[1]

    def text(self, score: float | dict[str, float]) -> str:
        """The goal text for one score, or for several named attribute scores (multi-attribute goals)."""
        lo, hi = (format_score(s) for s in self.scale)
        head = self.header.format(lo=lo, hi=hi)
        if isinstance(score, dict):
            lines = [self.line.format(name=name, score=self.render_score(score[name])) for name in self.attributes]
        else:
            lines = [self.line.format(name=self.attributes[0], score=self.render_score(score))]
        return "\n".join([head, *lines])

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
            raise ValueError(f"unknown goal settings: {sorted(unknown)}")
        data = dict(data)
        if "scale" in data:
            data["scale"] = tuple(data["scale"])
        if "attributes" in data:
            data["attributes"] = tuple(data["attributes"])
        return cls(**data)

    def save(self, folder: str | Path) -> Path:
        from rapref.io import write_json_atomic

        return write_json_atomic(Path(folder) / GOAL_SETTINGS_FILE, self.to_json())

    @classmethod
    def load(cls, folder: str | Path) -> GoalSpec:
        path = Path(folder) / GOAL_SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no goal settings here; this folder was not written by `rapref augment` or `rapref train`"
            )
        return cls.from_json(json.loads(path.read_text()))


def apply_goal_to_text(prompt: str, goal_text: str, placement: str, separator: str = "\n\n") -> str:
    """Standard (string) prompts: `user` prepends the goal, `user-suffix` appends it."""
    if placement == "user":
        return goal_text + separator + prompt
    if placement == "user-suffix":
        return prompt + separator + goal_text
    raise ValueError(f"placement {placement!r} needs conversational prompts (message lists)")


def apply_goal_to_messages(messages: list[dict], goal_text: str, placement: str, separator: str = "\n\n") -> list:
    """Conversational prompts. Returns a new list; the input is never mutated.

    `system`: the goal becomes the system message (prepended to an existing one, separated by a blank line).
    `user` / `user-suffix`: the goal is written into the first user turn.
    """
    out = [dict(m) for m in messages]
    if placement == "system":
        if out and out[0]["role"] == "system":
            out[0]["content"] = goal_text + separator + out[0]["content"]
        else:
            out.insert(0, {"role": "system", "content": goal_text})
        return out
    for message in out:
        if message["role"] == "user":
            message["content"] = apply_goal_to_text(message["content"], goal_text, placement, separator)
            return out
    raise ValueError("prompt has no user turn to carry the goal")


def scale_field(value) -> tuple[float, float]:
    """Parse a scale given as '1-10', '0,4', '1:5' or a pair of numbers."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(-?[\d.]+)\s*[-,:]\s*(-?[\d.]+)\s*", value)
        if not match:
            raise ValueError(f"cannot read a score scale from {value!r}; write it as LOW-HIGH, e.g. 1-10")
        return (float(match.group(1)), float(match.group(2)))
    lo, hi = value
    return (float(lo), float(hi))


__all__ = [
    "PLACEMENTS",
    "GoalSpec",
    "format_score",
    "apply_goal_to_text",
    "apply_goal_to_messages",
    "scale_field",
    "GOAL_SETTINGS_FILE",
]
