"""The cost model of supernets in recompute and partial-channel mode, against real CPU runs."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from convnas.costs import measure
from convnas.costs.saved_tensors import SavedTensorMeter
from convnas.search_space import get_space

MODES = {
    "plain": {},
    "recompute": {"memory": "recompute"},
    "partial": {"partial_channels": 2},
    "recompute+partial": {"memory": "recompute", "partial_channels": 2},
}
BATCH = 4


CANDIDATES = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "c2sp", "csg_conv_3x3"]


def _supernet(mode: str) -> nn.Module:
    space = get_space(
        "darts",
        candidates=CANDIDATES,
        channels=4,
        layers=3,
        steps=1,
        multiplier=1,
        input_shape=[3, 8, 8],
        **MODES[mode],
    )
    return space.build_supernet()


def _held_on_cpu(model: nn.Module) -> tuple[int, int]:
    """Saved bytes held after the forward pass and at most over forward + backward, real run."""
    x = torch.randn(BATCH, 3, 8, 8)
    with SavedTensorMeter([*model.parameters(), *model.buffers()]) as meter:
        out = model(x)
        after_forward = meter.current
        out.backward(torch.ones_like(out))  # what measure does: no loss
    assert meter.current == 0  # everything released by backward
    return after_forward, meter.peak


def test_meter_counts_what_a_small_graph_saves():
    lin = nn.Linear(8, 16)
    x = torch.randn(4, 8, requires_grad=True)
    with SavedTensorMeter(lin.parameters()) as meter:
        y = torch.relu(lin(x))  # linear saves x (128 B), relu its output (256 B)
        z = y * y  # saves y twice: one storage
        assert meter.current == 4 * 8 * 4 + 4 * 16 * 4
        z.sum().backward()
    assert meter.peak == 384 and meter.current == 0


@functools.cache
def _measured(mode: str):
    """(supernet, its costs); measuring on meta is slow, so each mode is measured once."""
    supernet = _supernet(mode)
    return supernet, measure(supernet, (3, 8, 8), batch_size=BATCH)


@pytest.mark.parametrize("mode", MODES)
def test_measure_predicts_the_saved_tensors_of_a_real_run(mode):
    supernet, costs = _measured(mode)
    after_forward, peak = _held_on_cpu(supernet)
    assert costs.activation_bytes == peak
    weights = costs.weight_bytes + costs.gradient_bytes + costs.optimizer_bytes
    assert costs.train_memory_bytes == weights + peak
    if mode.startswith("recompute"):
        # the peak comes in backward: a candidate's graph rebuilt on top of the held inputs
        assert peak > after_forward
    else:
        assert peak == after_forward


def test_memory_modes_order_the_predictions():
    costs = {m: _measured(m)[1] for m in MODES}
    act = {m: c.activation_bytes for m, c in costs.items()}
    # this network is tiny (4 channels), so the held inputs weigh more than at DARTS' size
    assert act["recompute"] < 0.3 * act["plain"]
    assert act["partial"] < 0.7 * act["plain"]
    assert act["recompute+partial"] <= act["recompute"]
    peaks = {m: c.peak_memory_bytes for m, c in costs.items()}
    assert peaks["recompute"] < 0.4 * peaks["plain"] and peaks["partial"] < 0.7 * peaks["plain"]
    # recompute changes what is held, not what is computed
    assert costs["recompute"].macs == costs["plain"].macs > costs["partial"].macs
    assert costs["recompute"].params == costs["plain"].params
