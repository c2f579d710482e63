"""`python:MODULE:FUNCTION`: any function f(row, text) -> float as a scorer (synthetic tasks with a known true
reward); fingerprinted by the source of MODULE, so editing the function or a helper it calls gives new scores."""

from __future__ import annotations

import importlib
import inspect

from rapref.io import InputError
from rapref.judge.base import Scorer, source_fingerprint


class PythonScorer(Scorer):
    def __init__(self, target: str, **_):
        module_name, _, function_name = target.rpartition(":")
        if not module_name or not function_name:
            raise InputError(f"scorer python:{target}: expected python:MODULE:FUNCTION")
        try:
            module = importlib.import_module(module_name)
            self.fn = getattr(module, function_name)
        except (ImportError, AttributeError) as err:
            raise InputError(f"scorer python:{target}: cannot load ({err})") from None
        if not callable(self.fn) or not _takes_row_and_text(self.fn):
            raise InputError(f"scorer python:{target}: expected a function f(row, text) -> float (row: the "
                             "generation's JSON object, text: its answer)")
        self.id = f"python:{target}"
        self.fingerprint = source_fingerprint(getattr(module, "__file__", None) or target)

    def score(self, rows, texts):
        scores = []
        for row, text in zip(rows, texts):
            try:
                value = float(self.fn(row, text))
            except Exception as err:  # noqa: BLE001 - the user's function: one line naming the row
                raise InputError(f"scorer {self.id}: failed on prompt {row.get('prompt_id')!r} "
                                 f"({type(err).__name__}: {err})") from None
            if value != value:
                raise InputError(f"scorer {self.id}: returned NaN for prompt {row.get('prompt_id')!r}")
            scores.append(value)
        return scores


def _takes_row_and_text(fn) -> bool:
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read (a builtin): let the call tell
        return True
    return True
