"""`rapref augment` end to end (command start to files written) vs the per-row path vs the authors' pipeline.

    python benchmarks/augment_bench.py                      # 50,000 and 1,000,000 pairs
    python benchmarks/augment_bench.py --pairs 50000        # one size

Input: an UltraFeedback-binarized-like JSONL file (prompt, prompt_id, chosen / rejected as [user, assistant] message
lists, score_chosen / score_rejected; short random-word texts, about 515 bytes a pair, near the issue's 473 MB for 1M pairs).
Contenders, each a fresh process (wall time and peak RSS of that process; the median of `--repeat` runs, taken in
turn, so no contender alone pays a cold file cache):
  rapref      `python -m rapref augment FILE --out DIR` (Arrow-native: pyarrow.json reader, compute kernels)
  per-row     the same command with the Arrow path switched off (rows as Python dicts: the path before it)
  authors     the authors' style: datasets.load_dataset("json") into a fresh cache, two per-row `map` passes writing
              the goal as a system message (positive and negative copies), concatenate, write Parquet
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()

PER_ROW = """
import sys
import rapref.data.augment as augment
augment._arrow_native = lambda cfg: None
from rapref.cli import main
sys.exit(main(sys.argv[1:]))
"""

AUTHORS = """
import sys
import datasets
datasets.disable_progress_bars()
source, out = sys.argv[1], sys.argv[2]
ds = datasets.load_dataset("json", data_files=source, split="train")
from rapref.goals import GoalSpec
spec = GoalSpec(placement="system")  # the authors' goal wording, as rapref writes it

def with_goal(messages, score):
    text = spec.text(score)
    return [{"role": "system", "content": text}, *messages[:-1]], [messages[-1]]

def positive(row):
    prompt, chosen = with_goal(row["chosen"], row["score_chosen"])
    return {"prompt": prompt, "chosen": chosen, "rejected": [row["rejected"][-1]], "goal": row["score_chosen"]}

def negative(row):
    prompt, rejected = with_goal(row["rejected"], row["score_rejected"])
    return {"prompt": prompt, "chosen": rejected, "rejected": [row["chosen"][-1]], "goal": row["score_rejected"]}

drop = [c for c in ds.column_names if c not in ("prompt", "chosen", "rejected")]
out_ds = datasets.concatenate_datasets([ds.map(positive, remove_columns=drop), ds.map(negative, remove_columns=drop)])
out_ds.to_parquet(out + "/train.parquet")
"""


def write_input(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)

    def text(mean_words):
        return " ".join(rng.choices(WORDS, k=max(1, int(rng.lognormvariate(0, 0.5) * mean_words))))

    with open(path, "w") as handle:
        for i in range(n):
            prompt = text(11)
            a, b = rng.randint(1, 10), rng.randint(1, 10)
            row = {"prompt": prompt, "prompt_id": f"p{i}",
                   "chosen": [{"role": "user", "content": prompt}, {"role": "assistant", "content": text(17)}],
                   "rejected": [{"role": "user", "content": prompt}, {"role": "assistant", "content": text(17)}],
                   "score_chosen": float(max(a, b)), "score_rejected": float(min(a, b))}
            handle.write(json.dumps(row) + "\n")


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv[:4]} failed:\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 2**20


def bench(n: int, folder: Path, skip_slow_above: int, repeat: int) -> list[tuple[str, float, float]]:
    source = folder / f"pairs-{n}.jsonl"
    write_input(source, n)
    mb = source.stat().st_size / 2**20
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_DATASETS_CACHE": str(folder / "hf-cache"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    contenders = {"rapref": lambda out: [sys.executable, "-m", "rapref", "augment", str(source), "--out", str(out),
                                         "--quiet", "--overwrite"]}
    if n <= skip_slow_above:
        contenders["per-row"] = lambda out: [sys.executable, "-c", PER_ROW, "augment", str(source), "--out", str(out),
                                             "--quiet", "--overwrite"]
        contenders["authors"] = lambda out: [sys.executable, "-c", AUTHORS, str(source), str(out)]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, argv in contenders.items():
            out = folder / f"{name}-{n}"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(folder / "hf-cache", ignore_errors=True)  # the authors' pipeline starts from no cache
            if name == "authors":
                out.mkdir()
            runs[name].append(timed(argv(out), env))
    rows = [(name, statistics.median(w for w, _ in r), statistics.median(m for _, m in r)) for name, r in runs.items()]
    print(f"\n{n:,} pairs ({mb:,.0f} MB of JSONL), end to end")
    print(f"{'contender':<10}{'seconds':>10}{'peak RSS GB':>13}{'vs rapref':>11}")
    for name, seconds, rss in rows:
        print(f"{name:<10}{seconds:>10.2f}{rss:>13.2f}{seconds / rows[0][1]:>10.1f}x", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, nargs="*", default=[50_000, 1_000_000])
    p.add_argument("--slow-up-to", type=int, default=1_000_000,
                   help="run the per-row and authors' contenders only up to this many pairs")
    p.add_argument("--repeat", type=int, default=3, help="runs per contender; the median is reported")
    p.add_argument("--json", help="also write the results here (docs/bench/augment.json)")
    args = p.parse_args()
    import pyarrow
    import datasets

    print(f"pyarrow {pyarrow.__version__}, datasets {datasets.__version__}, {os.cpu_count()} CPUs")
    results = []
    with tempfile.TemporaryDirectory(prefix="rapref-augment-bench-") as tmp:
        for n in args.pairs:
            results += [{"pairs": n, "contender": name, "seconds": seconds, "peak_rss_gb": rss}
                        for name, seconds, rss in bench(n, Path(tmp), args.slow_up_to, args.repeat)]
    if args.json:
        from record import write_record

        write_record(args.json, "augment", results)


if __name__ == "__main__":
    main()
