"""Every command that writes follows the output rule: a user's file or folder at `--out` survives byte for byte, with
and without `--overwrite`, and so does the command's own input given as `--out`.

The list of writers is read from the CLI itself: a new command (or action, diagnosis or export format) that takes
`--out` fails `test_every_writer_is_listed` until it gets a case here. Every folder command (and `generate`'s file)
refuses a user's folder with `--overwrite` too.
"""

import argparse
import hashlib
import json
from pathlib import Path

import pytest

from helpers import one_line_error
from rapref.cli import build_parser
from rapref.cli import main as cli

NOT_WRITERS = {"export:lm-eval": "prints a command", "model:card": "rewrites the card inside the run it reads"}


def length(row, text):
    return float(len(text))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model_dir, trained_dir, relabeled_dir) -> dict:
    folder = tmp_path_factory.mktemp("writer-inputs")
    pairs = folder / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}.",
                                         "score_chosen": 8.0, "score_rejected": 3.0}) + "\n" for i in range(8)))
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_id": f"p{i}", "prompt": f"Q{i}?"}) + "\n" for i in range(3)))
    gens = folder / "gens.jsonl"
    gens.write_text("".join(json.dumps({"prompt_id": f"p{i}", "question_id": i, "goal": 10.0, "sample": 0,
                                        "turn": 0, "prompt": f"Q{i}?", "text": f"A{i}", "model": str(trained_dir),
                                        "sampling": {}}) + "\n" for i in range(3)))
    scores = folder / "scores.jsonl"
    scores.write_text("".join(json.dumps({"prompt_id": f"p{i}", "goal": g, "prompt": "Q", "text": "A",
                                          "score": g / 2}) + "\n" for i in range(2) for g in (1.0, 10.0)))
    return {"model": str(tiny_model_dir), "trained": str(trained_dir), "data": str(relabeled_dir),
            "pairs": str(pairs), "prompts": str(prompts), "gens": str(gens), "scores": str(scores)}


# writer -> (argv for an output path, the input that must survive being given as --out; None: it reads no file)
CASES = {
    "augment": (lambda o, i: ["augment", i["pairs"], "--out", o], "pairs"),
    "train": (lambda o, i: ["train", f"model.name_or_path={i['model']}", f"data.path={i['data']}", f"output_dir={o}",
                            "training.max_steps=1"], "data"),
    "generate": (lambda o, i: ["generate", i["trained"], "--prompts", i["prompts"], "--out", o], "prompts"),
    "judge": (lambda o, i: ["judge", i["gens"], "--scorer", "python:test_output_rule:length", "--out", o], "gens"),
    "diagnose:unlearning": (lambda o, i: ["diagnose", "unlearning", "--policy", i["trained"], "--reference",
                                          i["model"], "--data", i["data"], "--out", o], "data"),
    "diagnose:accuracy": (lambda o, i: ["diagnose", "accuracy", "--policy", i["trained"], "--reference", i["model"],
                                        "--data", i["data"], "--out", o], "data"),
    "diagnose:controllability": (lambda o, i: ["diagnose", "controllability", "--scores", i["scores"], "--out", o],
                                 "scores"),
    "diagnose:implicit-relabel": (lambda o, i: ["diagnose", "implicit-relabel", "--policy", i["trained"],
                                                "--reference", i["model"], "--data", i["pairs"], "--out", o], "pairs"),
    "export:alpaca-eval": (lambda o, i: ["export", "alpaca-eval", i["gens"], "--out", o], "gens"),
    "export:mt-bench": (lambda o, i: ["export", "mt-bench", i["gens"], "--out", o], "gens"),
    "export:arena-hard": (lambda o, i: ["export", "arena-hard", i["gens"], "--out", o], "gens"),
    "prompts": (lambda o, i: ["prompts", "--split", "train", "--n", "2", "--out", o], None),
    "model:tiny": (lambda o, i: ["model", "tiny", "--out", o], None),
    "model:smollm2": (lambda o, i: ["model", "smollm2", "--out", o], None),
    "model:merge": (lambda o, i: ["model", "merge", i["trained"], "--out", o], "trained"),
    "onpolicy": (lambda o, i: ["onpolicy", "--policy", i["model"], "--prompts", i["prompts"], "--scorer",
                               "python:test_output_rule:length", "--out", o], "prompts"),
    "experiment:ifeval": (lambda o, i: ["experiment", "ifeval", "--model", i["model"], "--quick", "--out", o], "model"),
    "demo": (lambda o, i: ["demo", "--quick", "--out", o], None),
    "alpaca-eval-judge": (lambda o, i: ["alpaca-eval-judge", "http://127.0.0.1:9/v1", "--out", o], None),
}


def cli_writers() -> dict[str, argparse.ArgumentParser]:
    """Every command, action, diagnosis and export format of the CLI that writes (takes --out or output_dir)."""
    parser, _ = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    writers = {}
    for name, sub in commands.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        variants = nested[0].choices if nested else {None: sub}
        for variant, p in variants.items():
            choice = next((a for a in p._actions if not a.option_strings and a.choices), None)
            for kind in ([variant] if variant is not None or choice is None else list(choice.choices)):
                writes = any("--out" in a.option_strings for a in p._actions) or name == "train"
                key = name if kind is None else f"{name}:{kind}"
                if writes and key not in NOT_WRITERS:
                    writers[key] = p
    return writers


def test_every_writer_is_listed():
    found = set(cli_writers())
    assert found - set(CASES) == set(), "writers without a case in tests/commands/test_output_rule.py"
    assert set(CASES) - found == set(), "cases for commands the CLI no longer has"


def snapshot(path: Path) -> dict:
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(path.rglob("*"))}


def refused(capsys, argv) -> str:
    capsys.readouterr()
    code = cli(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (argv, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("writer", sorted(CASES))
def test_a_users_output_and_the_commands_input_survive(writer, inputs, tmp_path, capsys):
    argv_for, own_input = CASES[writer]
    takes_overwrite = any("--overwrite" in a.option_strings for a in cli_writers()[writer]._actions)
    flags = [[], ["--overwrite"]] if takes_overwrite else [[]]
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    (folder / "data.jsonl").write_text('{"prompt_id": "x", "text": "mine", "goal": null, "sample": 0}\n')
    users_file = tmp_path / "results.jsonl"
    users_file.write_text('{"question_id": 1, "instruction": "mine", "output": "mine", "generator": "me"}\n')
    targets = [folder, users_file] + ([Path(inputs[own_input])] if own_input else [])
    before = {str(t): snapshot(t) for t in targets}
    for target in targets:
        for extra in flags:
            err = refused(capsys, argv_for(str(target), inputs) + extra)
            assert str(target) in err or target.name in err, err
    assert {str(t): snapshot(t) for t in targets} == before


def test_every_folder_command_refuses_a_users_folder(tmp_path, capsys, tiny_model_dir, trained_dir,
                                                     relabeled_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    gens = tmp_path / "g.jsonl"
    gens.write_text(json.dumps({"prompt_id": "q", "goal": None, "sample": 0, "prompt": "p", "text": "t",
                                "sampling": {}}) + "\n")
    one_line_error(capsys, ["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}",
                            f"output_dir={mine}", "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["judge", str(gens), "--scorer", "python:helpers:length", "--out", str(mine),
                            "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["diagnose", "controllability", "--scores", str(gens), "--out", str(mine),
                            "--overwrite"], "not written by rapref")
    one_line_error(capsys, ["demo", "--quick", "--out", str(mine), "--overwrite"], "not written by rapref")
    users_file = tmp_path / "results.jsonl"
    users_file.write_text('{"mine": 1}\n')
    one_line_error(capsys, ["generate", str(trained_dir), "--prompts", str(gens), "--out", str(users_file),
                            "--overwrite"], "not written by rapref")
    assert (mine / "keep.txt").read_text() == "x" and users_file.read_text() == '{"mine": 1}\n'
