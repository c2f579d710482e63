"""What a `rapref train` run saves: every checkpoint carries the tokenizer, the goal settings and a model card whose
snippet runs as written; a push to the Hub uploads all of it; long recipes save checkpoints by default."""

import re
from pathlib import Path

from helpers import ROOT, train_tiny


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


def test_long_recipes_save_checkpoints_by_default(tiny_model_dir, relabeled_dir):
    import yaml

    from rapref.train.config import load_config
    from rapref.train.run import trl_args

    args = trl_args(load_config(None, [f"model.name_or_path={tiny_model_dir}", f"data.path={relabeled_dir}"]), False)
    assert args.save_strategy == "steps" and args.save_steps == 200
    for recipe in (ROOT / "recipes").glob("*/*.yaml"):
        training = yaml.safe_load(recipe.read_text()).get("training", {})
        assert training.get("save_strategy", "steps") != "no", recipe
