"""`rapref generate` refuses, before any sampling, settings that cannot be honoured: non-finite or out-of-range
sampling values, a goal named twice, a prompt (or answer) that does not fit the model's context; degenerate values
(a zero limit, batch size or top-p) on a trained policy. One line, exit 2."""

import json

import pytest

from helpers import one_line_error
from rapref.cli import main as cli


@pytest.fixture()
def prompts(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt_id": "short", "prompt": "Hello?"}) + "\n")
    return path


@pytest.mark.parametrize("flags,needle", [
    (["--temperature", "inf"], "--temperature must be a finite number, got inf"),
    (["--temperature", "nan"], "--temperature must be a finite number, got nan"),
    (["--temperature", "-1"], "--temperature must be 0 (greedy) or from 0.01 to 100"),
    (["--temperature", "1e-300"], "--temperature must be 0 (greedy) or from 0.01 to 100 (below, logits divided"),
    (["--temperature", "0.001"], "sampling is uniform noise), got 0.001"),
    (["--temperature", "1e12"], "sampling is uniform noise), got 1e+12"),
    (["--top-p", "0"], "--top-p must lie in (0, 1]"),
    (["--top-p", "nan"], "--top-p must be a finite number"),
    (["--top-p", "1.5"], "--top-p must lie in (0, 1]"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["--max-new-tokens", "-1"], "--max-new-tokens must be at least 1"),
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--goals", "3,3.0,10"], "names goal 3 twice"),
    (["--goals", "nan"], "--goals: nan is not a finite number"),
    (["--goals", ","], "--goals is empty"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("-") else None)
def test_sampling_settings_that_cannot_be_honoured_are_refused(tmp_path, capsys, tiny_model_dir, prompts, flags,
                                                                needle):
    out = tmp_path / "g.jsonl"
    goal = [] if "--goals" in flags else ["--no-goal"]
    assert cli(["generate", str(tiny_model_dir), *goal, "--prompts", str(prompts), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_library_callers_get_the_same_checks():
    from rapref.inference.sampler import SamplingConfig
    from rapref.io import InputError

    for bad in ({"max_new_tokens": float("inf")}, {"max_new_tokens": 2.5}, {"batch_size": True},
                {"temperature": "0.7"}):
        with pytest.raises(InputError, match="must be"):
            SamplingConfig(**bad)


def test_prompts_and_answers_must_fit_the_models_context(tmp_path, capsys, tiny_model_dir, prompts):
    """The tiny model's context is 512 tokens: a longer prompt is refused by its id (transformers would only warn and
    read positions the model never learned), and so is a --max-new-tokens that could never be honoured."""
    context = json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"]
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"prompt_id": "short", "prompt": "Hi"}) + "\n"
                    + json.dumps({"prompt_id": "essay", "prompt": "word " * 4 * context}) + "\n")
    for source, flags, needle in (
            (long, ["--max-new-tokens", "4"], "prompt_id 'essay': "),
            (prompts, ["--max-new-tokens", "1000000000000"], f"not below the model's context of {context} tokens"),
            (prompts, ["--max-new-tokens", str(context)], f"not below the model's context of {context} tokens"),
            (prompts, ["--max-new-tokens", str(context - 2)], "lower --max-new-tokens to")):
        out = tmp_path / "g.jsonl"
        assert cli(["generate", str(tiny_model_dir), "--no-goal", "--prompts", str(source), "--out", str(out),
                    *flags]) == 2, flags
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not out.exists() and not (tmp_path / "g.jsonl.partial").exists()


GENERATE_DEGENERATE = [(["--temperature", "-1"], "--temperature must be 0 (greedy) or from 0.01 to 100"),
                       (["--num-samples", "0"], "--num-samples must be at least 1"),
                       (["--limit", "0"], "--limit must be at least 1"),
                       (["--top-p", "0"], "--top-p must lie in (0, 1]"),
                       (["--top-p", "2"], "--top-p must lie in (0, 1]"),
                       (["--batch-size", "0"], "--batch-size must be at least 1"),
                       (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1")]


@pytest.mark.parametrize("flags,needle", GENERATE_DEGENERATE)
def test_degenerate_sampling_values_are_refused(flags, needle, tmp_path, capsys, trained_dir):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "Q?"}) + "\n")
    one_line_error(capsys, ["generate", str(trained_dir), "--prompts", str(prompts), "--out",
                            str(tmp_path / "g.jsonl"), *flags], needle)
    assert not (tmp_path / "g.jsonl").exists()
