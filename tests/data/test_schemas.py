"""Each schema loader against fixture rows, with the expected pairs written out by hand."""

import pytest

from rapref.io import read_rows
from rapref.data.schemas import SchemaOptions, detect_schema, load_pairs
from rapref.data.schemas.responses import fit_score_mapping, make_pairs


def load(fixtures, name, schema=None, **options):
    rows = read_rows(str(fixtures / f"{name}.jsonl"))
    schema = schema or detect_schema(rows, name)
    return schema, load_pairs(rows, schema, SchemaOptions(**options), name)


@pytest.mark.parametrize("name,schema", [
    ("ultrafeedback", "ultrafeedback"), ("ultrafeedback_binarized", "ultrafeedback-binarized"),
    ("argilla", "argilla"), ("nectar", "nectar"), ("helpsteer2", "helpsteer2"), ("multi_sample", "multi-sample"),
])
def test_detection(fixtures, name, schema):
    assert detect_schema(read_rows(str(fixtures / f"{name}.jsonl")), name) == schema


def test_ultrafeedback_preprocessing(fixtures):
    _, loaded = load(fixtures, "ultrafeedback")
    pairs = loaded.pairs["train"]
    # row 0: chosen = best overall (9.0); rejected = a seeded random other valid completion
    assert pairs[0]["chosen"] == "Red." and pairs[0]["score_chosen"] == 9.0
    assert pairs[0]["rejected"] in {"Red, blue or yellow.", "Purple.", "Colours are nice."}
    # row 1: the "5" completion has an N/A rating and is left out; two valid ones remain
    assert (pairs[1]["chosen"], pairs[1]["rejected"], pairs[1]["score_rejected"]) == ("4", "Four.", 9.5)
    assert loaded.drops.counts == {"excluded_source": 1, "fewer_than_two_valid_completions": 1,
                                   "aspect_ratings_disagree": 1}
    assert loaded.scale == (1, 10)


def test_ultrafeedback_options(fixtures):
    _, loaded = load(fixtures, "ultrafeedback", consistency_filter=False, exclude_sources=())
    assert len(loaded.pairs["train"]) == 4
    assert loaded.pairs["train"][3]["chosen"] == "chat"  # mean aspect 2 < 5 kept without the filter


def test_ultrafeedback_rejected_is_seeded(fixtures):
    picks = {load(fixtures, "ultrafeedback", seed=s)[1].pairs["train"][0]["rejected"] for s in range(12)}
    assert len(picks) > 1  # different seeds pick different rejected completions
    again = {load(fixtures, "ultrafeedback", seed=3)[1].pairs["train"][0]["rejected"] for _ in range(3)}
    assert len(again) == 1


def test_binarized_strips_the_user_turn(fixtures):
    _, loaded = load(fixtures, "ultrafeedback_binarized")
    first = loaded.pairs["train"][0]
    assert first["prompt"] == [{"role": "user", "content": "Write a haiku about rain."}]
    assert first["chosen"] == [{"role": "assistant", "content": "Soft rain on tin roofs"}]
    assert first["rejected"] == [{"role": "assistant", "content": "Rain is wet."}]
    assert (first["score_chosen"], first["score_rejected"]) == (8.0, 5.0)


def test_argilla_scale_is_one_to_five(fixtures):
    _, loaded = load(fixtures, "argilla")
    assert loaded.scale == (1, 5)
    assert [(p["score_chosen"], p["score_rejected"]) for p in loaded.pairs["train"]] == [(4.75, 1.5), (5.0, 2.0)]


def test_nectar_ranks_become_scores(fixtures):
    _, loaded = load(fixtures, "nectar", pairing="best-vs-worst")
    (pair,) = loaded.pairs["train"]
    assert loaded.scale == (1, 3)
    assert (pair["chosen"], pair["score_chosen"], pair["rejected"], pair["score_rejected"]) == \
        ("An apple.", 3.0, "A rock.", 1.0)
    _, loaded = load(fixtures, "nectar", pairing="all-pairs")
    assert len(loaded.pairs["train"]) == 3


def test_helpsteer2_pairs_responses_of_a_prompt(fixtures):
    _, loaded = load(fixtures, "helpsteer2")
    pairs = loaded.pairs["train"]
    assert [(p["chosen"], p["rejected"], p["score_chosen"], p["score_rejected"]) for p in pairs] == [
        ("A small furry feline.", "An animal.", 4.0, 2.0), ("A loyal canine.", "Woof.", 3.0, 1.0)]
    assert loaded.drops.counts == {"no_other_response_for_prompt": 1}


def test_helpsteer2_weights_and_multi_attribute(fixtures):
    _, loaded = load(fixtures, "helpsteer2", attribute_weights={"helpfulness": 1, "correctness": 1},
                     multi_attribute=True)
    pair = loaded.pairs["train"][0]
    assert pair["score_chosen"] == 4.0 and pair["score_rejected"] == 2.5
    assert pair["attributes_rejected"] == {"helpfulness": 2.0, "correctness": 3.0, "coherence": 4.0,
                                           "complexity": 0.0, "verbosity": 0.0}
    assert loaded.attributes == ("helpfulness", "correctness", "coherence", "complexity", "verbosity")


def test_multi_sample_best_vs_worst_with_quantile_mapping(fixtures):
    _, loaded = load(fixtures, "multi_sample", pairing="best-vs-worst")
    first, second = loaded.pairs["train"]
    assert (first["chosen"], first["rejected"]) == ("Earth, our home.", "The Sun.")
    assert (second["chosen"], second["rejected"]) == ("Atlantic Ocean.", "Sahara.")
    assert first["score_chosen"] > first["score_rejected"] and 1 <= first["score_rejected"] <= 10


def test_score_mappings_by_hand():
    import numpy as np

    minmax = fit_score_mapping(np.array([-1.0, 0.0, 1.0]), (1, 10), "min-max", precision=1)
    assert minmax(-1.0) == 1.0 and minmax(1.0) == 10.0 and minmax(0.0) == 5.5 and minmax(5.0) == 10.0
    quantile = fit_score_mapping(np.arange(100, dtype=float), (1, 10), "quantile")
    assert quantile(0.0) == 1.0 and quantile(99.0) == 10.0 and quantile(45.0) == 5.0


def test_pairing_rules():
    responses = [{"text": "a", "score": 5}, {"text": "b", "score": 9}, {"text": "c", "score": 1}]
    assert make_pairs(responses, "best-vs-worst", "k", 0) == [(responses[1], responses[2])]
    assert len(make_pairs(responses, "all-pairs", "k", 0)) == 3
    chosen, rejected = make_pairs(responses, "best-vs-random", "k", 0)[0]
    assert chosen["text"] == "b" and rejected["text"] in {"a", "c"}


def test_pairs_with_mapped_columns(fixtures):
    _, loaded = load(fixtures, "pairs_custom_columns", schema="pairs", prompt_column="question",
                     chosen_column="good", rejected_column="bad", score_chosen_column="s_good",
                     score_rejected_column="s_bad")
    assert loaded.pairs["train"][2] == {"prompt": "Largest planet?", "chosen": "Jupiter.", "rejected": "Saturn.",
                                        "source_id": "train:2", "score_chosen": 9.5, "score_rejected": 6.0}


@pytest.mark.parametrize("scale,method,precision", [
    ((1, 10.5), "quantile", 0), ((0, 0.4), "quantile", 0), ((0.5, 1.5), "min-max", 0), ((0, 0.4), "min-max", 0),
])
def test_a_scale_the_mapping_cannot_fill_is_refused(scale, method, precision):
    """Mapped goals never leave the declared scale (1-10.5 by quantile gave 11; 0.5-1.5 by min-max gave 0 and 2)."""
    import numpy as np

    from rapref.io import InputError

    with pytest.raises(InputError, match="--scale"):
        fit_score_mapping(np.linspace(-4, 4, 50), scale, method, precision)
    ok = fit_score_mapping(np.linspace(-4, 4, 50), (0.5, 1.5), "min-max", 1)  # the precision it asks for
    assert {ok(s) for s in (-4.0, 4.0)} == {0.5, 1.5}


@pytest.mark.parametrize("method", ["quantile", "min-max"])
def test_a_mapping_on_one_distinct_score_is_refused(method):
    import numpy as np

    from rapref.io import InputError

    with pytest.raises(InputError, match="one distinct score"):
        fit_score_mapping(np.full(20, 0.7), (1, 10), method)


def test_quantile_edges_ignore_float_noise():
    """Edges come from interpolation (1.0000000000000018 for a score of 1): rounded, so a score of exactly 1 lands in
    the bin above an edge at 1, as a score of 1 + 1e-9 does."""
    import numpy as np

    scores = np.array([0.1 * k for k in range(1, 11)]) * 10 / 10  # 0.1 ... 1.0 with binary noise
    scores = np.concatenate([scores, scores + 1])
    quantile = fit_score_mapping(scores, (1, 2), "quantile")
    assert all(float(e) == float(f"{e:.12g}") for e in quantile.edges)
    assert quantile(float(quantile.edges[0])) == 2.0


@pytest.mark.parametrize("text, needle", [("a=1,a=2", "a is weighted twice"), ("", "a name is empty"),
                                          ("=2", "a name is empty")])
def test_attribute_weights_refuse_a_repeated_or_empty_name(text, needle):
    from rapref.data.schemas.base import _weights

    with pytest.raises(ValueError, match=needle):
        _weights(text)
