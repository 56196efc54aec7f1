from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from convnas.errors import ConfigError
from convnas.operators import list_operators
from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.search_space import build_model, get_space

CONV_OPS = list_operators(kind="conv")


def _resnet(candidates, **kw):
    return get_space(
        "resnet", candidates=candidates, depth=8, widths=[8, 8, 16], input_shape=[3, 8, 8], **kw
    )


def _darts(candidates):
    return get_space(
        "darts",
        candidates=candidates,
        channels=4,
        layers=3,
        steps=2,
        multiplier=2,
        input_shape=[3, 8, 8],
    )


@pytest.mark.parametrize("build", [_resnet, _darts], ids=["resnet", "darts"])
def test_supernet_with_every_conv_operator(build):
    candidates = list(CONV_OPS) if build is _resnet else [*DARTS_PRIMITIVES, *CONV_OPS]
    space = build(candidates)
    supernet = space.build_supernet("weighted")
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([1, 2])
    loss = F.cross_entropy(supernet(x), y)
    alphas = supernet.arch_parameters()
    grads = torch.autograd.grad(loss, alphas, retain_graph=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # An architecture-only gradient leaves the weights untouched.
    assert all(p.grad is None for p in supernet.weight_parameters())
    loss.backward()
    assert sum(p.grad is not None for p in supernet.weight_parameters()) > 0
    ids_a = {id(p) for p in alphas}
    ids_w = {id(p) for p in supernet.weight_parameters()}
    assert not ids_a & ids_w
    assert ids_a | ids_w == {id(p) for p in supernet.parameters()}
    arch = supernet.derive()
    assert build_model(arch)(x).shape == (2, 10)


def test_modes_select_paths():
    space = _resnet(["conv_3x3", "conv_1x1", "c2sp"])
    supernet = space.build_supernet("single_path")
    with pytest.raises(Exception, match="no path is set"):
        supernet(torch.randn(1, 3, 8, 8))
    gen = torch.Generator().manual_seed(3)
    path = supernet.sample_path(gen)
    assert set(path) == {d.name for d in space.decisions()}
    assert all(0 <= k < 3 for k in path.values())
    supernet.set_mode("fixed")
    arch = space.architecture([1] * 6)
    supernet.set_path(arch)
    supernet.eval()
    model = build_model(arch)
    # copy the chosen candidates' weights into the discrete model: outputs must agree
    sd = {}
    for key, value in supernet.body.state_dict().items():
        if ".ops.0." in key or ".ops.2." in key:
            continue
        sd[key.replace(".ops.1", "")] = value
    model.load_state_dict(sd)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(supernet(x), model(x))
    supernet.set_mode("gumbel", tau=0.5)
    assert supernet(x).shape == (2, 10)
    with pytest.raises(ConfigError, match="mode must be one of"):
        supernet.set_mode("softmax")


def test_block_granularity_shares_decisions_and_filters_candidates():
    space = _resnet(["sw", "conv_3x3"], granularity="block")
    decisions = space.decisions()
    assert [d.name for d in decisions] == ["block0", "block1", "block2"]
    # sw supports neither stride 2 nor channel change: only conv_3x3 at the strided blocks
    assert [len(d.candidates) for d in decisions] == [2, 1, 1]
    with pytest.raises(ConfigError, match="no candidate fits decision 'block1'"):
        _resnet(["sw"], granularity="block").decisions()


def test_darts_space_has_14_edges_per_cell_and_derives_two_per_node():
    space = get_space(
        "darts", candidates=list(DARTS_PRIMITIVES), channels=4, layers=3, input_shape=[3, 8, 8]
    )
    names = [d.name for d in space.decisions()]
    assert len(names) == 28 and names[0] == "normal/2<-0" and names[-1] == "reduce/5<-4"
    supernet = space.build_supernet()
    with torch.no_grad():
        for name, alpha in supernet.arch.alphas.items():
            alpha.zero_()
            alpha[0] = 10.0  # 'none' strongest everywhere: must still be excluded
            alpha[4 if name.endswith("<-0") or name.endswith("<-1") else 7] = 1.0
    arch = supernet.derive()
    assert len(arch.choices) == 16
    assert all(c.op != "none" for c in arch.choices)
    normal = [c for c in arch.choices if c.decision.startswith("normal")]
    assert [c.decision for c in normal][:2] == ["normal/2<-0", "normal/2<-1"]
    assert normal[0].op == "sep_conv_3x3"


def test_darts_networks_own_one_shared_csg_generator():
    from convnas.operators.csg import SliceGenerator

    space = _darts(["none", "csg_conv_3x3", "skip_connect"])
    for net in (space.build_supernet(), space.build_model(space.build_supernet().derive())):
        generators = [m for m in net.modules() if isinstance(m, SliceGenerator)]
        assert len(generators) == 1
