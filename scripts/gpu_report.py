"""The README's GPU table, from the JSON `benchmarks/gpu_packing_check.py` wrote on a CUDA device.

    python scripts/gpu_report.py docs/bench/gpu-packing.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(report: dict) -> str:
    lines = [f"Measured on {report['device']} ({report['model']}, {report['batch']}; torch "
             f"{report['packages'].get('torch')}, trl {report['packages'].get('trl')}, commit "
             f"{(report.get('git_hash') or '?')[:7]}): `{report['command']}`", "",
             "| attention | LoRA | gate | max per-token diff | max param diff after a step | TRL tokens/s | packed "
             "tokens/s | speed-up | peak GiB (TRL / packed) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['attention']} | {r['lora']} | skipped: {r['skipped']} | | | | | | |")
            continue
        lines.append(f"| {r['attention']} | {r['lora']} | {r['gate']} | {r['max_abs_logprob_diff']:.1e} | "
                     f"{r['max_rel_param_diff_after_step']:.1e} | {r['trl_tokens_per_s']:,.0f} | "
                     f"{r['packed_tokens_per_s']:,.0f} | {r['speedup']:.2f}x | {r['trl_peak_gib']} / "
                     f"{r['packed_peak_gib']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/bench/gpu-packing.json")
    if not path.is_file():
        sys.exit(f"{path}: no GPU measurement yet; run scripts/gpu_check.sh on a CUDA machine")
    print(table(json.loads(path.read_text())))
