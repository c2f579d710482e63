"""`make setup` on a machine without a GPU installs a working torch whatever the package index serves: the CPU build
where it can be had, otherwise the CUDA build with a one-line note of its size; it never stops for it. The recipe runs
here as written, against a stand-in environment whose `pip` only logs and whose torch reports a CUDA build. And the package's
licence is an SPDX expression, and the set-up pins the versions the README's figures used."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT


GiB = 2**30


pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def fake_torch(folder: Path, cuda: str | None, sizes: dict[str, int]) -> None:
    """A torch package that reports `cuda`, and installed distributions whose file lists claim `sizes` bytes."""
    (folder / "torch").mkdir(parents=True)
    (folder / "torch" / "__init__.py").write_text(
        f"__version__ = '2.13.0'\nclass version:\n    cuda = {cuda!r}\n    hip = None\n")
    for name, size in sizes.items():
        info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "RECORD").write_text(f"{name.replace('-', '_')}/lib.so,sha256=x,{size}\n")


def stand_in_venv(tmp_path: Path, cuda: str | None, refuse_index: bool = False) -> tuple[Path, Path]:
    """A venv folder whose python logs `-m pip` calls (refusing `--index-url` ones when asked) and runs everything
    else with this interpreter, the fake torch first on its path."""
    site = tmp_path / "site"
    fake_torch(site, cuda, {"torch": 2 * GiB, "nvidia-cublas-cu12": GiB // 2, "triton": GiB // 2})
    venv, log = tmp_path / "venv", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
    echo "$*" >> {log}
    case "$*" in *--index-url*) {'exit 1' if refuse_index else 'exit 0'};; esac
    exit 0
fi


PYTHONPATH={site} exec {sys.executable} "$@"
""")
    python.chmod(0o755)
    return venv, log


def make_setup(venv: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "setup", f"VENV={venv}", "HAS_GPU=", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_cuda_torch_on_a_machine_without_a_gpu_gives_a_note_and_the_setup_goes_on(tmp_path):
    venv, log = stand_in_venv(tmp_path, cuda="12.8")
    done = make_setup(venv)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stdout.splitlines() if line.startswith("make setup: note:")]
    assert len(notes) == 1 and "CUDA 12.8 build (3.0 GiB" in notes[0] and "TORCH_INDEX=" in notes[0], done.stdout
    assert (venv / ".installed").is_file()
    assert "install -q -c constraints.txt torch==2.13.0 -e .[dev]" in log.read_text()


def test_a_cpu_torch_is_named_and_nothing_else_is_said(tmp_path):
    venv, _ = stand_in_venv(tmp_path, cuda=None)
    done = make_setup(venv)
    assert done.returncode == 0, done.stderr
    assert "make setup: torch 2.13.0 (CPU build)" in done.stdout and "note:" not in done.stdout


def test_a_cpu_index_is_tried_first_and_its_failure_does_not_stop_the_setup(tmp_path):
    venv, log = stand_in_venv(tmp_path, cuda="12.8", refuse_index=True)
    done = make_setup(venv, "TORCH_INDEX=https://cpu.index.invalid/whl")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    first = next(i for i, c in enumerate(calls) if "--index-url https://cpu.index.invalid/whl torch==2.13.0" in c)
    assert first < next(i for i, c in enumerate(calls) if "-e .[dev]" in c)
    assert "no torch from https://cpu.index.invalid/whl; taking the configured index's" in done.stdout
    assert (venv / ".installed").is_file()


def test_license_is_an_spdx_expression():
    import tomllib

    root = ROOT
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and (root / "LICENSE").read_text().startswith(" " * 33 + "Apache License")
    pins = dict(line.split("==") for line in (root / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    from importlib.metadata import version

    for name in ("trl", "transformers", "datasets", "pyarrow"):
        assert pins[name] == version(name), name  # the set-up installs the versions the README's figures used
