"""One line on the torch that `make setup` installed on a machine without a GPU; it never stops the set-up.

    .venv/bin/python scripts/torch_note.py

A CPU build: its version. A CUDA (or ROCm) build, which is what the public package index serves for Linux: a note
with its size on disk (torch and the NVIDIA libraries and Triton it brought, from their installed file lists) and how
to take the CPU build instead. Such a build runs on the CPU all the same, so the set-up goes on.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import sys

CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # PyTorch's own index of CPU builds


def _name(dist) -> str:
    return re.sub(r"[-_.]+", "-", (dist.metadata["Name"] or "").lower())


def installed_size() -> int:
    """Bytes on disk of torch and of the GPU libraries that come with its GPU builds (nvidia-*, triton), each
    distribution counted once: the first on the path, the one Python imports."""
    seen, total = set(), 0
    for dist in metadata.distributions():
        name = _name(dist)
        if name in seen or not (name in ("torch", "triton") or name.startswith("nvidia-")):
            continue
        seen.add(name)
        total += sum(f.size or 0 for f in dist.files or ())
    return total


def note(version: str, gpu_build: str | None, size: int) -> str:
    """The line to print.

    >>> note("2.13.0+cpu", None, 0)
    'make setup: torch 2.13.0+cpu (CPU build)'
    >>> note("2.13.0", "CUDA 12.8", 3 * 2**30)[:95]
    'make setup: note: torch 2.13.0 is a CUDA 12.8 build (3.0 GiB with the GPU libraries it brought)'
    """
    if gpu_build is None:
        return f"make setup: torch {version} (CPU build)"
    return (f"make setup: note: torch {version} is a {gpu_build} build ({size / 2**30:.1f} GiB with the GPU libraries "
            f"it brought) on a machine without a GPU; it runs on the CPU. For the smaller CPU build: "
            f"rm -rf .venv && make setup TORCH_INDEX={CPU_INDEX}")


def main() -> int:
    import torch

    cuda, hip = torch.version.cuda, getattr(torch.version, "hip", None)
    gpu_build = f"CUDA {cuda}" if cuda else f"ROCm {hip}" if hip else None
    print(note(torch.__version__, gpu_build, installed_size() if gpu_build else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
