"""CPU kernel dispatch (`rapref.dispatch`): pinned by default in the studies, recorded, and shown to take effect.

The reduced world (`rapref.studies.demo.fingerprint`, a few seconds) runs in fresh processes, because the dispatch is
read when torch loads: pinned, it must give the committed reference to the last digit on any x86-64 machine; at the
machine's native dispatch it must differ wherever the CPU has more than the pinned level (AVX-512 or AMX).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rapref import dispatch

REFERENCE = "dispatch-reference.json"


def fingerprint(kernels: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in dispatch.VARIABLES and k != dispatch.ENV}
    out = subprocess.run([sys.executable, "-m", "rapref.studies.demo.fingerprint", "--kernels", kernels],
                         capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def pinned() -> dict:
    return fingerprint("pinned")


def test_levels_per_architecture():
    assert dispatch.environment("pinned", "x86_64") == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
                                                         "ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert dispatch.environment("pinned", "aarch64") == {"ATEN_CPU_CAPABILITY": "default",
                                                          "ONEDNN_MAX_CPU_ISA": "ASIMD"}
    assert dispatch.environment("native", "x86_64") == {}
    assert dispatch.level("avx512", "x86_64") == "avx512"
    assert dispatch.level("pinned", "riscv64") is None  # no pinned level known: native, and the report says so
    with pytest.raises(ValueError, match="aarch64 machine takes one of pinned, native, default"):
        dispatch.level("avx2", "aarch64")


def test_report_sentence_says_whether_numbers_can_match():
    record = {"kernels": "pinned", "level": "avx2", "torch_capability": "AVX2",
              "cpu": {"model": "Some CPU", "arch": "x86_64"}}
    assert "pinned to avx2" in dispatch.sentence(record) and "need not match" not in dispatch.sentence(record)
    assert "need not match the published ones" in dispatch.sentence({**record, "kernels": "native"})


@pytest.mark.skipif(dispatch.arch() != "x86_64", reason="the committed reference was made on x86-64")
def test_pinned_reduced_world_matches_the_committed_reference(pinned, fixtures):
    reference = json.loads((fixtures / REFERENCE).read_text())
    assert pinned["dispatch"]["torch_capability"] == "AVX2"
    assert pinned["dispatch"]["env"] == dispatch.environment("pinned")
    # a library upgrade that moves the numbers shows here; name it before comparing numbers
    assert pinned["packages"] == reference["packages"], "library versions differ from the reference's"
    got, want = pinned["numbers"], reference["numbers"]
    # the trained weights, the sampled answers and their rewards to the last digit; the logged losses within 1e-6:
    # a loss is one reduction whose order another CPU may change without moving the training (an emulated Intel
    # Haswell changed the 7th digit of one logged loss, and nothing else)
    assert got["losses_every_10"] == pytest.approx(want["losses_every_10"], rel=1e-6)
    assert {k: v for k, v in got.items() if k != "losses_every_10"} == \
        {k: v for k, v in want.items() if k != "losses_every_10"}, (
        "the pinned reduced world moved: a change of dispatch, library or world/model/prompt code changes the demo's "
        "numbers; regenerate the published reports and then this reference (python -m "
        "rapref.studies.demo.fingerprint --out tests/fixtures/dispatch-reference.json)")


@pytest.mark.skipif(dispatch.arch() != "x86_64", reason="x86-64 dispatch levels")
def test_native_dispatch_differs_where_the_cpu_has_more_than_the_pinned_level(pinned):
    native = fingerprint("native")
    beyond = {"avx512f", "amx_tile"} & set(dispatch.cpu()["instruction_sets"])
    assert native["dispatch"]["torch_capability"] != "AVX2" or not beyond
    if beyond:
        assert native["numbers"] != pinned["numbers"], f"CPU has {sorted(beyond)}, yet pinning changed nothing"
    else:
        assert native["numbers"] == pinned["numbers"]


def test_demo_refuses_an_unknown_kernels_choice_in_one_line():
    env = {**os.environ, dispatch.ENV: "avx9000"}
    out = subprocess.run([sys.executable, "-m", "rapref", "demo", "--quick", "--out", "unused"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--kernels (or $RAPREF_KERNELS)" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    out = subprocess.run([sys.executable, "-m", "rapref", "demo", "--kernels", "avx9000"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2 and "invalid choice" in out.stderr


@pytest.mark.skipif(dispatch.arch() != "x86_64", reason="x86-64 dispatch levels")
def test_in_effect_only_where_torch_runs_at_the_level_asked(monkeypatch):
    class Cpu:
        @staticmethod
        def get_cpu_capability():
            return "AVX512"

    fake = type("torch", (), {"backends": type("b", (), {"cpu": Cpu})})
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert dispatch.in_effect("native") and dispatch.in_effect("avx512")
    assert not dispatch.in_effect("pinned")  # the demo then runs its seeds in fresh worker processes
