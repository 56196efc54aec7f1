"""Partial channel connections (PC-DARTS) in the darts space."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convnas import list_operators
from convnas.errors import ConfigError, OperatorArgumentError
from convnas.operators import OPERATORS, register_operator
from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.search_space import build_model, get_space, load_architecture
from convnas.search_space.partial_channels import (
    PartialEdge,
    channel_shuffle,
    shuffle_permutation,
)

CONV_OPS = list_operators(kind="conv")


def _darts(candidates, channels=4, k=2, **kw):
    return get_space(
        "darts",
        candidates=list(candidates),
        channels=channels,
        layers=3,
        steps=2,
        multiplier=2,
        input_shape=[3, 8, 8],
        partial_channels=k,
        **kw,
    )


def test_channel_shuffle_is_the_pc_darts_shuffle_and_a_permutation():
    x = torch.arange(12.0).view(1, 12, 1, 1)
    # PC-DARTS: view(N, K, C/K, H, W).transpose(1, 2): group g, index j -> j * K + g
    ref = x.view(1, 4, 3, 1, 1).transpose(1, 2).reshape(1, 12, 1, 1)
    assert torch.equal(channel_shuffle(x, 4), ref)
    assert shuffle_permutation(12, 4) == ref.flatten().long().tolist()
    for c, k in [(7, 2), (5, 4), (9, 4), (3, 3)]:
        perm = shuffle_permutation(c, k)
        assert sorted(perm) == list(range(c))
        y = channel_shuffle(torch.arange(float(c)).view(1, c, 1, 1), k)
        assert y.flatten().long().tolist() == perm


@pytest.mark.parametrize(("channels", "k"), [(4, 4), (7, 2), (5, 3)])
def test_every_conv_operator_works_at_small_and_odd_partial_widths(channels, k):
    """C // K is 1, 3 or 1 channels on the first cells (odd C: the general shuffle)."""
    space = _darts([*DARTS_PRIMITIVES, *CONV_OPS], channels=channels, k=k)
    supernet = space.build_supernet()
    edges = [m for m in supernet.modules() if isinstance(m, PartialEdge)]
    assert len(edges) == 15 and {e.part for e in edges[:5]} == {channels // k}
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    F.cross_entropy(supernet(x), y).backward()
    ops = {c.op for d in space.decisions() for c in d.candidates}
    assert ops == set(DARTS_PRIMITIVES) | set(CONV_OPS)
    for name, p in supernet.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(p.grad.abs().sum() > 0 for p in supernet.arch.betas.values())


def test_an_operator_that_cannot_take_the_partial_width_is_refused_by_name():
    def factory(in_channels, out_channels, stride, *, context=None, device=None, dtype=None):
        if in_channels % 2:
            raise OperatorArgumentError(f"even_only needs even channels, got {in_channels}")
        return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)

    with OPERATORS.temporary():
        register_operator("even_only", family="test", kind="conv")(factory)
        _darts(["none", "even_only"], channels=4, k=2).build_supernet()
        with pytest.raises(ConfigError, match=r"operator 'even_only' cannot run on the 3 of 6"):
            _darts(["none", "even_only"], channels=6, k=2).build_supernet()
    with pytest.raises(ConfigError, match="partial_channels: must be <= .* but got 5"):
        _darts(["none", "skip_connect"], channels=4, k=5)
    with pytest.raises(ConfigError, match="partial_channels: must be an int >= 1, but got 0"):
        _darts(["none", "skip_connect"], k=0)


def test_edge_logits_normalise_each_node_and_the_derivation_uses_them():
    space = _darts(["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"], k=2)
    supernet = space.build_supernet()
    betas = dict(supernet.arch.betas)
    assert {n: tuple(p.shape) for n, p in betas.items()} == {
        "normal/2": (2,),
        "normal/3": (3,),
        "reduce/2": (2,),
        "reduce/3": (3,),
    }
    names = [n for n, _ in supernet.named_arch_parameters()]
    assert "arch.betas.normal/3" in names
    assert {id(p) for p in supernet.arch_parameters()}.isdisjoint(
        id(p) for p in supernet.weight_parameters()
    )
    with torch.no_grad():
        for alpha in supernet.arch.alphas.values():
            alpha.zero_()
            alpha[2] = 1.0  # sep_conv_3x3 best on every edge, equally strong everywhere
        betas["normal/3"].copy_(torch.tensor([0.0, 5.0, 4.0]))  # edges 1 and 2 win node 3
        betas["normal/2"].copy_(torch.tensor([0.0, 0.0]))
    arch = supernet.derive()
    node3 = sorted(c.decision for c in arch.choices if c.decision.startswith("normal/3"))
    assert node3 == ["normal/3<-1", "normal/3<-2"]
    with torch.no_grad():
        betas["normal/3"].copy_(torch.tensor([5.0, 0.0, 4.0]))
    node3 = sorted(c.decision for c in supernet.derive().choices if "normal/3" in c.decision)
    assert node3 == ["normal/3<-0", "normal/3<-2"]


def test_partial_supernet_is_pc_darts_edge_for_edge():
    """An edge computes shuffle(cat(sum_i w_i op_i(x[:, :C/K]), x[:, C/K:])) * beta_j."""
    space = _darts(["skip_connect", "sep_conv_3x3"], channels=4, k=2)
    supernet = space.build_supernet().double()
    edge = next(m for m in supernet.modules() if isinstance(m, PartialEdge))
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    w = F.softmax(supernet.arch.alphas[edge.mixed.decision], -1)
    beta = F.softmax(supernet.arch.betas[edge.group], -1)[edge.index]
    mixed = sum(wi * op(x[:, :2]) for wi, op in zip(w, edge.mixed.ops, strict=True))
    ref = beta * channel_shuffle(torch.cat([mixed, x[:, 2:]], 1), 2)
    torch.testing.assert_close(edge(x), ref)


def test_partial_channels_round_trip_and_discrete_models_ignore_them(tmp_path):
    space = _darts(["none", "skip_connect", "sep_conv_3x3"], k=2, memory="recompute")
    assert space.settings()["partial_channels"] == 2 and "memory" not in space.settings()
    assert "partial_channels" not in _darts(["none", "skip_connect"], k=1).settings()
    arch = space.build_supernet().derive()
    path = tmp_path / "arch.yaml"
    arch.save(path)
    loaded = load_architecture(path)
    assert loaded.settings["partial_channels"] == 2
    model = build_model(loaded)
    assert not any(isinstance(m, PartialEdge) for m in model.modules())
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_recompute_and_partial_together_equal_partial():
    space = _darts(["none", "skip_connect", "sep_conv_3x3", "avg_pool_3x3", "c2sp"], k=2)
    plain = space.build_supernet().double()
    recompute = space.build_supernet(memory="recompute").double()
    recompute.load_state_dict(plain.state_dict())
    x, y = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 2])
    grads = []
    for net in (plain, recompute):
        F.cross_entropy(net(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert float((grads[0] - grads[1]).abs().max() / grads[0].abs().max()) <= 1e-12
