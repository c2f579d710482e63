"""Output folders: rapref never deletes or overwrites what it did not write.

Every folder a rapref command writes carries a marker file. `.rapref-unfinished` ({"command": ..., "version": ...})
is written first (`begin_output`) and says "rapref is writing this"; `.rapref` is written last (`finish_output`), when
every other file is in place, and replaces it: a `.rapref` marker only ever marks a finished output. Before writing,
`claim_output` applies one rule for every command that writes a folder (`augment`, `train`, `judge`, `diagnose`,
`model`, `onpolicy`, `experiment`, `demo`):

- a missing path or an empty folder is used;
- a non-empty folder without either marker is refused, with or without `--overwrite` (it is the user's);
- a folder rapref finished is replaced (or, for commands that resume, reused) only with `--overwrite` (`--resume`);
- an unfinished folder of the same command is continued where the command says its work is keyed by content
  (`judge`, `diagnose`), and otherwise needs `--overwrite` (or `--resume`) like a finished one;
- the current directory, and any folder that holds it or the command's input, is refused outright.

Commands that write one file (`generate`, `export`, `prompts`, `diagnose implicit-relabel`) follow the same rule with
`claim_output_file`: a file rapref wrote (a hidden `.NAME.rapref` beside it holds the hash of what it wrote) is
replaced only with `--overwrite`; any other file, one changed since, and the command's own input, never.

Every reuse of earlier work, and what keys it (a changed key recomputes or refuses; it never mixes old and new):

| reuse | where | keyed by |
|---|---|---|
| judge score cache | `judge/cache.jsonl` (`--cache`) | scorer fingerprint (model content, module source, package version), the row fields the scorer reads, text |
| LLM judge calls | `judge/cache.jsonl` | judge fingerprint (served model, its folder's content where reported), template, prompt, texts, order |
| generate resume | `OUT.partial` | model path and content fingerprint, prompt file and a digest of its prompts, split, goals, limit, sampling, in-process or server |
| train `--resume` | `output_dir/checkpoint-N` | the first launch's recipe and the content of start model and data (`rapref.runs.launches`); changes refused |
| onpolicy stages | `OUT/iter-i/...` | the first launch's settings, start, prompts, recipe file and scorer fingerprints; changes refused |
| experiment stages | `OUT/...` (`config.json`) | every setting but workers and IFBench prompts, and the start model's content; changes refused |
| demo stages | `OUT/seed-s/...` (`config.json`, `.done`) | every setting; changes refused (`--overwrite` starts over) |
| grid cells | `OUT/CELL/seed-s/...` (`cell.json`) | the cell's whole demo configuration when begun; a changed cell refused |
| augment | none | the output is written whole each time; `summary.json` records the input's content fingerprint |

`output_lock` keeps two runs from writing the same output at once: the second stops with one line. Every writer
takes it (`augment`, `train`, `generate`, `judge`, `diagnose`, `export`, `prompts`, `model`, `onpolicy`,
`experiment`, `demo`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from rapref import __version__
from rapref.io import TEMP_TAG, InputError, atomic_path, write_json_atomic
from rapref.runs.launches import LAUNCHES, record_launch

MARKER = ".rapref"  # a finished output
BEGUN = ".rapref-unfinished"  # an output rapref is writing (or was, when a run was killed)


def is_rapref_output(folder: Path) -> bool:
    """Written by rapref: finished, or begun and interrupted."""
    return (folder / MARKER).is_file() or (folder / BEGUN).is_file()


def is_finished_output(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def claim_output(out: str | Path, command: str, *, overwrite: bool = False, reuse: bool = False,
                 inputs: tuple = (), continue_unfinished: bool = False) -> Path:
    """Check that `out` may be written by `command` (the rule above); returns it as a Path.

    `reuse=True`: a folder this rapref command wrote is kept as it is (stages resume; a command of the same family,
    `demo --select-hparams` for `demo`, shares it), another command's refused; `overwrite=True`: it is emptied first.
    `continue_unfinished=True`: an unfinished folder of this same command is used without a flag. Nothing is deleted
    unless the folder carries rapref's marker.
    """
    out = Path(out)
    _refuse_link(out)
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
    other = command_of(out)
    if reuse and not overwrite and other and other.split()[0] != command.split()[0]:
        raise InputError(f"{out}: holds a rapref `{other}` output, not a `{command}` run to continue; give a fresh "
                         f"{_fresh_out(command, out)}"
                         + (" without --resume" if command == "train" else ", or pass --overwrite to start over"))
    if overwrite or reuse:
        return out
    if not is_finished_output(out):
        if continue_unfinished and command_of(out) == command:
            return out
        raise InputError(f"{out}: holds an unfinished rapref `{command_of(out) or '?'}` output (a run was "
                         "interrupted); "
                         + ("pass --resume to continue it, " if command == "train" else "")
                         + f"give a fresh {_fresh_out(command, out)}, or pass --overwrite to delete it and start over")
    raise InputError(f"{out}: already holds a finished rapref `{command_of(out) or '?'}` output; to keep it, give a "
                     f"fresh {_fresh_out(command, out)}; --overwrite deletes it and starts over")


def _fresh_out(command: str, out: Path) -> str:
    """The output setting as `command` spells it, with a fresh name: `rapref train` takes `output_dir=PATH`."""
    if command == "train":
        return f"output folder (output_dir={fresh_name(out)})"
    return f"--out (e.g. {fresh_name(out)})"


def fresh_name(out: str | Path) -> str:
    """The first of OUT-2, OUT-3, ... that does not exist (a file keeps its extension: gen-2.jsonl)."""
    out = Path(out)
    for k in range(2, 1000):
        candidate = out.with_name(f"{out.stem}-{k}{out.suffix}") if out.suffix else out.with_name(f"{out.name}-{k}")
        if not candidate.exists():
            return str(candidate)
    return str(out.with_name(f"{out.name}-new"))


def begin_output(folder: str | Path, command: str) -> None:
    """Mark `folder` as rapref's and being written (the first thing written into it): a finished marker of an earlier
    run is taken away until this one finishes."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / BEGUN, {"command": command, "version": __version__})
    (folder / MARKER).unlink(missing_ok=True)


def finish_output(folder: str | Path, command: str) -> None:
    """Mark `folder` as a finished rapref output (the last thing written into it)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / MARKER, {"command": command, "version": __version__})
    (folder / BEGUN).unlink(missing_ok=True)


def empty_output(folder: Path) -> None:
    """Remove the contents of a folder rapref wrote (checked by its marker), keeping the folder."""
    if not is_rapref_output(folder):
        raise InputError(f"{folder}: not written by rapref; not touching it")
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def command_of(folder: Path) -> str | None:
    """The command whose output `folder` holds, finished or begun ("?" for a marker without one); None where no
    rapref marker can be read."""
    for name in (MARKER, BEGUN):
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return str(data.get("command", "?"))
    return None


@contextlib.contextmanager
def output_lock(out: str | Path):
    """Hold an exclusive lock on `out` while writing it; a second run gets one line, not a traceback.

    The lock is a hidden sibling file, removed when the run ends (after a SIGKILL it stays, empty and unlocked, and
    the next run takes it over).
    """
    out = Path(out)
    lock_path = out.parent / f".{out.name}.lock"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as error:
        raise InputError(f"{out}: cannot be written here ({error.strerror or error}); choose another --out") from None
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


def _refuse_link(out: Path) -> None:
    """A symbolic link as --out is refused: writing through it would replace or fill whatever it points to (a
    dangling link would silently become a file, a link to a rapref folder would be written in place)."""
    if out.is_symlink():
        raise InputError(f"{out}: is a symbolic link (to {os.readlink(out)}); give the real path, or a new one, as "
                         "--out")


def claim_output_file(out: str | Path, command: str, *, overwrite: bool = False, inputs: tuple = ()) -> Path:
    """The same rule for commands that write one file: an existing file is replaced only with `--overwrite`, and
    only when rapref wrote it (`finish_output_file` left a hidden `.NAME.rapref` beside it holding its content hash,
    and the content is still that); a folder, the command's input, or any other file is refused."""
    out = Path(out)
    _refuse_link(out)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; `rapref {command}` writes a file here (e.g. {out}/out.jsonl)")
    for source in inputs:
        if source and Path(source).exists() and Path(source).resolve() == out.resolve():
            raise InputError(f"{out}: is the input of this command; choose another --out")
        if source and Path(source).is_dir() and Path(source).resolve() in out.resolve().parents:
            raise InputError(f"{out}: is inside the input folder {source} (another command's output, which its own "
                             f"--overwrite would delete); write beside it, e.g. --out {os.path.relpath(Path(source).resolve().parent / out.name)}")
    if not out.exists():
        return out
    if not is_rapref_file(out):
        raise InputError(f"{out}: exists and was not written by rapref (or was changed since); choose a new file "
                         "(rapref never replaces files it did not write, even with --overwrite)")
    if not overwrite:
        raise InputError(f"{out}: already exists (a finished rapref `{command}` output); to keep it, give a fresh "
                         f"--out (e.g. {fresh_name(out)}); --overwrite replaces it")
    return out


def _file_marker(path: Path) -> Path:
    return path.parent / f".{path.name}.rapref"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def finish_output_file(path: str | Path, command: str) -> None:
    """Record that rapref wrote `path` as it is now (after its atomic write): the marker holds its content hash."""

    path = Path(path)
    write_json_atomic(_file_marker(path), {"command": command, "version": __version__, "sha256": _sha256(path)})


def is_rapref_file(path: str | Path) -> bool:
    """Written by rapref and unchanged since."""
    path = Path(path)
    try:
        marker = json.loads(_file_marker(path).read_text())
        return path.is_file() and marker.get("sha256") == _sha256(path)
    except (OSError, ValueError, AttributeError):
        return False


class RunFolder:
    """The one way a command writes a folder, the rule above in one object:

        with RunFolder(out, "diagnose", overwrite=cfg.overwrite, inputs=(cfg.scores,)) as run:
            write_results(run.path)          # load -> compute -> write; nothing else about the protocol

    Made: the folder is claimed (a refusal comes before any work). Entered: its lock is taken and the claim checked
    again under it; then, unless `begin=False`, the run begins: the folder is emptied where `empty` and --overwrite
    ask for it, marked begun, and the launch recorded in `launches.jsonl` when `settings` are given. Left normally:
    the finished marker is written last, when the run began; left by an error: the folder stays unfinished, as it
    is, unless this run made it (it did not exist) and wrote nothing into it but the markers (then it is removed,
    and the corrected command may use the same --out). A run that learns inside the block whether it writes at all
    (train --resume on a finished run writes nothing) passes `begin=False` and calls `run.begin()` once it knows;
    one that finishes before its last act (train pushes to the Hub after) calls `run.finish()` itself; a study
    finishes only when every stage ran (`finish=False`)."""

    def __init__(self, out: str | Path, command: str, *, overwrite: bool = False, reuse: bool = False,
                 inputs: tuple = (), continue_unfinished: bool = False, empty: bool = False,
                 settings: dict | None = None, launch: str | None = None, begin: bool = True, finish: bool = True):
        self.command = command
        self._claim = {"overwrite": overwrite, "reuse": reuse, "inputs": inputs,
                       "continue_unfinished": continue_unfinished}
        self.path = claim_output(out, command, **self._claim)
        self._empty, self._settings, self._launch = empty and overwrite, settings, launch
        self._begin, self._finish = begin, finish
        self.begun = self.finished = False

    def __enter__(self) -> RunFolder:
        self._lock = output_lock(self.path)
        self._lock.__enter__()
        self._new = not self.path.exists()  # this run makes the folder (decided under the lock), or finds it empty
        self._was_empty = self.path.is_dir() and not any(self.path.iterdir())
        try:
            claim_output(self.path, self.command, **self._claim)  # again, now that we hold it
            if self._begin:
                self.begin()
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def begin(self, settings: dict | None = None, launch: str | None = None) -> None:
        """Empty the folder where --overwrite asked for it (an earlier rapref output, replaced as asked), mark it begun
        (unfinished until this run ends) and record the launch, when given settings."""

        if self._empty and self.path.is_dir() and any(self.path.iterdir()):
            empty_output(self.path)
        begin_output(self.path, self.command)
        settings = self._settings if settings is None else settings
        if settings is not None:
            record_launch(self.path, settings, launch or self._launch or self.command)
        self.begun = True

    def finish(self) -> None:
        finish_output(self.path, self.command)
        self.finished = True

    @contextlib.contextmanager
    def written_whole(self):
        """A folder written apart and put in place whole (an atomic rename), finished as it appears: yields the
        temporary folder to fill. For outputs that are rewritten entirely each run (augment)."""

        with atomic_path(self.path, directory=True) as tmp:
            finish_output(tmp, self.command)
            yield tmp
        self.finished = True

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None and self._finish and self.begun and not self.finished:
                self.finish()
            elif kind is not None and (self._new or self._was_empty):
                self._remove_if_nothing_written()
        finally:
            self._lock.__exit__(kind, value, traceback)

    def _remove_if_nothing_written(self) -> None:
        """A run that made its folder and stopped before writing anything but the protocol's own files leaves no
        folder behind, so the corrected command can use the same --out (a folder with results in it stays, unfinished,
        as the rule says; a folder that was there before, empty, is kept and emptied of the markers again)."""
        if self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {BEGUN, LAUNCHES}:
            if self._new:
                shutil.rmtree(self.path, ignore_errors=True)
            else:  # the user's empty folder: kept, as empty as it was
                for name in (BEGUN, LAUNCHES):
                    (self.path / name).unlink(missing_ok=True)


class RunFile:
    """The same for a command that writes one file (generate, export, prompts, diagnose implicit-relabel):

        with RunFile(cfg.out, "generate", overwrite=cfg.overwrite, inputs=(cfg.prompts,)) as run:
            write_jsonl_atomic(run.path, rows)

    Made: claimed (`claim_output_file`). Entered: locked and claimed again. Left normally, with the file written:
    its ownership marker (the content hash) is recorded; left by an error: nothing is recorded."""

    def __init__(self, out: str | Path, command: str, *, overwrite: bool = False, inputs: tuple = ()):
        self.command, self._claim = command, {"overwrite": overwrite, "inputs": inputs}
        self.path = claim_output_file(out, command, **self._claim)

    def __enter__(self) -> RunFile:
        self._lock = output_lock(self.path)
        self._lock.__enter__()
        try:
            claim_output_file(self.path, self.command, **self._claim)
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind, value, traceback) -> None:
        try:
            if kind is None and self.path.is_file():
                finish_output_file(self.path, self.command)
        finally:
            self._lock.__exit__(kind, value, traceback)
