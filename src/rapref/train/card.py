"""The model card (README.md) of a `rapref train` run: what the model is and how to prompt it with a goal.

Written into the run folder on every save (each checkpoint too), so that `push_to_hub`, a copied folder or a merged
LoRA model says what it is, instead of TRL's generic "fine-tuned version of [None]".
"""

from __future__ import annotations

import json
from pathlib import Path

from rapref import __version__
from rapref.goals import GoalSpec, goal_prompt
from rapref.io import atomic_path
from rapref.train.algorithms import ALGORITHMS


def model_card(cfg, spec: GoalSpec | None, result: dict | None = None, name: str | None = None,
               path: str | None = None) -> str:
    """`name`: the title (a Hub id when pushed; default the folder's name). `path`: where the commands load the policy
    from: the folder it was saved at (default `cfg.output_dir`), or the Hub id when pushed."""

    hub_id = name if name and "/" in name and not Path(name).exists() else None
    path = path or hub_id or str(cfg.output_dir)
    name = name or Path(cfg.output_dir).name
    algo = cfg.algorithm
    loss = f", loss {'+'.join(algo.loss_type)}" if ALGORITHMS[algo.name].loss_list else ""
    training = cfg.training
    base = cfg.model.name_or_path
    header = ["---", "library_name: transformers", "tags: [rapref, trl, goal-conditioned, reward-augmented-dpo]"]
    if not Path(base).exists():  # a Hub id: link the base model
        header.append(f"base_model: {base}")
    header.append("---")
    if spec is None:
        goal_section = ("This policy was trained without goals (plain pairs): prompt it as its base model, with no "
                        "goal text.")
        example = "Your question here"
    else:
        example = goal_prompt("Your question here", spec, spec.top)
        goal_section = (f"Trained on relabeled pairs: every prompt carries a goal score on the scale "
                        f"{spec.scale[0]:g}-{spec.scale[1]:g} (placement `{spec.placement}`, style `{spec.style}`). "
                        f"At inference, ask for the top score, {spec.top:g}, written exactly as in training. The goal "
                        f"settings are in `rapref_goal.json`; `rapref generate` reads them.")
    messages = example if isinstance(example, list) else [{"role": "user", "content": example}]
    results = ""
    if result:
        results = (f"\n## Training results (measured)\n\n{result.get('steps')} steps on "
                   f"{result.get('world_size', 1)} process(es); {result.get('train_examples')} training examples; "
                   f"training loss {result.get('first_loss')} -> {result.get('last_loss')}.\n")
    return "\n".join(header) + f"""

# {name}

A goal-conditioned policy trained with [rapref](https://github.com/rapref/rapref) {__version__}
(reward-augmented preference alignment, arXiv 2410.08067).

- **Base model**: `{base}`
- **Data**: `{cfg.data.path}` (split `{cfg.data.train_split}`)
- **Algorithm**: {algo.name}{loss}, beta {algo.beta:g}; learning rate {training.get('learning_rate', 'TRL default')},
  epochs {training.get('num_train_epochs', 'TRL default')}; {'LoRA r=%d' % cfg.lora.r if cfg.lora.enabled else 'full fine-tuning'}

## The goal

{goal_section}

## How to prompt it (plain transformers)

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

path = "{path}"  # this folder or its Hub id
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForCausalLM.from_pretrained(path)
messages = {json.dumps(messages, ensure_ascii=False)}
ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
out = model.generate(**ids, max_new_tokens=256)
print(tokenizer.decode(out[0][ids["input_ids"].shape[1]:], skip_special_tokens=True))
```

Or: `rapref generate {path} --prompts prompts.jsonl --out gen.jsonl` (goal = top score by default);
`rapref show {path}` prints the exact prompt the policy reads, goal text and chat template included.
{results}
## Reproduce

The resolved recipe, package versions and git commit are in `rapref_train.json`.
"""


def write_model_card(folder: Path, cfg, spec: GoalSpec | None, result: dict | None = None,
                     name: str | None = None, path: str | None = None) -> None:
    with atomic_path(Path(folder) / "README.md") as tmp:
        tmp.write_text(model_card(cfg, spec, result, name, path))
