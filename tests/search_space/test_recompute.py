"""Recompute mode of the MixedOp: the same gradients as plain mode, less memory held."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from convnas import list_operators
from convnas.errors import ConfigError
from convnas.operators.context import SharedModules
from convnas.operators.darts_edge import DARTS_PRIMITIVES
from convnas.search_space import MixedOp, get_space
from convnas.search_space.recompute import recompute_weighted_sum
from convnas.strategies.darts import unrolled_arch_gradient

ALL = list_operators()


def _resnet(memory="plain", candidates=ALL):
    return get_space(
        "resnet",
        candidates=list(candidates),
        depth=8,
        widths=[4, 4, 8],
        input_shape=[3, 8, 8],
        memory=memory,
    )


def _darts(memory="plain", candidates=(*DARTS_PRIMITIVES, *ALL), **kw):
    candidates = list(dict.fromkeys(candidates))
    return get_space(
        "darts",
        candidates=candidates,
        channels=4,
        layers=3,
        steps=2,
        multiplier=2,
        input_shape=[3, 8, 8],
        memory=memory,
        **kw,
    )


SPACES = {"resnet": _resnet, "darts": _darts}


def _pair(space_fn, dtype, **kw):
    """A plain and a recompute supernet with identical weights and logits."""
    plain = space_fn("plain", **kw).build_supernet().to(dtype)
    recompute = space_fn("recompute", **kw).build_supernet().to(dtype)
    recompute.load_state_dict(plain.state_dict())
    with torch.no_grad():
        for a in plain.arch_parameters():
            a.normal_()
        for a, b in zip(recompute.arch_parameters(), plain.arch_parameters(), strict=True):
            a.copy_(b)
    return plain, recompute


def _grads(supernet, x, y):
    supernet.zero_grad(set_to_none=True)
    F.cross_entropy(supernet(x), y).backward()
    return {n: p.grad for n, p in supernet.named_parameters()}


def _rel_error(a: dict, b: dict, prefix: str) -> float:
    keys = [k for k in a if k.startswith(prefix) and a[k] is not None]
    assert keys and all(b[k] is not None for k in keys)
    ga = torch.cat([a[k].flatten() for k in keys])
    gb = torch.cat([b[k].flatten() for k in keys])
    assert ga.abs().max() > 0
    return float((ga - gb).abs().max() / ga.abs().max())


def _mixed_ops(supernet) -> list[MixedOp]:
    return [m for m in supernet.modules() if isinstance(m, MixedOp)]


def test_every_operator_is_a_candidate_of_both_tiny_spaces():
    for space_fn in SPACES.values():
        offered = {c.op for d in space_fn().decisions() for c in d.candidates}
        assert offered == set(ALL)


class _Sum(nn.Module):
    """Candidates (and the modules they share) as one module to call."""

    def __init__(self, ops: list[nn.Module], shared: list[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.shared = nn.ModuleList(shared)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return recompute_weighted_sum(x, w, self.ops)


def _gradcheck(module: _Sum, x: torch.Tensor, w: torch.Tensor, with_params: bool) -> bool:
    names = [n for n, _ in module.named_parameters()] if with_params else []
    params = [p.detach().clone().requires_grad_(True) for n, p in module.named_parameters()]
    params = params[: len(names)]

    def fn(x, w, *ps):
        return functional_call(module, dict(zip(names, ps, strict=True)), (x, w))

    inputs = (x.requires_grad_(True), w.requires_grad_(True), *params)
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("space", SPACES)
def test_gradcheck_of_every_candidate_through_functional_call(space, stride):
    """float64 gradcheck of the recompute backward: every candidate alone for the input, its
    weight and each of its parameters (the shared CSG generator included), passed in as
    ``functional_call`` does in second-order DARTS, BatchNorm in training mode; then all the
    candidates of the decision together for the input and the weights."""
    supernet = SPACES[space]("recompute").build_supernet().double()
    shared = [m for m in supernet.modules() if isinstance(m, SharedModules)]
    sites = {d.name: d.sites[0] for d in supernet.decisions}
    gen = torch.Generator().manual_seed(0)
    mixed = next(m for m in _mixed_ops(supernet) if sites[m.decision].stride == stride)
    site = sites[mixed.decision]
    x = torch.randn(2, site.in_channels, 4, 4, dtype=torch.float64, generator=gen)
    w = torch.rand(len(mixed.ops), dtype=torch.float64, generator=gen)
    for i, op in enumerate(mixed.ops):
        assert _gradcheck(_Sum([op], shared), x.clone(), w[i : i + 1].clone(), True)
    assert _gradcheck(_Sum(list(mixed.ops), shared), x, w, False)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("space", SPACES)
def test_recompute_gradients_equal_plain(space, dtype, tol):
    plain, recompute = _pair(SPACES[space], dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 8, 8, generator=gen).to(dtype)
    y = torch.tensor([1, 2])
    a, b = _grads(plain, x, y), _grads(recompute, x, y)
    assert _rel_error(a, b, "arch.") <= tol
    assert _rel_error(a, b, "body.") <= tol
    # The CSG generator is shared by every csg candidate: its gradient sums over all of them.
    shared = [n for n in a if ".shared." in n]
    assert shared and _rel_error(a, b, shared[0]) <= tol
    # BatchNorm: running statistics updated exactly once, as in plain mode.
    buffers = dict(recompute.named_buffers())
    for name, value in plain.named_buffers():
        if name.endswith("num_batches_tracked"):
            assert int(value) == 1 and int(buffers[name]) == 1
        else:
            torch.testing.assert_close(buffers[name], value, rtol=0, atol=0)


def test_recompute_keeps_only_the_inputs():
    from convnas.costs.saved_tensors import SavedTensorMeter

    x = torch.randn(4, 3, 8, 8)
    peaks = {}
    for memory in ("plain", "recompute"):
        supernet = _darts(memory, candidates=DARTS_PRIMITIVES).build_supernet()
        state = [*supernet.parameters(), *supernet.buffers()]
        with SavedTensorMeter(state) as meter:
            supernet(x).sum().backward()
        peaks[memory] = meter.peak
    assert peaks["recompute"] < 0.2 * peaks["plain"]


def test_recompute_replays_the_forward_rng():
    """A candidate with dropout draws the same mask when it is recomputed."""
    torch.manual_seed(0)
    ops = [nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.Dropout(0.5)), nn.Dropout(0.3)]
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    w = torch.tensor([0.3, 0.7], requires_grad=True)
    torch.manual_seed(5)
    plain = sum(wi * op(x) for wi, op in zip(w, ops, strict=True))
    ref = torch.autograd.grad(plain.square().sum(), [x, w, *ops[0].parameters()])
    torch.manual_seed(5)
    out = recompute_weighted_sum(x, w, ops)
    after = torch.rand(1)
    torch.manual_seed(5)
    sum(wi * op(x) for wi, op in zip(w, ops, strict=True))
    assert torch.equal(after, torch.rand(1))  # the forward consumed the RNG as plain does
    got = torch.autograd.grad(out.square().sum(), [x, w, *ops[0].parameters()])
    torch.testing.assert_close(out, plain, rtol=0, atol=0)
    for g, r in zip(got, ref, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-6, atol=1e-7)


def test_recompute_in_gumbel_mode_equals_plain():
    plain, recompute = _pair(_darts, torch.float64, candidates=("none", "skip_connect", "c2sp"))
    x, y = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 3])
    grads = []
    for net in (plain, recompute):
        net.set_mode("gumbel", tau=0.7)
        torch.manual_seed(11)
        grads.append(_grads(net, x, y))
    assert _rel_error(grads[0], grads[1], "arch.") <= 1e-12
    assert _rel_error(grads[0], grads[1], "body.") <= 1e-12


def test_memory_mode_is_checked_and_selectable():
    with pytest.raises(ConfigError, match="'low'"):
        _darts("low")
    with pytest.raises(ConfigError, match="'low'"):
        _resnet().build_supernet(memory="low")
    space = _resnet(candidates=("conv_3x3", "conv_1x1"))
    assert space.build_supernet().memory == "plain"
    supernet = space.build_supernet(memory="recompute")
    assert supernet.memory == "recompute" and "memory='recompute'" in repr(supernet.arch)
    assert "memory" not in space.settings()  # a training setting: architectures ignore it


@pytest.mark.parametrize("space", SPACES)
def test_darts_first_and_second_order_gradients_equal_plain(space):
    cands = ("conv_3x3", "conv_1x1", "c2sp", "csg_conv_3x3")
    cands = cands if space == "resnet" else ("none", "skip_connect", *cands)
    plain, recompute = _pair(SPACES[space], torch.float64, candidates=cands)
    gen = torch.Generator().manual_seed(2)
    xt, xv = (torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64) for _ in range(2))
    yt, yv = torch.tensor([0, 1, 2, 3]), torch.tensor([3, 2, 1, 0])
    first, second = [], []
    for net in (plain, recompute):
        loss = F.cross_entropy(net(xv), yv)
        first.append(torch.autograd.grad(loss, net.arch_parameters()))
        second.append(
            unrolled_arch_gradient(net, (xt, yt), (xv, yv), lr=0.05, momentum=0, weight_decay=0)
        )
    for got in (first, second):
        a, b = torch.cat([g.flatten() for g in got[0]]), torch.cat([g.flatten() for g in got[1]])
        assert a.abs().max() > 0
        assert float((a - b).abs().max() / a.abs().max()) <= 1e-10


def _darts_search_config(root, order=1, **space):
    return {
        "name": "tiny",
        "seed": 0,
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "val_fraction": 0.5,
            "limit_test": 8,
            "options": {"num_classes": 4, "input_shape": [3, 8, 8], "size": 32},
        },
        "space": {
            "kind": "darts",
            "channels": 4,
            "layers": 3,
            "steps": 2,
            "multiplier": 2,
            "candidates": ["none", "skip_connect", "sep_conv_3x3", "c2sp"],
            **space,
        },
        "strategy": {
            "kind": "darts",
            "epochs": 1,
            "batch_size": 8,
            "steps_per_epoch": 1,
            "order": order,
        },
        "output": {"progress": False, "report": False, "root": str(root)},
    }


@pytest.mark.parametrize(
    ("space", "order"),
    [({"memory": "recompute"}, 1), ({"memory": "recompute"}, 2), ({"partial_channels": 2}, 2)],
    ids=["recompute-1st", "recompute-2nd", "partial-2nd"],
)
def test_darts_search_from_config_with_memory_settings(tmp_path, space, order):
    from convnas import run_search
    from convnas.io import load_checkpoint
    from convnas.run.config import parse_config
    from convnas.search_space import build_model, load_architecture

    config = parse_config(_darts_search_config(tmp_path, order, **space))
    assert config.space.model_dump()["memory"] == space.get("memory", "plain")
    run_search(config)
    arch = load_architecture(config.run_dir() / "architectures" / "darts_final.yaml")
    assert build_model(arch)(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    saved = load_checkpoint(config.run_dir() / "darts_checkpoint.pt")["supernet"]
    assert any(k.startswith("arch.betas.") for k in saved) == ("partial_channels" in space)
    with pytest.raises(ConfigError, match="partial_channels"):
        parse_config(_darts_search_config(tmp_path, partial_channels=0))
    with pytest.raises(ConfigError, match="memory"):
        parse_config(_darts_search_config(tmp_path, memory="low"))


@pytest.mark.slow
def test_torchrun_two_processes_recompute_matches_plain(tmp_path):
    """The DDP path (gloo, CPU): recompute mode gives the alphas of plain mode."""
    from tests.reliability.darts_setup import darts_config, final_alphas, write_config
    from tests.reliability.test_darts_distributed import _free_port, _run

    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available in this build")
    runs = {}
    for memory in ("plain", "recompute"):
        config = darts_config(tmp_path)
        config["space"]["memory"] = memory
        cfg = write_config(tmp_path / f"{memory}.yaml", config)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        cmd += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
        _run([*cmd, "-m", "convnas", "search", str(cfg), "--name", memory], tmp_path)
        runs[memory] = final_alphas(tmp_path / memory)
    a = torch.cat([runs["plain"][k] for k in sorted(runs["plain"])])
    b = torch.cat([runs["recompute"][k] for k in sorted(runs["plain"])])
    assert a.abs().max() > 1e-2
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
