"""The performance page's GPU tables, from the JSON that `scripts/gpu_check.sh` wrote on a CUDA device.

    python scripts/gpu_report.py            # rewrite the block in docs/performance.md from docs/bench/gpu-*.json
    python scripts/gpu_report.py --check    # exit 1 when the page differs from its JSON (tests/docs/test_published_figures.py)

The block sits between `<!-- bench-gpu:start ... -->` and `<!-- bench-gpu:end -->` and is never edited by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE, NAME = "docs/performance.md", "bench-gpu"
DPO, PACKING = "docs/bench/gpu-dpo.json", "docs/bench/gpu-packing.json"


def _f(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _isolation(report: dict) -> str:
    return "each configuration in its own process; " if report.get("isolation") == "one process per config" else ""


def dpo_table(report: dict) -> str:
    p = report["packages"]
    lines = [f"Measured on one {report['device']} ({report['device_memory_gib']} GiB), torch {p.get('torch')}, "
             f"transformers {p.get('transformers')}, trl {p.get('trl')}, liger-kernel {p.get('liger_kernel')}, "
             f"rapref commit `{(report.get('git_hash') or 'unknown')[:10]}`: `{report['command']}` (max length "
             f"{report['max_length']}, bf16; {_isolation(report)}real tokens/s after {report['warmup_steps']} warm-up "
             "steps; differences "
             "against `trl-defaults` of the same size; first loss: ln 2 = 0.693147 where policy and reference are "
             "equal).", ""]
    lines += ["| model | pairs | configuration | ckpt | Liger | real tokens/s | vs TRL defaults | peak GiB | "
              "first loss | max per-token log-prob diff | loss curve max diff | grad min cosine / max rel diff |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in report["sizes"]:
        for r in size["results"]:
            head = f"| {size['shape']} | {size['pairs_per_step']} | {r['config']} |"
            if "real_tokens_per_s" not in r:
                lines.append(f"{head} {r.get('skipped') or r.get('error')} | | | | | | | | |")
                continue
            vs = r.get("vs_trl_defaults") or {}
            grads = vs.get("grads") or {}
            ln2 = "" if r["checks"]["first_loss_is_ln2"] else " (not ln 2)"
            lines.append(
                f"{head} {'on' if r['gradient_checkpointing'] else 'off'} | {'on' if r['use_liger_kernel'] else 'off'}"
                f" | {r['real_tokens_per_s']:,.0f} | {_f(vs.get('speedup'), '.2f', '1')}x | {r['peak_gib']} | "
                f"{r['first_loss']:.6f}{ln2} | {_f(vs.get('max_token_logprob_diff'), '.4f')} | "
                f"{_f(vs.get('loss_curve_max_diff'), '.4f')} | {_f(grads.get('min_cosine'), '.5f')} / "
                f"{_f(grads.get('max_rel_diff'), '.4f')} |")
    for size in report["sizes"]:  # runs made with one process per configuration answer the Liger question
        if size.get("liger_first_loss"):
            lines += ["", f"Liger's first loss at {size['shape']} (is it off ln 2 because the reference runs "
                      f"transformers' kernels and the policy Liger's?): {size['liger_first_loss']['answer']}."]
    t = report["tolerances"]
    lines += ["", f"Stated tolerances: first loss within {t['first_loss_vs_ln2']:g} of ln 2; per-token log-prob "
              f"difference at most {t['max_token_logprob_diff']:g}; loss curve within {t['loss_curve_max_diff']:g}; "
              f"gradients per tensor cosine at least {t['grad_min_cosine']:g} and relative difference at most "
              f"{t['grad_max_rel_diff']:g}."]
    return "\n".join(lines)


def packing_table(report: dict) -> str:
    lines = [f"Packed DPO against TRL's padded path ({report['model']}, {report['batch']}), rapref commit "
             f"`{(report.get('git_hash') or 'unknown')[:10]}`: `{report['command']}`", "",
             "| attention | LoRA | max per-token diff | grad min cosine / max rel diff (zero in both) | TRL tokens/s | "
             "packed tokens/s | speed-up | peak GiB (TRL / packed) |", "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        if "skipped" in r:
            lines.append(f"| {r['attention']} | {r['lora']} | skipped: {r['skipped']} | | | | | |")
            continue
        lines.append(f"| {r['attention']} | {r['lora']} | {r['max_abs_logprob_diff']:.1e} | "
                     f"{r['grad_min_cosine']:.5f} / {r['grad_max_rel_diff']:.1e} ({r['grad_zero_in_both']}) | "
                     f"{r['trl_tokens_per_s']:,.0f} | {r['packed_tokens_per_s']:,.0f} | {r['speedup']:.2f}x | "
                     f"{r['trl_peak_gib']} / {r['packed_peak_gib']} |")
    return "\n".join(lines)


def block(root: Path = ROOT) -> str:
    parts = []
    for path, render in ((DPO, dpo_table), (PACKING, packing_table)):
        file = root / path
        parts.append(render(json.loads(file.read_text())) + f"\n\nSource: `{path}`." if file.is_file() else
                     f"No GPU measurement in `{path}` yet: run `bash scripts/gpu_check.sh` on a CUDA machine.")
    return "\n\n".join(parts)


def render_page(text: str, generated: str) -> str:
    start, end = f"<!-- {NAME}:start", f"<!-- {NAME}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{PAGE}: no {NAME} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start} (generated by scripts/gpu_report.py; do not edit by hand) -->\n{generated}\n{end}{tail}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[argv.index("--root") + 1]) if "--root" in argv else ROOT
    page = root / PAGE
    text = page.read_text()
    wanted = render_page(text, block(root))
    if "--check" in argv:
        if wanted != text:
            print(f"{PAGE}: the GPU block differs from {DPO} / {PACKING}; run python scripts/gpu_report.py")
            return 1
        return 0
    page.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
