"""Every export format, loaded back the documented way, scores what training scored."""

from __future__ import annotations

import json

import pytest
import torch

import convnas
from convnas.cli import main
from convnas.data import load_dataset
from convnas.run.export import ExportedModel, load_exported
from convnas.search_space import get_space

DIGITS_MEAN, DIGITS_STD = 0.3053, 0.3760


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits network trained one epoch with `convnas train`, and its result."""
    root = tmp_path_factory.mktemp("formats")
    space = get_space(
        "resnet",
        candidates=["conv_3x3", "do_conv_3x3"],  # do_conv folds: exports differ from training
        depth=8,
        widths=[4, 4, 8],
        num_classes=10,
        input_shape=[1, 8, 8],
    )
    arch_file = root / "arch.yaml"
    space.architecture([1] * len(space.decisions())).save(arch_file)
    out = root / "trained"
    args = ["train", str(arch_file), "--data", "digits", "--epochs", "1", "--batch-size", "32"]
    args += ["--val-fraction", "0.25", "--device", "cpu", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "train_result.json").read_text())
    data = {k: v for k, v in result["data"].items() if k != "name"}
    val = load_dataset(result["data"]["name"], **data).val
    x, y = val.get_batch(torch.arange(len(val)))
    raw = val.images[torch.arange(len(val))].float() / val.pixel_max  # pixels in [0, 1]
    return out, result["val_accuracy"], x, raw, y


def _accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _export(out, *formats, extra=()):
    target = out / ("exp_norm" if extra else "exp")
    args = ["export", "--weights", str(out / "model.pt"), "--format", *formats]
    assert main([*args, "--out", str(target), *extra]) == 0
    return target


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_each_format_reloads_to_the_training_accuracy(trained, capsys):
    out, val_accuracy, x, raw, y = trained
    assert val_accuracy > 0.3  # trained, so equal accuracies are no accident of chance
    exp = _export(out, "state_dict", "torchscript")
    assert "untrained" not in capsys.readouterr().out

    # state_dict: the documented plain-PyTorch way
    model = convnas.build_model(convnas.load_architecture(exp / "trained.yaml"))
    model.load_state_dict(torch.load(exp / "trained.pt"))
    assert _accuracy(model.eval(), x, y) == pytest.approx(val_accuracy, abs=1e-6)

    scripted = torch.jit.load(str(exp / "trained.torchscript.pt"))
    assert _accuracy(scripted, x, y) == pytest.approx(val_accuracy, abs=1e-6)
    for loaded in (load_exported(exp / "trained.pt"), load_exported(out / "model.pt")):
        assert isinstance(loaded, ExportedModel)
        assert _accuracy(loaded, x, y) == pytest.approx(val_accuracy, abs=1e-6)

    # the input contract travels with the module, TorchScript included
    for module in (scripted, load_exported(exp / "trained.pt")):
        assert module.input_shape.tolist() == [1, 8, 8]
        torch.testing.assert_close(module.input_mean, torch.tensor([DIGITS_MEAN]))
        torch.testing.assert_close(module.input_std, torch.tensor([DIGITS_STD]))
        assert not bool(module.normalizes_input)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_normalize_takes_raw_pixels(trained):
    out, val_accuracy, x, raw, y = trained
    exp = _export(out, "torchscript", extra=["--normalize"])
    scripted = torch.jit.load(str(exp / "trained.torchscript.pt"))
    assert bool(scripted.normalizes_input)
    assert _accuracy(scripted, raw, y) == pytest.approx(val_accuracy, abs=1e-6)
    loaded = load_exported(out / "model.pt", normalize=True)
    assert _accuracy(loaded, raw, y) == pytest.approx(val_accuracy, abs=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(scripted(raw), loaded(raw), atol=1e-5, rtol=1e-5)


def test_onnx_records_the_normalisation(trained):
    onnx = pytest.importorskip("onnx")
    out, *_ = trained
    exp = _export(out, "onnx")
    proto = onnx.load(str(exp / "trained.onnx"))
    props = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert props["input_shape"] == [1, 8, 8] and props["input_mean"] == [DIGITS_MEAN]
    assert props["normalizes_input"] is False


def test_an_architecture_file_exports_directly(trained, tmp_path, capsys):
    out, val_accuracy, x, raw, y = trained
    arch_file = out / "architecture.yaml"
    assert main(["export", str(arch_file), "--format", "state_dict", "--out", str(tmp_path)]) == 0
    assert "untrained" in capsys.readouterr().out
    assert (tmp_path / "architecture.pt").is_file()

    weighted = tmp_path / "weighted"
    args = ["export", str(arch_file), "--weights", str(out / "model.pt"), "--format", "state_dict"]
    assert main([*args, "--out", str(weighted)]) == 0
    assert "untrained" not in capsys.readouterr().out
    loaded = load_exported(weighted / "architecture.pt")
    assert _accuracy(loaded, x, y) == pytest.approx(val_accuracy, abs=1e-6)
    # a plain state dict works as --weights of its architecture, too
    again = tmp_path / "again"
    plain = ["--weights", str(weighted / "architecture.pt"), "--format", "state_dict"]
    assert main(["export", str(arch_file), *plain, "--out", str(again)]) == 0
    assert _accuracy(load_exported(again / "architecture.pt"), x, y) == pytest.approx(
        val_accuracy, abs=1e-6
    )
    assert main(["export", str(arch_file), "--pareto"]) == 2
    assert "run directory" in capsys.readouterr().err
