"""The reference figure for rapref's length-controlled win rate, from the `alpaca-eval` package's own code.

    python3 -m venv /tmp/ae && /tmp/ae/bin/pip install alpaca-eval==0.6.6
    /tmp/ae/bin/python scripts/lc_reference.py tests/fixtures/lc_winrate_reference.json

AlpacaEval's `get_length_controlled_winrate` first downloads its leaderboard's instruction difficulties from the Hub
(unreachable here), so this script runs the package's own pieces on a fixture instead: its GLM
`length_controlled_minimal` (the published formula without the instruction-difficulty term), its featurization
(length difference over its standard deviation, preferences 1/2 -> 0/1, ties 0 -> 1/2), its fit
(`fit_LogisticRegressionCV`, soft labels) and its prediction at equal lengths. `tests/inference/test_endpoint.py`
compares `rapref.judge.llm_judge.length_controlled_win_rate` with the figure written here.
"""

import json
import sys

import numpy as np
import pandas as pd
from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

rng = np.random.default_rng(7)
n = 400
delta = rng.normal(60, 120, n).round()  # model minus baseline length, characters
p = 1 / (1 + np.exp(-(0.5 + 1.5 * np.tanh(delta / delta.std()))))
outcome = np.where(rng.random(n) < p, 1.0, 0.0)
outcome[rng.random(n) < 0.1] = 0.5  # some ties
len_baseline = rng.integers(300, 900, n)
len_model = len_baseline + delta.astype(int)

info = GLM_INFO["length_controlled_minimal"]
df = pd.DataFrame({"preference": outcome})  # AlpacaEval's preference - 1: 1 = output_2 (the model) wins
diff = pd.Series(len_baseline - len_model, dtype=float)  # AlpacaEval: len(output_1) - len(output_2)
df["std_delta_len"] = diff / diff.std()
df["not_gamed_baseline"] = True
test = df[["not_gamed_baseline"]].copy()
test["std_delta_len"] = 0
train, x_test = make_dmatrix_for_model(df, test, formula=info["formula"])
model = fit_LogisticRegressionCV(train, "preference", is_ytrue_proba=True, **info["kwargs"])
lc = float(model.predict_proba(x_test)[:, 1].mean())
json.dump({"package": "alpaca-eval 0.6.6", "glm": "length_controlled_minimal", "outcomes": outcome.tolist(),
           "len_model": len_model.tolist(), "len_baseline": len_baseline.tolist(), "lc_win_rate": lc,
           "raw_win_rate": float(outcome.mean())}, open(sys.argv[1], "w"))
print(f"alpaca-eval length_controlled_minimal: LC {lc:.4f}, raw {outcome.mean():.4f}")
