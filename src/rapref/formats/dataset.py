"""Dataset folders as `rapref augment` writes them (Parquet splits, summary.json, the goal settings, a
dataset card): the one module that writes and reads them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rapref.goals import GoalSpec
from rapref.io import InputError, write_json_atomic
from rapref.runs.folder import RunFolder

SPLIT_FILES = {split: f"data/{split}-00000-of-00001.parquet" for split in ("train", "test", "test_goal")}


def write_dataset(run: RunFolder, tables: dict[str, pa.Table], summary: dict, spec: GoalSpec | None) -> None:
    """Write the whole folder atomically: a half-written folder never replaces a good one."""
    with run.written_whole() as tmp:  # the folder appears whole (atomic rename): finished as it appears
        for split, table in tables.items():
            (tmp / SPLIT_FILES[split]).parent.mkdir(exist_ok=True)
            if not hasattr(table, "blocks"):  # a table; else streamed block by block (augment's TrainCopies)
                pq.write_table(table, tmp / SPLIT_FILES[split])
                continue
            writer = None
            for block in table.blocks():
                writer = writer or pq.ParquetWriter(tmp / SPLIT_FILES[split], block.schema)
                writer.write_table(block if block.schema == writer.schema else block.cast(writer.schema))
            writer.close()
        write_json_atomic(tmp / "summary.json", summary)
        if spec is not None:  # only goal-conditioned data carries goal settings
            spec.save(tmp)
        (tmp / "README.md").write_text(dataset_card(tables, summary))


def read_split(folder: str | Path, split: str) -> pa.Table:
    """One split of a `rapref augment` folder, read fresh from its Parquet file (the one reader of these folders)."""
    folder = Path(folder)
    available = augment_splits(folder)
    if split not in available:
        raise InputError(f"{folder}: no split {split!r} in this augment folder; it has {', '.join(available)}")
    try:
        return pq.read_table(folder / SPLIT_FILES[split])
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"{folder / SPLIT_FILES[split]}: not a readable Parquet file ({err})") from None


def augment_splits(folder: str | Path) -> list[str]:
    """The splits present in a `rapref augment` folder (empty when it is not one)."""
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        return []
    return [split for split, name in SPLIT_FILES.items() if (folder / name).is_file()]


def is_augment_folder(folder: str | Path) -> bool:
    return bool(augment_splits(folder))


def dataset_card(tables: dict[str, pa.Table], summary: dict) -> str:
    return (
        "---\ntags:\n- rapref\n- dpo\n- reward-augmented\n---\n\n"
        "# Reward-augmented preference data (rapref)\n\n"
        f"Schema `{summary['schema']}`; {summary['rows_in']} input rows, {summary['rows_dropped']} dropped "
        f"({', '.join(f'{k}: {v}' for k, v in summary['dropped_by_reason'].items()) or 'none'}).\n"
        f"Splits: {', '.join(f'{k} ({v} rows)' for k, v in summary['rows_out'].items())}.\n"
        "See summary.json for settings and provenance, rapref_goal.json for the goal wording and placement.\n"
    )
