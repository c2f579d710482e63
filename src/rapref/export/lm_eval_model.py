"""lm-evaluation-harness on a goal-conditioned policy, its goal written exactly where training put it.

    rapref lm-eval --model rapref --model_args pretrained=runs/relabeled,goal=10 --tasks gsm8k --apply_chat_template

`rapref lm-eval` is lm-eval's own command line (every flag is lm-eval's; `lm-eval` 0.4.13, the `eval` extra) with
one more model, `rapref`: lm-eval's `hf` model (`HFLM`) whose prompts carry the policy's goal. The goal's wording,
scale and placement come from the policy's `rapref_goal.json`; `goal=G` in `--model_args` picks the score (default:
the top of the scale, as `rapref generate`), checked against the scale.

- A policy with a chat template (every policy trained on conversations; `rapref train` installs one where needed)
  must be run with `--apply_chat_template`: the goal is written into lm-eval's chat history by
  `rapref.goals.goal_prompt` (the system message, or the first user turn, as in training; a `--system_instruction`
  is kept behind a system goal as training keeps a dataset's own system message), the template is applied by
  `rapref.prompting.prompt_text`, and the text is encoded without added special tokens, as TRL's
  `apply_chat_template` tokenizes it. The prompt ids are then
  `rapref.prompting.prompt_ids` of the goal prompt (`tests/export/test_lm_eval.py` checks it for every placement).
  Loglikelihood tasks keep that prompt whole: lm-eval would move the trailing newline of the generation prompt into
  the scored continuation, and the policy was trained on prompts ending with it.
- A policy without a template (plain text, `user` / `user-suffix` placement) gets the goal written into each
  request's context, the text lm-eval built (few-shot examples included), with the same function.
- Perplexity tasks (`loglikelihood_rolling`) score a text with no prompt, so no goal applies; they are refused.
"""

from __future__ import annotations

from rapref.goals import check_goals
from rapref.io import InputError
from rapref.models import load_tokenizer, model_goal_spec
from rapref.prompting import goal_prompt, has_chat_template, prompt_text

MODEL_NAME = "rapref"


def _model_class():
    """`RaprefLM`, built on first use so that rapref imports without lm-eval installed."""
    from lm_eval.models.huggingface import HFLM

    class RaprefLM(HFLM):
        """lm-eval's HFLM with the policy's goal in every prompt (see the module notes)."""

        def __init__(self, pretrained, goal=None, **kwargs):
            spec = model_goal_spec(str(pretrained), no_goal=False)
            goal = check_goals([spec.top if goal in (None, "") else goal], spec)[0]

            chat = has_chat_template(load_tokenizer(str(pretrained)))
            if chat:  # TRL's apply_chat_template tokenizes the rendered text without adding special tokens
                kwargs.setdefault("add_bos_token", False)
            super().__init__(pretrained=pretrained, **kwargs)
            self.goal_spec, self.goal, self.chat = spec, goal, chat
            self.templated = False  # set once lm-eval has asked for the chat template (--apply_chat_template)

        def apply_chat_template(self, chat_history, add_generation_prompt: bool = True) -> str:
            """lm-eval's hook (named by lm-eval): the chat history with the goal, rendered by rapref's prompting."""
            self.templated = True
            conversation = goal_prompt(chat_history, self.goal_spec, self.goal)
            # without a generation prompt, lm-eval asks to continue a final assistant message (a task's gen_prefix)
            return prompt_text(self.tokenizer, conversation, continue_final=not add_generation_prompt)

        def _with_goal(self, requests):
            if self.chat:
                if not self.templated:
                    raise InputError(f"{self.pretrained}: this policy reads its goal in a chat template "
                                     f"({self.goal_spec.placement} placement); run lm-eval with --apply_chat_template")
                return requests
            import dataclasses

            return [dataclasses.replace(r, arguments=(goal_prompt(r.args[0], self.goal_spec, self.goal),
                                                      *r.args[1:])) for r in requests]

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(self._with_goal(requests), disable_tqdm=disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(self._with_goal(requests), disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise InputError("perplexity tasks (loglikelihood_rolling) score text without a prompt, so a goal "
                             "cannot be applied; run them with --model hf")

        def _encode_pair(self, context: str, continuation: str):
            if not self.chat:
                return super()._encode_pair(context, continuation)
            context_ids = self.tok_encode(context)
            whole = self.tok_encode(context + continuation)
            if whole[:len(context_ids)] != context_ids:  # the continuation's first token merged across the cut
                return context_ids, self.tok_encode(continuation)
            return context_ids, whole[len(context_ids):]

    return RaprefLM


def register() -> None:
    """Add `rapref` to lm-eval's model registry (lazily: the class is built when lm-eval asks for it)."""
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=f"{__name__}:RaprefLM")


def __getattr__(name: str):
    if name == "RaprefLM":  # lm-eval's lazy registry imports "rapref.export.lm_eval_model:RaprefLM"
        cls = _model_class()
        globals()["RaprefLM"] = cls
        return cls
    raise AttributeError(name)


def main(argv: list[str]) -> None:
    """lm-eval's command line (`lm-eval run ARGS`), with `rapref` registered."""
    try:
        from lm_eval._cli import HarnessCLI
        from lm_eval.utils import setup_logging
    except ImportError as err:
        raise InputError(f"lm-eval is not installed ({err}); pip install 'rapref[eval]'") from None
    register()
    setup_logging()
    cli = HarnessCLI()
    argv = list(argv)
    if not argv or argv[0] not in cli._subparsers.choices:  # as lm-eval itself: no subcommand means `run`
        argv.insert(0, "run")
    try:
        cli.execute(cli._parser.parse_args(argv))
    except SystemExit as exit_:  # lm-eval's argparse refused a flag (its message is above) or printed its help
        if exit_.code not in (0, None):
            raise InputError(f"lm-eval refused its arguments (exit {exit_.code}; `rapref lm-eval --help`)") from None


__all__ = ["MODEL_NAME", "register", "main"]
