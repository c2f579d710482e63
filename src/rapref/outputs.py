"""Output folders: rapref never deletes or overwrites what it did not write.

Every folder a rapref command writes carries a marker file, `.rapref` ({"command": ..., "version": ...}). Before
writing, `claim_output` applies one rule for every command (`augment`, `train`, `generate`, `judge`, `diagnose`,
`demo`):

- a missing path or an empty folder is used;
- a non-empty folder without the marker is refused, with or without `--overwrite` (it is the user's);
- a folder rapref wrote is replaced (or, for commands that resume, reused) only with `--overwrite` (`--resume`);
- the current directory, and any folder that holds it or the command's input, is refused outright.

`output_lock` keeps two runs from writing the same output at once: the second stops with one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from pathlib import Path

from rapref.io import TEMP_TAG, InputError, write_json_atomic

MARKER = ".rapref"


def is_rapref_output(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def claim_output(out: str | Path, command: str, *, overwrite: bool = False, reuse: bool = False,
                 inputs: tuple = ()) -> Path:
    """Check that `out` may be written by `command` (the rule above); returns it as a Path.

    `reuse=True`: a folder this rapref command wrote is kept as it is (stages resume); `overwrite=True`: it is
    emptied first. Nothing is deleted unless the folder carries rapref's marker.
    """
    out = Path(out)
    resolved = out.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(f"{out}: refusing to write into the current directory or a folder that holds it; "
                         "give a new folder, e.g. --out runs/NAME")
    for source in inputs:
        if source and Path(source).exists():
            src = Path(source).resolve()
            if src == resolved or resolved in src.parents:
                raise InputError(f"{out}: refusing to write over the folder that holds the input {source}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if not is_rapref_output(out):
        raise InputError(f"{out}: folder is not empty and was not written by rapref; choose a new folder "
                         "(rapref never replaces folders it did not write, even with --overwrite)")
    if overwrite or reuse:
        return out
    raise InputError(f"{out}: already holds a rapref `{_command_of(out)}` output; pass --overwrite to replace it")


def mark_output(folder: str | Path, command: str) -> None:
    """Write the marker that makes `folder` rapref's own (first thing written into a folder)."""
    from rapref import __version__

    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(folder) / MARKER, {"command": command, "version": __version__})


def empty_output(folder: Path) -> None:
    """Remove the contents of a folder rapref wrote (checked by its marker), keeping the folder."""
    if not is_rapref_output(folder):
        raise InputError(f"{folder}: not written by rapref; not touching it")
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _command_of(folder: Path) -> str:
    try:
        return json.loads((folder / MARKER).read_text()).get("command", "?")
    except (OSError, ValueError):
        return "?"


@contextlib.contextmanager
def output_lock(out: str | Path):
    """Hold an exclusive lock on `out` while writing it; a second run gets one line, not a traceback.

    The lock is a hidden sibling file, removed when the run ends (after a SIGKILL it stays, empty and unlocked, and
    the next run takes it over).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock_path = out.parent / f".{out.name}.lock"
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InputError(f"{out}: another rapref run is writing this output right now; wait for it or choose "
                         "another --out") from None
    try:
        sweep_stale_temporaries(out)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def sweep_stale_temporaries(out: Path) -> int:
    """Remove the temporaries next to `out` that a killed run left (`io.atomic_path` names them `.NAME.rapref-*`;
    we hold the lock, so none is live). Nothing else is touched, however it is named."""
    removed = 0
    for sibling in out.parent.glob(f".{out.name}.{TEMP_TAG}*"):
        if sibling.is_dir():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        removed += 1
    return removed


def claim_output_file(out: str | Path, command: str, *, overwrite: bool = False, inputs: tuple = (),
                      owned_keys: tuple[str, ...] = ()) -> Path:
    """The same rule for commands that write one file: an existing file is replaced only with `--overwrite`, and
    only when it is one rapref wrote (its first JSON line has `owned_keys`); a folder or an input is refused."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; `rapref {command}` writes a file here (e.g. {out}/out.jsonl)")
    for source in inputs:
        if source and Path(source).exists() and Path(source).resolve() == out.resolve():
            raise InputError(f"{out}: is the input of this command; choose another --out")
    if not out.exists():
        return out
    if not _first_json_line_has(out, owned_keys):
        raise InputError(f"{out}: exists and was not written by rapref {command}; choose a new file "
                         "(rapref never replaces files it did not write, even with --overwrite)")
    if not overwrite:
        raise InputError(f"{out}: already exists; pass --overwrite to replace it")
    return out


def _first_json_line_has(path: Path, keys: tuple[str, ...]) -> bool:
    try:
        with open(path, encoding="utf-8") as handle:
            first = json.loads(handle.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and all(k in first for k in keys)
