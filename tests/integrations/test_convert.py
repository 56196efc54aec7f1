"""convert_model: selection rules, shared modules, bias, folding, and the ResNet-50 figures."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import convnas
from convnas.errors import OperatorArgumentError
from convnas.integrations.convert import SHARED_ATTRIBUTE, BiasedOperator, ConversionReport
from convnas.models.imagenet_resnet import resnet50

# ResNet-50 (torchvision layout): bottleneck 3x3 widths, blocks and output sizes at 224x224.
STAGES = ((64, 3, 56), (128, 4, 28), (256, 6, 14), (512, 3, 7))
RESNET50_PARAMS, RESNET50_MACS = 25_557_032, 4_089_184_256


def _resnets():
    models = [("convnas", resnet50)]
    try:
        import torchvision
    except ImportError:
        return models
    return [*models, ("torchvision", lambda: torchvision.models.resnet50(weights=None))]


@pytest.mark.parametrize(("source", "build"), _resnets())
def test_c2sp_on_resnet50_reproduces_the_paper(source, build):
    report = convnas.convert_model(build(), "c2sp", dry_run=True)
    assert isinstance(report, ConversionReport)
    conv3x3_weights = sum(w * w * 9 * n for w, n, _ in STAGES)
    conv3x3_macs = sum(w * w * 9 * n * s * s for w, n, s in STAGES)
    assert conv3x3_weights == 11_317_248
    assert (report.params_before, report.macs_before) == (RESNET50_PARAMS, RESNET50_MACS)
    # A 2x2 kernel has 4/9 of a 3x3's weights and MACs.
    assert report.params_after == RESNET50_PARAMS - conv3x3_weights * 5 // 9 == 19_269_672
    assert report.macs_after == RESNET50_MACS - conv3x3_macs * 5 // 9 == 3_061_579_776
    assert round(report.params_after / 1e6, 2) == 19.27 and round(report.macs_after / 1e6) == 3062
    assert len(report.replaced) == 16 and all(n.endswith(".conv2") for n in report.replaced)
    assert "layer4.2.conv2" in report.table() and "3,061,579,776" in report.table()


def test_csg_on_resnet50_owns_one_generator_and_matches_the_paper_count():
    model = convnas.convert_model(resnet50(), "csg_conv_3x3")
    shared = getattr(model, SHARED_ATTRIBUTE)
    assert len(shared) == 1
    # OPERATORS.md §5.5: CSG-[16,16,3,3]-128 ResNet-50 has 15,163,432 parameters.
    assert sum(p.numel() for p in model.parameters()) == 15_163_432
    assert sum(1 for k in model.state_dict() if k.startswith(SHARED_ATTRIBUTE)) == 1
    gen = next(iter(shared.values()))
    assert model.layer1[0].conv2.generator is gen and model.layer4[2].conv2.generator is gen
    report = convnas.convert_model(resnet50(), "csg_conv_3x3", dry_run=True)
    assert report.params_after == 15_163_432 and report.shared_params == 2304 * 128
    assert report.macs_after == RESNET50_MACS  # same conv MACs
    # §5.4: generating the kernels costs 4912 slices x 128 x 2304 MACs per forward.
    assert report.weight_macs_after == 4912 * 128 * 2304


def test_do_conv_resnet50_folds_to_the_same_function():
    model = convnas.convert_model(resnet50(num_classes=10), "do_conv_3x3").double().eval()
    d_primes = [p for n, p in model.named_parameters() if n.endswith("conv2.d_prime")]
    assert len(d_primes) == 16
    with torch.no_grad():  # move away from the initial state, where D = identity
        for p in d_primes:
            p.add_(0.05 * torch.randn_like(p))
    folded = convnas.fold(model)
    assert all(
        type(m.conv2) is nn.Conv2d for layer in (folded.layer1, folded.layer4) for m in layer
    )
    assert type(model.layer1[0].conv2) is not nn.Conv2d
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-9, atol=1e-10)


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.a = nn.Conv2d(8, 8, 3, 1, 1, bias=False)
        self.b = nn.Conv2d(8, 16, 3, 2, 1, bias=True)
        self.g = nn.Conv2d(16, 16, 3, 1, 1, groups=4, bias=False)
        self.p = nn.Conv2d(16, 16, 1, bias=False)
        self.blocks = nn.Sequential(self.a, nn.ReLU())  # `a` is registered twice

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.p(self.g(self.b(x)))


def test_default_selection_skips_stem_grouped_and_non_3x3():
    report = convnas.convert_model(Small(), "c2sp", dry_run=True, input_shape=(3, 8, 8))
    rows = {r.name: r for r in report.rows}
    assert set(rows) == {"stem", "a", "b", "g", "p"}  # every conv is listed
    assert rows["stem"].reason == "stem" and rows["g"].reason.startswith("groups=4")
    assert rows["p"].reason == "kernel (1, 1)" and rows["p"].action == "skip"
    assert report.replaced == ["a", "b"]
    assert rows["a"].params_after == 8 * 8 * 4 and rows["b"].params_after == 16 * 8 * 4 + 16


def test_include_exclude_patterns():
    inc = convnas.convert_model(
        Small(), "c2sp", include=["stem", "p"], dry_run=True, input_shape=(3, 8, 8)
    )
    assert inc.replaced == ["stem", "p"]
    assert {r.name: r.reason for r in inc.rows}["a"] == "not included"
    exc = convnas.convert_model(Small(), "c2sp", exclude="b", dry_run=True, input_shape=(3, 8, 8))
    assert exc.replaced == ["a"] and {r.name: r.reason for r in exc.rows}["b"] == "excluded"


def test_unsupported_stride_and_channels_are_skipped_and_reported():
    report = convnas.convert_model(Small(), "sw", dry_run=True, input_shape=(3, 8, 8))
    reasons = {r.name: r.reason for r in report.rows}
    assert report.replaced == ["a"]
    assert "stride" in reasons["b"]  # sw: stride 1 only, and 8 -> 16 channels


def test_converted_model_runs_keeps_sharing_bias_mode_and_leaves_the_original():
    torch.manual_seed(3)
    model = Small().eval()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    conv = convnas.convert_model(model, "c2sp")
    assert type(model.a) is nn.Conv2d and all(
        torch.equal(v, original[k]) for k, v in model.state_dict().items()
    )
    assert conv.a is conv.blocks[0] and type(conv.a) is not nn.Conv2d
    assert isinstance(conv.b, BiasedOperator) and torch.equal(conv.b.bias, model.b.bias)
    assert not conv.a.training and not conv.b.training
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(conv.b(x), conv.b.op(x) + model.b.bias.view(1, -1, 1, 1))
    assert conv(torch.randn(2, 3, 8, 8)).shape == (2, 16, 4, 4)
    same = convnas.convert_model(model, "c2sp", inplace=True)
    assert same is model and type(model.a) is not nn.Conv2d


def test_biased_do_conv_folds_into_a_conv_with_the_bias():
    model = convnas.convert_model(Small(), "do_conv_3x3").double().eval()
    folded = convnas.fold(model)
    assert type(folded.b) is nn.Conv2d and folded.b.bias is not None
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x))


def test_csg_twice_reuses_the_network_generator_and_state_dict_round_trips():
    first = convnas.convert_model(
        Small(), "csg_conv_3x3", slice_shape=(8, 8, 3, 3), code_size=4, include="a"
    )
    both = convnas.convert_model(
        first, "csg_conv_3x3", slice_shape=(8, 8, 3, 3), code_size=4, include="b"
    )
    assert len(getattr(both, SHARED_ATTRIBUTE)) == 1
    assert both.b.op.generator is both.a.generator
    other = convnas.convert_model(
        convnas.convert_model(
            Small(), "csg_conv_3x3", slice_shape=(8, 8, 3, 3), code_size=4, include="a"
        ),
        "csg_conv_3x3",
        slice_shape=(8, 8, 3, 3),
        code_size=4,
        include="b",
    )
    other.load_state_dict(both.state_dict())
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(other.eval()(x), both.eval()(x))


def test_bad_arguments():
    with pytest.raises(OperatorArgumentError, match="kind='conv'"):
        convnas.convert_model(Small(), "sep_conv_3x3")
    with pytest.raises(OperatorArgumentError, match="no hyper-parameter 'n_sepp'"):
        convnas.convert_model(Small(), "osep_3x3", n_sepp=2)
    with pytest.raises(KeyError, match="did you mean"):
        convnas.convert_model(Small(), "c2spp")
    assert "convert_model" in convnas.__all__


class ConvNeXtLike(nn.Module):
    """A ConvNeXt block's shape: a 7x7 depthwise conv between 1x1 convs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, 4)
        self.dw = nn.Conv2d(16, 16, 7, 1, 3, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)

    def forward(self, x):
        return self.pw(self.dw(self.stem(x)))


def test_every_skipped_conv_is_listed_with_its_reason():
    report = convnas.convert_model(ConvNeXtLike(), "c2sp", dry_run=True, input_shape=(3, 32, 32))
    reasons = {r.name: r.reason for r in report.rows}
    assert reasons == {"stem": "kernel (4, 4)", "dw": "kernel (7, 7)", "pw": "kernel (1, 1)"}
    assert report.replaced == []


def test_a_swap_that_grows_the_model_warns():
    with pytest.warns(UserWarning, match=r"grows them from 800 to 2,320 params \(dw\)"):
        convnas.convert_model(
            ConvNeXtLike(), "conv_3x3", include="dw", dry_run=True, input_shape=(3, 32, 32)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a swap that shrinks the model says nothing
        convnas.convert_model(Small(), "c2sp", dry_run=True, input_shape=(3, 8, 8))
