"""`rapref augment`: load scored preference data, clean it with counted drops, relabel it, write a dataset folder.

    rapref augment data/uf.jsonl --out runs/uf/data --placement system

The folder loads unchanged with `datasets.load_dataset(DIR)` and `trl dpo --dataset_name DIR`:
    data/train-00000-of-00001.parquet       relabeled pairs (positive and negative copies)
    data/test-00000-of-00001.parquet        held-out pairs, unconditioned (as the authors evaluated)
    data/test_goal-00000-of-00001.parquet   the same pairs conditioned on the top score of the scale
    summary.json        rows in / kept / dropped by reason, histograms, settings, versions, input fingerprint
    rapref_goal.json    goal wording and placement, read back by `rapref train` and `rapref generate`
    README.md           dataset card (no `configs:` header, see below)
    .rapref             marks the folder as rapref's own (see `rapref.runs.folder`)

The split files use the Hub's own shard names, which `datasets` maps to splits without a `configs:` header in the
card. With such a header `datasets` keys its cache by the folder name and the relative file names, so two outputs
named `a/data` and `b/data` (or a rerun with `--overwrite`) would load each other's rows; without it the cache key
covers the files themselves.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rapref.data.relabel import (
    RelabelOptions,
    condition_on,
    make_copy,
    orient_pairs,
    plan_relabel,
    stable_hash,
    unconditioned,
)
from rapref.data.schemas import SCHEMAS, SchemaOptions, arrow_pairs, detect_schema, load_pairs
from rapref.data.schemas.arrow_pairs import one_message_each
from rapref.data.schemas.base import OUT_OF_SCALE_AUTO_SHARE, Drops
from rapref.data.schemas.pairs import FLAT_LAYOUTS, maps_scores
from rapref.formats.dataset import is_augment_folder, write_dataset
from rapref.goals import GoalSpec, format_score
from rapref.io import InputError, fingerprint, iter_arrow_tables, read_arrow_table, read_rows
from rapref.provenance import provenance
from rapref.runs.folder import RunFolder, is_finished_output
from rapref.score_mapping import map_pair_scores, ties_warning
from rapref.settings import check, like, nested, setting


@dataclass
class AugmentConfig:
    source: str = setting(help="a .jsonl/.json/.parquet/.csv file, a `datasets` folder, or a hub dataset id",
                          positional=True)
    out: str = setting(help="output folder (a dataset TRL loads unchanged)")
    schema: str | None = setting(None, "input layout", choices=lambda: sorted(SCHEMAS),
                                 shown="detected from the columns; the column flags imply pairs")
    split: str | None = setting(None, "read only this input split", shown="every split")
    revision: str | None = setting(None, "hub dataset revision", shown="the newest")
    placement: str = like(GoalSpec, "placement")
    header: str = like(GoalSpec, "header")
    line: str = like(GoalSpec, "line")
    style: str = like(GoalSpec, "style")
    relabel: RelabelOptions = nested(RelabelOptions)
    schema_options: SchemaOptions = nested(SchemaOptions)
    overwrite: bool = setting(False, "replace an existing output folder")

    def __post_init__(self) -> None:
        check(self)


def main(cfg: AugmentConfig) -> dict:
    """Run the stage and return its summary. A finished augment folder made from the same input (by content) with
    the same settings is reused as it is (`summary["reused"]`); other settings are refused by `claim_output`."""
    reused = None if cfg.overwrite else _same_augment(cfg)
    if reused is not None:
        return reused
    with RunFolder(cfg.out, "augment", overwrite=cfg.overwrite, inputs=(cfg.source,), begin=False) as run:
        fast = _arrow_native(cfg)  # flat text pairs in a JSONL / Parquet file: Arrow end to end
        if fast is not None:
            tables, spec, summary = augment_loaded(*fast, cfg, source=cfg.source)
        else:
            rows = read_rows(cfg.source, cfg.split, cfg.revision)
            schema = cfg.schema or detect_schema(rows, cfg.source, cfg.schema_options)
            tables, spec, summary = augment_rows(rows, schema, cfg, source=cfg.source)
        summary["input"] = {"source": cfg.source, "fingerprint": fingerprint(cfg.source), "split": cfg.split,
                            "revision": cfg.revision}
        write_dataset(run, tables, summary, spec)
    return summary


def _same_augment(cfg: AugmentConfig) -> dict | None:
    """The summary of the finished output at `cfg.out` when it was made from this input with these settings."""

    out = Path(cfg.out)
    try:
        if not is_finished_output(out) or not is_augment_folder(out):
            return None
        if not Path(cfg.source).exists():  # a hub id names no content: made again
            return None
        summary = json.loads((out / "summary.json").read_text())
        saved, wanted = dict(summary.get("settings") or {}), json.loads(json.dumps(_settings(cfg)))
        saved.pop("overwrite", None), wanted.pop("overwrite", None)
        same = saved == wanted and \
            summary.get("input", {}).get("fingerprint") == fingerprint(cfg.source) and \
            summary.get("input", {}).get("split") == cfg.split and summary.get("input", {}).get("revision") == cfg.revision
    except (OSError, ValueError, InputError):
        return None
    if not same:
        return None
    summary["notes"] = [f"{out} already holds this output (same input and settings): reused"] + summary["notes"]
    return summary


def augment_dataset(dataset, cfg: AugmentConfig, schema: str | None = None) -> tuple[dict[str, pa.Table], dict]:
    """In-memory form: a `datasets.Dataset` or `DatasetDict` (or {split: rows}) in, Arrow tables + summary out."""
    if hasattr(dataset, "to_list"):
        rows = {cfg.split or "train": dataset.to_list()}
    elif hasattr(dataset, "items"):
        rows = {k: (v.to_list() if hasattr(v, "to_list") else list(v)) for k, v in dataset.items()}
    else:
        raise TypeError("expected a datasets.Dataset, DatasetDict or {split: rows}")
    schema = schema or cfg.schema or detect_schema(rows, "<in-memory dataset>", cfg.schema_options)
    tables, _, summary = augment_rows(rows, schema, cfg, source="<in-memory dataset>")
    return {split: t.table() if isinstance(t, TrainCopies) else t for split, t in tables.items()}, summary


def _arrow_native(cfg: AugmentConfig):
    """(loaded, rows in, schema) read and cleaned by `rapref.data.schemas.arrow_pairs`, or None for the per-row path.

    The file is read and cleaned block by block (`io.iter_arrow_tables`), so only the cleaned pairs and one block are
    in memory; a file Arrow can only read whole (a column whose type changes between blocks) is read whole."""
    path = Path(cfg.source)
    if cfg.split is not None or not path.is_file():
        return None
    blocks = iter_arrow_tables(path)
    if blocks is None:
        return None
    try:
        return _load_blocks(blocks, cfg)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        table = read_arrow_table(path)
        return None if table is None else _load_blocks([table], cfg)


def _load_blocks(blocks, cfg: AugmentConfig):
    drops = Drops(cfg.source, strict=cfg.schema_options.strict)
    schema, rows, parts, loaded = cfg.schema, 0, [], None
    for table in blocks:
        if table.num_rows == 0:
            continue
        schema = schema or detect_schema({"train": table.slice(0, 1).to_pylist()}, cfg.source, cfg.schema_options)
        loaded = arrow_pairs.load(table, schema, cfg.schema_options, cfg.source, offset=rows, drops=drops)
        if loaded is None or (parts and loaded.pairs["train"].schema != parts[0].schema):
            return None  # a form only the per-row loader reads, or blocks that disagree on it
        parts.append(loaded.pairs["train"])
        rows += table.num_rows
    if loaded is None:
        return None
    loaded.pairs["train"] = pa.concat_tables(parts)
    return loaded, rows, schema


def augment_rows(rows: dict[str, list[dict]], schema: str, cfg: AugmentConfig, source: str):
    """Load, clean, hold out and relabel. Returns (output tables by split, goal settings to save or None, summary);
    only goal-conditioned modes carry goal settings."""
    loaded = load_pairs(rows, schema, cfg.schema_options, source)
    return augment_loaded(loaded, sum(len(r) for r in rows.values()), schema, cfg, source)


def augment_loaded(loaded, rows_in: int, schema: str, cfg: AugmentConfig, source: str):
    """The stage after loading: canonical pairs (lists of dicts or Arrow tables) -> held out, relabeled tables."""
    options = cfg.schema_options
    # The pairs are taken out of `loaded`, and each step below replaces its input, so one form of them is alive at a
    # time (1M pairs: peak RSS is the largest step, not the sum of all of them).
    pairs = {split: p if isinstance(p, pa.Table) else pa.Table.from_pylist(p) for split, p in loaded.pairs.items()}
    loaded.pairs.clear()
    notes = list(loaded.notes)
    check_out_of_scale(loaded.drops, rows_in, options, loaded.scale, source)
    _require_train_pairs(pairs, loaded.drops, source)  # before anything reads the score columns of an empty table
    pairs = {split: arrow_types(p) for split, p in pairs.items()}  # large_string (pandas' Parquet) -> string, ...
    inverted = 0
    for split in list(pairs):  # chosen scored below rejected: the stated rule (--inverted), counted
        pairs[split], count = orient_pairs(pairs[split], cfg.relabel.inverted)
        inverted += count
        if count and cfg.relabel.inverted == "drop":
            _count_inverted_drops(loaded.drops, count)
    _require_train_pairs(pairs, loaded.drops, source)
    if "test" not in pairs:
        pairs["train"], pairs["test"], note = hold_out(pairs["train"], options.test_size, options.seed)
        notes.append(note)
    mapping = loaded.extra.get("score_mapping")
    if schema in FLAT_LAYOUTS and maps_scores(options):  # reward-model scores onto the goal scale, fitted on train
        pairs, mapping = map_pair_scores(pairs, loaded.scale, options.score_mapping, options.goal_precision)
        notes.append(f"scores ({mapping['raw_range'][0]:g} to {mapping['raw_range'][1]:g}) mapped onto "
                     f"{_scale_text(loaded.scale)} by {options.score_mapping}, fitted on the "
                     f"{mapping['fitted_on']} train scores")
        warning = ties_warning(mapping)
        notes += [warning] if warning else []
    spec = GoalSpec(scale=loaded.scale, placement=cfg.placement, header=cfg.header, line=cfg.line,
                    attributes=loaded.attributes, style=cfg.style)
    rows_kept, pair_counts = _rows_kept(pairs.values()), {split: p.num_rows for split, p in pairs.items()}
    tables = {split: to_table(pairs.pop(split), spec.placement) for split in list(pairs)}
    histogram = score_histogram(tables["train"])
    kept, copies, relabel_stats = plan_relabel(tables.pop("train"), cfg.relabel)
    _require_rows_out(relabel_stats, source)
    pair_checks = {"inverted": inverted, "inverted_rule": cfg.relabel.inverted,
                   "ties": relabel_stats["ties"], "ties_rule": cfg.relabel.ties}
    notes += _plain_pair_notes(cfg.relabel, pair_checks)
    top = {a: spec.top for a in spec.attributes} if len(spec.attributes) > 1 else spec.top
    out_tables = {"train": TrainCopies(kept, copies, spec)}
    if tables.get("test") is not None and tables["test"].num_rows:
        out_tables["test"] = unconditioned(tables["test"])
        out_tables["test_goal"] = condition_on(tables["test"], spec, top, copy="top_goal")
    summary = {
        "schema": schema,
        "rows_in": rows_in,
        "rows_kept": rows_kept,
        "rows_dropped": loaded.drops.total,
        "dropped_by_reason": dict(sorted(loaded.drops.counts.items())),
        "drop_examples": loaded.drops.examples,
        "pairs": pair_counts,
        "relabel": relabel_stats,
        "pair_checks": pair_checks,
        "score_mapping": mapping,
        "rows_out": {split: t.num_rows for split, t in out_tables.items()},
        "score_histogram": histogram,
        "goal": spec.to_json(),
        "settings": _settings(cfg),
        "notes": notes + [f"{k}: {v}" for k, v in loaded.extra.items() if k != "score_mapping"],
        "provenance": provenance(),
    }
    return out_tables, spec if cfg.relabel.mode in ("relabeled", "half", "positive") else None, summary


def _require_train_pairs(pairs: dict[str, pa.Table], drops, source: str) -> None:
    if "train" not in pairs or pairs["train"].num_rows == 0:
        raise InputError(f"{source}: no usable training pairs after cleaning "
                         f"(dropped: {dict(drops.counts) or 'none'})")


def _require_rows_out(stats: dict, source: str) -> None:
    """The relabeling rules (ties, --min-gap) left no training row: an empty training set is no result."""
    if stats["rows_out"] == 0:
        dropped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in stats["dropped"].items() if n)
        raise InputError(f"{source}: no training rows left after relabeling: all {stats['pairs_in']} pairs dropped "
                         f"({dropped or 'none'}); loosen --min-gap or --ties")


def arrow_types(table: pa.Table) -> pa.Table:
    """Columns cast to the types the pipeline writes and joins: large_string -> string, large_list -> list, at any
    depth (pandas writes Parquet text as large_string; Arrow's kernels do not mix the two)."""
    target = pa.schema([field.with_type(_small_type(field.type)) for field in table.schema])
    return table if target == table.schema else table.cast(target)


def _small_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(kind):
        return pa.string()
    if pa.types.is_large_binary(kind):
        return pa.binary()
    if pa.types.is_large_list(kind) or pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_small_type(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([kind.field(i).with_type(_small_type(kind.field(i).type)) for i in range(kind.num_fields)])
    return kind


def check_out_of_scale(drops, rows_in: int, options: SchemaOptions, scale, source: str) -> None:
    """Rows whose scores lie outside the scale are dropped and counted only while they are few (`auto`: at most
    `OUT_OF_SCALE_AUTO_SHARE` of the rows read) or when asked (`drop`); otherwise the run stops with one line that says
    what to pass: scores on another scale are never the default reason to lose most of a dataset."""
    count = drops.counts.get("score_outside_scale", 0)
    rule = options.out_of_scale
    if not count or rule == "drop" or (rule == "auto" and count <= OUT_OF_SCALE_AUTO_SHARE * rows_in):
        return
    first = drops.examples["score_outside_scale"][0].split(": ", 1)[-1]
    scale_text = _scale_text(scale)
    raise InputError(f"{source}: {count} of {rows_in} rows have a score outside the scale {scale_text} (first: "
                     f"{first}); for reward-model scores pass --score-mapping quantile (maps them onto {scale_text}, "
                     "fitted on the training split), to declare their scale pass --scale LOW-HIGH (e.g. --scale -5,5), "
                     "or to drop those rows pass --out-of-scale drop")


def _scale_text(scale) -> str:
    lo, hi = (format_score(s) for s in scale)
    return f"{lo} to {hi}" if min(scale) < 0 else f"{lo}-{hi}"


def _count_inverted_drops(drops, count: int) -> None:
    """`--inverted drop`: each dropped pair counted under its reason (one pair per input row in flat layouts)."""
    drops.counts["inverted_pair"] += count
    drops.examples.setdefault("inverted_pair", [])
    drops.examples["inverted_pair"].append(f"{drops.source}: {count} pairs whose chosen scored below the rejected "
                                           "(--inverted drop)")


def _plain_pair_notes(options: RelabelOptions, checks: dict) -> list[str]:
    """Plain pairs (`original`, `duplicated`) train chosen over rejected whatever the scores say: say so."""
    notes = []
    if options.mode not in ("original", "duplicated"):
        return notes
    if checks["inverted"] and options.inverted == "keep":
        notes.append(f"{checks['inverted']} pairs train with a chosen answer scored below its rejected one "
                     "(--inverted keep); --inverted swap (the default) trains each the way its scores point")
    if checks["ties"] and options.ties == "keep":
        notes.append(f"{checks['ties']} tied pairs train chosen over rejected though their scores are equal "
                     "(--ties keep); --ties drop leaves them out")
    return notes


WRITE_BLOCK_ROWS = 1 << 17  # pairs per block of the relabeled training split, as it is written


@dataclass
class TrainCopies:
    """The relabeled training split, built block by block as it is written (`blocks`): 1M pairs are never doubled
    in memory. `table()` builds it whole, for the in-memory API."""

    pairs: pa.Table
    copies: tuple[str, ...]
    spec: GoalSpec

    @property
    def num_rows(self) -> int:
        return self.pairs.num_rows * len(self.copies)

    def blocks(self, rows: int | None = None):
        rows = rows or WRITE_BLOCK_ROWS
        for copy in self.copies:
            for start in range(0, max(self.pairs.num_rows, 1), rows):
                yield make_copy(self.pairs.slice(start, rows), self.spec, copy)

    def table(self) -> pa.Table:
        return pa.concat_tables(list(self.blocks(max(self.pairs.num_rows, 1))))


def _rows_kept(tables) -> int:
    """Input rows behind the kept pairs (a pair's `source_id` joins several rows' ids with `|` in some schemas)."""
    ids = [t["source_id"] for t in tables if t.num_rows]
    if not any(pc.any(pc.match_substring(i, "|")).as_py() for i in ids):
        return sum(len(pc.unique(i)) for i in ids)
    return len({part for i in ids for source_id in i.to_pylist() for part in source_id.split("|")})


def hold_out(pairs: pa.Table, test_size, seed: int) -> tuple[pa.Table, pa.Table, str]:
    """Hold out whole prompts (never one pair of a prompt in train and another in test), chosen by content hash.

    `test_size`: a count (>= 1), a fraction (< 1), or None for min(2000, 10% of prompts) as in the paper's split.
    The prompts whose seeded hash is smallest are held out: the choice depends on content, not on row order.
    """
    import numpy as np

    keys = prompt_keys(pairs["prompt"])
    prompts = pc.unique(keys)
    hashes = np.fromiter((stable_hash(k, seed) for k in prompts.to_pylist()), dtype=np.uint64, count=len(prompts))
    if test_size is None:
        n_test = min(2000, round(0.1 * len(prompts)))
    elif test_size < 1:
        n_test = round(test_size * len(prompts))
    else:
        n_test = int(test_size)
    if test_size is not None and n_test >= len(prompts):
        raise InputError(f"--test-size {test_size:g} holds out {n_test} prompts, but the data has {len(prompts)} "
                         "distinct prompts and training needs some; give fewer (or a fraction such as 0.1)")
    n_test = max(0, min(n_test, len(prompts) - 1))
    held = prompts.take(pa.array(np.argsort(hashes, kind="stable")[:n_test]))
    in_test = pc.is_in(keys, value_set=held)
    train, test = pairs.filter(pc.invert(in_test)), pairs.filter(in_test)
    if n_test == 0:
        size = "10% by default" if test_size is None else f"{test_size:g}"
        note = f"no prompts held out for test (--test-size {size}); all {pairs.num_rows} pairs train"
    else:
        note = (f"held out {n_test} of {len(prompts)} distinct prompts for test ({test.num_rows} of {pairs.num_rows} "
                f"pairs; seed {seed})")
    return train, test, note


def prompt_keys(prompts) -> pa.Array:
    """One string per prompt: the text itself, or its messages' roles and texts joined by control characters."""
    prompts = prompts.combine_chunks() if isinstance(prompts, pa.ChunkedArray) else prompts
    if pa.types.is_string(prompts.type) or pa.types.is_large_string(prompts.type):
        return pc.cast(prompts, pa.string())
    import numpy as np

    flat = pc.list_flatten(prompts)
    n = len(flat)
    parts = pa.concat_arrays([pc.cast(pc.struct_field(flat, "role"), pa.string()),
                              pc.cast(pc.struct_field(flat, "content"), pa.string())])
    interleaved = parts.take(pa.array(np.stack([np.arange(n), np.arange(n) + n], axis=1).reshape(-1)))
    lengths = pc.fill_null(pc.list_value_length(prompts), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(2 * lengths)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), interleaved), "\x1f")


def to_table(pairs: pa.Table, placement: str) -> pa.Table:
    """Canonical pairs as Arrow; string texts become messages when the goal goes in a system message."""

    if pairs.num_rows and placement == "system" and pa.types.is_string(pairs["prompt"].type):
        for column, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            pairs = pairs.set_column(pairs.column_names.index(column), column, one_message_each(pairs[column], role))
    return pairs


def score_histogram(table: pa.Table) -> dict:
    def counts(column):
        values = pc.value_counts(table[column]).to_pylist()
        return {f"{v['values']:g}": v["counts"] for v in sorted(values, key=lambda v: v["values"])}

    return {"chosen": counts("score_chosen"), "rejected": counts("score_rejected")}


def _settings(cfg: AugmentConfig) -> dict:
    settings = asdict(cfg)
    settings.pop("source"), settings.pop("out")
    return settings
