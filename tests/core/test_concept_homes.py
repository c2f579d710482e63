"""One owner per concept, so that copies cannot drift apart again (they did: training and inference once tokenized
the same prompt differently). Each test names the concept's home and checks nobody else does its job."""

import re

from helpers import ROOT

SRC = ROOT / "src" / "rapref"


def sources(exclude=()):
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel not in exclude:
            yield rel, path.read_text()


def offenders(pattern: str, home: tuple[str, ...]) -> list[str]:
    regex = re.compile(pattern)
    return [rel for rel, text in sources(home) if regex.search(text)]


def test_goal_layout_lives_in_goals():
    """Writing a goal into a prompt (and reading the layout back) happens only in goals.py."""
    assert offenders(r"binary_join_element_wise|def (with_goal|split_instruction)\b", ("goals.py",)) == []


def test_prompt_tokens_come_from_prompting():
    """Chat templates are applied to policy prompts only in prompting.py (the reward model scorer renders its own
    input with the reward model's template)."""
    assert offenders(r"(?<!def )apply_chat_template\(", ("prompting.py", "judge/reward_model.py", CARD)) == []  # calls


CARD = "train/card.py"  # the model card's usage example is code for the model's users, not a rapref code path


def test_models_are_loaded_in_models():
    assert offenders(r"\.from_pretrained\(", ("models.py", CARD)) == []


def test_statistics_live_in_stats():
    assert offenders(r"ddof\s*=\s*1|def mean_and_stderr|t\.ppf\(", ("stats.py",)) == []


def test_jsonl_and_augment_folders_have_one_reader():
    # the judge's score cache parses its own lines: a torn final line (a run killed mid-append) is cut, not refused
    assert offenders(r"json\.loads\(line\)", ("io.py", "judge/run.py")) == []
    assert offenders(r"pq\.read_table\(", ("formats/dataset.py", "io.py")) == []


def test_no_algorithm_if_chains():
    """The algorithm table (train/algorithms.py) is the only place that knows algorithm names."""
    assert offenders(r"(algorithm|algo|name)\s*==\s*\"(dpo|kto|orpo|simpo|cpo)\"|in \(\"simpo\", \"cpo\"\)",
                     ("train/algorithms.py",)) == []


def test_stages_do_not_reach_into_generate_for_prompt_helpers():
    assert offenders(r"from rapref\.evaluate\.generate import .*(conditioned_prompt|instruction_text)", ()) == []
