"""The cost model: reference networks, hand-computed training memory, operator families, tables."""

from __future__ import annotations

import json
import types

import pytest
import torch
from torch import nn

import convnas
from convnas.costs import CandidateSpec, Costs, CostTable, cost_of_candidate, measure
from convnas.errors import ConfigError, ConvNASError
from convnas.models import cifar_resnet
from convnas.models.imagenet_resnet import resnet50

F32 = 4


def _needs(*ops: str) -> None:
    missing = [op for op in ops if op not in convnas.list_operators()]
    if missing:
        pytest.skip(f"operator(s) {missing} not registered yet")


def _cifar_resnet_macs(depth: int) -> int:
    """Conv + FC MACs of a CIFAR ResNet with option-A shortcuts, from the layer shapes."""
    n = (depth - 2) // 6
    stem = 16 * 3 * 9 * 32 * 32
    same = 16 * 16 * 9 * 32 * 32  # every non-first 3x3 of a stage costs the same
    first = 32 * 16 * 9 * 16 * 16  # first 3x3 of stages 2 and 3 (stride 2)
    return stem + 2 * n * same + 2 * (first + (2 * n - 1) * same) + 64 * 10


# ---------------------------------------------------------------- reference networks


@pytest.mark.parametrize(
    ("depth", "macs_m", "params", "params_m"),
    [(20, 40.55, 269_722, 0.27), (56, 125.5, 853_018, 0.85)],
)
def test_cifar_resnet_macs_and_params(depth, macs_m, params, params_m):
    costs = measure(cifar_resnet(depth), (3, 32, 32))
    assert costs.macs == _cifar_resnet_macs(depth)
    assert round(costs.macs / 1e6, 2 if depth == 20 else 1) == macs_m
    assert costs.params == params and round(costs.params / 1e6, 2) == params_m
    assert costs.frozen_params == 0 and costs.deploy_params == params
    assert costs.weight_macs == 0
    # BN and ReLU are reported apart, never in the MAC total.
    assert costs.other_ops["norm"] == costs.other_ops["activation"] > 0


def _c2sp_resnet50() -> nn.Module:
    model = resnet50()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and child.kernel_size == (3, 3):
                op = convnas.create_operator(
                    "c2sp", child.in_channels, child.out_channels, child.stride[0]
                )
                setattr(module, name, op)
    return model


def test_resnet50_torchvision_layout():
    model = resnet50()
    costs = measure(model, (3, 224, 224))
    assert costs.params == 25_557_032
    assert round(costs.macs / 1e6) == 4089
    names = dict(model.named_parameters())
    assert names["layer2.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert names["layer4.2.conv2.weight"].shape == (512, 512, 3, 3)
    assert names["fc.weight"].shape == (1000, 2048)


def test_resnet50_c2sp():
    _needs("c2sp")
    costs = measure(_c2sp_resnet50(), (3, 224, 224))
    # 11,317,248 3x3 weights shrink to 4/9 of themselves (OPERATORS.md section 1.5).
    assert costs.params == 25_557_032 - 11_317_248 * 5 // 9
    assert round(costs.params / 1e6, 2) == 19.27
    assert round(costs.macs / 1e6) == 3062


# ---------------------------------------------------------------- training memory, by hand


def _stack(inplace: bool) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace),
        nn.Conv2d(4, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(inplace),
    )


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_conv_bn_relu_stack_memory_exact(inplace, batch):
    costs = measure(_stack(inplace), (3, 5, 5), batch_size=batch)
    params = 3 * 4 * 9 + 4 * 4 * 9 + 2 * (4 + 4)
    assert costs.params == params
    # running mean/var (2 x 4 floats per BN) and two int64 num_batches_tracked
    assert costs.weight_bytes == params * F32 + 2 * 8 * F32 + 2 * 8
    assert costs.gradient_bytes == params * F32 and costs.optimizer_bytes == 0
    # saved: input x (75), conv1 out (100), relu1 out (100, also conv2's input), conv2 out
    # (100), relu2 out (100) per sample; BN save_mean and save_invstd: 4 x 4 floats.
    assert costs.activation_bytes == batch * (75 + 4 * 100) * F32 + 4 * 4 * F32
    assert costs.train_memory_bytes == (
        costs.weight_bytes + costs.gradient_bytes + costs.activation_bytes
    )
    assert costs.macs == 25 * (4 * 3 * 9 + 4 * 4 * 9)


def test_residual_block_memory_exact():
    costs = measure(_Residual(), (4, 5, 5), batch_size=2)
    params = 2 * 4 * 4 * 9 + 2 * 8
    # x, conv1 out, relu1 out, conv2 out, final relu out; the add saves nothing.
    assert costs.activation_bytes == 2 * 5 * 100 * F32 + 4 * 4 * F32
    assert costs.train_memory_bytes == (params * F32 + 16 * F32 + 16) + params * F32 + (
        2 * 5 * 100 * F32 + 64
    )
    assert costs.other_ops["elementwise"] == 100  # the residual add, per image


def test_linear_peak_memory_exact():
    batch = 5
    costs = measure(nn.Linear(4, 3), (4,), batch_size=batch)
    # weights 15 floats; live at the peak: x (4B), output (3B), its gradient (3B), the
    # weight and bias gradients (12 + 3). The weight is saved, but it is not an activation.
    assert costs.activation_bytes == 4 * batch * F32
    assert costs.peak_memory_bytes == (15 + 4 * batch + 3 * batch + 3 * batch + 15) * F32
    assert costs.macs == 12


def test_memory_grows_linearly_with_batch():
    model = cifar_resnet(20, widths=(4, 8, 16))
    c1, c2, c8 = (measure(model, (3, 16, 16), batch_size=b) for b in (1, 2, 8))
    for field in ("train_memory_bytes", "activation_bytes"):
        step = c2[field] - c1[field]
        assert step > 0
        assert c8[field] - c1[field] == 7 * step
    # The peak is a maximum of affine functions of the batch size: convex, not linear (where
    # it occurs moves), and close to the sum of the parts.
    step = c2.peak_memory_bytes - c1.peak_memory_bytes
    assert c8.peak_memory_bytes - c1.peak_memory_bytes >= 7 * step > 0
    assert abs(c8.peak_memory_bytes / c8.train_memory_bytes - 1) < 0.1
    assert c1.macs == c8.macs and c1.other_ops == c8.other_ops
    assert c1.weight_bytes == c8.weight_bytes


def test_optimizer_state_and_dtype():
    model = _stack(False)
    sgd = measure(model, (3, 5, 5), batch_size=2)
    grads = sgd.gradient_bytes
    assert measure(model, (3, 5, 5), batch_size=2, optimizer="sgd_momentum").optimizer_bytes == (
        grads
    )
    for name in ("adam", "adamw"):
        adam = measure(model, (3, 5, 5), batch_size=2, optimizer=name)
        assert adam.optimizer_bytes == 2 * grads
        assert adam.train_memory_bytes == sgd.train_memory_bytes + 2 * grads
    double = measure(model, (3, 5, 5), batch_size=2, dtype=torch.float64)
    assert double.activation_bytes == 2 * sgd.activation_bytes
    assert double.dtype == "float64"


def test_views_and_parameters_counted_once():
    class Split(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 4, 1, bias=False)

        def forward(self, x):
            y = self.conv(x)
            return y[:, :2] * y[:, 2:] * self.conv.weight.sum()

    costs = measure(Split(), (2, 3, 3), batch_size=1)
    # saved: x (18 floats), y (36, through two views), the product y[:, :2] * y[:, 2:] (18,
    # for the grad of the weight-sum factor) and the weight sum (a 0-d tensor computed from
    # the weight, 1 float); never the weight itself.
    assert costs.activation_bytes == (18 + 36 + 18 + 1) * F32


def test_measure_leaves_model_untouched_and_needs_no_data():
    model = cifar_resnet(20, widths=(4, 8, 16))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, (3, 8, 8), batch_size=4)
    assert all(p.grad is None and p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training


def test_errors():
    with pytest.raises(ConfigError, match="optimizer"):
        measure(nn.Linear(2, 2), (2,), optimizer="lbfgs")
    with pytest.raises(ConfigError, match="input_shape"):
        measure(nn.Linear(2, 2), (0,))
    with pytest.raises(ConfigError, match="batch_size"):
        measure(nn.Linear(2, 2), (2,), batch_size=0)

    class ReadsValues(nn.Module):
        def forward(self, x):
            return x * float(x.sum())

    with pytest.raises(ConvNASError, match="meta"):
        measure(ReadsValues(), (2,))


# ---------------------------------------------------------------- custom ops


def _custom_matmul():
    name = "convnas_cost_test::matmul"
    if hasattr(torch.ops.convnas_cost_test, "matmul"):
        return torch.ops.convnas_cost_test.matmul
    from torch.utils.flop_counter import register_flop_formula

    @torch.library.custom_op(name, mutates_args=())
    def matmul(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x @ w

    @matmul.register_fake
    def _(x, w):
        return x.new_empty(x.shape[0], w.shape[1])

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad @ w.t(), x.t() @ grad

    matmul.register_autograd(backward, setup_context=setup)

    @register_flop_formula(torch.ops.convnas_cost_test.matmul)
    def _flops(x_shape, w_shape, *args, out_shape=None, **kwargs):
        return 2 * x_shape[0] * x_shape[1] * w_shape[1]

    return torch.ops.convnas_cost_test.matmul


def test_custom_op_counted_through_flop_formula_and_fake():
    op = _custom_matmul()

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(6, 5))

        def forward(self, x):
            return op(x, self.w)

    costs = measure(Net(), (6,), batch_size=4)
    assert costs.macs == 6 * 5
    assert costs.activation_bytes == 4 * 6 * F32  # x; w is a parameter


# ---------------------------------------------------------------- operator families


def test_do_conv_folds_to_plain_conv_costs():
    _needs("do_conv_3x3")
    plain = measure(cifar_resnet(20, widths=(8, 8, 8)), (3, 16, 16), batch_size=4)
    do = measure(cifar_resnet(20, "do_conv_3x3", widths=(8, 8, 8)), (3, 16, 16), batch_size=4)
    assert do.deploy_params == plain.params
    assert do.params > plain.params
    assert do.train_memory_bytes > plain.train_memory_bytes
    assert do.macs == plain.macs
    assert do.weight_macs > 0  # kernel composition, per forward


def test_csg_fewer_params_same_macs():
    _needs("csg_conv_3x3")
    plain = measure(cifar_resnet(56), (3, 32, 32))
    csg = measure(
        cifar_resnet(56, "csg_conv_3x3", op_args={"slice_shape": (16, 16, 3, 3)}), (3, 32, 32)
    )
    assert csg.params == 347_162  # OPERATORS.md section 5.5
    assert csg.shared_params == 16 * 16 * 9 * 128
    assert csg.macs == plain.macs
    assert csg.deploy_params == plain.params


# ---------------------------------------------------------------- cost tables


def test_cost_of_candidate_values_and_memo():
    a = cost_of_candidate("conv_3x3", {}, 8, 16, 2, (8, 8))
    assert a.params == 16 * 8 * 9
    assert a.macs == 16 * 8 * 9 * 4 * 4
    assert cost_of_candidate("conv_3x3", None, 8, 16, 2, [8, 8]) is a
    skip = cost_of_candidate("skip_connect", {}, 8, 8, 1, (8, 8))
    assert skip.params == 0 and skip.macs == 0


def test_cost_of_candidate_hashable_hparams():
    _needs("csg_conv_3x3")
    hp = {"slice_shape": [12, 12, 3, 3], "code_size": 72}
    a = cost_of_candidate("csg_conv_3x3", hp, 12, 12, 1, (4, 4))
    b = cost_of_candidate("csg_conv_3x3", {**hp, "slice_shape": (12, 12, 3, 3)}, 12, 12, 1, (4, 4))
    assert a is b
    # The generator is shared by the layers of a network; its size is reported apart.
    assert a.shared_params == 12 * 12 * 9 * 72
    assert a.params == a.shared_params + 72  # one slice of codes


def test_cost_table_expected_cheapest_and_dict():
    decisions = [
        [
            CandidateSpec("conv_3x3", {}, 8, 8, 1, (8, 8)),
            CandidateSpec("conv_1x1", {}, 8, 8, 1, (8, 8)),
            ("skip_connect", {}, 8, 8, 1, (8, 8)),
        ],
        [
            {"op": "conv_3x3", "in_channels": 8, "out_channels": 16, "stride": 2},
            {"op": "conv_1x1", "in_channels": 8, "out_channels": 16, "stride": 2},
        ],
    ]
    table = CostTable(decisions, names=["a", "b"], batch_size=2)
    assert len(table) == 2 and [len(r) for r in table.table] == [3, 2]
    assert table.values("params") == [[576, 64, 0], [1152, 128]]
    assert table.cheapest("params") == [2, 1]
    probs = [torch.tensor([0.5, 0.25, 0.25], requires_grad=True), torch.tensor([0.0, 1.0])]
    expected = table.expected(probs, "params")
    assert expected.item() == pytest.approx(0.5 * 576 + 0.25 * 64 + 128)
    expected.backward()
    assert probs[0].grad.tolist() == [576, 64, 0]
    by_name = table.expected({"a": probs[0].detach(), "b": probs[1]}, "macs")
    macs = table.values("macs")
    assert by_name.item() == pytest.approx(0.5 * macs[0][0] + 0.25 * macs[0][1] + macs[1][1])
    data = json.loads(json.dumps(table.to_dict()))
    assert data["decisions"][1]["candidates"][0]["costs"]["params"] == 1152
    with pytest.raises(ConfigError, match="candidates"):
        table.expected([torch.ones(2), torch.ones(2)], "params")
    with pytest.raises(ConfigError, match="metric"):
        table.cheapest("speed")


def test_cost_table_from_decision_objects_sums_sites():
    cand = types.SimpleNamespace
    decision = types.SimpleNamespace(
        name="block0",
        candidates=(cand(op="conv_3x3", hparams={}), cand(op="conv_1x1", hparams={})),
        sites=(
            cand(in_channels=4, out_channels=8, stride=2, input_hw=(8, 8)),
            cand(in_channels=8, out_channels=8, stride=1, input_hw=(4, 4)),
        ),
    )
    table = CostTable([decision])
    assert table.names == ["block0"]
    assert table.values("params") == [[4 * 8 * 9 + 8 * 8 * 9, 4 * 8 + 8 * 8]]
    assert table.values("macs")[0][0] == (4 * 8 * 9 + 8 * 8 * 9) * 16
    assert isinstance(table.table[0][0], Costs)
