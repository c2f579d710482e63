"""`rapref demo --grid GRID.yaml`: the demo's claims over a grid of worlds and training settings.

    rapref demo --grid docs/demo-grid.yaml --out runs/grid            # the committed map (docs/demo-grid/)
    rapref demo --grid docs/demo-grid.yaml --out runs/grid-smoke --quick   # one tiny cell: a smoke test

A grid file names the seeds, arms, decodings and claims every cell shares, and each cell's settings as overrides of
the demo's (`DemoConfig` fields; `world.FIELD` for the world's). Cells run on the demo's stages in `OUT/CELL/seed-N/`,
every (cell, seed) a job in a pool of `--workers` one-thread processes; a finished stage is reused, so an interrupted
grid picks up where it stopped. A cell whose definition changed since it was begun is refused (never mixed): start it
over with --overwrite or give the changed cell a new name. Learning rates are the demo's, chosen on validation seeds
(`docs/demo-hparam-selection.json`), unless a cell overrides them.

The report pairs arms seed by seed within each cell exactly as the demo does (`report.claims`), checks each cell's
world (the start reads goals where it was trained to, DPO improves on the start) beside its verdicts, draws one figure
(cells x claims, intervals) and writes the "where it helps" paragraph from the verdicts.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from rapref.io import InputError, write_json_atomic
from rapref.runs.launches import changed
from rapref.settings import spec_of
from rapref.studies.demo.arms import ARMS, CLAIMS, DECODINGS, PRIMARY
from rapref.studies.demo.grid_report import write_report
from rapref.studies.demo.jobs import run_jobs
from rapref.studies.demo.run import DemoConfig, quick_config, run_seed
from rapref.studies.demo.world import WorldConfig
from rapref.studies.harness import Study

COMMON_KEYS = ("seeds", "arms", "decodings", "claims", "description")
FIXED = ("out", "workers", "quick", "seeds", "arms", "decodings", "kernels")  # set by the grid itself, never by a cell
CELL_FREE = ("out", "workers")  # a rerun may change these


def _fail(path, text: str) -> InputError:
    return InputError(f"{path}: {text}")


REPORT_ARMS = ("start", "start@10", "dpo")  # every cell's world checks and paired columns read these


def _yaml_without_duplicates(text: str, path: Path):
    """YAML as `yaml.safe_load` reads it, except that a key given twice in one mapping (a cell defined twice, a
    setting set twice) is refused: PyYAML would silently keep the last one."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: explicit keys override merged ones
                continue
            key = loader.construct_object(key_node, deep=deep)
            name = str(key)  # 1 and "1" name the same cell folder
            if name in seen:
                first, line = seen[name], key_node.start_mark.line + 1
                raise _fail(path, f"line {line}: {key!r} given twice in one mapping (first at line {first[0]}"
                                  + (f" as {first[1]!r}" if first[1] != key or type(first[1]) is not type(key)
                                     else "") + "); YAML would keep only the last")
            seen[name] = (key_node.start_mark.line + 1, key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass


def _names(path, grid: dict, key: str, known: set) -> list:
    """A common list (seeds, arms, decodings, claims): absent means the demo's default; given, it is a non-empty list
    of known names, each once."""
    if key not in grid:
        return []
    values = grid[key]
    if not isinstance(values, list) or not values:
        raise _fail(path, f"{key}: expected a non-empty list, got {values!r} (leave the key out for the demo's "
                          "default)")
    for value in values:
        if known and value not in known:
            raise _fail(path, f"{key}: unknown name {value!r}; known: {', '.join(sorted(known))}")
        if values.count(value) > 1:
            raise _fail(path, f"{key}: {value!r} listed twice (it would be run and counted twice)")
    return values


def _needed_arms(path, arms: list, claims: list) -> None:
    """Arms the report reads (its world checks and paired columns, each claim's arm and baseline) must be run."""
    if not arms:
        return  # every arm
    for arm in REPORT_ARMS:
        if arm not in arms:
            raise _fail(path, f"arms: {arm!r} is missing; every cell's report reads {', '.join(REPORT_ARMS)}")
    for claim in CLAIMS:
        if claims and claim.name not in claims:
            continue
        for arm in (claim.arm, claim.baseline):
            if arm and arm not in arms:
                raise _fail(path, f"claims: {claim.name} needs arm {arm!r}, which arms leaves out; add it to arms "
                                  f"or leave {claim.name} out of claims")


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file before any work; every mistake is one line naming the file, the cell and the key:
    a key given twice, an empty or repeated list entry, an unknown name, a setting of the wrong type or outside its
    range, an arm a claim or the report needs but the grid leaves out."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such grid file")
    try:
        grid = _yaml_without_duplicates(path.read_text(), path)
    except yaml.YAMLError as error:
        raise _fail(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(grid, dict) or not isinstance(grid.get("cells"), dict) or not grid["cells"]:
        raise _fail(path, "expected a mapping with a non-empty 'cells' mapping (name: settings)")
    unknown = sorted(set(grid) - set(COMMON_KEYS) - {"cells"})
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; expected {', '.join(COMMON_KEYS + ('cells',))}")
    arms = _names(path, grid, "arms", {a.name for a in ARMS})
    _names(path, grid, "decodings", {d.name for d in DECODINGS})
    claims = _names(path, grid, "claims", {c.name for c in CLAIMS})
    _needed_arms(path, arms, claims)
    seeds = _names(path, grid, "seeds", set()) or list(DemoConfig().seeds)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise _fail(path, f"seeds: expected whole numbers, got {seeds!r}")
    wrong = next((s for s in seeds if not 0 <= s < 2**32), None)
    if wrong is not None:  # numpy's and torch's seeding take 0 to 2**32 - 1
        raise _fail(path, f"seeds: {wrong} is outside 0 to {2**32 - 1} (the range a random generator is seeded with)")
    if set(seeds) & {101, 102}:
        raise _fail(path, "seeds: 101 and 102 are the validation seeds the learning rates were chosen on")
    if PRIMARY not in (grid.get("decodings") or [PRIMARY]):
        raise _fail(path, f"decodings: the verdicts use {PRIMARY}; it must be among them")
    cells, effective = {}, {}
    loaded = {"seeds": seeds, "arms": list(grid.get("arms") or ()), "decodings": list(grid.get("decodings") or ()),
              "claims": list(grid.get("claims") or ()), "description": grid.get("description", ""), "cells": cells}
    for name, overrides in grid["cells"].items():
        name = str(name)
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name):
            raise _fail(path, f"cell {name!r}: a name of letters, digits, '.', '_' or '-', not starting with '.' (it "
                              "names a folder inside --out)")
        cells[name] = _overrides(path, name, overrides or {})
        # the settings the cell runs with (the demo's defaults filled in): `{}` and `{dpo_epochs: 1.0}` are one cell
        effective[name] = {k: v for k, v in asdict(cell_config(loaded, name, Path("."), 1, False)).items() if k != "out"}
        twin = next((other for other, settings in effective.items() if other != name
                     and settings == effective[name]), None)
        if twin is not None:
            raise _fail(path, f"cells {twin!r} and {name!r} have the same settings once the demo's defaults are "
                              "filled in (a cell defined twice would be run and reported twice)")
    return loaded


def _overrides(path, cell: str, overrides) -> dict:
    if not isinstance(overrides, dict):
        raise _fail(path, f"cell {cell!r}: expected a mapping of settings, got {overrides!r}")
    top = {f.name for f in fields(DemoConfig)} - set(FIXED) - {"world"}
    world = {f.name for f in fields(WorldConfig)} - {"seed"}
    for key, value in overrides.items():
        group, _, name = str(key).partition(".")
        if not ((group == "world" and name in world) or (not name and key in top)):
            raise _fail(path, f"cell {cell!r}: unknown setting {key!r}; a DemoConfig field or world.FIELD "
                              f"(world: {', '.join(sorted(world))})")
        if value is None:
            raise _fail(path, f"cell {cell!r}: {key} has no value")
        problem = _value_problem(key, value)
        if problem:
            raise _fail(path, f"cell {cell!r}: {key} {problem}")
    return dict(overrides)


def _value_problem(key: str, value) -> str | None:
    """What is wrong with a cell's `value` for `key` (a DemoConfig field or world.FIELD), or None: the rule and
    choices declared on the field itself (the same the command line and `--config` files meet).

    >>> _value_problem("world.judge_noise", -1), _value_problem("dpo_epochs", 3)
    ('must be a finite number of 0 or more, got -1', None)
    """
    spec = spec_of(_FIELDS[key])
    choices = spec.choices() if callable(spec.choices) else spec.choices
    if choices and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, got {value!r}"
    if isinstance(value, list):
        value = tuple(value)
    return spec.rule(value) if spec.rule else None


_FIELDS = {**{f.name: f for f in fields(DemoConfig)}, **{f"world.{f.name}": f for f in fields(WorldConfig)}}


def cell_config(grid: dict, name: str, out: Path, workers: int, quick: bool, kernels: str = "pinned") -> DemoConfig:
    """The demo configuration of one cell: the demo's defaults, the grid's common settings, the cell's overrides."""
    cfg = DemoConfig(out=str(out / name), workers=workers, seeds=tuple(grid["seeds"]), arms=tuple(grid["arms"]),
                     decodings=tuple(grid["decodings"]), kernels=kernels)
    world = {k.partition(".")[2]: v for k, v in grid["cells"][name].items() if k.startswith("world.")}
    top = {k: v for k, v in grid["cells"][name].items() if not k.startswith("world.")}
    world = {k: tuple(v) if isinstance(v, list) else v for k, v in world.items()}
    top = {k: tuple(v) if isinstance(v, list) else v for k, v in top.items()}
    cfg = replace(cfg, world=replace(cfg.world, **world), **top)
    return quick_config(cfg) if quick else cfg


def _check_cell(cfg: DemoConfig, name: str) -> None:
    """Record a cell's definition when it is begun; refuse to continue a cell begun with another."""
    path = Path(cfg.out) / "cell.json"
    settings = asdict(cfg)
    if path.is_file():
        diff = changed(json.loads(path.read_text()), settings, CELL_FREE)
        if diff:
            raise InputError(f"{cfg.out}: cell {name!r} was begun with other settings ({', '.join(diff[:3])}); "
                             "start over with --overwrite or give the changed cell a new name")
    else:
        write_json_atomic(path, settings)


def main(grid_path: str, out: str, workers: int = 2, quick: bool = False, overwrite: bool = False,
         kernels: str = "pinned") -> dict:
    grid = load_grid(grid_path)
    if quick:
        first = next(iter(grid["cells"]))
        grid = {**grid, "cells": {first: grid["cells"][first]}}
    with Study(out, "demo --grid", {"quick": quick, "kernels": kernels}, free=("workers",), overwrite=overwrite,
               inputs=(grid_path,), legacy_settings=None) as study:
        if quick:
            print(f"SMOKE RUN (--quick): cell {first!r} only, on a tiny world and model that cannot learn the task; "
                  "its numbers mean nothing and no verdict is drawn.", flush=True)
        write_json_atomic(study.out / "grid.json", grid)
        configs = {name: cell_config(grid, name, study.out, workers, quick, kernels) for name in grid["cells"]}
        for name, cfg in configs.items():
            _check_cell(cfg, name)
        jobs = [(cfg, seed, f"{name} ") for name, cfg in configs.items() for seed in cfg.seeds]
        start = time.perf_counter()
        results = run_jobs(run_seed, jobs, "demo --grid", workers, kernels)
        wall = time.perf_counter() - start
        per_cell = {name: [r for (cfg, _, _), r in zip(jobs, results) if cfg is configs[name]] for name in configs}

        report = write_report(grid, configs, per_cell, study.out, wall, grid_path)
        study.finish()
    return report
