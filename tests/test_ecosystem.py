"""Where rapref meets a researcher's other tools: benchmark files in and out, model cards and the Hub, LoRA merge,
progress in a terminal and a log file, and help that teaches."""

import json
import re
from pathlib import Path

from rapref.cli import main as cli


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_mt_bench_round_trip_keeps_ids_and_asks_turn_two_with_turn_one(tmp_path, trained_dir, fixtures):
    gens = tmp_path / "mt.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "mt_bench_question.jsonl"), "--num-samples",
                "2", "--max-new-tokens", "6", "--out", str(gens)]) == 0
    rows = read_jsonl(gens)
    assert len(rows) == 2 * 2 * 2  # questions x samples x turns
    second = next(r for r in rows if r["question_id"] == 81 and r["turn"] == 1 and r["sample"] == 1)
    first = next(r for r in rows if r["question_id"] == 81 and r["turn"] == 0 and r["sample"] == 1)
    assert [m["role"] for m in second["prompt"]] == ["user", "assistant", "user"]
    assert second["prompt"][1]["content"] == first["text"]  # turn two sees the answer to turn one
    assert second["prompt"][2]["content"].startswith("Rewrite your note") and second["category"] == "writing"
    out = tmp_path / "answer.jsonl"
    assert cli(["export", "mt-bench", str(gens), "--name", "m", "--out", str(out)]) == 0
    answers = read_jsonl(out)
    assert [a["question_id"] for a in answers] == [81, 82]  # the source's ids, with their type
    assert set(answers[0]) == {"question_id", "answer_id", "model_id", "choices", "tstamp"}
    assert [c["index"] for c in answers[0]["choices"]] == [0, 1]
    assert answers[0]["choices"][1]["turns"] == [first["text"], second["text"]]


def test_arena_hard_round_trip_counts_tokens(tmp_path, trained_dir, fixtures):
    from rapref.models import load_tokenizer

    gens, out = tmp_path / "ah.jsonl", tmp_path / "answer.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "arena_hard_question.jsonl"),
                "--max-new-tokens", "8", "--out", str(gens)]) == 0
    assert cli(["export", "arena-hard", str(gens), "--name", "m", "--out", str(out)]) == 0
    answers = read_jsonl(out)
    questions = read_jsonl(fixtures / "arena_hard_question.jsonl")
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in questions]
    tokenizer = load_tokenizer(str(trained_dir))
    for answer, row in zip(answers, read_jsonl(gens)):
        turn = answer["choices"][0]["turns"][0]
        assert turn["content"] == row["text"]
        assert turn["token_len"] == len(tokenizer(row["text"], add_special_tokens=False)["input_ids"])
    assert read_jsonl(gens)[0]["cluster"] == "Sorting Puzzles"


def test_alpaca_eval_round_trip_and_goal_sweeps(tmp_path, trained_dir, fixtures, capsys):
    gens, out = tmp_path / "ae.jsonl", tmp_path / "model_outputs.json"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "alpaca_eval.json"), "--max-new-tokens", "6",
                "--out", str(gens)]) == 0
    assert cli(["export", "alpaca-eval", str(gens), "--name", "m", "--out", str(out)]) == 0
    outputs = json.loads(out.read_text())
    source = json.loads((fixtures / "alpaca_eval.json").read_text())
    assert [(o["instruction"], o["dataset"], o["generator"]) for o in outputs] == \
        [(s["instruction"], s["dataset"], "m") for s in source]
    sweep = tmp_path / "sweep.jsonl"
    assert cli(["generate", str(trained_dir), "--prompts", str(fixtures / "mt_bench_question.jsonl"), "--goals",
                "3,10", "--max-new-tokens", "4", "--out", str(sweep)]) == 0
    capsys.readouterr()
    assert cli(["export", "mt-bench", str(sweep), "--name", "m", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "goal sweep" in capsys.readouterr().err and not (tmp_path / "x.jsonl").exists()
    assert cli(["export", "mt-bench", str(sweep), "--goal", "3", "--name", "m", "--out", str(tmp_path / "g3.jsonl")]) == 0
    answers = read_jsonl(tmp_path / "g3.jsonl")
    assert len(answers) == 2 and all(len(a["choices"][0]["turns"]) == 2 for a in answers)


def test_generate_reads_goal_settings_from_a_hub_id(tmp_path, trained_dir, fixtures, monkeypatch):
    import huggingface_hub

    import rapref.generate.run as gen
    import rapref.io

    asked = []
    monkeypatch.setattr(rapref.io, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, name: asked.append((repo, name)) or str(trained_dir / name))
    monkeypatch.setattr(gen, "generate_texts", lambda model, prompts, sampling, backend, **_: [model] * len(prompts))
    out = tmp_path / "g.jsonl"
    assert cli(["generate", "someone/policy", "--prompts", str(fixtures / "alpaca_eval.json"), "--out", str(out)]) == 0
    assert asked == [("someone/policy", "rapref_goal.json")] and read_jsonl(out)[0]["text"] == "someone/policy"
    assert read_jsonl(out)[0]["goal"] == 10.0


def train_tiny(tmp_path, tiny_model_dir, relabeled_dir, *overrides):
    out = tmp_path / "run"
    args = ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", f"output_dir={out}",
            "data.max_prompt_length=160", "training.max_length=224", "training.per_device_train_batch_size=2",
            "training.max_steps=4", "training.disable_tqdm=true", *overrides]
    assert cli(args) == 0
    return out


def test_every_save_carries_tokenizer_goal_settings_and_a_model_card(tmp_path, tiny_model_dir, relabeled_dir):
    out = train_tiny(tmp_path, tiny_model_dir, relabeled_dir, "training.save_steps=2")
    for folder in (out, out / "checkpoint-2", out / "checkpoint-4"):
        names = {p.name for p in folder.iterdir()}
        assert {"rapref_goal.json", "tokenizer.json", "README.md"} <= names, folder
        card = (folder / "README.md").read_text()
        assert "[None]" not in card and "fine-tuned version" not in card
        assert str(tiny_model_dir) in card and str(relabeled_dir) in card and "Overall score: 10." in card
    assert "training loss" in (out / "README.md").read_text()
    # the card's plain-transformers snippet runs as written
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    exec(code.replace('path = "run"', f'path = "{out}"').replace("max_new_tokens=256", "max_new_tokens=3"), {})


def test_push_to_hub_uploads_a_folder_with_everything(tmp_path, tiny_model_dir, relabeled_dir, monkeypatch):
    import transformers.trainer

    import rapref.train.config

    uploads = []

    class Done:  # a finished upload job
        def is_done(self):
            return True

        def done(self):
            return True

    class FakeApi:  # records what an upload would carry
        def upload_folder(self, folder_path, **kwargs):
            uploads.append({p.name: p.read_bytes() for p in Path(folder_path).iterdir() if p.is_file()})
            return Done()

    def init_hf_repo(self, token=None, private=None):
        self.hub_model_id, self.push_in_progress = "me/policy", None

    monkeypatch.setattr(transformers.trainer, "hf_api", lambda: FakeApi())
    monkeypatch.setattr(transformers.Trainer, "init_hf_repo", init_hf_repo)
    monkeypatch.setattr(rapref.train.config, "hub_offline", lambda: False, raising=False)
    monkeypatch.setattr("rapref.io.hub_offline", lambda: False)
    train_tiny(tmp_path, tiny_model_dir, relabeled_dir, "training.push_to_hub=true",
               "training.hub_model_id=me/policy")
    assert uploads, "nothing was pushed"
    pushed = uploads[-1]
    assert {"rapref_goal.json", "tokenizer.json", "README.md", "model.safetensors", "rapref_train.json"} <= set(pushed)
    card = pushed["README.md"].decode()
    assert "# me/policy" in card and "Overall score: 10." in card and "training loss" in card


def test_lora_run_merges_into_a_full_model(tmp_path, tiny_model_dir, relabeled_dir):
    import torch

    from rapref.models import load_merged_lora, load_model

    run = train_tiny(tmp_path, tiny_model_dir, relabeled_dir, "lora.enabled=true", "lora.r=4",
                     "training.learning_rate=0.01")
    merged = tmp_path / "merged"
    assert cli(["model", "merge", str(run), "--out", str(merged)]) == 0
    assert {"rapref_goal.json", "tokenizer.json", "README.md", "model.safetensors"} <= {p.name for p in merged.iterdir()}
    assert not (merged / "adapter_config.json").exists()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        full = load_model(str(merged)).eval()(ids).logits
        lora = load_merged_lora(str(run)).eval()(ids).logits
        base = load_model(str(tiny_model_dir)).eval()(ids).logits
    assert torch.allclose(full, lora, atol=1e-5) and not torch.allclose(full, base, atol=1e-4)


def test_progress_in_a_log_file_quiet_and_rank_zero(monkeypatch, capsys):
    import time

    from rapref import progress

    monkeypatch.setenv("RAPREF_PROGRESS_SECONDS", "0.01")
    monkeypatch.delenv("RAPREF_QUIET", raising=False)
    monkeypatch.setattr(progress, "interactive", lambda: False)  # output goes to a file
    for _ in progress.track(range(3), "Judging", unit="batch"):
        time.sleep(0.02)
    err = capsys.readouterr().err
    assert "\r" not in err and "Judging: 1/3 batch" in err and "left" in err and "Judging: done, 3/3 batch" in err
    monkeypatch.setenv("RANK", "1")
    progress.say("result")
    list(progress.track(range(3), "Judging"))
    assert capsys.readouterr() == ("", "")  # only rank 0 prints
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("RAPREF_QUIET", "1")
    progress.say("result")
    list(progress.track(range(3), "Judging"))
    assert capsys.readouterr() == ("", "")


def test_quiet_flag_leaves_only_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RAPREF_QUIET", raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    assert cli(["model", "tiny", "--out", str(tmp_path / "t"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert cli(["model", "tiny", "--out", str(tmp_path / "u"), "--log-level", "info"]) == 0
    assert "rapref model tiny" in capsys.readouterr().out


def test_every_commands_help_renders():
    """argparse expands `%` in help texts when --help is asked: a bare one (a share written as 10%) is a traceback."""
    import argparse

    from rapref.cli import build_parser

    def walk(parser, name):
        parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, child in action.choices.items():
                    yield from walk(child, f"{name} {sub}")
        yield name

    assert len(list(walk(build_parser()[0], "rapref"))) > 15


def test_help_that_teaches(capsys, tmp_path, tiny_model_dir, relabeled_dir):
    from rapref import __version__

    assert cli(["--version"]) == 0 and capsys.readouterr().out.strip() == f"rapref {__version__}"
    assert cli(["--help"]) == 0
    top = capsys.readouterr().out
    assert "relabel scored pairs with goals" in top and "make a tiny local model" in top
    assert cli(["generate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.7)" in text and "(default: 256)" in text
    assert cli(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "algorithm:" in text and "beta: 0.1" in text and "max_prompt_length: 512" in text
    assert cli(["generate", "x", "--prompts", "p", "--out", "o", "--temprature", "1"]) == 2
    assert "did you mean --temperature?" in capsys.readouterr().err
    assert cli(["trian"]) == 2 and "did you mean 'train'?" in capsys.readouterr().err
    assert cli(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", "algorithm.beta=0.3",
                "--show-config"]) == 0
    import yaml

    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["algorithm"]["beta"] == 0.3 and shown["lora"]["r"] == 16 and shown["seed"] == 42


def test_license_is_an_spdx_expression():
    import tomllib

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and (root / "LICENSE").read_text().startswith(" " * 33 + "Apache License")
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    from importlib.metadata import version

    for name in ("trl", "transformers", "datasets", "pyarrow"):
        assert pins[name] == version(name), name  # the set-up installs the versions the README's figures used
