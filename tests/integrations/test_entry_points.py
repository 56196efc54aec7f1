"""Third-party operators through the entry-point group ``convnas.operators``.

The example package ``examples/convnas-example-op`` is installed into a temporary virtual
environment that sees this interpreter's packages (torch, pip, setuptools); the convnas under
test is put first on its path. Its operator must then appear in the registry, the search
spaces and the adapters.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from torch import nn

from convnas.registry import Registry

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "convnas-example-op"

CHECK = textwrap.dedent(
    """
    import convnas
    from convnas.integrations import darts, nasbench201, nni
    from convnas.operators import OPERATORS
    from convnas.search_space.darts import DartsSpace
    import torch

    assert convnas.__file__.startswith(REPO), convnas.__file__
    print("listed", convnas.list_operators("example_*"))
    assert not OPERATORS.entry_point_errors, OPERATORS.entry_point_errors
    assert "example_dwsep_3x3" in darts.primitives()
    assert "example_dwsep_3x3" in nasbench201.ops()
    assert "example_dwsep_3x3" in nni.candidates(8, 16, 2, bare=True)
    space = DartsSpace(candidates=["none", "example_dwsep_3x3"], channels=4, layers=1)
    assert all(len(d.candidates) == 2 for d in space.decisions())
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1)
    )
    report = convnas.convert_model(net, "example_dwsep_3x3", dry_run=True, input_shape=(3, 8, 8))
    assert report.replaced == ["1"], report.rows
    print("ok")
    """
)


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


def test_example_plugin_installed_in_a_venv_shows_up(tmp_path):
    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv])
    if made.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {made.stderr.strip()[-300:]}")
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # This interpreter's packages (torch, pip, setuptools) also when it runs in a venv itself,
    # whose packages --system-site-packages would not show; the convnas under test first.
    outer = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), *outer]),
        "PYTHONNOUSERSITE": "1",
    }
    if _run([python, "-m", "pip", "--version"], env=env).returncode != 0:
        pytest.skip("pip is not importable from the virtual environment")
    src = tmp_path / "example"  # build from a copy: pip writes build files next to the sources
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    installed = _run([*pip, src], env=env)
    if installed.returncode != 0:
        pytest.skip(f"pip could not install the example (offline?): {installed.stderr[-500:]}")
    script = f"REPO = {str(REPO)!r}\n{CHECK}"
    result = _run([python, "-c", script], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "listed ['example_dwsep_3x3']" in result.stdout
    assert "could not load" not in result.stderr


def _factory(in_channels, out_channels, stride, *, context=None, device=None, dtype=None):
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


def test_plugins_load_on_the_first_lookup_not_on_registration(monkeypatch):
    calls = []

    def plugin(registry):
        calls.append(registry)
        registry.add("plugin_entry", _factory)

    ep = EntryPoint("demo", "demo_module:plugin", "convnas.test_group")
    monkeypatch.setattr(EntryPoint, "load", lambda self: plugin)
    monkeypatch.setattr(
        "importlib.metadata.entry_points",
        lambda group=None: [ep] if group == "convnas.test_group" else [],
    )
    reg = Registry("thing", entry_point_group="convnas.test_group")
    reg.add("builtin", _factory)  # as a built-in registering while its package imports
    assert calls == []
    assert reg.names() == ["builtin", "plugin_entry"]
    assert calls == [reg] and reg.names() == ["builtin", "plugin_entry"]  # loaded once
