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
from rapref.launches import changed
from rapref.studies.demo.arms import ARMS, CLAIMS, DECODINGS, PRIMARY
from rapref.studies.demo.jobs import run_jobs
from rapref.studies.demo.run import DemoConfig, quick_config, run_seed
from rapref.studies.demo.world import WorldConfig
from rapref.studies.harness import Study

COMMON_KEYS = ("seeds", "arms", "decodings", "claims", "description")
FIXED = ("out", "workers", "quick", "seeds", "arms", "decodings", "kernels")  # set by the grid itself, never by a cell
CELL_FREE = ("out", "workers")  # a rerun may change these


def _fail(path, text: str) -> InputError:
    return InputError(f"{path}: {text}")


def load_grid(path: str | Path) -> dict:
    """Read and check a grid file; every mistake is one line naming the file, the cell and the key."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such grid file")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise _fail(path, f"not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(grid, dict) or not isinstance(grid.get("cells"), dict) or not grid["cells"]:
        raise _fail(path, "expected a mapping with a non-empty 'cells' mapping (name: settings)")
    unknown = sorted(set(grid) - set(COMMON_KEYS) - {"cells"})
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; expected {', '.join(COMMON_KEYS + ('cells',))}")
    arms, decodings, claims = ({a.name for a in ARMS}, {d.name for d in DECODINGS}, {c.name for c in CLAIMS})
    for key, known in (("arms", arms), ("decodings", decodings), ("claims", claims)):
        for name in grid.get(key) or ():
            if name not in known:
                raise _fail(path, f"{key}: unknown name {name!r}; known: {', '.join(sorted(known))}")
    seeds = grid.get("seeds") or list(DemoConfig().seeds)
    if not all(isinstance(s, int) for s in seeds):
        raise _fail(path, f"seeds: expected whole numbers, got {seeds!r}")
    if set(seeds) & {101, 102}:
        raise _fail(path, "seeds: 101 and 102 are the validation seeds the learning rates were chosen on")
    if PRIMARY not in (grid.get("decodings") or [PRIMARY]):
        raise _fail(path, f"decodings: the verdicts use {PRIMARY}; it must be among them")
    cells = {}
    for name, overrides in grid["cells"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise _fail(path, f"cell {name!r}: a name of letters, digits, '.', '_' or '-' (it names a folder)")
        cells[str(name)] = _overrides(path, str(name), overrides or {})
    return {"seeds": seeds, "arms": list(grid.get("arms") or ()), "decodings": list(grid.get("decodings") or ()),
            "claims": list(grid.get("claims") or ()), "description": grid.get("description", ""), "cells": cells}


def _overrides(path, cell: str, overrides) -> dict:
    if not isinstance(overrides, dict):
        raise _fail(path, f"cell {cell!r}: expected a mapping of settings, got {overrides!r}")
    top = {f.name for f in fields(DemoConfig)} - set(FIXED) - {"world"}
    world = {f.name for f in fields(WorldConfig)} - {"seed"}
    for key, value in overrides.items():
        group, _, name = key.partition(".")
        if not ((group == "world" and name in world) or (not name and key in top)):
            raise _fail(path, f"cell {cell!r}: unknown setting {key!r}; a DemoConfig field or world.FIELD "
                              f"(world: {', '.join(sorted(world))})")
        if value is None:
            raise _fail(path, f"cell {cell!r}: {key} has no value")
    return dict(overrides)


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
        from rapref.studies.demo.grid_report import write_report

        report = write_report(grid, configs, per_cell, study.out, wall, grid_path)
        study.finish()
    return report
