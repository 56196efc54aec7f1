from __future__ import annotations

import csv
import sys

import pytest
import torch

from convnas.errors import CheckpointError, ConfigError, OptionalDependencyError
from convnas.io import save_checkpoint
from convnas.run.export import (
    build_seeded,
    deploy_model,
    example_input,
    export_architecture,
    load_exported,
    load_trained,
    run_architectures,
    save_trained,
)
from convnas.search_space import get_space
from tests.report.test_report import tiny_optuna_run

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tiny_optuna_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def pareto(run):
    return run_architectures(run, pareto=True)


def _trained(arch):
    """A network whose weights and BN statistics differ from any fresh initialisation."""
    model = build_seeded(arch, seed=123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.train()
        model(example_input(arch, batch_size=8) * 2 + 0.5)  # moves BN running statistics
    return model.eval()


def test_state_dict_export_of_a_run_trial_equals_the_runs_model(run, pareto, tmp_path):
    name, arch = pareto[0]
    path = export_architecture(arch, tmp_path, "state_dict", name=name, seed=7)
    assert path.with_suffix(".yaml").is_file()
    loaded = load_exported(path)
    reference = build_seeded(arch, seed=7).eval()
    x = torch.randn(3, *arch.settings["input_shape"])
    with torch.no_grad():
        assert torch.equal(loaded(x), deploy_model(reference)(x))
        torch.testing.assert_close(loaded(x), reference(x), atol=1e-5, rtol=1e-4)  # fold exact


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_trained_weights_roundtrip_through_every_format(pareto, tmp_path):
    arch = next(a for _, a in pareto if "do_conv_3x3" in a.ops_used())  # a folding operator
    model = _trained(arch)
    weights = save_trained(tmp_path / "train" / "model.pt", model, arch, metrics={"x": 1.0})
    assert (tmp_path / "train" / "architecture.yaml").is_file()
    reloaded, arch2 = load_trained(weights)
    assert arch2.same_network(arch) and arch2.metadata["trained_metrics"] == {"x": 1.0}
    x = torch.randn(4, *arch.settings["input_shape"])
    with torch.no_grad():
        expected = deploy_model(model)(x)
        assert torch.equal(reloaded(x), model(x))
        state = reloaded.state_dict()
        sd = load_exported(export_architecture(arch, tmp_path, "state_dict", state_dict=state))
        assert torch.equal(sd(x), expected)
        ts_path = export_architecture(arch, tmp_path, "torchscript", state_dict=state)
        scripted = torch.jit.load(str(ts_path))
        assert isinstance(load_exported(ts_path), torch.jit.ScriptModule)
        torch.testing.assert_close(scripted(x), expected, atol=1e-6, rtol=1e-6)
        assert not torch.allclose(expected, deploy_model(build_seeded(arch))(x))


def test_onnx_export_reproduces_the_folded_model(pareto, tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx.reference import ReferenceEvaluator

    _, arch = pareto[-1]
    model = _trained(arch)
    path = export_architecture(arch, tmp_path, "onnx", state_dict=model.state_dict())
    x = torch.randn(2, *arch.settings["input_shape"])  # a batch size other than the traced one
    (out,) = ReferenceEvaluator(onnx.load(str(path))).run(None, {"input": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(
            torch.from_numpy(out), deploy_model(model)(x), atol=1e-4, rtol=1e-4
        )
    with pytest.raises(CheckpointError, match="ONNX runtime"):
        load_exported(path)


def test_onnx_without_the_package_names_the_extra(pareto, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(OptionalDependencyError, match=r'pip install "convnas\[onnx\]"'):
        export_architecture(pareto[0][1], tmp_path, "onnx")
    assert not list(tmp_path.iterdir())


def test_a_trial_off_the_front_comes_from_the_study(run):
    with open(run / "trials.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["state"] == "COMPLETE"]
    on_front = {p.stem for p in (run / "architectures").glob("pareto_*.yaml")}
    row = next(r for r in rows if f"pareto_{int(r['number']):04d}" not in on_front)
    ((name, arch),) = run_architectures(run, trial=int(row["number"]))
    assert name == f"trial_{int(row['number']):04d}"
    assert " ".join(c.op for c in arch.choices) == row["operators"]
    assert arch.metadata["metrics"]["params"] == float(row["params"])


def test_selection_and_loading_errors(run, tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        run_architectures(run)
    with pytest.raises(ConfigError, match="but got trial 999"):
        run_architectures(run, trial=999)
    with pytest.raises(ConfigError, match="does not exist"):
        run_architectures(tmp_path / "missing", pareto=True)
    with pytest.raises(ConfigError, match="export format"):
        export_architecture(run_architectures(run, pareto=True)[0][1], tmp_path, "pickle")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)  # a plain torch file, not ours
    with pytest.raises(CheckpointError):
        load_exported(foreign)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"kind": "something/else", "weights": torch.zeros(2)})
    with pytest.raises(CheckpointError, match="not a convnas export"):
        load_exported(other)
    with pytest.raises(CheckpointError, match="not a trained convnas model"):
        load_trained(other)


def test_torchscript_export_of_c2sp(tmp_path):
    space = get_space(
        "resnet",
        candidates=["c2sp"],
        depth=8,
        widths=[4, 4, 8],
        num_classes=3,
        input_shape=[3, 8, 8],
    )
    arch = space.architecture([0] * len(space.decisions()))
    path = export_architecture(arch, tmp_path, "torchscript")
    x = example_input(arch, 2)
    torch.testing.assert_close(load_exported(path)(x), deploy_model(build_seeded(arch))(x))
