"""What a new user meets in the first hour besides the data: refusals that protect finished work, `--show-config`
with TRL's defaults, a smoke run's own folder, the model card's paths, generations that record their goal text."""

import pytest
import yaml

from rapref.cli import main


def test_a_refusal_names_a_fresh_out_before_overwrite(tmp_path, capsys):
    from rapref.runs.folder import finish_output

    done = tmp_path / "runs" / "gen.jsonl"
    finish_output(tmp_path / "runs" / "data", "augment")
    (tmp_path / "runs" / "data" / "x").write_text("finished work")
    assert main(["augment", "examples/none.jsonl", "--out", str(tmp_path / "runs" / "data")]) == 2
    err = capsys.readouterr().err
    assert err.index("give a fresh --out (e.g.") < err.index("--overwrite deletes it")
    assert str(tmp_path / "runs" / "data-2") in err
    from rapref.runs.folder import fresh_name

    assert fresh_name(done) == str(tmp_path / "runs" / "gen-2.jsonl")  # a file keeps its extension
    (tmp_path / "runs" / "gen-2.jsonl").write_text("x")
    assert fresh_name(done) == str(tmp_path / "runs" / "gen-3.jsonl")


def test_show_config_shows_trl_defaults(capsys, tiny_model_dir, relabeled_dir):
    assert main(["train", f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}", "--show-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    trl = shown["trl"]
    assert trl["beta"] == shown["algorithm"]["beta"] and trl["seed"] == shown["seed"]
    for default in ("lr_scheduler_type", "weight_decay", "adam_beta1", "max_grad_norm", "loss_type"):
        assert default in trl, default  # TRL's and transformers' own defaults, not only the recipe's keys


def test_a_smoke_run_has_its_own_default_folder():
    from rapref.cli import build_parser
    from rapref.commands.demo import config_from_args

    parser, _ = build_parser()
    assert config_from_args(parser.parse_args(["demo", "--quick"])).out == "runs/demo-quick"
    assert config_from_args(parser.parse_args(["demo"])).out == "runs/demo"


def test_model_card_commands_use_the_saved_path(trained_dir, capsys):
    assert main(["model", "card", str(trained_dir)]) == 0
    card = capsys.readouterr().out
    assert f"rapref generate {trained_dir} " in card and f'path = "{trained_dir}"' in card
    assert f"rapref show {trained_dir}" in card


def test_the_train_refusal_names_output_dir(tmp_path):
    """`rapref train` takes `output_dir=PATH`, not --out: its refusal says so."""
    from rapref.io import InputError
    from rapref.runs.folder import claim_output, finish_output

    out = tmp_path / "run"
    out.mkdir()
    finish_output(out, "train")
    with pytest.raises(InputError, match=r"output_dir=.*run-2\)") as err:
        claim_output(out, "train")
    assert "--out" not in str(err.value)
