"""Relabeling throughput: rapref (Arrow columns) vs a per-row `datasets.map` like the authors' script vs the floor.

    python benchmarks/relabel_bench.py                 # 200,000 pairs, UltraFeedback-like lengths
    python benchmarks/relabel_bench.py --pairs 20000   # quicker

Each contender turns the same in-memory pairs (conversational, goal as system message) into the doubled,
goal-conditioned table and writes it as an Arrow IPC file to a temporary folder:
  rapref   `rapref.data.relabel.relabel` on whole columns, then the write;
  per-row  two `datasets.map` passes (positive and negative copy) calling a Python function per row, then the write;
  floor    only the write, of a table with the output's row count and text (the input twice): no relabeling at all.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from rapref.goals import GoalSpec  # noqa: E402
from rapref.data.relabel import relabel  # noqa: E402

WORDS = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()


def synthetic_pairs(n: int, seed: int = 0) -> pa.Table:
    """UltraFeedback-like lengths: prompts ~100 words, responses ~200 words (lognormal spread)."""
    rng = random.Random(seed)
    vocab = [" ".join(rng.choices(WORDS, k=8)) for _ in range(512)]

    def text(mean_words):
        k = max(1, int(rng.lognormvariate(0, 0.6) * mean_words / 8))
        return " ".join(rng.choices(vocab, k=k))

    prompts, chosen, rejected, sw, sl = [], [], [], [], []
    for _ in range(n):
        prompts.append([{"role": "user", "content": text(100)}])
        chosen.append([{"role": "assistant", "content": text(200)}])
        rejected.append([{"role": "assistant", "content": text(200)}])
        a, b = rng.randint(1, 10), rng.randint(1, 10)
        sw.append(float(max(a, b)))
        sl.append(float(min(a, b)))
    return pa.table({"source_id": [f"train:{i}" for i in range(n)], "prompt": prompts, "chosen": chosen,
                     "rejected": rejected, "score_chosen": sw, "score_rejected": sl})


def write_ipc(table: pa.Table, folder: str) -> None:
    path = os.path.join(folder, "out.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    os.remove(path)


def bench_rapref(table, spec, folder):
    out, _ = relabel(table, spec)
    write_ipc(out, folder)
    return out.num_rows


def authors_system_goal(messages: list[dict], goal_text: str) -> list[dict]:
    """The authors' per-row way of writing the goal as a system message (what the per-row contender runs)."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": goal_text + "\n\n" + messages[0]["content"]}, *messages[1:]]
    return [{"role": "system", "content": goal_text}, *messages]


def bench_per_row(table, spec, folder):
    import datasets

    ds = datasets.Dataset(table)

    def positive(row):
        return {"prompt": authors_system_goal(row["prompt"], spec.text(row["score_chosen"])),
                "copy": "positive", "goal": row["score_chosen"]}

    def negative(row):
        return {"prompt": authors_system_goal(row["prompt"], spec.text(row["score_rejected"])),
                "chosen": row["rejected"], "rejected": row["chosen"], "copy": "negative",
                "goal": row["score_rejected"]}

    kwargs = {"keep_in_memory": True, "load_from_cache_file": False}
    out = datasets.concatenate_datasets([ds.map(positive, **kwargs), ds.map(negative, **kwargs)])
    write_ipc(out.data.table, folder)
    return len(out)


def bench_floor(table, spec, folder):
    out = pa.concat_tables([table, table])
    write_ipc(out, folder)
    return out.num_rows


def timed(fn, *args):
    start = time.perf_counter()
    rows = fn(*args)
    return time.perf_counter() - start, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for rapref and the floor")
    parser.add_argument("--json", help="also write the results here (docs/bench/relabel.json)")
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    print(f"building {args.pairs:,} synthetic pairs ...", flush=True)
    table = synthetic_pairs(args.pairs)
    mb = table.nbytes / 2**20
    spec = GoalSpec(placement="system")
    with tempfile.TemporaryDirectory() as folder:
        floor = min(timed(bench_floor, table, spec, folder)[0] for _ in range(args.repeats))
        ours = min(timed(bench_rapref, table, spec, folder)[0] for _ in range(args.repeats))
        per_row, _ = timed(bench_per_row, table, spec, folder)
    n = args.pairs
    print(f"\n{n:,} pairs ({mb:,.0f} MB of input), conversational, goal as system message")
    print(f"{'contender':<34}{'seconds':>10}{'pairs/s':>14}")
    for name, seconds in (("rapref (Arrow columns)", ours), ("per-row datasets.map", per_row),
                          ("floor (write output-sized table)", floor)):
        print(f"{name:<34}{seconds:>10.2f}{n / seconds:>14,.0f}")
    print(f"\nrapref vs per-row: {per_row / ours:.1f}x faster (target >= 10x)")
    print(f"rapref vs floor:   {ours / floor:.2f}x the floor's time (target <= 3x)")
    if args.json:
        from record import write_record

        write_record(args.json, "relabel", [{"contender": name, "seconds": seconds, "pairs_per_s": n / seconds}
                                            for name, seconds in (("rapref", ours), ("per-row", per_row),
                                                                  ("floor", floor))],
                     pairs=n, input_mb=mb)


if __name__ == "__main__":
    main()
