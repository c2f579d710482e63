import pytest

from rapref.goals import GoalSpec, apply_goal, format_score, scale_field

AUTHORS = ("You are an assistant that generates responses for the instruction while implicitly achieving the "
           "following target scores (on a scale of 1-10, where 1 is lowest and 10 is highest):\nOverall score: 8.")


def test_default_text_is_the_authors_wording():
    assert GoalSpec().text(8.0) == AUTHORS


def test_scale_follows_the_data():
    assert "(on a scale of 0-4, where 0 is lowest and 4 is highest)" in GoalSpec(scale=(0, 4)).text(3)


@pytest.mark.parametrize("score,text", [(8.0, "8"), (8, "8"), (7.5, "7.5"), (0.0, "0"), (9.25, "9.25")])
def test_score_formatting(score, text):
    assert format_score(score) == text


def test_multi_attribute_goal_names_each_score():
    spec = GoalSpec(scale=(0, 4), attributes=("Helpfulness", "Correctness"))
    lines = spec.text({"Helpfulness": 3.0, "Correctness": 4.0}).splitlines()
    assert lines[1:] == ["Helpfulness score: 3.", "Correctness score: 4."]


def test_placements_on_text_and_messages():
    assert apply_goal("Q", "G", "user") == "G\n\nQ"
    assert apply_goal("Q", "G", "user-suffix") == "Q\n\nG"
    msgs = [{"role": "user", "content": "Q"}]
    assert apply_goal(msgs, "G", "system") == [{"role": "system", "content": "G"}, msgs[0]]
    assert apply_goal(msgs, "G", "user") == [{"role": "user", "content": "G\n\nQ"}]
    assert msgs == [{"role": "user", "content": "Q"}]  # not mutated
    with_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q"}]
    assert apply_goal(with_system, "G", "system")[0] == {"role": "system", "content": "G\n\nBe brief."}


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="placement"):
        GoalSpec(placement="assistant")
    with pytest.raises(ValueError, match="scale"):
        GoalSpec(scale=(10, 1))
    with pytest.raises(ValueError, match="LOW-HIGH"):
        scale_field("ten")
    assert scale_field("1-10") == (1.0, 10.0) and scale_field("0,4") == (0.0, 4.0)


def test_round_trip(tmp_path):
    spec = GoalSpec(scale=(1, 5), placement="user", attributes=("A", "B"))
    spec.save(tmp_path)
    assert GoalSpec.load(tmp_path) == spec


def test_scores_print_at_the_datas_precision():
    from rapref.goals import GoalSpec, format_score

    assert format_score(0.1 + 0.2) == "0.3" and format_score(7.5) == "7.5" and format_score(8.0) == "8"
    assert GoalSpec().text(0.1 + 0.2).endswith("Overall score: 0.3.")
