"""The kernels switch: env variable, context manager, thread isolation, lazy triton import."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from convnas.errors import ConfigError
from convnas.kernels import ENV_VAR, kernels_enabled, use_kernels
from convnas.kernels._support import route_to_custom_op


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("1", True), ("on", True), ("0", False), ("false", False), ("OFF", False)],
)
def test_env_variable(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, value)
    assert kernels_enabled() is expected


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ConfigError, match="CONVNAS_KERNELS.*'maybe'"):
        kernels_enabled()


def test_context_manager_overrides_and_restores(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    with use_kernels(False):
        assert not kernels_enabled()
        with use_kernels(True):
            assert kernels_enabled()
        assert not kernels_enabled()
    assert kernels_enabled()
    with pytest.raises(RuntimeError), use_kernels(False):
        raise RuntimeError("boom")
    assert kernels_enabled()


def test_override_is_local_to_the_thread(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "1")
    seen = []
    with use_kernels(False):
        worker = threading.Thread(target=lambda: seen.append(kernels_enabled()))
        worker.start()
        worker.join()
        assert not kernels_enabled()
    assert seen == [True]


def test_routing_rule():
    cpu, meta = torch.zeros(1), torch.zeros(1, device="meta")
    with use_kernels(True):
        assert not route_to_custom_op(cpu)
        assert route_to_custom_op(meta)
    with use_kernels(False):
        assert not route_to_custom_op(meta)


def test_import_does_not_load_triton():
    code = "import convnas.kernels, sys; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_dispatchers_trace_without_graph_breaks():
    """The switch is read at trace time, so dynamo traces the dispatchers in one graph."""
    from convnas.kernels import even_conv2d

    x, w = torch.randn(1, 4, 5, 5), torch.randn(2, 4, 2, 2)
    compiled = torch.compile(
        lambda a, b: even_conv2d(a, b, stride=2), backend="eager", fullgraph=True
    )
    torch.testing.assert_close(compiled(x, w), even_conv2d(x, w, stride=2), rtol=0, atol=0)
