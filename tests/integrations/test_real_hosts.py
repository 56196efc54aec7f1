"""convnas inside the real timm and torchvision models (the ``hosts`` extra).

These run where the hosts are installed (``.ci/run`` installs them in a separate environment,
``.ci/hosts``, since PyPI's torchvision needs its own torch build) and skip, saying so,
elsewhere.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import convnas


def _host(name: str):
    try:
        return __import__(name)
    except Exception as exc:  # torchvision beside a mismatched torch fails at import
        pytest.skip(f"{name} is not usable here ({type(exc).__name__}: {exc}); .ci/hosts runs it")


def test_torchvision_resnet18_converts_runs_and_folds():
    torchvision = _host("torchvision")
    model = torchvision.models.resnet18(num_classes=10)
    report = convnas.convert_model(model, "c2sp", dry_run=True)
    assert len(report.replaced) == 16 and report.params_after < report.params_before
    converted = convnas.convert_model(model, "do_conv_3x3").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(convnas.fold(converted)(x), converted(x), rtol=1e-4, atol=1e-4)


def test_timm_efficientnet_depthwise_swap_warns_that_the_model_grows():
    timm = _host("timm")
    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    default = convnas.convert_model(model, "conv_3x3", dry_run=True)
    assert not default.replaced  # its 3x3 convs are depthwise: skipped, each with the reason
    assert all(r.reason for r in default.rows if r.action == "skip")
    with pytest.warns(UserWarning, match="grow"):
        convnas.convert_model(model, "conv_3x3", include=["blocks.1.*.conv_dw"], dry_run=True)


def test_timm_convnext_lists_its_7x7_convs_as_skipped():
    timm = _host("timm")
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = convnas.convert_model(model, "c2sp", dry_run=True)
    sevens = [r for r in report.rows if r.kernel_size == (7, 7)]
    assert sevens and all(r.action == "skip" and "(7, 7)" in r.reason for r in sevens)


def test_timm_resnet_with_csg_runs_a_training_step():
    timm = _host("timm")
    model = convnas.convert_model(
        timm.create_model("resnet10t", pretrained=False, num_classes=10), "csg_conv_3x3"
    )
    loss = model(torch.randn(2, 3, 64, 64)).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.is_contiguous() for g in grads)
