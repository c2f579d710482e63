"""Every published figure, generated from a committed JSON: the README's results, the demo page, the performance page.

    python scripts/readme_results.py                      # rewrite every generated block from the committed JSONs
    python scripts/readme_results.py --check              # exit 1 when a page differs from what its JSON says
    python scripts/readme_results.py --demo runs/demo     # take a finished demo run's report.json, then rewrite

Sources: `docs/demo/report.json` (`rapref demo`), `docs/exp-ifeval/report.json` (`rapref experiment ifeval`) and
`docs/bench/*.json` (`benchmarks/*.py --json`, each with its command, machine, versions and commit). A block sits
between `<!-- NAME:start ... -->` and `<!-- NAME:end -->` markers and is never edited by hand; a test
(`tests/test_published_figures.py`) runs `--check`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def _machine(record: dict) -> str:
    m = record.get("machine") or {}
    return ", ".join(x for x in (f"{m['cpus']} CPUs" if m.get("cpus") else "", m.get("processor", ""),
                                 f"{m['memory_gib']:g} GiB" if m.get("memory_gib") else "") if x) or "2 CPU cores"


def _versions(record: dict, names=("torch", "transformers", "trl", "pyarrow", "datasets")) -> str:
    packages = record.get("packages") or (record.get("provenance") or {}).get("packages", {})
    return ", ".join(f"{k} {packages[k]}" for k in names if packages.get(k))


def _source(record: dict, path: str) -> str:
    commit = (record.get("git_hash") or (record.get("provenance") or {}).get("git_hash") or "unknown")[:10]
    return (f"`{record['command']}` on {_machine(record)}; {_versions(record)}; commit `{commit}`; "
            f"source `{path}`.") if "command" in record else f"source `{path}`."


def _ci(ci: dict, digits: int = 3) -> str:
    if ci["low"] is None:
        return f"{ci['mean']:+.{digits}f}"
    return f"{ci['mean']:+.{digits}f} [{ci['low']:+.{digits}f}, {ci['high']:+.{digits}f}]"


def claims_table(report: dict, spread: dict | None) -> str:
    """The demo's claims with, beside each interval, its paired difference at every CPU dispatch level measured
    (`docs/demo/dispatch.json`); a verdict that changes with the dispatch says so."""
    by_name = {c["name"]: c for c in (spread or {}).get("claims", [])}
    levels = len((spread or {}).get("levels", []))
    rows = []
    for c in report["claims"]:
        s = by_name.get(c["name"])
        across = f"{s['min']:+.3f} to {s['max']:+.3f}" if s else "not measured"
        changes = "; **changes with the CPU dispatch: not decided at this precision**" if s and s["verdict_changes"] \
            else ""
        rows.append(f"| {c['name']} | {c['statement']} | {_ci(c)} | {across} | **{c['verdict']}**{changes} |")
    return (f"| claim | statement | paired difference [95% CI] | across {levels} CPU dispatch levels | verdict |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows))


def dispatch_note(report: dict, spread: dict | None) -> str:
    """Which dispatch made the numbers, and what the others gave (`rapref.dispatch`)."""
    record = report.get("dispatch") or {}
    cpu = (record.get("cpu") or {}).get("model") or "an unnamed CPU"
    if record.get("kernels") != "pinned":
        return (f"These numbers were computed with the CPU kernel dispatch `{record.get('kernels', 'unrecorded')}`: "
                "they need not match what a fresh `rapref demo` (dispatch pinned) gives.")
    text = (f"CPU kernel dispatch pinned to {str(record.get('level')).upper()} (torch's own kernels, MKL and oneDNN; "
            f"`--kernels`, `--native-kernels` to opt out) on {cpu}, the only CPU checked so far; pinned, a fresh "
            "`rapref demo` on another x86-64 machine should give these numbers to the last digit, and the test "
            "suite checks a miniature of the demo against a committed reference on every machine it runs on.")
    if spread:
        names = ", ".join(level["level"].upper() for level in spread["levels"])
        changed = [c["name"] for c in spread["claims"] if c["verdict_changes"]]
        text += (f" The same run at {len(spread['levels'])} dispatch levels on that machine ({names}; "
                 f"`docs/demo/dispatch.json`) moves each paired difference within the range shown; "
                 + (f"the verdict of {', '.join(changed)} changes with the dispatch." if changed
                    else "no verdict changes with the dispatch."))
    return text


def _spread(root: Path) -> dict | None:
    path = root / "docs/demo/dispatch.json"
    return json.loads(path.read_text()) if path.is_file() else None


def demo_block(report: dict, spread: dict | None = None) -> str:
    primary = report["primary_decoding"]
    versions = ", ".join(f"{k} {v}" for k, v in report["provenance"]["packages"].items() if v)
    claims = claims_table(report, spread)
    arms = "\n".join(
        f"| {a['label']} | {a[primary]['mean']:.3f} | {_ci(a[primary]['minus_start'])} | {_ci(a[primary]['minus_dpo'])}"
        f" | {a['T1.0']['mean']:.3f} | {a['greedy']['mean']:.3f} | {a['T1.0']['well_formed']:.2f} |"
        for a in report["arms"])
    checks = report["checks"]
    reads = sum(c["start_reads_goals"] for c in checks)
    improves = sum(c["dpo_improves_on_start"] for c in checks)
    below = sum(c["greedy_start_below_chosen"] for c in checks)
    n = len(checks)
    misses = "; ".join(f"seed {c['seed']}: {', '.join(c['start_sweep_steps_down'])}" for c in checks
                       if c["start_sweep_steps_down"])
    cfg = report["config"]
    commit = report.get("full_run_git_hash") or report["provenance"]["git_hash"] or "unknown"
    minutes, seconds = divmod(round(report.get("full_run_wall_seconds") or report["wall_seconds"]), 60)
    return f"""`rapref demo` on {len(report['seeds'])} evaluation seeds ({', '.join(map(str, report['seeds']))}), {report['n_prompts']}
held-out prompts x 2 samples per seed at {primary}; wall time **{minutes} min {seconds} s** with {cfg['workers']} workers
on a 2-core CPU machine. Run at commit `{commit[:10]}` with
Python {report['provenance']['python']}, {versions}.

{claims}

{dispatch_note(report, spread)}

| arm | true reward {primary} | minus start | minus DPO | T1.0 | greedy | well-formed T1.0 |
|---|---:|---|---|---:|---:|---:|
{arms}

Checks (per seed): the start reads goals on {reads}/{n} seeds{f" (steps down beyond noise: {misses})" if misses else ""},
Spearman rho of its sweep {min(c["start_sweep_spearman"] for c in checks):.2f} or more; plain DPO improves on the start on {improves}/{n}, the
start's greedy answers fall short of the chosen answers on {below}/{n}. Learning rates (chosen on validation seeds
101-102, `docs/demo-hparam-selection.json`): DPO {cfg['dpo_lr']:g}, relabeled family {cfg['relabeled_lr']:g}, extra
SFT epoch {cfg['extra_sft_lr']:g}; beta {cfg['beta']:g}.

Source: `docs/demo/report.json`. Regenerate: `rapref demo --out runs/demo && python scripts/readme_results.py --demo
runs/demo`."""



def readme_block(root: Path) -> str:
    demo = _load(root, "docs/demo/report.json")
    claims = claims_table(demo, _spread(root)) + "\n\n" + dispatch_note(demo, _spread(root))
    train = _load(root, "docs/bench/train-smollm2.json")
    packed = next(r for r in train["results"] if r["variant"] == "packed")
    augment = _load(root, "docs/bench/augment.json")
    small = {r["contender"]: r for r in augment["results"] if r["pairs"] == min(x["pairs"] for x in augment["results"])}
    big = max(augment["results"], key=lambda r: r["pairs"])
    exp = _load(root, "docs/exp-ifeval/report.json")
    c1 = next(c for c in exp["claims"] if c["name"] == "C1")
    grid = _load(root, "docs/demo-grid/report.json")
    generate = {x["contender"]: x for x in _load(root, "docs/bench/generate.json")["results"]}
    return f"""**The main job** ([docs/demo.md](docs/demo.md)): `rapref demo`, a synthetic world with a known true reward,
{len(demo['seeds'])} evaluation seeds, paired differences with 95% t-intervals over seeds, one symmetric verdict rule:

{claims}

- **Training speed** ([docs/performance.md](docs/performance.md)): packed DPO trains at **{packed['speedup']:.2f}x**
  TRL's real tokens per second on a SmolLM2-135M-shaped model on 2 CPU cores, with the same losses.
- **Augment speed**: `rapref augment` reads, cleans, relabels and writes {small['rapref']['pairs']:,} pairs in
  {small['rapref']['seconds']:.2f} s, **{small['authors']['seconds'] / small['rapref']['seconds']:.1f}x** faster than \
the authors' per-row pipeline, and {big['pairs']:,} pairs in {big['seconds']:.1f} s and {big['peak_rss_gb']:.2f} GB.
- **A real model** ([docs/real-model.md](docs/real-model.md)): SmolLM2-135M-Instruct on IFEval-style prompts with the
  official checkers, one training seed on CPU: relabeled DPO minus DPO {_ci(c1, 2)} on a 1-10 score, \
{c1['verdict'].split(' (')[0]}: a null result at this scale.
{grid_summary(grid)}
{engine_summary(generate)}

Every figure here comes from a committed JSON (`docs/demo/report.json`, `docs/demo-grid/`, `docs/bench/`,
`docs/exp-ifeval/`) through
`python scripts/readme_results.py`."""


def grid_summary(grid: dict) -> str:
    """Four lines on the grid, from its verdicts (`rapref.studies.demo.grid_report`)."""
    cells = grid["cells"]

    def where(name: str, verdict: str) -> list[str]:
        return [cell for cell, c in cells.items() for x in c["claims"]
                if x["name"] == name and x["verdict"].startswith(verdict)]

    def listed(names: list[str]) -> str:
        return ", ".join(f"`{n}`" for n in names) if names else "none"

    c1 = where("C1", "holds")
    return (f"- **Where it helps** ([docs/demo-grid/report.md](docs/demo-grid/report.md)): the demo's claims over "
            f"{len(cells)} regimes (DPO epochs, how often the rejected answer is good, judge noise, a start that never "
            f"saw goals), {len(grid['seeds'])} seeds each. C1 (relabeled DPO beats DPO) holds in "
            f"{len(c1) or 'none'} of the {len(cells)} cells{' (' + listed(c1) + ')' if c1 else ''} and is reversed in "
            f"{listed(where('C1', 'fails (reversed)'))}; C2 (less unlearning) holds in {len(where('C2', 'holds'))} "
            f"of {len(cells)}, C4 (controllability) in {len(where('C4', 'holds'))}; the flipped copies help in "
            f"{listed(where('flipped', 'holds'))}.")


def engine_summary(generate: dict) -> str:
    server, plain = generate.get("server"), generate["plain"]
    if not server:
        return ""
    return (f"- **Sampling engines** ([docs/evaluation.md](docs/evaluation.md)): a vLLM server (CPU build, bf16) "
            f"samples SmolLM2-135M at {server['steady_tokens_per_s']:.0f} useful tokens/s in steady state, "
            f"**{server['steady_tokens_per_s'] / plain['steady_tokens_per_s']:.1f}x** transformers' loop "
            f"({plain['steady_tokens_per_s']:.0f}); its start takes {server['load_s']:.0f} s.")


def relabel_block(root: Path) -> str:
    r = _load(root, "docs/bench/relabel.json")
    rows = {x["contender"]: x for x in r["results"]}
    names = {"rapref": "rapref (Arrow columns)", "per-row": "per-row `datasets.map` (the authors' style)",
             "floor": "floor: writing an output-sized table"}
    table = "\n".join(f"| {names[k]} | {rows[k]['seconds']:.2f} | {rows[k]['pairs_per_s']:,.0f} |" for k in names)
    return f"""{r['pairs']:,} synthetic pairs ({r['input_mb']:,.0f} MB) with UltraFeedback-like lengths, conversational,
goal as a system message, relabeled and written as an Arrow file ({_source(r, "docs/bench/relabel.json")})

| contender | seconds | pairs/s |
|---|---:|---:|
{table}

rapref is {rows['per-row']['seconds'] / rows['rapref']['seconds']:.1f}x faster than the per-row approach and takes
{rows['rapref']['seconds'] / rows['floor']['seconds']:.2f}x the floor's time."""


def train_block(root: Path) -> str:
    r = _load(root, "docs/bench/train-smollm2.json")
    labels = {"trl": "plain TRL `DPOTrainer` script", "rapref": "`rapref train training.packing=false` (TRL's path)",
              "packed": "`rapref train` (packed, the CPU default for DPO)",
              "packed-precompute": "the same + `training.precompute_ref_log_probs=true`",
              "packed-checkpointing": "the same + `training.gradient_checkpointing=true`"}
    rows = "\n".join(f"| {labels.get(x['variant'], x['variant'])} | {x['s_per_step']:.1f} | {x['tokens_per_s']:.1f} | "
                     f"{x['speedup']:.2f}x | {x['peak_rss_gb']:.2f} | {' '.join(f'{v:.6f}' for v in x['losses'])} |"
                     for x in r["results"])
    s = r.get("settings", {})
    return f"""A SmolLM2-135M-shaped Llama (random init, vocabulary 49,152), batch {s.get('batch')}, max length
{s.get('max_length')}, {s.get('steps')} steps, {r['real_tokens']:,} real tokens, each variant its own process
({_source(r, "docs/bench/train-smollm2.json")})

| variant | s/step | real tokens/s | vs TRL | peak RSS GB | losses |
|---|---:|---:|---:|---:|---|
{rows}

Tokens/s and "vs TRL" divide by TRL's training time (`train_runtime`); s/step is the median of the steps after the
first."""


def packed_forward_block(root: Path) -> str:
    r = _load(root, "docs/bench/packed-forward.json")
    rows = "\n".join(f"| {x['path']} | {x['seconds']:.1f} | {x['positions']:,} | {x['scored']:,} | "
                     f"{x['peak_rss_gb']:.2f} |" for x in r["results"])
    heads = "\n".join(f"    {line.strip()}" for line in (r.get("heads") or []))
    return f"""One policy forward + backward of the first batch ({_source(r, "docs/bench/packed-forward.json")})

| path | seconds | positions computed | LM head positions | peak RSS GB |
|---|---:|---:|---:|---:|
{rows}

The LM head alone on the batch's labelled positions:

```text
{heads}
```"""


def augment_block(root: Path) -> str:
    r = _load(root, "docs/bench/augment.json")
    names = {"rapref": "`rapref augment` (Arrow-native, block by block)",
             "per-row": "the same command on the per-row path", "authors": "the authors' style: `datasets` + two "
             "per-row `map` passes, the same goal text"}
    sizes = sorted({x["pairs"] for x in r["results"]})
    base = {n: next(x for x in r["results"] if x["pairs"] == n and x["contender"] == "rapref") for n in sizes}
    rows = "\n".join(f"| {x['pairs']:,} | {names[x['contender']]} | {x['seconds']:.2f} | {x['peak_rss_gb']:.2f} | "
                     f"{x['seconds'] / base[x['pairs']]['seconds']:.1f}x |" for x in r["results"])
    return f"""UltraFeedback-binarized-like JSONL (prompt, chosen / rejected as [user, assistant] messages, scores); each
contender a fresh process, command start to files written, the median of the runs
({_source(r, "docs/bench/augment.json")})

| pairs | contender | seconds | peak RSS GB | vs rapref |
|---:|---|---:|---:|---:|
{rows}"""


def generate_block(root: Path) -> str:
    r = _load(root, "docs/bench/generate.json")
    rows = "\n".join(f"| {x['contender']} | {x['wall_s']:.1f} | {x['load_s']:.1f} | {x['tokens_per_s']:.1f} | "
                     f"{x['steady_tokens_per_s']:.1f} | {x['vs_plain']:.2f}x |" for x in r["results"])
    serve = f" The server: `{r['serve']}`." if r.get("serve") else ""
    by = {x["contender"]: x for x in r["results"]}
    server, best = by.get("server"), max((x for x in r["results"] if x["contender"] != "server"),
                                         key=lambda x: x["steady_tokens_per_s"])
    if server:  # tokens after which the server's start is paid back against the fastest in-process contender
        even = server["load_s"] / (1 / best["steady_tokens_per_s"] - 1 / server["steady_tokens_per_s"])
        serve += (f" The server is {server['steady_tokens_per_s'] / best['steady_tokens_per_s']:.1f}x the fastest "
                  f"in-process contender ({best['contender']}) in steady state, but its start costs "
                  f"{server['load_s']:.0f} s: it pays back after about {even:,.0f} useful tokens (here "
                  f"{server['useful_tokens']:,} were made, so end to end {best['contender']} was faster). rapref "
                  "samples in-process by default; `--endpoint` / `--serve` are for long runs. The server computes in "
                  "bf16, the in-process contenders in fp32.")
    return f"""SmolLM2-135M-Instruct, {r['prompts']} IFEval-style prompts x {r['max_new_tokens']} new tokens, batch
{r['batch_size']} for the transformers contenders (every prompt in flight at once for the server), KV cache in all
({_source(r, "docs/bench/generate.json")}){serve}

| contender | wall s (loading included) | loading s | useful tokens/s | steady state tokens/s | steady vs plain |
|---|---:|---:|---:|---:|---:|
{rows}"""


def exp_ifeval_block(root: Path) -> str:
    r = _load(root, "docs/exp-ifeval/report.json")
    labels = {"start": "start", "start@10": "start asked for 10", "dpo": "DPO", "dpo-dup": "DPO, duplicated pairs",
              "relabeled@10": "relabeled DPO asked for 10", "half@10": "half-relabeled asked for 10"}
    ifbench = {a["arm"]: a for a in r.get("ifbench_arms") or []}

    def row(a):
        b = ifbench.get(a["arm"])
        diff = "0" if a["arm"] == "dpo" else _ci(a["minus_dpo"], 2)
        tail = f" | {b['score']:.2f} | {b['prompt_level_strict']:.3f} |" if b else " | - | - |"
        return (f"| {labels.get(a['arm'], a['arm'])} | {a['score']:.2f} | {a['prompt_level_strict']:.3f} | "
                f"{a['instruction_level_strict']:.3f} | {diff}{tail}")

    rows = "\n".join(row(a) for a in r["arms"])
    return f"""| arm | IFEval-style score (1-10) | prompt-level strict | instruction-level strict | score minus DPO [95% CI] | IFBench score | IFBench prompt-level |
|---|---:|---:|---:|---|---:|---:|
{rows}

Source: `docs/exp-ifeval/report.json` (commit `{(r['provenance'].get('git_hash') or '?')[:10]}`)."""


def dispatch_block(root: Path) -> str:
    if not (root / "docs/bench/dispatch.json").is_file():
        return "Not measured yet: `python benchmarks/dispatch_bench.py --json docs/bench/dispatch.json`."
    r = _load(root, "docs/bench/dispatch.json")
    labels = {"native": "native (all the CPU has)", "default": "default (no vector extensions)"}
    rows = "\n".join(f"| {labels.get(x['kernels'], x['kernels'].upper())}{' (pinned)' if x['pinned'] else ''} | "
                     f"{x['compute_cpu_s']:.2f} | {x['compute_vs_native']:.2f}x | {x['process_cpu_s']:.2f} |"
                     for x in r["results"])
    pinned = next(x for x in r["results"] if x["pinned"])
    return f"""The demo in miniature (`python -m rapref.studies.demo.fingerprint`: tokenizer, tiny Llama, 60 training steps,
16 sampled answers) in a fresh one-thread process per run, the levels alternating, median of {r['repeats']} runs; CPU
seconds from the process itself, which a busy machine inflates far less than wall time, on {r['cpu']['model']}
({', '.join(r['cpu']['instruction_sets'])}) ({_source(r, "docs/bench/dispatch.json")})

| dispatch | CPU s, training and sampling | vs native | CPU s, whole process (imports included) |
|---|---:|---:|---:|
{rows}

Pinned, the miniature's training and sampling take {pinned['compute_vs_native']:.2f}x the native dispatch's CPU time
here: no cost beyond run-to-run noise at the demo's model size. Larger models, and CPUs with AMX (whose matrix units
the pinned level leaves unused), are not measured."""


# (page, block name, generator)
BLOCKS = (("README.md", "readme-results", readme_block), ("docs/demo.md", "demo-results",
                                                           lambda root: demo_block(_load(root, "docs/demo/report.json"),
                                                                                  _spread(root))),
          ("docs/performance.md", "bench-relabel", relabel_block), ("docs/performance.md", "bench-train", train_block),
          ("docs/performance.md", "bench-packed-forward", packed_forward_block),
          ("docs/performance.md", "bench-augment", augment_block),
          ("docs/performance.md", "bench-generate", generate_block),
          ("docs/performance.md", "bench-dispatch", dispatch_block),
          ("docs/real-model.md", "exp-ifeval-arms", exp_ifeval_block))


def replace_block(text: str, name: str, block: str, page: str) -> str:
    start, end = f"<!-- {name}:start", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{page}: no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    marker = start + rest.split("-->", 1)[0] + "-->"
    return head + marker + "\n" + block + "\n" + end + rest.split(end, 1)[1]


def render(root: Path) -> dict[str, str]:
    """{page: its text with every generated block rewritten}."""
    pages = {page: (root / page).read_text() for page, _, _ in BLOCKS}
    for page, name, generate in BLOCKS:
        pages[page] = replace_block(pages[page], name, generate(root), page)
    return pages


def take_demo_run(run_folder: Path, root: Path) -> None:
    report = json.loads((run_folder / "report.json").read_text())
    if report.get("smoke_run"):
        raise SystemExit(f"{run_folder}: a smoke run (--quick); its numbers mean nothing and are not published")
    (root / "docs" / "demo").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_folder / "report.json", root / "docs" / "demo" / "report.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", help="a finished `rapref demo` run folder whose report.json to publish first")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a page differs")
    parser.add_argument("--root", default=str(ROOT), help="the repository (tests point it at a copy)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    if args.demo:
        take_demo_run(Path(args.demo), root)
    pages = render(root)
    stale = [page for page, text in pages.items() if (root / page).read_text() != text]
    if args.check:
        for page in stale:
            print(f"{page}: differs from its committed JSON; run python scripts/readme_results.py", file=sys.stderr)
        return 1 if stale else 0
    for page in stale:
        (root / page).write_text(pages[page])
        print(f"{page}: regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
