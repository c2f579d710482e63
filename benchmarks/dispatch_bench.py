"""What pinning the CPU kernel dispatch costs: the demo in miniature at each dispatch level, CPU seconds per run.

    python benchmarks/dispatch_bench.py --json docs/bench/dispatch.json

Each run is `python -m rapref.studies.demo.fingerprint --kernels LEVEL` in a fresh one-thread process (tokenizer,
tiny Llama, 60 training steps, 16 sampled answers); the figure is the process's CPU time (user + system, from
`getrusage`), which a busy machine inflates far less than wall time: the training and sampling alone (measured inside
the process), and the whole process with its imports. Levels alternate
run by run so that a change of load hits every level alike; the median of `--repeats` runs is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from record import write_record  # noqa: E402

from rapref import dispatch  # noqa: E402


def one_run(kernels: str) -> tuple[float, float]:
    """(CPU seconds of the training and sampling alone, CPU seconds of the whole process, imports included)."""
    env = {k: v for k, v in os.environ.items() if k not in dispatch.VARIABLES}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "rapref.studies.demo.fingerprint", "--kernels", kernels], check=True,
                         capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (json.loads(out.stdout)["compute_cpu_s"],
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="write the record here")
    args = p.parse_args()
    levels = [k for k in dispatch.choices() if k != "pinned"]
    runs = {k: [] for k in levels}
    for _ in range(args.repeats):
        for kernels in levels:
            runs[kernels].append(one_run(kernels))
    native = statistics.median(c for c, _ in runs["native"])
    results = [{"kernels": k, "pinned": dispatch.level("pinned") == k,
                "compute_cpu_s": statistics.median(c for c, _ in v), "process_cpu_s": statistics.median(p for _, p in v),
                "compute_vs_native": statistics.median(c for c, _ in v) / native, "runs": v} for k, v in runs.items()]
    for r in results:
        print(f"{r['kernels']:>8}: {r['compute_cpu_s']:.2f} CPU s of training and sampling "
              f"({r['compute_vs_native']:.2f}x native), {r['process_cpu_s']:.2f} CPU s with imports")
    if args.json:
        write_record(args.json, "dispatch", results, cpu=dispatch.cpu(), repeats=args.repeats)


if __name__ == "__main__":
    main()
