"""The training recipe: one YAML with model, data, algorithm, LoRA and TRL trainer arguments; CLI overrides on top.

    rapref train --config recipes/tiny/relabeled-dpo.yaml training.max_steps=20 algorithm.beta=0.05

Unknown keys are errors at every level (TRL's own `trl dpo` silently ignores stale keys such as
`max_prompt_length`); the `training` section is checked against the chosen TRL config class's fields. Values are
checked against their declared types when the recipe loads (`algorithm.beta=abc` is refused here, not deep inside
TRL); a single `algorithm.loss_type=sigmoid` is read as the list `[sigmoid]`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.util
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rapref.io import InputError, hub_offline
from rapref.models import ModelArgs
from rapref.settings import check_type, read_yaml_file
from rapref.settings import read_yaml as _yaml
from rapref.train.algorithms import ALGORITHMS, DPO_LOSSES

# `training` keys rapref reads itself (never passed to TRL):
# - packing: the packed, prompt-sharing DPO forward (rapref.train.packing). Unset: on for DPO on CPU where
#   rapref.train.packing_gate allows it, off on CUDA; true: on wherever the gate allows it; false: TRL's padded path.
# - release_memory: give freed heap memory back to the system after each packed forward (glibc's malloc_trim). Unset:
#   on where it was measured to help (CPU with gradient checkpointing); false: never.
RAPREF_TRAINING_KEYS = {"packing": bool, "release_memory": bool}


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
            raise InputError("model.name_or_path is required")
        if not self.data.path:
            raise InputError("data.path is required")
        if self.algorithm.name not in ALGORITHMS:
            raise InputError(f"algorithm.name must be one of {', '.join(ALGORITHMS)}, got {self.algorithm.name!r}")
        algo = self.algorithm
        algorithm = ALGORITHMS[algo.name]
        unknown = [t for t in algo.loss_type if t not in DPO_LOSSES] if algorithm.loss_list else []
        if unknown:
            raise InputError(f"algorithm.loss_type: unknown loss {unknown[0]!r}{_suggest(unknown[0], DPO_LOSSES)}; "
                             f"TRL's DPO losses are {', '.join(DPO_LOSSES)}")
        if not 0.0 <= algo.label_smoothing < 0.5:
            raise InputError(f"algorithm.label_smoothing must lie in [0, 0.5), got {algo.label_smoothing}")
        if algo.label_smoothing and not algorithm.smoothed(algo):
            losses = f"loss_type {algo.loss_type}" if algorithm.loss_list else f"algorithm {algo.name!r}"
            raise InputError(f"algorithm.label_smoothing={algo.label_smoothing} has no effect with {losses}: "
                             "only sigmoid (conservative DPO), robust, exo_pair, aot, aot_unpaired, simpo and cpo "
                             "read it; set it to 0")
        trl_cls = trl_config_class(algo.name)
        hints = typing.get_type_hints(trl_cls)
        owned = {"output_dir", "seed", "beta", "loss_type", "loss_weights", "label_smoothing", "simpo_gamma",
                 "cpo_alpha", "desirable_weight", "undesirable_weight"}
        for key, value in self.training.items():
            if key in RAPREF_TRAINING_KEYS:
                self.training[key] = check_type(value, RAPREF_TRAINING_KEYS[key], f"training.{key}", strict=False)
                if key == "packing" and self.training[key] and not algorithm.packable:
                    raise InputError("training.packing: the prompt-sharing packed forward is implemented for "
                                     f"algorithm.name=dpo, not {algo.name!r}")
                continue
            if key in owned:
                place = key if key in ("output_dir", "seed") else f"algorithm.{key}"
                raise InputError(f"training.{key}: set it in its own place, {place}")
            if key not in hints or key.startswith("_"):
                raise InputError(f"training.{key}: not a field of {trl_cls.__name__}{_suggest(key, hints)}")
            self.training[key] = check_type(value, hints[key], f"training.{key}", strict=False)
        self._refuse_degenerate()
        max_length = self.training.get("max_length", 1024)
        if self.data.max_prompt_length and max_length and self.data.max_prompt_length >= max_length:
            raise InputError(f"data.max_prompt_length ({self.data.max_prompt_length}) must be below "
                             f"training.max_length ({max_length}): TRL drops prompts that fill max_length")
        _check_integrations(self.training)

    def _refuse_degenerate(self) -> None:
        """Values that would run and save a run that learned nothing (or read as something else) are refused."""
        t = self.training
        problems = []
        if self.algorithm.beta <= 0:
            problems.append(f"algorithm.beta must be above 0, got {self.algorithm.beta:g} (at 0 the preference "
                            "term has no gradient)")
        max_steps, epochs = t.get("max_steps", -1), t.get("num_train_epochs", 3.0)
        if max_steps == 0 or (max_steps < 0 and epochs <= 0):
            problems.append(f"training.max_steps={max_steps} with training.num_train_epochs={epochs:g} trains for 0 "
                            "steps; give max_steps >= 1 or num_train_epochs > 0")
        for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if key in t and t[key] < 1:
                problems.append(f"training.{key} must be at least 1, got {t[key]}")
        if not 0 <= self.seed < 2**32:
            problems.append(f"seed must lie in [0, 2**32), got {self.seed} (numpy's seeds)")
        if "learning_rate" in t and t["learning_rate"] <= 0:
            problems.append(f"training.learning_rate must be above 0, got {t['learning_rate']:g}")
        for key, value in (("data.max_prompt_length", self.data.max_prompt_length),
                           ("data.max_train_samples", self.data.max_train_samples),
                           ("training.max_length", t.get("max_length", 1024))):
            if value is not None and value < 1:
                problems.append(f"{key} must be at least 1 (null for no limit), got {value}")
        if self.lora.enabled and self.lora.r < 1:
            problems.append(f"lora.r must be at least 1, got {self.lora.r}")
        if self.lora.enabled and not 0 <= self.lora.dropout < 1:
            problems.append(f"lora.dropout must lie in [0, 1), got {self.lora.dropout:g}")
        algo = self.algorithm
        if not ALGORITHMS[algo.name].loss_list and (algo.loss_type != ["sigmoid"] or algo.loss_weights is not None):
            key = "loss_type" if algo.loss_type != ["sigmoid"] else "loss_weights"
            problems.append(f"algorithm.{key} is read by algorithm.name=dpo only; algorithm.name={algo.name} would "
                            "ignore it (remove it, or train dpo)")
        if problems:
            raise InputError(problems[0])


LOGGER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
                   "trackio": "trackio", "clearml": "clearml", "dvclive": "dvclive"}


def _check_integrations(training: dict) -> None:
    """Refuse what would fail late: a logger whose package is missing, a Hub push with no Hub to reach."""
    report_to = training.get("report_to", "none")
    for name in [report_to] if isinstance(report_to, str) else list(report_to or []):
        if name == "all":
            raise InputError("training.report_to=all reports to whatever happens to be installed; name the logger")
        package = LOGGER_PACKAGES.get(name)
        available = package and (importlib.util.find_spec(package) is not None
                                 or (name == "tensorboard" and importlib.util.find_spec("tensorboardX")))
        if package and not available:
            raise InputError(f"training.report_to={name}: the {package!r} package is not installed "
                             f"(pip install {package}), or use report_to=none")
    if training.get("push_to_hub"):
        if hub_offline():
            raise InputError("training.push_to_hub=true but the Hugging Face hub cannot be reached (offline); "
                             "train without it and upload the folder later")


def trl_config_class(algorithm: str):
    return ALGORITHMS[algorithm].config_class()


def load_config(path: str | Path | None, overrides: list[str] = (), values: Mapping[str, Any] | None = None
                ) -> TrainConfig:
    """Recipe YAML (optional) + `section.key=value` overrides + `values` -> validated `TrainConfig`.

    `overrides` are text, as a user types them (`rapref train ... training.max_steps=20`): each value is read as YAML.
    `values` ({dotted path: value}, set last) are what a program sets itself, a model path, a seed, a study's own
    training settings: set as the Python values they are, never read as text (a model path `no` or `1e3` stays that
    path), and checked against the field's type like every recipe value."""
    data = {}
    if path:
        data = read_yaml_file(path, "recipe") or {}
        if not isinstance(data, dict):
            raise InputError(f"{path}: a recipe must be a mapping of sections")
    from_file = _paths(data) if path else set()  # which keys the file gave, for naming it in an error
    given = set(values or {})
    for item in overrides:
        key, sep, value = item.partition("=")
        given.add(key.strip())
        if not sep or not all(key.strip().split(".")):  # `=3`, `training.=3`: no key to set
            raise InputError(f"override {item!r}: expected section.key=value")
        try:
            value = _yaml(value)
        except (yaml.YAMLError, ValueError):
            pass  # not YAML (or a number past Python's digit limit): keep the text, the type check below judges it
        _put(data, key, value, f"override {item!r}")
    for key, value in (values or {}).items():
        _put(data, key, copy.deepcopy(value), key)  # the config never shares a list or mapping with the caller
    try:
        cfg = _build(TrainConfig, data, "")
        cfg.validate()
    except InputError as err:  # a key the file gave (and nothing later replaced) is named with the file
        key = str(err).removeprefix("unknown recipe key ").split(":")[0].split(" ")[0].split("=")[0]
        if key in from_file - given:
            raise InputError(f"{path}: {err}") from None
        raise
    return cfg


def _paths(mapping: dict, prefix: str = "") -> set[str]:
    """Every dotted key of a recipe mapping, sections included."""
    found = set()
    for key, value in mapping.items():
        found.add(f"{prefix}{key}")
        if isinstance(value, dict):
            found |= _paths(value, f"{prefix}{key}.")
    return found


def _put(data: dict, key: str, value, what: str) -> None:
    """`value` at the dotted path `key` of a recipe mapping (sections made where missing)."""
    node = data
    *parents, leaf = key.strip().split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"{what}: {part} is not a section")
    node[leaf] = value


def _build(cls, data: dict, prefix: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise InputError(f"unknown recipe key {prefix}{key}{_suggest(key, fields)}")
        sub = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise InputError(f"recipe key {prefix}{key} must be a mapping")
            kwargs[key] = _build(sub, value, f"{prefix}{key}.")
        elif hints[key] is dict:
            if not isinstance(value, dict):
                raise InputError(f"recipe key {prefix}{key} must be a mapping")
            kwargs[key] = value
        else:
            kwargs[key] = check_type(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def _suggest(key: str, names) -> str:
    close = difflib.get_close_matches(key, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(data: dict) -> TrainConfig:
    """A `TrainConfig` from `to_dict`'s output (e.g. the `config` saved in rapref_train.json)."""
    return _build(TrainConfig, data, "")
