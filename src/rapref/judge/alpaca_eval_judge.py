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
  `OPENAI_API_KEY` is refused before any request; the key is sent only as a header and written nowhere). With
  `--api-key-env NAME` (as for `rapref judge`) the key is read from NAME instead, by rapref and by alpaca_eval's
  client (`client_class: rapref.judge.alpaca_eval_judge.openai_client`, which reads NAME): only the name is written.
- The length-controlled win rate (alpaca_eval's default metric) reads AlpacaEval's instruction difficulties,
  `df_gamed.csv` of the Hub dataset `tatsu-lab/alpaca_eval`, through `huggingface_hub`, also for the minimal GLM.
  Offline, `seed_lc_reference(FILE, CACHE)` puts a copy of that file where `hf_hub_download` finds it with
  `HF_HUB_OFFLINE=1` and `HF_HUB_CACHE=CACHE` (the hub cache layout: `refs/main` naming a snapshot). The difficulties
  are looked up by row position, so they apply only to the full AlpacaEval set in its own order.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from rapref.inference.hosted import read_api_key
from rapref.inference.serving import LOCAL_HOSTS, Endpoint, NetworkConfig
from rapref.io import InputError
from rapref.judge.llm_judge import MAX_TOKENS, TEMPLATES
from rapref.runs.folder import RunFolder
from rapref.settings import check, like, setting

LC_REPO, LC_FILE = "tatsu-lab/alpaca_eval", "df_gamed.csv"  # what alpaca_eval's GLM downloads
NAME = "rapref_pairwise"
CLIENT_KEY_ENV = "OPENAI_API_KEY"  # where alpaca_eval's OpenAI client finds a hosted judge's key
CLIENT = f"{__name__}.openai_client"  # client.yaml's client_class where the key is in another variable


@dataclass
class AlpacaEvalJudgeConfig:
    """What `rapref alpaca-eval-judge` writes (its flags are derived from these fields, `rapref.settings`)."""

    url: str = setting(help="the judge: an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1", positional=True)
    out: str = setting(help="folder for the annotator config (configs.yaml, prompt.txt, client.yaml; in a subfolder "
                            "rapref_pairwise)")
    judge_model: str | None = setting(None, "the served model to ask (needed where the server serves several)",
                                      metavar="NAME", shown="the one it serves")
    judge_template: str | None = setting(None, "a pairwise template with {instruction}, {output_1}, {output_2}",
                                         metavar="FILE", shown="rapref's")
    api_key_env: str | None = like(NetworkConfig, "api_key_env", shown=f"{CLIENT_KEY_ENV} for a judge not on this "
                                   "machine (the variable alpaca_eval's client reads), none for one on it")
    lc_reference: str | None = setting(None, "a local copy of AlpacaEval's df_gamed.csv (instruction difficulties), "
                                             "put into the hub cache so alpaca_eval's length-controlled win rate runs "
                                             "offline", metavar="CSV")
    hub_cache: str | None = setting(None, "the hub cache for --lc-reference", metavar="DIR", shown="$HF_HUB_CACHE")
    overwrite: bool = setting(False, "replace an earlier config folder rapref wrote (never a folder it did not "
                                     "write)")

    def __post_init__(self):
        check(self)


def _local(url: str) -> bool:
    """A server on this machine (no key; the client's placeholder "EMPTY")."""
    return (urlparse(url).hostname or "") in LOCAL_HOSTS


def openai_client(api_key_env: str, **kwargs):
    """The OpenAI client alpaca_eval builds from client.yaml (`client_class`), with the judge's key read from the
    environment variable client.yaml names: the key itself is written into no file."""
    import openai

    return openai.OpenAI(api_key=read_api_key(api_key_env), **kwargs)


def annotator_config(model: str, url: str, client_path: str, template: str = NAME + "/prompt.txt") -> dict:
    """The alpaca_eval annotator config (its `configs.yaml`) for rapref's pairwise question to `model` at `url`.

    >>> annotator_config("judge", "http://127.0.0.1:8000/v1", "c.yaml")["rapref_pairwise"]["completions_kwargs"]
    {'model_name': 'judge', 'max_tokens': 16, 'temperature': 0, 'seed': 0, 'requires_chatml': True, 'client_config_path': 'c.yaml'}
    """
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


def judge_question(url: str, model: str | None = None, template: str | None = None,
                   api_key_env: str | None = None) -> tuple[str, str, str, str | None]:
    """What the annotator config will ask, checked before anything is written: (the pairwise template's text, the
    judge model: the one the server serves, as `rapref judge` picks it; the server's API root; the variable holding
    its key: `api_key_env`, else OPENAI_API_KEY for a judge not on this machine, else none)."""
    source = Path(template) if template else TEMPLATES / "pairwise.txt"
    if not source.is_file():
        raise InputError(f"--judge-template {source}: no such file")
    text = source.read_text(encoding="utf-8")
    missing = [p for p in ("{instruction}", "{output_1}", "{output_2}") if p not in text]
    if missing:
        raise InputError(f"{source}: a pairwise judge template needs {', '.join(missing)}")
    key_env = api_key_env or (None if _local(url) else CLIENT_KEY_ENV)
    endpoint = Endpoint(url, NetworkConfig(api_key_env=key_env), flag="the judge's url")
    names = [m.get("id") for m in endpoint.served()]
    if model is None and len(names) != 1:
        raise InputError(f"{endpoint.url}: serves {len(names)} models ({', '.join(map(str, names))}); name the judge "
                         "with --judge-model")
    if model is not None and model not in names:
        raise InputError(f"{endpoint.url}: serves {', '.join(map(str, names))}, not --judge-model {model!r}")
    return text, model or names[0], endpoint.url, key_env


def write_annotator_files(out: str | Path, text: str, model: str, url: str, key_env: str | None) -> Path:
    """Write `out/rapref_pairwise/{configs.yaml, prompt.txt, client.yaml}` for `judge_question`'s answer; returns the
    path of configs.yaml (alpaca_eval's `--annotators_config`). The key is read from `key_env` by alpaca_eval's
    client; only the variable's name is written."""
    import yaml

    out = Path(out)
    if out.name != NAME:  # alpaca_eval names the annotator after the config's folder
        out = out / NAME
    out.mkdir(parents=True, exist_ok=True)
    # alpaca_eval sends ChatML-marked text as chat messages: one user message holding rapref's question
    (out / "prompt.txt").write_text(f"<|im_start|>user\n{text.strip()}\n<|im_end|>\n", encoding="utf-8")
    client = {"base_url": url}
    if key_env not in (None, CLIENT_KEY_ENV):  # the OpenAI client reads only OPENAI_API_KEY by itself
        client.update({"client_class": CLIENT, "api_key_env": key_env})
    elif key_env is None:
        client["api_key"] = "EMPTY"
    (out / "client.yaml").write_text(yaml.safe_dump({"default": [client]}))
    config = annotator_config(model, url, str((out / "client.yaml").resolve()))
    (out / "configs.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out / "configs.yaml"


def write_annotator_config(out: str | Path, url: str, model: str | None = None, template: str | None = None,
                           api_key_env: str | None = None) -> Path:
    """`judge_question`, then `write_annotator_files` into `out`; returns the path of configs.yaml."""
    return write_annotator_files(out, *judge_question(url, model, template, api_key_env))


def check_lc_reference(csv: str | Path) -> Path:
    """A local copy of AlpacaEval's `df_gamed.csv`, its columns checked."""
    csv = Path(csv)
    if not csv.is_file():
        raise InputError(f"--lc-reference {csv}: no such file (AlpacaEval's {LC_FILE}, from the Hub dataset {LC_REPO})")
    header = csv.open(encoding="utf-8").readline()
    missing = [c for c in ("index", "instruction_difficulty", "preference", "std_delta_len", "not_gamed_baseline")
               if c not in header.strip().split(",")]
    if missing:
        raise InputError(f"{csv}:1: not AlpacaEval's {LC_FILE}: no column {', '.join(missing)}")
    return csv


def seed_lc_reference(csv: str | Path, cache: str | Path) -> Path:
    """Put a local copy of AlpacaEval's `df_gamed.csv` into a hub cache folder, where alpaca_eval's
    `hf_hub_download` finds it offline (`HF_HUB_OFFLINE=1 HF_HUB_CACHE=cache`). Returns the cached file."""
    csv = check_lc_reference(csv)
    repo = Path(cache) / f"datasets--{LC_REPO.replace('/', '--')}"
    revision = hashlib.sha1(csv.read_bytes()).hexdigest()  # a snapshot name of its own: the file's content
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    target = repo / "snapshots" / revision / LC_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(csv, target)
    return target


def main(cfg: AlpacaEvalJudgeConfig) -> Path:
    """The annotator config in the run folder `cfg.out` (claimed as every rapref writer claims one: a user's folder
    is never written into), the judge asked for its model list first; returns its configs.yaml."""
    run = RunFolder(cfg.out, "alpaca-eval-judge", overwrite=cfg.overwrite, continue_unfinished=True, empty=True,
                    inputs=(cfg.judge_template, cfg.lc_reference))
    question = judge_question(cfg.url, cfg.judge_model, cfg.judge_template, cfg.api_key_env)
    if cfg.lc_reference:
        check_lc_reference(cfg.lc_reference)
    with run:
        config = write_annotator_files(run.path, *question)
        if cfg.lc_reference:
            from huggingface_hub import constants

            seed_lc_reference(cfg.lc_reference, cfg.hub_cache or constants.HF_HUB_CACHE)
    return config


__all__ = ["AlpacaEvalJudgeConfig", "annotator_config", "judge_question", "write_annotator_files",
           "write_annotator_config", "check_lc_reference", "seed_lc_reference", "main"]
