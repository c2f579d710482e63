"""The direct alignment algorithms `rapref train` drives: one table, keyed by the recipe's `algorithm.name`.

Each entry names TRL's config and trainer classes, whether a frozen reference model is loaded, which of its losses
apply `label_smoothing`, and how `algorithm.*` maps onto the TRL config. Nothing else in rapref branches on the name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from rapref.train.losses import with_conservative_dpo

# TRL 1.16 DPOTrainer's losses; those that read label_smoothing (`sigmoid` through rapref's conservative DPO).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
DPO_SMOOTHED = ("sigmoid", "robust", "exo_pair", "aot", "aot_unpaired")


@dataclass(frozen=True)
class Algorithm:
    config: str  # "module:Class" of the TRL config
    trainer: str  # "module:Class" of the TRL trainer
    reference_model: bool  # a frozen reference copy is loaded (unless LoRA: the adapter-free model is the reference)
    smoothed: Callable[[object], bool]  # does label_smoothing reach the loss for these algorithm args?
    trl_kwargs: Callable[[object], dict]  # algorithm args -> TRL config fields
    unpaired: bool = False  # KTO: relabeled pairs are split into desirable / undesirable examples
    loss_list: bool = False  # reads algorithm.loss_type / loss_weights (TRL's DPO loss list)
    packable: bool = False  # rapref.train.packing applies (TRL's DPOTrainer batches); on by default where it does

    def config_class(self):
        return _load(self.config)

    def trainer_class(self):
        return _load(self.trainer)


def _load(path: str):
    """A TRL class by "module:Class"; TRL's notice on importing `trl.experimental` (SimPO, CPO, ORPO live there) is
    not shown: it asks the user to act on nothing they chose."""
    import warnings

    module, _, name = path.partition(":")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        return getattr(importlib.import_module(module), name)


def _dpo_kwargs(algo) -> dict:
    loss_type, loss_weights = with_conservative_dpo(algo.loss_type, algo.loss_weights, algo.label_smoothing)
    return {"loss_type": loss_type, "loss_weights": loss_weights, "label_smoothing": algo.label_smoothing}


# CPO/SimPO/ORPO pad with DPODataCollatorWithPadding, which needs every column: set what their trainers would set
# (and warn about) themselves
PAIRED_COLLATOR = {"remove_unused_columns": False}

ALGORITHMS: dict[str, Algorithm] = {
    "dpo": Algorithm("trl:DPOConfig", "trl:DPOTrainer", True,
                     smoothed=lambda a: any(t in DPO_SMOOTHED for t in a.loss_type), trl_kwargs=_dpo_kwargs,
                     loss_list=True, packable=True),
    "simpo": Algorithm("trl.experimental.cpo:CPOConfig", "trl.experimental.cpo:CPOTrainer", False,
                       smoothed=lambda a: True,
                       trl_kwargs=lambda a: {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": a.simpo_gamma,
                                             "label_smoothing": a.label_smoothing, **PAIRED_COLLATOR}),
    "cpo": Algorithm("trl.experimental.cpo:CPOConfig", "trl.experimental.cpo:CPOTrainer", False,
                     smoothed=lambda a: True,
                     trl_kwargs=lambda a: {"loss_type": "sigmoid", "cpo_alpha": a.cpo_alpha,
                                           "label_smoothing": a.label_smoothing, **PAIRED_COLLATOR}),
    "orpo": Algorithm("trl.experimental.orpo:ORPOConfig", "trl.experimental.orpo:ORPOTrainer", False,
                      smoothed=lambda a: False, trl_kwargs=lambda a: dict(PAIRED_COLLATOR)),
    "kto": Algorithm("trl:KTOConfig", "trl:KTOTrainer", True, smoothed=lambda a: False,
                     trl_kwargs=lambda a: {"desirable_weight": a.desirable_weight,
                                           "undesirable_weight": a.undesirable_weight}, unpaired=True),
}
