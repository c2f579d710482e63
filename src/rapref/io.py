"""Reading scored preference data from files, saved datasets or the hub; writing outputs atomically.

Every reading error is an `InputError` whose message names the file, row and field: the CLI prints it as one line.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa


class InputError(ValueError):
    """Bad input that stops the run: the message names file, row and field."""


# --- reading -----------------------------------------------------------------------------------------------------


def read_rows(source: str, split: str | None = None, revision: str | None = None) -> dict[str, list[dict]]:
    """Read every split of `source` into lists of plain dict rows.

    `source` is a .jsonl/.json/.parquet/.csv file, a folder written by `datasets` (`save_to_disk`), a folder of such
    files, or a hub dataset id (needs the network). Returns {split_name: rows}; a single file is split "train".
    """
    path = Path(source)
    if path.is_file():
        return {"train": _read_file(path)}
    if path.is_dir():
        return _read_dir(path, split)
    if looks_like_hub_id(source):
        if hub_offline():
            raise InputError(f"{source}: no such local file or folder, and the Hugging Face hub cannot be reached "
                             "to download it (offline)")
        return _read_hub(source, split, revision)
    raise InputError(f"{source}: no such file or folder")


def read_arrow_table(path: Path):
    """A local .jsonl or .parquet file as one Arrow table, read by Arrow's own readers (no Python rows); None when
    Arrow does not take the file as it is (bad lines, mixed types, other formats): `read_rows` then names file and
    line."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        if path.suffix == ".jsonl":
            table = pj.read_json(path, read_options=pj.ReadOptions(block_size=1 << 26))
            table.validate(full=True)  # Arrow's JSON reader keeps invalid UTF-8; the per-row reader names the line
            return table
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        return None
    return None


ARROW_BLOCK_BYTES, ARROW_BLOCK_ROWS = 1 << 24, 1 << 16  # JSONL bytes / Parquet rows per block


def iter_arrow_tables(path: Path):
    """A local .jsonl or .parquet file as Arrow tables of consecutive rows (JSON blocks of `ARROW_BLOCK_BYTES`,
    Parquet batches of `ARROW_BLOCK_ROWS`), so a large file is never whole in memory; None for other files.
    Iterating raises `pa.ArrowInvalid` where Arrow does not take the file as it is (bad lines, a type that changes
    between blocks, invalid UTF-8)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    def blocks():
        if path.suffix == ".parquet":
            batches = pq.ParquetFile(path).iter_batches(batch_size=ARROW_BLOCK_ROWS)
        else:  # the first block fixes the column types; integer columns are read as floats (a later 7.5 parses)
            options = pj.ReadOptions(block_size=ARROW_BLOCK_BYTES)
            first = pj.open_json(path, read_options=options).schema
            fields = [pa.field(f.name, pa.float64() if pa.types.is_integer(f.type) else f.type) for f in first
                      if not pa.types.is_null(f.type)]
            batches = pj.open_json(path, read_options=options, parse_options=pj.ParseOptions(
                explicit_schema=pa.schema(fields), unexpected_field_behavior="infer"))
        for batch in batches:
            table = pa.Table.from_batches([batch])
            table.validate(full=True)  # Arrow's JSON reader keeps invalid UTF-8; the per-row reader names the line
            yield table

    return blocks() if path.suffix in (".parquet", ".jsonl") else None


def hub_offline() -> bool:
    """True when the Hugging Face hub cannot be used: HF_HUB_OFFLINE set, or huggingface.co unreachable (3 s)."""
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return True
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=3.0):
            return False
    except OSError:
        return True


def looks_like_hub_id(source: str) -> bool:
    parts = source.split("/")
    return len(parts) == 2 and all(parts) and not source.startswith((".", "/")) and "." not in parts[0][:1]


def _read_file(path: Path) -> list[dict]:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix in (".jsonl", ".jsonl.gz"):
        return list(_read_jsonl(path))
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return _table_rows(pq.read_table(path), path)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"{path}: not a readable Parquet file ({err})") from None
    if suffix == ".csv":
        import pyarrow.csv as pcsv

        try:
            return _table_rows(pcsv.read_csv(path), path)
        except (pa.ArrowInvalid, OSError) as err:
            raise InputError(f"{path}: not a readable CSV file ({str(err).splitlines()[0]})") from None
    raise InputError(f"{path}: unknown file type {path.suffix!r}; expected .jsonl, .json, .parquet or .csv")


def read_jsonl(path: str | Path) -> list[dict]:
    """Every row of a JSONL file (.jsonl or .jsonl.gz); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return list(_read_jsonl(path))


def read_jsonl_prefix(path: str | Path) -> list[dict]:
    """The rows of a JSONL file that is appended to as work finishes, up to the first line that does not parse (the
    last line of an interrupted writer may be cut short)."""
    rows = []
    try:
        for row in _read_jsonl(Path(path)):
            rows.append(row)
    except InputError:
        pass
    return rows


def _read_jsonl(path: Path) -> Iterator[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}:{line_no}: not valid UTF-8 (byte {err.start + 1} of the line)") from None
            if not line.strip():
                continue
            row = parse_json(line, f"{path}:{line_no}")
            if not isinstance(row, dict):
                raise InputError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
            yield row


def parse_json(text: str, where: str):
    """json.loads that refuses duplicate keys (JSON would keep the last one silently) and absurd nesting."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        line = f" line {err.lineno}" if err.lineno > 1 else ""
        raise InputError(f"{where}: malformed JSON ({err.msg} at{line} column {err.colno})") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply to be a data row") from None
    except _DuplicateKey as err:
        raise InputError(f"{where}: duplicate key {err.args[0]!r} in one JSON object (which one is meant?)") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _read_json(path: Path) -> list[dict]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not valid UTF-8 (byte {err.start + 1})") from None
    data = parse_json(text, str(path))
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()) and data:
        lengths = {len(v) for v in data.values()}
        if len(lengths) != 1:
            raise InputError(f"{path}: columns have different lengths {sorted(lengths)}")
        keys = list(data)
        return [dict(zip(keys, values)) for values in zip(*data.values())]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return data
    raise InputError(f"{path}: expected a list of objects or an object of equal-length lists")


def _table_rows(table: pa.Table, path: Path) -> list[dict]:
    names = table.column_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{path}: column {duplicates[0]!r} appears more than once (which one is meant?)")
    return table.to_pylist()


def _read_dir(path: Path, split: str | None) -> dict[str, list[dict]]:
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.Dataset):
            return {split or "train": loaded.to_list()}
        names = [split] if split else list(loaded)
        missing = [n for n in names if n not in loaded]
        if missing:
            raise InputError(f"{path}: no split {missing[0]!r}; it has {sorted(loaded)}")
        return {name: loaded[name].to_list() for name in names}
    files = sorted(p for p in path.iterdir() if p.suffix in (".jsonl", ".json", ".parquet", ".csv"))
    if not files:
        raise InputError(f"{path}: folder holds no dataset (no dataset_dict.json and no .jsonl/.json/.parquet/.csv)")
    out: dict[str, list[dict]] = {}
    for file in files:
        name = file.stem.split("-")[0]
        if split and name != split:
            continue
        out.setdefault(name, []).extend(_read_file(file))
    if not out:
        raise InputError(f"{path}: no file for split {split!r}")
    return out


def _read_hub(name: str, split: str | None, revision: str | None) -> dict[str, list[dict]]:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split, revision=revision)
    except Exception as err:  # the hub raises many kinds; all end the same way for the user
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(
            f"{name}: could not load from the Hugging Face hub ({first}). Offline? Download it where you have "
            "network access, `save_to_disk` it, and pass the folder."
        ) from None
    if isinstance(loaded, datasets.Dataset):
        return {split or "train": loaded.to_list()}
    return {k: v.to_list() for k, v in loaded.items()}


def stat_fingerprint(path: str | Path, small: int = 1 << 20) -> str:
    """A cheap hash of a file or folder that changes when its content is replaced: small files (configs, tokenizers,
    summaries) by content, large ones (weights, Parquet) by name, size and modification time. Hidden files and
    `checkpoint-*` folders are left out; a path that does not exist is hashed as its text (a hub id)."""
    path = Path(path)
    digest = hashlib.sha256()
    if not path.exists():
        digest.update(str(path).encode())
        return digest.hexdigest()[:16]
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".") or part.startswith("checkpoint-")
                                                             for part in p.relative_to(path).parts))
    for file in files:
        stat = file.stat()
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes() if stat.st_size < small else f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def fingerprint(source: str) -> str:
    """A content hash of the input: file bytes for local paths, the id for hub datasets."""
    path = Path(source)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    if not files:
        digest.update(source.encode())
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# --- scores ------------------------------------------------------------------------------------------------------


def parse_score(value) -> float | None:
    """A finite float, or None for missing / NaN / inf / "N/A" / non-numeric values."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value or value.upper() in ("N/A", "NA", "NAN", "NONE", "NULL"):
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# --- writing -----------------------------------------------------------------------------------------------------


TEMP_TAG = "rapref-"  # temporaries are `.NAME.rapref-XXXX`: recognisably rapref's, so a later run may sweep them


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False):
    """Yield a temporary sibling path (`.NAME.rapref-XXXX`); on success it replaces `path` in one rename, on failure or
    interruption (KeyboardInterrupt, SIGTERM through the CLI) it is removed. Created with the user's umask, like any
    file the user writes. Callers that replace folders check ownership first (`rapref.runs.folder.claim_output`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{TEMP_TAG}", dir=path.parent))
    else:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_TAG}", dir=path.parent)
        os.close(handle)
        tmp = Path(name)
    os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
    try:
        yield tmp
        if directory and path.exists():
            old = path.with_name(f".{path.name}.{TEMP_TAG}old")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_json_atomic(path: str | Path, data) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")
    return Path(path)


def write_jsonl_atomic(path: str | Path, rows) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
    return Path(path)


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
