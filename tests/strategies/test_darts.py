from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from convnas.data import load_dataset
from convnas.errors import CheckpointError, ConfigError
from convnas.io import load_checkpoint
from convnas.search_space import build_model, get_space, load_architecture
from convnas.strategies.darts import DartsStrategy, unrolled_arch_gradient

FAST = {"batch_size": 8, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=96,
        seed=0,
        val_fraction=0.5,
        limit_test=16,
    )


def _resnet_space(candidates=("conv_3x3", "conv_1x1", "c2sp")):
    return get_space(
        "resnet",
        candidates=list(candidates),
        depth=8,
        widths=[4, 8, 8],
        num_classes=4,
        input_shape=[3, 8, 8],
    )


def _darts_space():
    return get_space(
        "darts",
        candidates=["none", "skip_connect", "sep_conv_3x3", "c2sp"],
        channels=4,
        layers=3,
        steps=2,
        multiplier=2,
        num_classes=4,
        input_shape=[3, 8, 8],
    )


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("space_fn", [_resnet_space, _darts_space], ids=["resnet", "darts"])
def test_search_changes_alphas_and_writes_a_buildable_architecture(tmp_path, data, order, space_fn):
    space = space_fn()
    result = DartsStrategy(epochs=1, order=order, **FAST).search(space, data, tmp_path)
    history = (tmp_path / "alphas.json").read_text()
    assert '"probabilities"' in history
    probs = result.info and __import__("json").loads(history)[-1]["probabilities"]
    assert any(abs(p - 1 / len(v)) > 1e-6 for v in probs.values() for p in v)
    arch = load_architecture(tmp_path / "architectures" / "darts_final.yaml")
    assert arch.same_network(result.best.architecture)
    assert build_model(arch)(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert (tmp_path / "darts_checkpoint.pt").is_file()


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 3e-4)])
def test_second_order_gradient_matches_the_exact_unrolled_gradient(momentum, weight_decay):
    torch.manual_seed(0)
    space = _resnet_space(("conv_3x3", "conv_1x1"))
    supernet = space.build_supernet().double()
    with torch.no_grad():
        for a in supernet.arch_parameters():
            a.normal_()
    xt, yt = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    xv, yv = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.tensor([3, 2, 1, 0])
    lr = 0.05
    names = [n for n, _ in supernet.named_arch_parameters()]
    weights = {n: p.detach() for n, p in supernet.named_parameters() if n not in names}
    g = torch.Generator().manual_seed(1)  # momentum buffers as after some SGD steps
    buffers = {
        n: torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1 for n, p in weights.items()
    }
    grads = unrolled_arch_gradient(
        supernet,
        (xt, yt),
        (xv, yv),
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        momentum_buffers=buffers if momentum else None,
        fd_scale=1e-6,  # far below DARTS' 0.01: this tiny BN network is very curved
    )

    # The reference: autograd through the unrolled step itself (double backward), which is
    # exact; the strategy's finite-difference Hessian-vector product must agree with it.
    alphas = {
        n: p.detach().clone().requires_grad_(True) for n, p in supernet.named_arch_parameters()
    }
    w = {n: p.clone().requires_grad_(True) for n, p in weights.items()}
    loss_t = F.cross_entropy(functional_call(supernet, {**w, **alphas}, (xt,)), yt)
    g_w = torch.autograd.grad(loss_t, list(w.values()), create_graph=True, allow_unused=True)
    unrolled = {
        n: p
        - lr
        * (
            (gi if gi is not None else 0)
            + weight_decay * p
            + (momentum * buffers[n] if momentum else 0)
        )
        for (n, p), gi in zip(w.items(), g_w, strict=True)
    }
    loss_v = F.cross_entropy(functional_call(supernet, {**unrolled, **alphas}, (xv,)), yv)
    exact = torch.autograd.grad(loss_v, list(alphas.values()))
    for grad, ref in zip(grads, exact, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-5, atol=1e-9)


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path, data, monkeypatch):
    settings = dict(epochs=3, order=1, seed=5, **FAST)
    full = DartsStrategy(**settings).search(_resnet_space(), data, tmp_path / "full")
    full_alphas = load_checkpoint(tmp_path / "full" / "darts_checkpoint.pt")["supernet"]

    import convnas.strategies.darts.strategy as darts_module

    calls = {"n": 0}
    real = darts_module.write_json

    def crash_after_first_epoch(path, payload):
        real(path, payload)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(darts_module, "write_json", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        DartsStrategy(**settings).search(_resnet_space(), data, tmp_path / "cut")
    monkeypatch.setattr(darts_module, "write_json", real)
    with pytest.raises(ConfigError, match="already holds a DARTS checkpoint"):
        DartsStrategy(**settings).search(_resnet_space(), data, tmp_path / "cut")
    resumed = DartsStrategy(**settings).search(_resnet_space(), data, tmp_path / "cut", resume=True)
    cut_state = load_checkpoint(tmp_path / "cut" / "darts_checkpoint.pt")
    for key, value in full_alphas.items():
        if key.startswith("arch.alphas"):
            torch.testing.assert_close(cut_state["supernet"][key], value, rtol=0, atol=0)
    assert resumed.best.architecture.same_network(full.best.architecture)
    other = dict(settings, tau=2.0)  # optimiser settings may change on resume, others not
    with pytest.raises(CheckpointError, match="another configuration"):
        DartsStrategy(**other).search(_resnet_space(), data, tmp_path / "cut", resume=True)


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError, match="order: must be 1 or 2"):
        DartsStrategy(order=3)
    with pytest.raises(ConfigError, match="penalty_metric"):
        DartsStrategy(penalty_metric="flops")
    with pytest.raises(ConfigError, match="has no setting 'learning_rate'"):
        DartsStrategy(learning_rate=0.1)


def test_large_params_penalty_picks_the_cheapest_candidate_everywhere(tmp_path, data):
    from convnas.costs.cost_table import CostTable

    space = _resnet_space(("conv_3x3", "c2sp", "conv_1x1"))
    result = DartsStrategy(
        epochs=2, penalty_metric="params", penalty_lambda=50.0, a_lr=0.05, **FAST
    ).search(space, data, tmp_path)
    cheapest = CostTable(space.decisions()).cheapest("params")
    arch = result.best.architecture
    for decision, index in zip(space.decisions(), cheapest, strict=True):
        assert arch.choice(decision.name).op == decision.candidates[index].op == "conv_1x1"
    assert result.best.metrics["params"] > 0
