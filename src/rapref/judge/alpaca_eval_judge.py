"""AlpacaEval's own code (`alpaca-eval` 0.6.6, the `eval` extra) judging rapref's files with rapref's pairwise judge.

    rapref alpaca-eval-judge http://127.0.0.1:8000/v1 --out runs/ae-judge [--lc-reference df_gamed.csv]
    alpaca_eval evaluate --model_outputs runs/alpaca_eval/model_outputs.json \
        --reference_outputs runs/alpaca_eval/baseline.json --annotators_config runs/ae-judge/configs.yaml \
        --output_path runs/ae-results --precomputed_leaderboard None --metric_kwargs "{'save_weights_dir': None}"

`write_annotator_config` writes an alpaca_eval annotator folder that asks the judge served at URL exactly what
`rapref judge --scorer llm-judge-pairwise:URL` asks it: rapref's pairwise template (`judge_templates/pairwise.txt`, or
`--judge-template`) as one user message, the same model, `max_tokens`, temperature 0 and seed, parsed by the same
"Output (a)" / "Output (b)" rule. The differences are alpaca_eval's own: it asks once per instruction, in an order
drawn from the instruction (rapref asks both orders and averages them), strips the message's outer whitespace, and
its raw win rate counts a reply naming neither output as missing.

- `client.yaml` points alpaca_eval's OpenAI client at URL (its `client_config_path`); for a server on this machine
  the key is the placeholder "EMPTY" (vLLM's convention); for any other host no key is written: the OpenAI client
  reads `OPENAI_API_KEY` from the environment, and so does rapref to read the judge's model list there (an unset
  `OPENAI_API_KEY` is refused before any request; the key is sent only as a header and written nowhere).
- The length-controlled win rate (alpaca_eval's default metric) reads AlpacaEval's instruction difficulties,
  `df_gamed.csv` of the Hub dataset `tatsu-lab/alpaca_eval`, through `huggingface_hub`, also for the minimal GLM.
  Offline, `seed_lc_reference(FILE, CACHE)` puts a copy of that file where `hf_hub_download` finds it with
  `HF_HUB_OFFLINE=1` and `HF_HUB_CACHE=CACHE` (the hub cache layout: `refs/main` naming a snapshot). The difficulties
  are looked up by row position, so they apply only to the full AlpacaEval set in its own order.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from urllib.parse import urlparse

from rapref.io import InputError

LC_REPO, LC_FILE = "tatsu-lab/alpaca_eval", "df_gamed.csv"  # what alpaca_eval's GLM downloads
NAME = "rapref_pairwise"
CLIENT_KEY_ENV = "OPENAI_API_KEY"  # where alpaca_eval's OpenAI client finds a hosted judge's key


def _local(url: str) -> bool:
    """A server on this machine (no key; the client's placeholder "EMPTY")."""
    from rapref.inference.serving import LOCAL_HOSTS

    return (urlparse(url).hostname or "") in LOCAL_HOSTS


def annotator_config(model: str, url: str, client_path: str, template: str = NAME + "/prompt.txt") -> dict:
    """The alpaca_eval annotator config (its `configs.yaml`) for rapref's pairwise question to `model` at `url`.

    >>> annotator_config("judge", "http://127.0.0.1:8000/v1", "c.yaml")["rapref_pairwise"]["completions_kwargs"]
    {'model_name': 'judge', 'max_tokens': 16, 'temperature': 0, 'seed': 0, 'requires_chatml': True, 'client_config_path': 'c.yaml'}
    """
    from rapref.judge.llm_judge import MAX_TOKENS

    return {NAME: {
        "prompt_template": template,
        "fn_completions": "openai_completions",
        "completions_kwargs": {"model_name": model, "max_tokens": MAX_TOKENS["pairwise"], "temperature": 0,
                               "seed": 0, "requires_chatml": True, "client_config_path": client_path},
        "fn_completion_parser": "regex_parser",
        # rapref's parse_choice reads these (and more); alpaca_eval's parser needs exactly one match, else missing
        "completion_parser_kwargs": {"outputs_to_match": {1: r"(?i)output\s*\(a\)", 2: r"(?i)output\s*\(b\)"}},
        "batch_size": 1,
    }}


def write_annotator_config(out: str | Path, url: str, model: str | None = None, template: str | None = None) -> Path:
    """Write `out/{configs.yaml, prompt.txt, client.yaml}`; returns the path of configs.yaml (alpaca_eval's
    `--annotators_config`). The judge model is the one the server serves, as `rapref judge` picks it."""
    import yaml

    from rapref.judge.llm_judge import TEMPLATES
    from rapref.inference.serving import Endpoint, NetworkConfig

    out = Path(out)
    if out.name != NAME:  # alpaca_eval names the annotator after the config's folder
        out = out / NAME
    source = Path(template) if template else TEMPLATES / "pairwise.txt"
    if not source.is_file():
        raise InputError(f"--judge-template {source}: no such file")
    text = source.read_text(encoding="utf-8")
    missing = [p for p in ("{instruction}", "{output_1}", "{output_2}") if p not in text]
    if missing:
        raise InputError(f"{source}: a pairwise judge template needs {', '.join(missing)}")
    endpoint = Endpoint(url, NetworkConfig(api_key_env=None if _local(url) else CLIENT_KEY_ENV))
    names = [m.get("id") for m in endpoint.served()]
    if model is None and len(names) != 1:
        raise InputError(f"{endpoint.url}: serves {len(names)} models ({', '.join(map(str, names))}); name the judge "
                         "with --judge-model")
    if model is not None and model not in names:
        raise InputError(f"{endpoint.url}: serves {', '.join(map(str, names))}, not --judge-model {model!r}")
    model = model or names[0]
    out.mkdir(parents=True, exist_ok=True)
    # alpaca_eval sends ChatML-marked text as chat messages: one user message holding rapref's question
    (out / "prompt.txt").write_text(f"<|im_start|>user\n{text.strip()}\n<|im_end|>\n", encoding="utf-8")
    client = {"base_url": endpoint.url}
    if _local(endpoint.url):
        client["api_key"] = "EMPTY"
    (out / "client.yaml").write_text(yaml.safe_dump({"default": [client]}))
    config = annotator_config(model, endpoint.url, str((out / "client.yaml").resolve()))
    (out / "configs.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "configs.yaml"


def seed_lc_reference(csv: str | Path, cache: str | Path) -> Path:
    """Put a local copy of AlpacaEval's `df_gamed.csv` into a hub cache folder, where alpaca_eval's
    `hf_hub_download` finds it offline (`HF_HUB_OFFLINE=1 HF_HUB_CACHE=cache`). Returns the cached file."""
    csv = Path(csv)
    if not csv.is_file():
        raise InputError(f"--lc-reference {csv}: no such file (AlpacaEval's {LC_FILE}, from the Hub dataset {LC_REPO})")
    header = csv.open(encoding="utf-8").readline()
    missing = [c for c in ("index", "instruction_difficulty", "preference", "std_delta_len", "not_gamed_baseline")
               if c not in header.strip().split(",")]
    if missing:
        raise InputError(f"{csv}:1: not AlpacaEval's {LC_FILE}: no column {', '.join(missing)}")
    repo = Path(cache) / f"datasets--{LC_REPO.replace('/', '--')}"
    revision = hashlib.sha1(csv.read_bytes()).hexdigest()  # a snapshot name of its own: the file's content
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    target = repo / "snapshots" / revision / LC_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv, target)
    return target


def main(url: str, out: str, model: str | None = None, template: str | None = None,
         lc_reference: str | None = None, hub_cache: str | None = None, overwrite: bool = False) -> Path:
    """Claim `out` as every rapref writer does (a user's folder is never written into), then write the config."""
    from rapref.runs.folder import (begin_output, claim_output, empty_output, finish_output, is_rapref_output,
            output_lock)

    folder = claim_output(out, "alpaca-eval-judge", overwrite=overwrite, continue_unfinished=True)
    with output_lock(folder):
        if overwrite and is_rapref_output(folder):
            empty_output(folder)
        begin_output(folder, "alpaca-eval-judge")
        config = write_annotator_config(folder, url, model, template)
        if lc_reference:
            from huggingface_hub import constants

            seed_lc_reference(lc_reference, hub_cache or constants.HF_HUB_CACHE)
        finish_output(folder, "alpaca-eval-judge")
    return config


__all__ = ["annotator_config", "write_annotator_config", "seed_lc_reference", "main"]
