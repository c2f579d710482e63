"""`rapref generate` on a Hub id: the policy's goal settings are read from the Hub repository."""

from rapref.cli import main as cli
from rapref.io import read_jsonl


def test_generate_reads_goal_settings_from_a_hub_id(tmp_path, trained_dir, fixtures, monkeypatch):
    import huggingface_hub

    import rapref.generate.run as gen
    import rapref.io
    import rapref.models

    asked = []
    monkeypatch.setattr(rapref.io, "hub_offline", lambda: False)
    monkeypatch.setattr(rapref.models, "hub_offline", lambda: False)  # imported by name there
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, name: asked.append((repo, name)) or str(trained_dir / name))
    monkeypatch.setattr(gen, "generate_texts", lambda model, prompts, sampling, backend, **_: [model] * len(prompts))
    out = tmp_path / "g.jsonl"
    assert cli(["generate", "someone/policy", "--prompts", str(fixtures / "alpaca_eval.json"), "--out", str(out)]) == 0
    assert asked == [("someone/policy", "rapref_goal.json")] and read_jsonl(out)[0]["text"] == "someone/policy"
    assert read_jsonl(out)[0]["goal"] == 10.0
