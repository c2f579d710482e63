"""Fixtures shared by every folder of tests/: the path to the schema fixtures, one tiny local model per session
(nothing is downloaded), a relabeled dataset and a trained policy made from it. Helpers (functions, constants) are
in tests/helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import FIXTURES, synthetic_pair_rows

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from rapref.tiny import DEFAULT_CORPUS, build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "model", DEFAULT_CORPUS)


@pytest.fixture(scope="session")
def relabeled_dir(tmp_path_factory) -> Path:
    """A small relabeled dataset folder written by `rapref augment` (system placement)."""
    import json

    from rapref.data.augment import AugmentConfig, main
    from rapref.data.schemas import SchemaOptions

    folder = tmp_path_factory.mktemp("data")
    src = folder / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in synthetic_pair_rows()))
    main(AugmentConfig(source=str(src), out=str(folder / "out"), schema_options=SchemaOptions(test_size=4)))
    return folder / "out"


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_model_dir, relabeled_dir) -> Path:
    """A policy folder written by `rapref train` (2 steps): model, tokenizer and goal settings."""
    from rapref.train.config import load_config
    from rapref.train.run import main

    out = tmp_path_factory.mktemp("trained") / "run"
    main(load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={out}", "data.max_prompt_length=160", "training.max_length=224",
                            "training.max_steps=2", "training.disable_tqdm=true"]))
    return out
