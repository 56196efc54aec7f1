from __future__ import annotations

import pytest
from torch import nn

import convnas
from convnas.errors import DuplicateNameError, OperatorArgumentError, UnknownOperatorError
from convnas.operators import OPERATORS, create_operator, list_operators, register_operator
from convnas.registry import Registry


def _factory(
    in_channels, out_channels, stride, *, context=None, device=None, dtype=None, width: int = 3
):
    return nn.Conv2d(in_channels, out_channels, width, stride, width // 2, bias=False)


def test_register_create_list_info_and_temporary_undo():
    with OPERATORS.temporary():
        register_operator("test_op", family="test", kind="conv", search_space={"width": (1, 3)})(
            _factory
        )
        assert "test_op" in list_operators("test_*")
        assert list_operators(family="test") == ["test_op"]
        info = convnas.operator_info("test_op")
        assert info.search_space == {"width": (1, 3)}
        assert info.hparam_defaults() == {"width": 3}
        m = create_operator("test_op", 4, 6, 2, width=1)
        assert m.kernel_size == (1, 1) and m.stride == (2, 2)
    assert "test_op" not in list_operators()


def test_duplicate_raises_unless_replace():
    with OPERATORS.temporary():
        with pytest.raises(DuplicateNameError, match="already registered"):
            register_operator("conv_3x3", family="x", kind="conv")(_factory)
        register_operator("conv_3x3", family="x", kind="conv", replace=True)(_factory)
        assert convnas.operator_info("conv_3x3").family == "x"
    assert convnas.operator_info("conv_3x3").family == "dense"


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownOperatorError, match="did you mean 'conv_3x3'"):
        convnas.operator_info("conv_3x")
    with pytest.raises(KeyError):  # also a KeyError for callers that do not know convnas
        create_operator("nope_op", 4, 4)


def test_filters_by_kind_and_family():
    convs = set(list_operators(kind="conv"))
    blocks = set(list_operators(kind="block"))
    assert {"conv_3x3", "conv_1x1"} <= convs
    assert {"none", "skip_connect", "avg_pool_3x3", "max_pool_3x3"} <= blocks
    assert not convs & blocks
    assert set(list_operators(family="darts")) >= {"sep_conv_3x3", "dil_conv_5x5"}
    with pytest.raises(OperatorArgumentError, match="kind must be one of"):
        list_operators(kind="conv2d")


def test_bad_arguments_name_the_value_and_the_rule():
    with pytest.raises(OperatorArgumentError, match=r"stride in \(1, 2\), but got stride=3"):
        create_operator("conv_3x3", 4, 4, 3)
    with pytest.raises(OperatorArgumentError, match="in_channels == out_channels"):
        create_operator("max_pool_3x3", 4, 8, 1)
    with pytest.raises(OperatorArgumentError, match="has no hyper-parameter 'bogus'"):
        create_operator("conv_3x3", 4, 4, bogus=1)
    with pytest.raises(OperatorArgumentError, match="positive int"):
        create_operator("conv_3x3", 0, 4)


def test_search_space_must_match_factory_arguments():
    with OPERATORS.temporary(), pytest.raises(OperatorArgumentError, match="does not accept"):
        register_operator("bad_space", family="t", kind="conv", search_space={"depth": (1, 2)})(
            _factory
        )


def test_generic_registry_entry_points_and_loader():
    calls = []
    reg: Registry[int] = Registry("thing", loader=lambda: calls.append(1))
    reg.add("a", 1)
    assert calls == [1]
    assert reg.get("a") == 1 and len(reg) == 1 and list(reg) == ["a"]
    assert reg.names("?") == ["a"]
    assert reg.remove("a") == 1 and "a" not in reg
