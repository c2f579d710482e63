"""`rapref generate` writes as it goes and resumes (its resume file keyed by the model's content); worker processes
give the same texts as one process."""

import json

import pytest

from rapref.cli import main as cli
from rapref.generate import run as gen
from rapref.inference import sampler
from rapref.generate.run import GenerateConfig
from rapref.inference.sampler import SamplingConfig


def write_prompts(path, n):
    path.write_text("".join(json.dumps({"prompt_id": f"q{i}", "prompt": "word " * (1 + i % 5) + "?"}) + "\n"
                            for i in range(n)))
    return path


def texts_of(path):
    return [(r["prompt_id"], r["sample"], r["text"]) for r in map(json.loads, path.read_text().splitlines())]


def config(model, prompts, out, **kw):
    return GenerateConfig(model=str(model), prompts=str(prompts), out=str(out), no_goal=True, backend="transformers",
                          sampling=SamplingConfig(max_new_tokens=5, temperature=1.0, batch_size=3, num_samples=2),
                          **kw)


def test_batches_are_sorted_by_length_and_cover_every_prompt():
    ids = [[1] * n for n in (3, 9, 1, 9, 5)]
    plan = sampler.plan_batches(ids, 2)
    assert [b for b, _ in plan] == [0, 1, 2]
    assert [idx for _, idx in plan] == [[1, 3], [4, 0], [2]]  # longest first, ties in prompt order


def test_interrupted_run_resumes_with_the_same_texts(tmp_path, tiny_model_dir, monkeypatch):
    prompts = write_prompts(tmp_path / "p.jsonl", 7)  # 14 jobs -> 5 batches of 3
    whole = tmp_path / "whole.jsonl"
    gen.main(config(tiny_model_dir, prompts, whole))
    assert not (tmp_path / "whole.jsonl.partial").exists()  # removed once the output is written

    real, calls = sampler._sample, []

    def stop_after_two(*args):
        calls.append(args[-1])
        if len(calls) > 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sampler, "_sample", stop_after_two)
    out = tmp_path / "g.jsonl"
    with pytest.raises(KeyboardInterrupt):
        gen.main(config(tiny_model_dir, prompts, out))
    assert not out.exists()  # no half output
    partial = (tmp_path / "g.jsonl.partial").read_text().splitlines()
    assert len(partial) == 1 + 6  # header + two batches of three

    calls.clear()
    monkeypatch.setattr(sampler, "_sample", lambda *args: calls.append(args[-1]) or real(*args))
    gen.main(config(tiny_model_dir, prompts, out))
    assert calls == [2, 3, 4]  # only the unfinished batches are sampled again
    assert texts_of(out) == texts_of(whole)


def test_a_partial_file_from_other_settings_is_started_afresh(tmp_path, tiny_model_dir, monkeypatch):
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    out = tmp_path / "g.jsonl"
    (tmp_path / "g.jsonl.partial").write_text(json.dumps({"rapref_generate_partial": {"model": "other"}}) + "\n" +
                                              json.dumps({"turn": 0, "job": 0, "text": "STALE"}) + "\n")
    gen.main(config(tiny_model_dir, prompts, out))
    assert "STALE" not in out.read_text()


def test_a_cut_short_last_line_is_ignored(tmp_path, tiny_model_dir):
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    out = tmp_path / "g.jsonl"
    cfg = config(tiny_model_dir, prompts, out)
    resume = gen.ResumeFile(out, gen.resume_settings(cfg, [None], gen.load_prompts(str(prompts))))
    resume.add(0, [0, 1, 2, 3], [f"kept {j}" for j in range(4)])  # every batch finished
    with open(resume.path, "a") as handle:
        handle.write('{"turn": 0, "job": 1, "te')  # the writer was killed mid-line
    rows = gen.main(cfg)
    assert [r["text"] for r in rows] == [f"kept {j}" for j in range(4)]


def test_two_single_thread_workers_give_the_texts_of_one_process(tmp_path, tiny_model_dir, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", 5)
    outs = {}
    for workers in (1, 2):
        outs[workers] = tmp_path / f"w{workers}.jsonl"
        code = cli(["generate", str(tiny_model_dir), "--prompts", str(prompts), "--no-goal", "--out",
                    str(outs[workers]), "--max-new-tokens", "4", "--batch-size", "2", "--num-samples", "2",
                    "--temperature", "1.0", "--workers", str(workers), "--backend", "transformers"])
        assert code == 0, capsys.readouterr().err
    assert texts_of(outs[2]) == texts_of(outs[1])


def test_workers_must_be_positive(tmp_path, tiny_model_dir):
    from rapref.io import InputError

    with pytest.raises(InputError, match=r"^workers must be at least 1, got 0$"):  # from Python: the field's name
        config(tiny_model_dir, write_prompts(tmp_path / "p.jsonl", 1), tmp_path / "g.jsonl", workers=0)


def test_a_generation_resume_file_is_keyed_by_the_models_content(tmp_path, tiny_model_dir):
    import shutil

    from rapref.generate.run import GenerateConfig, resume_settings

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = GenerateConfig(model=str(model), prompts="p.jsonl", out="o.jsonl", no_goal=True)
    before = resume_settings(cfg, [None], [{"prompt_id": "0", "prompt": "Q"}])
    (model / "config.json").write_text((model / "config.json").read_text() + " ")  # saved again
    after = resume_settings(cfg, [None], [{"prompt_id": "0", "prompt": "Q"}])
    assert before["model_fingerprint"] != after["model_fingerprint"]
