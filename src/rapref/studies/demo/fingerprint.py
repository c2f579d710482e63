"""The demo in miniature, in a few seconds: numbers that show which CPU kernel dispatch, libraries and code made them.

    python -m rapref.studies.demo.fingerprint                    # pinned dispatch, JSON on stdout
    python -m rapref.studies.demo.fingerprint --kernels native   # what this CPU gives on its own

Seed 1's world (small), the demo's tokenizer and tiny Llama, STEPS AdamW steps on the start's goal-conditioned SFT
examples (tokenized as TRL tokenizes them, trained with a plain loop), then one sample per held-out prompt asked for
the top goal, scored with the true reward. `tests/core/test_dispatch.py` compares the pinned numbers with the committed
reference (`tests/fixtures/dispatch-reference.json`, made by this module with `--out`): a change of dispatch, of a
library or of the world, tokenizer, model or prompt code moves them, as it would move the demo's. The dispatch is set
before torch is imported, so run it in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from rapref import dispatch
from rapref.goals import goal_prompt
from rapref.io import write_json_atomic
from rapref.prompting import model_completion, model_input, prompt_ids, tokenize_pair
from rapref.provenance import package_versions
from rapref.studies.demo.run import DemoConfig
from rapref.studies.demo.sft import sft_examples
from rapref.studies.demo.world import WorldConfig, build_world, corpus, true_reward
from rapref.tiny import tiny_model, train_symbol_tokenizer

STEPS = 60
SEED = 1


def run(seed: int = SEED, steps: int = STEPS) -> dict:
    import torch

    torch.set_num_threads(1)
    spec = DemoConfig().goal_spec()
    world = build_world(WorldConfig(seed=seed, n_train_prompts=60, n_test_prompts=16))
    tokenizer = train_symbol_tokenizer(corpus(world, spec))
    model = tiny_model(tokenizer, hidden_size=48, num_layers=2, max_length=64, seed=seed)
    sequences = []
    for example in sft_examples(world.train_rows, spec, 0.75, seed):
        prompt, completion = tokenize_pair(tokenizer, model_input(example["prompt"], tokenizer),
                                           model_completion(example["completion"], tokenizer))
        sequences.append((prompt, completion))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        batch = [sequences[(step * 16 + i) % len(sequences)] for i in range(16)]
        width = max(len(p) + len(c) for p, c in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for row, (p, c) in enumerate(batch):
            ids[row, :len(p) + len(c)] = torch.tensor(p + c)
            labels[row, len(p):len(p) + len(c)] = torch.tensor(c)
        loss = model(input_ids=ids, attention_mask=(labels != -100) | (ids != tokenizer.pad_token_id),
                     labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    rewards, samples = [], []
    with torch.no_grad():
        for i, row in enumerate(world.test_rows):
            ids = torch.tensor([prompt_ids(tokenizer, model_input(goal_prompt(row["instruction"], spec, spec.top),
                                                                  tokenizer))])
            torch.manual_seed(seed * 1000 + i)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=0.7,
                                 max_new_tokens=12, pad_token_id=tokenizer.pad_token_id)
            text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
            samples.append(text)
            rewards.append(true_reward(row["instruction"], text))
    weights = torch.cat([p.detach().flatten() for p in model.parameters()])
    return {"losses_every_10": losses[::10], "final_loss": losses[-1], "weight_sum": weights.sum().item(),
            "weight_sq_sum": (weights * weights).sum().item(), "samples": samples,
            "mean_true_reward": sum(rewards) / len(rewards)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", choices=dispatch.choices(), default=dispatch.default_kernels())
    p.add_argument("--out", help="also write the JSON here (the committed reference is made this way)")
    args = p.parse_args(argv)
    if "torch" in sys.modules:
        raise SystemExit("fingerprint: torch is loaded already; run it in a fresh process")
    dispatch.apply(args.kernels)
    start = time.process_time()
    numbers = run()
    result = {"numbers": numbers, "compute_cpu_s": time.process_time() - start, "dispatch": dispatch.describe(args.kernels),
              "packages": package_versions(("torch", "transformers", "trl", "tokenizers"))}
    if args.out:
        write_json_atomic(args.out, result)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
