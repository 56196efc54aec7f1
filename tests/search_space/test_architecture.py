from __future__ import annotations

import pytest
import torch

from convnas.errors import ArchitectureError
from convnas.search_space import Architecture, build_model, get_space, load_architecture, space_of

SETTINGS = {"depth": 8, "widths": [4, 8, 8], "input_shape": [3, 8, 8]}


def _arch() -> Architecture:
    space = get_space("resnet", candidates=["conv_3x3", "conv_1x1"], **SETTINGS)
    return space.architecture([0, 1, 1, 0, 0, 1], {"accuracy": 0.5})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_through_files_and_build(tmp_path, suffix):
    arch = _arch()
    path = arch.save(tmp_path / f"a{suffix}")
    loaded = load_architecture(path)
    assert loaded == arch and loaded.same_network(arch)
    assert loaded.metadata["accuracy"] == 0.5
    assert loaded.ops_used() == {"conv_1x1": 3, "conv_3x3": 3}
    model = build_model(loaded)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert model.blocks[0].conv2.kernel_size == (1, 1)


def _edit(arch: Architecture, **changes) -> dict:
    data = arch.to_dict()
    data.update(changes)
    return data


def _full(data):
    """Validate as loading a file does: the structure, then against the space it names."""
    arch = Architecture.from_dict(data)
    arch.validate(space_of(arch))
    return arch


def test_validation_names_the_field():
    good = _arch().to_dict()
    bad_op = _arch().to_dict()
    bad_op["choices"][2]["op"] = "conv_3x33"
    with pytest.raises(ArchitectureError, match=r"choices\[2\]\.op: .*did you mean 'conv_3x3'"):
        Architecture.from_dict(bad_op)
    bad_hp = _arch().to_dict()
    bad_hp["choices"][0]["hparams"] = {"width": 3}
    with pytest.raises(ArchitectureError, match=r"choices\[0\]\.hparams: .*'width'"):
        Architecture.from_dict(bad_hp)
    short = dict(good, choices=good["choices"][:-1])
    with pytest.raises(ArchitectureError, match="has 6 decisions but the architecture makes 5"):
        _full(short)
    with pytest.raises(ArchitectureError, match="schema"):
        Architecture.from_dict(dict(good, schema="convnas/architecture/v0"))
    with pytest.raises(ArchitectureError, match="space: unknown search space 'resnett'"):
        _full(dict(good, space="resnett"))
    with pytest.raises(ArchitectureError, match="settings: depth"):
        _full(dict(good, settings=dict(good["settings"], depth=9)))
    with pytest.raises(ArchitectureError, match="unknown top-level"):
        Architecture.from_dict(dict(good, extra=1))


def test_truncated_and_tampered_files_are_rejected(tmp_path):
    path = _arch().save(tmp_path / "a.yaml")
    text = path.read_text()
    (tmp_path / "cut.yaml").write_text(text[: len(text) // 2])
    with pytest.raises(ArchitectureError, match="cut.yaml"):
        load_architecture(tmp_path / "cut.yaml")
    (tmp_path / "evil.yaml").write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ArchitectureError, match="not valid YAML"):
        load_architecture(tmp_path / "evil.yaml")
    with pytest.raises(ArchitectureError, match="not found"):
        load_architecture(tmp_path / "missing.yaml")


def test_operator_that_cannot_serve_a_position_is_rejected():
    data = _arch().to_dict()
    data["choices"][2]["op"] = "max_pool_3x3"  # conv2 is the strided 4->8 position
    with pytest.raises(ArchitectureError, match="cannot serve decision 'conv2'"):
        _full(data)
