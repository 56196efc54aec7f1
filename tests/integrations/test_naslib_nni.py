"""NASLib's and NNI's published interfaces, reproduced without their code.

NASLib rebuilds an op as ``type(op)(**op.init_params)`` after editing ``C_in``/``C_out``
(``PartialConnectionOp``, hierarchical spaces) or ``affine``/``track_running_stats``
(discretization), walks ``get_embedded_ops()`` and names ops by ``get_op_name``. The real NASLib
and NNI are used where importable; otherwise those tests skip, saying why.
"""

from __future__ import annotations

import builtins
import copy
import importlib
import importlib.util

import pytest
import torch
from torch import nn

from convnas.errors import OptionalDependencyError
from convnas.integrations import naslib, nni

NAMES = ["none", "skip_connect", "c2sp", "osep_3x3", "conv_3x3"]
HAS_NASLIB = naslib.naslib_available()


def _bns(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_init_params_hold_every_constructor_argument():
    p = naslib.primitive("c2sp", 16, 32, 2, hparams={"c2sp": {}})
    assert {"name", "C_in", "C_out", "stride", "affine", "track_running_stats"} <= set(
        p.init_params
    )
    assert (p.init_params["C_in"], p.init_params["C_out"], p.init_params["stride"]) == (16, 32, 2)
    again = type(p)(**p.init_params)
    assert type(again) is type(p) and again.init_params == p.init_params
    x = torch.randn(2, 16, 8, 8)
    assert again(x, None).shape == p(x, None).shape == (2, 32, 4, 4)


@pytest.mark.parametrize("k", [2, 4])
def test_partial_connection_rebuild_at_fewer_channels(k):
    """PartialConnectionOp: C_in //= k, C_out //= k, then primitive.__class__(**init_params)."""
    for p in naslib.primitives(16, 16, 1, include=NAMES):
        params = p.init_params  # NASLib edits this dict in place
        params["C_in"] //= k
        params["C_out"] //= k
        small = p.__class__(**params)
        x = torch.randn(2, 16 // k, 8, 8)
        assert small(x, None).shape == (2, 16 // k, 8, 8), small.get_op_name
        assert small.get_op_name == p.get_op_name


def test_increase_channels_and_affine_rebuild():
    """Hierarchical spaces multiply C_in/C_out; NB201 discretization sets affine=True."""
    p = naslib.primitive("osep_3x3", 8)
    params = dict(p.init_params)
    params["C_in"] *= 4
    params["C_out"] *= 4
    params["affine"] = True
    params["track_running_stats"] = True
    big = type(p)(**params)
    assert big(torch.randn(1, 32, 6, 6)).shape == (1, 32, 6, 6)
    assert not any(m.affine for m in _bns(p))
    assert _bns(big) and all(m.affine for m in _bns(big))


def test_embedded_ops_name_and_deepcopy():
    prims = naslib.primitives(8, 8, 1, include=NAMES)
    assert all(p.get_embedded_ops() is None for p in prims)
    assert sorted(p.get_op_name for p in prims) == sorted(NAMES)
    clone = copy.deepcopy(prims[2])  # NASLib's graph.clone()
    x = torch.randn(1, 8, 5, 5)
    torch.testing.assert_close(clone(x, None), prims[2](x, None))


def test_without_naslib_the_class_is_the_duck_typed_one(monkeypatch):
    monkeypatch.setattr(naslib, "_NASLIB_CLASS", None)
    real_import = builtins.__import__

    def no_naslib(name, *args, **kwargs):
        if name == "naslib" or name.startswith("naslib."):
            raise ModuleNotFoundError(f"No module named {name!r}", name="naslib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_naslib)
    assert not naslib.naslib_available()
    assert naslib.primitive_class() is naslib.ConvNASPrimitive
    assert type(naslib.primitive("c2sp", 8)) is naslib.ConvNASPrimitive


@pytest.mark.skipif(not HAS_NASLIB, reason="naslib is not installed (not on PyPI; from git)")
def test_real_naslib_accepts_the_primitives():
    from naslib.search_spaces.core.primitives import AbstractPrimitive, PartialConnectionOp

    prims = naslib.primitives(16, 16, 1, include=NAMES)
    assert all(isinstance(p, AbstractPrimitive) for p in prims)
    assert all(isinstance(p, naslib.ConvNASPrimitive) for p in prims)

    class Mixed(AbstractPrimitive):  # NASLib's MixedOp interface, uniform weights
        def __init__(self, primitives):
            super().__init__(locals())
            self.primitives = nn.ModuleList(primitives)

        def forward(self, x, edge_data=None):
            return sum(p(x, edge_data) for p in self.primitives) / len(self.primitives)

        def get_embedded_ops(self):
            return list(self.primitives)

        def set_embedded_ops(self, primitives):
            self.primitives = nn.ModuleList(primitives)

    pc = PartialConnectionOp(Mixed(prims), k=4)
    assert pc(torch.randn(2, 16, 8, 8), None).shape == (2, 16, 8, 8)
    assert [p.init_params["C_in"] for p in pc.get_embedded_ops()] == [4] * len(NAMES)


def test_nni_names_the_missing_module_nni_imports(monkeypatch):
    real_import = importlib.import_module

    def lightning_missing(name, *args, **kwargs):
        if name.startswith("nni"):
            raise ModuleNotFoundError(
                "No module named 'pytorch_lightning'", name="pytorch_lightning"
            )
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", lightning_missing)
    with pytest.raises(OptionalDependencyError, match="pytorch_lightning") as info:
        nni.layer_choice_class()
    assert "'nni'" not in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_nni_missing_itself_is_named(monkeypatch):
    real_import = importlib.import_module

    def nni_missing(name, *args, **kwargs):
        if name.startswith("nni"):
            raise ModuleNotFoundError("No module named 'nni'", name="nni")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", nni_missing)
    with pytest.raises(OptionalDependencyError, match="'nni'.*pip install nni"):
        nni.layer_choice_class()


def _nni3_usable():
    if importlib.util.find_spec("nni") is None:
        return False
    try:
        nni.layer_choice_class()
        from nni.nas.nn.pytorch import ModelSpace  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _nni3_usable(), reason="NNI 3 (nni.nas.nn.pytorch) is not importable")
def test_real_nni3_model_space():
    from nni.nas.nn.pytorch import ModelSpace

    class Net(ModelSpace):
        def __init__(self):
            super().__init__()
            self.conv = nni.layer_choice(
                8, 16, 2, include=["conv_3x3", "c2sp"], bare=True, label="b1"
            )

        def forward(self, x):
            return self.conv(x)

    space = Net()
    assert list(space.simplify()) == ["b1"]
    net = space.freeze({"b1": "c2sp"})
    assert net(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
