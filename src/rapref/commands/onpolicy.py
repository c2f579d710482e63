"""Flags of `rapref onpolicy`, every one derived from `rapref.studies.onpolicy.OnPolicyConfig` (the loop itself).

`--config FILE` takes either a study file (OnPolicyConfig's settings, as `--show-config` prints them; its `recipe:`
key names the training recipe) or, as before, a `rapref train` recipe; the two are told apart by their keys: a file
whose top-level keys are all recipe keys (model, data, algorithm, lora, training, output_dir, seed) is a recipe.
"""

from __future__ import annotations

import argparse

from rapref.commands.flags import add_flags, from_args, show_if_asked
from rapref.io import InputError
from rapref.settings import read_yaml_file
from rapref.studies.onpolicy import OnPolicyConfig, main
from rapref.train.config import TrainConfig

CONFIG_HELP = ("a YAML file of these settings (keys as --show-config prints them; flags given here override them), "
               "or a `rapref train` recipe, told apart by its keys (default: none)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, OnPolicyConfig, config=True, config_help=CONFIG_HELP)


def recipe_keys() -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(TrainConfig)}


def config_from_args(args):
    path = getattr(args, "config", None)
    if path is None:
        return from_args(OnPolicyConfig, args).config
    content = read_yaml_file(path) or {}
    keys = set(content) if isinstance(content, dict) else set()
    if keys <= recipe_keys():  # a train recipe, as `--config` meant before study files
        return from_args(OnPolicyConfig, args, file="", extra={"recipe": (path, "--config")}).config
    mixed = sorted(keys & recipe_keys() - {"seed"})
    if mixed:
        raise InputError(f"{path}: holds recipe keys ({', '.join(mixed)}) beside onpolicy settings; a study file names "
                         "its recipe with `recipe: RECIPE.yaml`")
    return from_args(OnPolicyConfig, args).config


def run(args):
    cfg = config_from_args(args)
    return {} if show_if_asked(cfg, args) else main(cfg)
