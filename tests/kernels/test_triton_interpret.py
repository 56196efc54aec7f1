"""The Triton kernels themselves, on CPU tensors under ``TRITON_INTERPRET=1`` (a subprocess).

The interpreter checks indexing, masks, layouts and accumulation exactly; it says nothing about
GPU compilation or speed (see test_kernels_gpu.py). In triton 3.9's interpreter ``tl.dot`` on
bf16 operands is wrong, so the conv kernels upcast bf16 tiles to fp32 there (``DOT_F32``).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).with_name("interpret_checks.py")
TOL = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 2e-2}
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None, reason="triton is not installed"
)


def _run(*args: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        if "numpy" in proc.stderr.lower() and "interpreter" in proc.stderr.lower():
            pytest.skip(f"the Triton interpreter cannot run here: {tail[0]}")
        pytest.fail(f"interpreter run failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def _check(results: list[dict]) -> None:
    bad = [r for r in results if r["err"] > TOL[r["dtype"]] or not r["layout_ok"]]
    assert not bad, "\n".join(f"{r['case']}: err={r['err']:.3g}" for r in bad)
    kinds = {r["case"].split()[0] + " " + r["case"].split()[-1] for r in results}
    assert kinds == {
        "sw fwd",
        "sw bwd",
        "even fwd",
        "even grad_input",
        "even grad_weight",
        "osep fwd",
        "osep grad_input",
        "osep grad_weight",
    }
    assert {r["dtype"] for r in results} == set(TOL)
    assert any("cl=True" in r["case"] for r in results)


def test_every_kernel_quick():
    """Each kernel at one (dtype, layout) per shape case, rotating over fp64/fp32/bf16, NCHW/CL."""
    _check(_run("--quick"))


@pytest.mark.slow
def test_every_kernel_all_dtypes_and_layouts():
    results = _run()
    _check(results)
    assert len(results) == 18 * 2 + 4 * 18 + 2 * 18
