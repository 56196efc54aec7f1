"""The DARTS evaluation recipe: cutout, drop-path, auxiliary head (and the training loop's use)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from convnas.cli import main
from convnas.data import load_dataset
from convnas.errors import ConfigError
from convnas.search_space import build_model, get_space
from convnas.strategies.recipe import (
    DARTS_RECIPE,
    AuxiliaryHead,
    Recipe,
    apply_cutout,
    auxiliary_tap,
    drop_path_hooks,
)
from convnas.strategies.training import train_model

SYNTHETIC = {"num_classes": 4, "input_shape": [3, 8, 8], "size": 96}


def _cutout_reference(x, length, cy, cx):
    """DARTS' Cutout (cnn/utils.py), one image at a time, with the same centres."""
    out = x.clone()
    _, _, h, w = x.shape
    for i in range(x.shape[0]):
        y1, y2 = max(0, cy[i] - length // 2), min(h, cy[i] + length // 2)
        x1, x2 = max(0, cx[i] - length // 2), min(w, cx[i] + length // 2)
        out[i, :, y1:y2, x1:x2] = 0.0
    return out


@pytest.mark.parametrize("length", [2, 4, 16])
def test_cutout_is_darts_cutout_with_the_same_centres(length):
    x = torch.rand(6, 3, 10, 12) + 1.0  # no zeros of its own
    g = torch.Generator().manual_seed(3)
    out = apply_cutout(x, length, g)
    g = torch.Generator().manual_seed(3)
    cy = torch.randint(10, (6,), generator=g).tolist()
    cx = torch.randint(12, (6,), generator=g).tolist()
    torch.testing.assert_close(out, _cutout_reference(x, length, cy, cx), rtol=0, atol=0)
    assert x.min() >= 1.0, "the input itself is left alone"
    if length == 16:  # larger than the image: clipped, never wraps
        assert ((out == 0).sum(dim=(1, 2, 3)) > 0).all()


def test_cutout_of_zero_is_the_identity():
    x = torch.rand(2, 1, 4, 4)
    assert apply_cutout(x, 0, torch.Generator()) is x


class _Cells(nn.Module):
    """Two 'cells', each with an identity edge and a convolution edge."""

    def __init__(self) -> None:
        super().__init__()
        cells = []
        for _ in range(2):
            cell = nn.Module()
            cell.edges = nn.ModuleDict({"skip": nn.Identity(), "conv": nn.Conv2d(2, 2, 1)})
            cells.append(cell)
        self.cells = nn.ModuleList(cells)


def test_drop_path_drops_whole_samples_of_non_identity_edges_and_rescales():
    model, p = _Cells(), 0.5
    x = torch.rand(64, 2, 3, 3) + 0.5
    conv = model.cells[0].edges["conv"]
    with torch.no_grad(), drop_path_hooks(model, torch.Generator().manual_seed(0)) as hook:
        hook.prob = p
        plain = nn.functional.conv2d(x, conv.weight, conv.bias)
        out = conv(x)
        ratio = out / plain
        kept = ratio.flatten(1).amax(1) > 0
        # each sample is dropped whole or kept whole, kept ones scaled by 1 / (1 - p)
        assert torch.allclose(ratio[kept], torch.full_like(ratio[kept], 1 / (1 - p)))
        assert (out[~kept] == 0).all()
        assert 10 < int(kept.sum()) < 54  # about half of 64
        assert torch.equal(model.cells[0].edges["skip"](x), x)  # identities are never dropped
        conv.eval()
        assert torch.equal(conv(x), plain), "no dropping in eval mode"
    conv.train()
    with torch.no_grad():
        assert torch.equal(conv(x), plain), "the hooks are removed after the block"


def test_drop_path_and_auxiliary_head_refuse_networks_without_cells():
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    with pytest.raises(ConfigError, match="DARTS cell networks"):
        with drop_path_hooks(net, torch.Generator()):
            pass
    with pytest.raises(ConfigError, match="DARTS cell networks"):
        with auxiliary_tap(net, 10, (3, 8, 8)):
            pass


def _darts_arch(layers=3):
    space = get_space(
        "darts",
        candidates=["skip_connect", "sep_conv_3x3", "max_pool_3x3"],
        channels=4,
        layers=layers,
        steps=2,
        multiplier=2,
        num_classes=4,
        input_shape=[3, 8, 8],
    )
    supernet = space.build_supernet(generator=torch.Generator().manual_seed(1))
    return space, supernet.derive().with_metadata(dataset="synthetic")


def test_auxiliary_head_taps_the_cell_at_two_thirds_and_leaves_bn_statistics_alone():
    _, arch = _darts_arch(layers=6)
    model = build_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with auxiliary_tap(model, 4, (3, 8, 8)) as (head, tap):
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), f"the probe changed {k}"
        model.train()
        logits = model(torch.rand(5, 3, 8, 8))
        assert tap.value is not None and tap.value.shape[0] == 5
        assert tap.value.shape[1] == model.cells[5].preprocess1[1].in_channels  # cell 4's output
        aux = head(tap.value)
        assert aux.shape == (5, 4) and logits.shape == (5, 4)
        (aux.sum()).backward()
        assert model.cells[0].preprocess1[1].weight.grad is not None  # reaches early cells
        assert model.classifier.weight.grad is None  # ... but not the main head
        model.eval()
        model(torch.rand(2, 3, 8, 8))
        assert tap.value is None, "the tap holds nothing in eval mode"


def test_auxiliary_head_is_dartss_on_8x8_features():
    head = AuxiliaryHead(16, 10, feature_size=8)
    pool = head.features[1]
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 5 and pool.stride == 3
    assert head(torch.rand(2, 16, 8, 8)).shape == (2, 10)
    assert isinstance(AuxiliaryHead(16, 10, feature_size=2).features[1], nn.AdaptiveAvgPool2d)


@pytest.mark.parametrize(
    "kwargs,key",
    [({"drop_path": 1.0}, "drop_path"), ({"cutout": -1}, "cutout"),
     ({"auxiliary_weight": -0.1}, "auxiliary_weight"), ({"grad_clip": 0.0}, "grad_clip")],
)  # fmt: skip
def test_recipe_values_are_checked(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        Recipe(**kwargs)


def test_train_model_with_the_darts_recipe_keeps_the_architectures_state_dict():
    _, arch = _darts_arch()
    data = load_dataset("synthetic", seed=0, val_fraction=0.25, **SYNTHETIC)
    model = build_model(arch)
    keys = set(model.state_dict())
    result = train_model(model, data, epochs=2, batch_size=16, seed=0, recipe=DARTS_RECIPE)
    assert set(model.state_dict()) == keys, "no auxiliary head or hook state left in the model"
    assert result.steps == 2 * (72 // 16)
    assert all(not m._forward_hooks for m in model.modules()), "hooks removed"
    plain = train_model(build_model(arch), data, epochs=2, batch_size=16, seed=0)
    assert result.history[0]["train_loss"] != plain.history[0]["train_loss"]


def test_train_model_refuses_drop_path_on_a_resnet():
    space = get_space(
        "resnet", candidates=["conv_3x3"], depth=8, widths=[4, 4, 8], num_classes=4,
        input_shape=[3, 8, 8],
    )  # fmt: skip
    data = load_dataset("synthetic", seed=0, val_fraction=0.25, **SYNTHETIC)
    model = build_model(space.architecture([0] * len(space.decisions())))
    with pytest.raises(ConfigError, match="DARTS cell networks"):
        train_model(model, data, epochs=1, batch_size=16, recipe=Recipe(drop_path=0.2))
    cutout_only = train_model(model, data, epochs=1, batch_size=16, recipe=Recipe(cutout=4))
    assert cutout_only.steps == 72 // 16


def test_convnas_train_recipe_darts_fills_unset_flags_and_records_them(tmp_path, capsys):
    _, arch = _darts_arch()
    path = tmp_path / "darts_final.yaml"
    arch.save(path)
    argv = ["train", str(path), "--data", "synthetic", "--no-progress", "--recipe", "darts"]
    for key, value in SYNTHETIC.items():
        argv += ["--data-option", f"{key}={value}"]
    argv += ["--epochs", "1", "--batch-size", "16", "--val-fraction", "0.25"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    settings = json.loads((tmp_path / "out" / "train_result.json").read_text())["settings"]
    assert settings["epochs"] == 1 and settings["batch_size"] == 16  # given flags win
    assert settings["lr"] == 0.025 and settings["weight_decay"] == 3e-4  # the recipe's
    assert (settings["drop_path"], settings["auxiliary_weight"]) == (0.2, 0.4)
    assert (settings["cutout"], settings["grad_clip"], settings["recipe"]) == (16, 5.0, "darts")
    assert main([*argv, "--drop-path", "0", "--out", str(tmp_path / "o2")]) == 0
    settings = json.loads((tmp_path / "o2" / "train_result.json").read_text())["settings"]
    assert settings["drop_path"] == 0.0 and settings["cutout"] == 16
