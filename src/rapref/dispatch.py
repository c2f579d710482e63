"""CPU kernel dispatch, pinned to one instruction-set level so that a study gives the same numbers on every machine.

torch picks its CPU kernels by the instructions the processor has: ATen's vectorised ops (softmax, attention, the
backward passes), MKL's BLAS and oneDNN each take AVX-512 or AMX paths where they exist. Those paths sum in another
order, a tiny model's training trajectory parts after a few hundred steps, and the demo's claims move by as much as
the effects they test. So the studies (`rapref demo`, `--grid`, `experiment ifeval`) pin the dispatch to a level
every x86-64 machine of the last decade has (AVX2, Haswell 2013 / Zen 2017) unless asked for the native one:

    >>> environment("pinned", machine="x86_64")
    {'ATEN_CPU_CAPABILITY': 'avx2', 'MKL_CBWR': 'AVX2', 'ONEDNN_MAX_CPU_ISA': 'AVX2'}
    >>> environment("native", machine="x86_64")
    {}

On 64-bit ARM the pinned level is NEON with no SVE (ATen's default kernels, oneDNN's ASIMD): ARM's own baseline,
whose numbers are not the x86-64 ones. The libraries read these variables once, at first use: `apply` sets them in
this process before torch is imported; a process that has loaded torch already runs study work in fresh worker
processes instead (`in_effect`). Torch-free.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from rapref.settings import setting

ENV = "RAPREF_KERNELS"  # the environment's choice of kernels, where no flag gives one
VARIABLES = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")
LEVELS = {
    "x86_64": {
        "default": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
        "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AVX512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    },
    "aarch64": {"default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "ASIMD"}},
}
PINNED = {"x86_64": "avx2", "aarch64": "default"}
# the instruction sets worth naming in provenance (x86-64 flags, ARM features in /proc/cpuinfo)
NOTABLE = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
           "amx_int8", "asimd", "sve", "sve2")


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def choices(machine: str | None = None) -> tuple[str, ...]:
    """What `--kernels` accepts on this machine: pinned, native, and the levels of its architecture."""
    return ("pinned", "native", *LEVELS.get(machine or arch(), {}))


def level(kernels: str, machine: str | None = None) -> str | None:
    """The instruction-set level `kernels` stands for here (None: native, or an architecture with no pinned level)."""
    machine = machine or arch()
    if kernels == "native":
        return None
    if kernels == "pinned":
        return PINNED.get(machine)
    if kernels not in LEVELS.get(machine, {}):
        raise ValueError(f"kernels {kernels!r}: this {machine} machine takes one of {', '.join(choices(machine))}")
    return kernels


def environment(kernels: str, machine: str | None = None) -> dict[str, str]:
    """The variables that pin `kernels` (nothing for native: the environment is left as it is)."""
    machine = machine or arch()
    name = level(kernels, machine)
    return dict(LEVELS[machine][name]) if name else {}


def kernels_setting():
    """The `kernels` setting of every study that pins the dispatch, declared once (`rapref.settings`)."""

    return setting("pinned", "CPU kernel dispatch: 'pinned' (AVX2 on x86-64, NEON on ARM) gives the published numbers "
                             "on every machine; 'native' lets torch use all the CPU has (faster where it has AVX-512 or "
                             "AMX, other numbers); or a level", choices=choices, env=ENV,
                   switches=(("native-kernels", "native", "the same as --kernels native"),))


def default_kernels() -> str:
    """pinned, unless the environment (RAPREF_KERNELS) says otherwise."""
    return os.environ.get(ENV) or "pinned"


def apply(kernels: str) -> dict[str, str]:
    """Set the pinning variables in this process (before torch loads; workers it spawns inherit them)."""
    env = environment(kernels)
    os.environ.update(env)
    return env


def torch_capability() -> str | None:
    """The ATen kernel level torch runs at in this process, if torch is loaded (it is not imported here)."""
    torch = sys.modules.get("torch")
    return torch.backends.cpu.get_cpu_capability() if torch is not None else None


def in_effect(kernels: str) -> bool:
    """Whether study work may run in this process: torch not yet loaded, or loaded at the level asked for."""
    env = environment(kernels)
    if not env:
        return True
    loaded = torch_capability()
    if loaded is None:
        return all(os.environ.get(k) == v for k, v in env.items())
    return loaded.lower() == env["ATEN_CPU_CAPABILITY"].lower()


def cpu() -> dict:
    """The processor: its model name and the notable instruction sets it has (Linux; elsewhere what platform says)."""
    model, flags = platform.processor() or None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "arch": arch(), "instruction_sets": [f for f in NOTABLE if f in flags]}


def describe(kernels: str) -> dict:
    """Provenance: what was asked, the level and variables it means here, what torch runs at, and the CPU."""
    return {"kernels": kernels, "level": level(kernels), "env": {k: os.environ.get(k) for k in VARIABLES},
            "torch_capability": torch_capability(), "cpu": cpu()}


def sentence(record: dict) -> str:
    """One line for a report: how its numbers were computed, and whether they can match the published ones."""
    cpu_name = (record.get("cpu") or {}).get("model") or "an unnamed CPU"
    ran = record.get("torch_capability") or "?"
    if record.get("kernels") == "pinned":
        return (f"CPU kernel dispatch pinned to {record['level']} (torch ran at {ran}) on {cpu_name}: the level every "
                f"{record.get('cpu', {}).get('arch', 'such')} machine runs, so that another machine gives these "
                "numbers (`python -m rapref.studies.demo.fingerprint` checks a miniature of it there).")
    return (f"CPU kernel dispatch {record.get('kernels')} (torch ran at {ran}) on {cpu_name}: these numbers need "
            f"not match the published ones, which were made with the dispatch pinned.")
