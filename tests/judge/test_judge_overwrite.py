"""`rapref judge --overwrite` that fails leaves none of the earlier run's results behind to be read as data."""

from __future__ import annotations

import json

import pytest

from rapref.io import InputError
from rapref.judge.run import JudgeConfig, main


def _generations(path, constraints: bool):
    rows = [{"prompt_id": str(i), "prompt": f"say {i}", "text": "a b c",
             **({"constraints": [{"type": "max_words", "value": 5}]} if constraints else {})} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_failed_overwrite_removes_the_earlier_scores(tmp_path):
    out = tmp_path / "judge"
    good = _generations(tmp_path / "good.jsonl", constraints=True)
    main(JudgeConfig(generations=good, scorer="constraints", out=str(out)))
    assert (out / "scores.jsonl").is_file() and (out / "aggregate.json").is_file()
    bad = _generations(tmp_path / "bad.jsonl", constraints=False)
    with pytest.raises(InputError, match="has no 'constraints'"):
        main(JudgeConfig(generations=bad, scorer="constraints", out=str(out), overwrite=True))
    assert not (out / "scores.jsonl").exists() and not (out / "aggregate.json").exists()
