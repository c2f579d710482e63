"""The relabeling rule, checked against rows written out by hand for every placement and option."""

import copy

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapref.goals import GoalSpec, goal_prompt
from rapref.data.relabel import RelabelOptions, condition_on, relabel

SPEC = dict(header="Goal on {lo}-{hi}:", line="{name}={score}")


def string_pairs():
    return pa.table({"source_id": ["r0", "r1"], "prompt": ["P0", "P1"], "chosen": ["W0", "W1"],
                     "rejected": ["L0", "L1"], "score_chosen": [9.0, 7.5], "score_rejected": [3.0, 7.5]})


def message_pairs(system=False):
    prompt = [{"role": "user", "content": "P0"}]
    if system:
        prompt = [{"role": "system", "content": "S"}] + prompt
    return pa.Table.from_pylist([
        {"source_id": "r0", "prompt": prompt, "chosen": [{"role": "assistant", "content": "W0"}],
         "rejected": [{"role": "assistant", "content": "L0"}], "score_chosen": 9.0, "score_rejected": 3.0},
        {"source_id": "r1", "prompt": [{"role": "user", "content": "P1"}, {"role": "assistant", "content": "A"},
                                       {"role": "user", "content": "P1b"}],
         "chosen": [{"role": "assistant", "content": "W1"}], "rejected": [{"role": "assistant", "content": "L1"}],
         "score_chosen": 6.0, "score_rejected": 2.0},
    ])


def test_user_placement_by_hand():
    out, stats = relabel(string_pairs(), GoalSpec(placement="user", **SPEC))
    assert out.select(["prompt", "chosen", "rejected", "source_id", "copy", "goal"]).to_pylist() == [
        {"prompt": "Goal on 1-10:\nOverall=9\n\nP0", "chosen": "W0", "rejected": "L0", "source_id": "r0",
         "copy": "positive", "goal": 9.0},
        {"prompt": "Goal on 1-10:\nOverall=7.5\n\nP1", "chosen": "W1", "rejected": "L1", "source_id": "r1",
         "copy": "positive", "goal": 7.5},
        {"prompt": "Goal on 1-10:\nOverall=3\n\nP0", "chosen": "L0", "rejected": "W0", "source_id": "r0",
         "copy": "negative", "goal": 3.0},
        {"prompt": "Goal on 1-10:\nOverall=7.5\n\nP1", "chosen": "L1", "rejected": "W1", "source_id": "r1",
         "copy": "negative", "goal": 7.5},
    ]
    assert stats["ties"] == 1 and stats["rows_out"] == 4


def test_user_suffix_placement_by_hand():
    out, _ = relabel(string_pairs(), GoalSpec(placement="user-suffix", **SPEC))
    assert out["prompt"].to_pylist()[2] == "P0\n\nGoal on 1-10:\nOverall=3"
    assert out["chosen"].to_pylist()[2] == "L0" and out["rejected"].to_pylist()[2] == "W0"


def test_system_placement_inserts_or_extends_system_message():
    out, _ = relabel(message_pairs(system=True), GoalSpec(placement="system", **SPEC))
    rows = out.to_pylist()
    assert rows[0]["prompt"] == [{"role": "system", "content": "Goal on 1-10:\nOverall=9\n\nS"},
                                 {"role": "user", "content": "P0"}]
    assert rows[1]["prompt"] == [{"role": "system", "content": "Goal on 1-10:\nOverall=6"},
                                 {"role": "user", "content": "P1"}, {"role": "assistant", "content": "A"},
                                 {"role": "user", "content": "P1b"}]
    assert rows[3]["prompt"][0] == {"role": "system", "content": "Goal on 1-10:\nOverall=2"}
    assert rows[3]["chosen"] == [{"role": "assistant", "content": "L1"}]
    assert rows[3]["rejected"] == [{"role": "assistant", "content": "W1"}]


def test_user_placement_on_messages_goes_in_first_user_turn_only():
    out, _ = relabel(message_pairs(), GoalSpec(placement="user", **SPEC))
    prompt = out.to_pylist()[1]["prompt"]
    assert prompt[0]["content"] == "Goal on 1-10:\nOverall=6\n\nP1" and prompt[2]["content"] == "P1b"


@pytest.mark.parametrize("placement", ["system", "user", "user-suffix"])
def test_negative_copy_is_swapped_in_every_placement(placement):
    out, _ = relabel(message_pairs(), GoalSpec(placement=placement, **SPEC))
    rows = out.to_pylist()
    n = len(rows) // 2
    for pos, neg in zip(rows[:n], rows[n:]):
        assert (neg["chosen"], neg["rejected"]) == (pos["rejected"], pos["chosen"])
        assert pos["goal"] == pos["score_chosen"] and neg["goal"] == neg["score_chosen"]
        assert neg["score_chosen"] == pos["score_rejected"]
        text = str(neg["prompt"])
        assert text.count("Goal on") == 1  # the goal is written exactly once (the authors' user-turn bug wrote two)


def test_input_is_never_mutated():
    table = message_pairs(system=True)
    before = copy.deepcopy(table.to_pylist())
    relabel(table, GoalSpec(placement="system", **SPEC))
    relabel(table, GoalSpec(placement="user", **SPEC))
    assert table.to_pylist() == before


def test_ties_drop_and_min_gap():
    out, stats = relabel(string_pairs(), GoalSpec(placement="user"), RelabelOptions(ties="drop"))
    assert out.num_rows == 2 and stats["dropped"] == {"tie": 1}
    out, stats = relabel(string_pairs(), GoalSpec(placement="user"), RelabelOptions(min_gap=7))
    assert out.num_rows == 0 and stats["dropped"]["score_gap_below_min"] == 2


def test_half_mode_keeps_the_input_size_and_is_seeded():
    n = 101
    table = pa.table({"source_id": [f"r{i}" for i in range(n)], "prompt": [f"p{i}" for i in range(n)],
                      "chosen": ["w"] * n, "rejected": ["l"] * n, "score_chosen": [8.0] * n,
                      "score_rejected": [2.0] * n})
    a, stats = relabel(table, GoalSpec(placement="user"), RelabelOptions(mode="half", seed=1))
    b, _ = relabel(table.take(list(reversed(range(n)))), GoalSpec(placement="user"),
                   RelabelOptions(mode="half", seed=1))
    c, _ = relabel(table, GoalSpec(placement="user"), RelabelOptions(mode="half", seed=2))
    assert a.num_rows == 100 and stats["dropped"]["half_mode_not_relabeled"] == 51
    assert set(a["source_id"].to_pylist()) == set(b["source_id"].to_pylist())  # order-independent
    assert set(a["source_id"].to_pylist()) != set(c["source_id"].to_pylist())


def test_positive_mode_keeps_only_the_positive_copies():
    full, _ = relabel(string_pairs(), GoalSpec(placement="user", **SPEC))
    out, stats = relabel(string_pairs(), GoalSpec(placement="user", **SPEC), RelabelOptions(mode="positive"))
    assert out.num_rows == string_pairs().num_rows == stats["rows_out"]
    assert out["copy"].to_pylist() == ["positive"] * out.num_rows
    assert out.to_pylist() == full.filter(pa.compute.equal(full["copy"], "positive")).to_pylist()


def test_original_and_duplicated_modes_carry_no_goal():
    out, _ = relabel(string_pairs(), GoalSpec(placement="user"), RelabelOptions(mode="duplicated"))
    assert out.num_rows == 4 and out["prompt"].to_pylist() == ["P0", "P1", "P0", "P1"]
    assert out["copy"].to_pylist() == ["original"] * 4 and out["goal"].null_count == 4


def test_condition_on_top_score():
    out = condition_on(string_pairs(), GoalSpec(placement="user", **SPEC), 10.0, copy="top_goal")
    assert out["prompt"].to_pylist() == ["Goal on 1-10:\nOverall=10\n\nP0", "Goal on 1-10:\nOverall=10\n\nP1"]
    assert out["chosen"].to_pylist() == ["W0", "W1"]


def test_multi_attribute_goals():
    attrs_w, attrs_l = {"A": 4.0, "B": 3.0}, {"A": 1.0, "B": 2.0}
    table = pa.Table.from_pylist([{"source_id": "r", "prompt": "P", "chosen": "W", "rejected": "L",
                                   "score_chosen": 3.5, "score_rejected": 1.5, "attributes_chosen": attrs_w,
                                   "attributes_rejected": attrs_l}])
    out, _ = relabel(table, GoalSpec(placement="user", attributes=("A", "B"), **SPEC))
    rows = out.to_pylist()
    assert rows[0]["prompt"] == "Goal on 1-10:\nA=4\nB=3\n\nP"
    assert rows[1]["prompt"] == "Goal on 1-10:\nA=1\nB=2\n\nP" and rows[1]["chosen"] == "L"
    assert rows[1]["goal_attributes"] == attrs_l


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
scores = st.integers(min_value=1, max_value=10).map(float) | st.sampled_from([7.5, 2.25])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, texts, texts, scores, scores), min_size=1, max_size=12),
       st.sampled_from(["system", "user", "user-suffix"]), st.booleans())
def test_property_matches_per_row_reference(rows, placement, conversational):
    """The vectorised relabeling equals the per-row rule for random pairs, placements and text forms."""
    spec = GoalSpec(placement=placement)
    conversational = conversational or placement == "system"

    def wrap(text, role):
        return [{"role": role, "content": text}] if conversational else text

    records = [{"source_id": f"r{i}", "prompt": wrap(p, "user"), "chosen": wrap(w, "assistant"),
                "rejected": wrap(lo, "assistant"), "score_chosen": rw, "score_rejected": rl}
               for i, (p, w, lo, rw, rl) in enumerate(rows)]
    out, stats = relabel(pa.Table.from_pylist(records), spec)
    assert out.num_rows == 2 * len(records) == stats["rows_out"]
    expected = []
    for copy_name, win, lose in (("positive", "chosen", "rejected"), ("negative", "rejected", "chosen")):
        for r in records:
            prompt = _reference_layout(r["prompt"], spec.text(r[f"score_{win}"]), placement)
            expected.append({"prompt": prompt, "chosen": r[win], "rejected": r[lose], "copy": copy_name,
                             "goal": r[f"score_{win}"]})
    got = out.select(["prompt", "chosen", "rejected", "copy", "goal"]).to_pylist()
    assert got == expected
    for r in records:  # the per-row helper everything else uses is the same layout
        assert goal_prompt(r["prompt"], spec, 7.5) == _reference_layout(r["prompt"], spec.text(7.5), placement)


def _reference_layout(prompt, goal: str, placement: str):
    """The placement rule (system message; goal then a blank line before the first user turn; or after it), written
    out per row as an independent oracle."""
    if isinstance(prompt, str):
        return goal + "\n\n" + prompt if placement == "user" else prompt + "\n\n" + goal
    out = [dict(m) for m in prompt]
    if placement == "system":
        if out[0]["role"] == "system":
            out[0]["content"] = goal + "\n\n" + out[0]["content"]
            return out
        return [{"role": "system", "content": goal}] + out
    user = next(m for m in out if m["role"] == "user")
    user["content"] = goal + "\n\n" + user["content"] if placement == "user" else user["content"] + "\n\n" + goal
    return out
