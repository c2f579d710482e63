"""The demo's claims across CPU kernel dispatch levels: the dispatch as a source of variation, like the seed.

    rapref demo --out runs/demo                                  # pinned (AVX2 on x86-64): the published run
    rapref demo --kernels avx512 --out runs/demo-avx512          # every level this machine supports
    rapref demo --kernels default --out runs/demo-default
    python -m rapref.studies.demo.dispatch_report runs/demo runs/demo-avx512 runs/demo-default \\
        --out docs/demo/dispatch.json

The same seeds, code and settings at each level; only the kernels' summation order differs. Per claim: its interval
and verdict at each level, the spread of its paired difference across levels (largest minus smallest mean), and
whether the verdict changes with the dispatch: such a verdict is not decided at this precision, whatever the pinned
run says. The README's and the demo page's claims tables show both (`scripts/readme_results.py`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rapref.io import InputError, write_json_atomic

SAME = ("seeds", "primary_decoding", "n_prompts")


def level_name(report: dict) -> str:
    record = report.get("dispatch") or {}
    return (record.get("torch_capability") or record.get("kernels") or "unknown").lower()


def build(reports: dict[str, dict]) -> dict:
    """`reports`: {source: a demo report.json}, the first the pinned (published) run."""
    first = next(iter(reports.values()))
    for source, report in reports.items():
        for key in SAME:
            if report.get(key) != first.get(key):
                raise InputError(f"{source}: {key} differs from the first run's; the runs must differ only in "
                                 "their dispatch")
        if report.get("smoke_run"):
            raise InputError(f"{source}: a smoke run (--quick); its numbers mean nothing")
    levels = [{"source": source, "level": level_name(r), "dispatch": r.get("dispatch"),
               "full_run_wall_seconds": r.get("full_run_wall_seconds")} for source, r in reports.items()]
    names = [level["level"] for level in levels]
    if len(set(names)) != len(names):
        raise InputError(f"two runs at the same dispatch level ({', '.join(names)}); give one run per level")
    claims = []
    for claim in first["claims"]:
        per_level = {}
        for level, report in zip(names, reports.values()):
            match = next(c for c in report["claims"] if c["name"] == claim["name"])
            per_level[level] = {k: match[k] for k in ("mean", "low", "high", "verdict")}
        means = [v["mean"] for v in per_level.values()]
        verdicts = {v["verdict"].split(" (")[0] for v in per_level.values()}
        claims.append({"name": claim["name"], "per_level": per_level, "spread": max(means) - min(means),
                       "min": min(means), "max": max(means), "verdict_changes": len(verdicts) > 1})
    return {"levels": levels, "pinned": names[0], "claims": claims}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="demo run folders (or report.json files), the pinned run first")
    p.add_argument("--out", required=True, help="where to write the JSON (docs/demo/dispatch.json)")
    args = p.parse_args(argv)
    reports = {}
    for run in args.runs:
        path = Path(run) / "report.json" if Path(run).is_dir() else Path(run)
        if not path.is_file():
            raise SystemExit(f"{run}: no demo report.json here (run `rapref demo --out {run}` first)")
        reports[run] = json.loads(path.read_text())
    try:
        result = build(reports)
    except InputError as error:
        raise SystemExit(str(error)) from None
    write_json_atomic(args.out, result)
    for claim in result["claims"]:
        levels = ", ".join(f"{k} {v['mean']:+.3f}" for k, v in claim["per_level"].items())
        print(f"{claim['name']:<12} spread {claim['spread']:.3f} ({levels})"
              f"{'  VERDICT CHANGES WITH THE DISPATCH' if claim['verdict_changes'] else ''}")
    return result


if __name__ == "__main__":
    main()
