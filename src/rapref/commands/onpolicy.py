"""Flags of `rapref onpolicy`, every one derived from `rapref.studies.onpolicy.OnPolicyConfig` (the loop itself).

`--config FILE` takes either a study file (OnPolicyConfig's settings, as `--show-config` prints them; its `recipe:`
key names the training recipe) or, as before, a `rapref train` recipe, told apart by their top-level keys: a file
with a key only a recipe has (model, data, algorithm, lora, training, output_dir) and none only a study file has is a
recipe (an unknown key is then named as a recipe key); one whose keys both have (`seed`: a recipe's is replaced by
the loop's, a study file's sets it) is a study file; one with keys of both is refused.
"""

from __future__ import annotations

import argparse
import dataclasses

from rapref.commands.flags import add_flags, from_args, show_if_asked
from rapref.io import InputError
from rapref.settings import read_yaml_file
from rapref.studies.onpolicy import OnPolicyConfig, check_recipe, main
from rapref.train.config import TrainConfig

CONFIG_HELP = ("a YAML file of these settings (keys as --show-config prints them; flags given here override them), "
               "or a `rapref train` recipe, told apart by its keys (default: none)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, OnPolicyConfig, config=True, config_help=CONFIG_HELP)


def keys_of(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def is_recipe(path: str) -> bool:
    """Whether the --config file is a `rapref train` recipe rather than a study file (see the module notes)."""
    content = read_yaml_file(path) or {}
    if not isinstance(content, dict):
        raise InputError(f"{path}: must be a mapping of settings (a study file's or a recipe's KEY: VALUE lines), "
                         f"got a {type(content).__name__}")
    recipe_only = set(content) & (keys_of(TrainConfig) - keys_of(OnPolicyConfig))
    study_only = set(content) & (keys_of(OnPolicyConfig) - keys_of(TrainConfig))
    if recipe_only and study_only:
        raise InputError(f"{path}: holds recipe keys ({', '.join(sorted(recipe_only))}) beside onpolicy settings; a "
                         "study file names its recipe with `recipe: RECIPE.yaml`")
    return bool(recipe_only) or not content


def config_from_args(args):
    path = getattr(args, "config", None)
    if path is not None and is_recipe(path):  # a train recipe, as `--config` meant before study files
        if getattr(args, "recipe", None) not in (None, path):
            raise InputError(f"--config {path} is a training recipe, and so is --recipe {args.recipe}: choose one")
        return from_args(OnPolicyConfig, args, file="", extra={"recipe": (path, "--config")}).config
    return from_args(OnPolicyConfig, args).config


def run(args):
    cfg = config_from_args(args)
    if args.show_config:  # checked as a run checks the recipe and overrides before it starts
        check_recipe(cfg)
        show_if_asked(cfg, args)
        return {}
    return main(cfg)
