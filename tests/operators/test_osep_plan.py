"""The osep planner against the hand checks and tables of OPERATORS.md section 3."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convnas
from convnas.errors import OperatorArgumentError
from convnas.operators.osep_plan import POLICIES, osep_plan


def _padded(cin, cout, g, k):
    """Step 7's padded count: g * ceil(C_l+1 / g) * ceil(C_l / g) * k_l."""
    return g * math.ceil(cout / g) * math.ceil(cin / g) * k


# --- section 3.3, hand checks (C = 64, N = 2, gamma = 1) ---------------------------------


def test_hand_check_k3_non_spatial():
    p = osep_plan(64, 64, 3)
    assert p.kernels == ((3, 3), (1, 1))
    assert p.n_continuous == pytest.approx((64 / 24, 24.0), rel=1e-12)  # 1536/576, 1536/64
    assert p.continuous_params == pytest.approx(3072) == 2 * math.sqrt(64**3 * 9)
    assert p.groups == (22, 3)
    assert p.layer_params == (1782, 1452) and p.params == 3234
    assert p.dense_params == 36_864 and round(p.saving, 1) == 11.4
    assert p.channels_per_group == (3, 22) and 3 * 22 == 66 >= 64
    assert p.macs_per_pixel == 3234


def test_hand_check_k5_non_spatial():
    p = osep_plan(64, 64, 5)
    assert p.n_continuous == pytest.approx((1.6, 40.0), rel=1e-12)
    assert p.continuous_params == pytest.approx(5120)
    assert p.groups == (32, 2) and p.layer_params == (3200, 2048) and p.params == 5248
    assert p.dense_params == 102_400 and round(p.saving, 1) == 19.5
    assert math.prod(p.channels_per_group) == 64  # the condition met exactly


@pytest.mark.parametrize("k", [3, 5])
def test_hand_check_spatial(k):
    p = osep_plan(64, 64, k, spatial=True)
    assert p.kernels == ((k, 1), (1, k))
    assert p.groups == (8, 8) and p.params == 2 * 64 * 8 * k
    assert p.continuous_params == pytest.approx(p.params)


@pytest.mark.parametrize(
    ("k", "groups", "layer_params"), [(3, (24, 3), (1944, 1452)), (5, (40, 2), (4000, 2048))]
)
def test_rule_a_groups_as_preset_give_the_padded_counts(k, groups, layer_params):
    # Section 3.3's literal rule (a) groups, fed in as masked groups: 3396 and 6048.
    p = osep_plan(64, 64, k, groups=groups)
    assert p.groups == groups and p.layer_params == layer_params


@pytest.mark.parametrize(
    ("k", "n", "spatial", "kernels", "groups", "params"),
    [
        (3, 3, False, ((3, 3), (1, 1), (1, 1)), (64, 8, 8), 1600),
        (3, 4, False, ((1, 1), (3, 3), (1, 1), (1, 1)), (16, 64, 16, 16), 1344),
        (
            3,
            6,
            True,
            ((1, 1), (1, 1), (3, 1), (1, 3), (1, 1), (1, 1)),
            (22, 22, 64, 64, 22, 22),
            1176,
        ),
        (5, 4, False, ((1, 1), (5, 5), (1, 1), (1, 1)), (16, 64, 16, 16), 2368),
        (5, 5, True, ((1, 1), (5, 1), (1, 5), (1, 1), (1, 1)), (16, 64, 64, 16, 16), 1408),
    ],
)
def test_hand_check_larger_n_table(k, n, spatial, kernels, groups, params):
    p = osep_plan(64, 64, k, n_sep=n, spatial=spatial)
    assert p.kernels == kernels and p.groups == groups and p.params == params
    assert p.params < {3: 3234, 5: 5248}[k]


def test_figure2_saddle_point_and_boundary_optimum():
    def f(g1, k1):  # section 3.3, C = 64, K = 5, K_1 + K_2 - 1 = 5, g_2 = 64 / g_1
        return 4096 * k1**2 / g1 + 64 * g1 * (6 - k1) ** 2

    h = 1e-4
    assert f(8, 3) == 9216
    assert abs(f(8 + h, 3) - f(8 - h, 3)) / (2 * h) < 1e-6  # stationary in g_1 ...
    assert abs(f(8, 3 + h) - f(8, 3 - h)) / (2 * h) < 1e-6  # ... and in K_1
    f_gg = (f(8 + h, 3) - 2 * f(8, 3) + f(8 - h, 3)) / h**2
    f_kk = (f(8, 3 + h) - 2 * f(8, 3) + f(8, 3 - h)) / h**2
    f_gk = (f(8 + h, 3 + h) - f(8 + h, 3 - h) - f(8 - h, 3 + h) + f(8 - h, 3 - h)) / (4 * h * h)
    assert f_gg * f_kk - f_gk**2 < 0  # indefinite Hessian: a saddle, not a minimum
    saddle = osep_plan(64, 64, 5, kernels=(3, 3), groups=(8, None))
    assert saddle.groups == (8, 8) and saddle.params == 9216
    assert saddle.continuous_params == pytest.approx(9216)
    boundary = osep_plan(64, 64, 5, kernels=(5, 1))
    assert boundary.continuous_params == pytest.approx(5120) == min(f(40, 5), f(8, 3))
    assert osep_plan(64, 64, 5, spatial=True).params == 5120


@pytest.mark.parametrize(("k", "n_star", "bound"), [(3, 6.356, 1105.8), (5, 7.378, 1283.5)])
def test_optimal_n_bound(k, n_star, bound):
    assert math.log(64 * k * k) == pytest.approx(n_star, abs=5e-4)
    assert math.e * 64 * math.log(64 * k * k) == pytest.approx(bound, abs=0.05)
    best = min(osep_plan(64, 64, k, n_sep=n).continuous_params for n in range(1, 16))
    assert bound <= best < 1.01 * bound


# --- section 3.6, per-layer vectors --------------------------------------------------------


@pytest.mark.parametrize(
    ("cin", "cout", "groups", "layer_params"),
    [
        (58, 58, (20, 3), (1620, 1200)),
        (116, 116, (29, 4), (4176, 3364)),
        (232, 232, (39, 6), (12636, 9126)),
        (58, 116, (15, 4), (2160, 1740)),
        (116, 232, (20, 6), (6480, 4680)),
        (16, 16, (8, 2), (288, 128)),
        (16, 32, (8, 2), (288, 256)),
        (32, 64, (11, 3), (891, 726)),
    ],
)
def test_table_3_6_vectors(cin, cout, groups, layer_params):
    p = osep_plan(cin, cout, 3)
    assert p.internal_channels == (cin,)
    assert p.groups == groups and p.layer_params == layer_params
    assert p.params == sum(layer_params)


# --- the rest of Algorithm 1 ----------------------------------------------------------------


def test_channel_policies():
    mids = {pol: osep_plan(16, 32, 3, n_sep=3, policy=pol).internal_channels for pol in POLICIES}
    assert mids == {"min": (16, 16), "linear": (24, 24), "bottleneck": (8, 8), "inverted": (64, 64)}


def test_rectangular_kernels():
    assert osep_plan(32, 32, (3, 5)).kernels == ((3, 5), (1, 1))
    assert osep_plan(32, 32, (3, 5), spatial=True).kernels == ((3, 1), (1, 5))
    assert osep_plan(32, 32, (3, 5), n_sep=4, spatial=True).kernels[1:3] == ((3, 1), (1, 5))
    assert osep_plan(32, 32, (3, 5)).dense_params == 32 * 32 * 15


def test_masked_reoptimisation_iterates_to_a_fixed_point():
    # channels (3, 3, 3, 3, 6), kernels 1, 5x5, 1, 1. Round 1 pins g = (1, 3, 1, .); with
    # n = (3, 1, 3) fixed, round 2 gives n_4 = 1/3, so C_4 / n_4 = 9 > 3 pins g_4 = 3.
    p = osep_plan(3, 6, 5, n_sep=4)
    assert p.groups == (1, 3, 1, 3)
    assert p.n_continuous == pytest.approx((3.0, 1.0, 3.0, 1.0))
    assert p.params == 9 + 75 + 9 + 6


def test_preset_groups_are_kept_and_the_rest_re_solved():
    p = osep_plan(64, 64, 3, groups=(None, 4))
    assert p.groups[1] == 4 and p.n_continuous[1] == 16
    # n_1 = gamma C_1 / n_2 = 4, so g_1 = 16
    assert p.n_continuous[0] == pytest.approx(4.0) and p.groups[0] == 16


def test_auto_is_cheapest_over_all_n_and_ties_go_to_fewer_layers():
    for k, spatial in [(3, False), (3, True), (5, False), (5, True), ((3, 5), False)]:
        p = osep_plan(64, 64, k, n_sep="auto", spatial=spatial)
        every = [
            osep_plan(64, 64, k, n_sep=n, spatial=spatial).params
            for n in range(2 if spatial else 1, 25)
        ]
        assert p.params == min(every) and p.candidates
        assert (p.n_sep, p.params) in p.candidates
    # N = 4 and N = 7 both give 1344 for K = 3: the smaller N wins.
    assert osep_plan(64, 64, 3, n_sep="auto").n_sep == 4


def test_layer_description_padding_shuffle_and_stride():
    p = osep_plan(64, 64, 3, stride=2)
    first, second = p.layers
    assert (first.stride, second.stride) == ((2, 2), (1, 1))
    assert (first.padded_in, first.padded_out, first.in_pad, first.out_drop) == (66, 66, 2, 2)
    # shuffle with g = 22 on 66 channels (reshape (22, 3), transpose), then keep 64
    expected = [(t % 22) * 3 + t // 22 for t in range(64)]
    assert first.shuffle and list(first.output_index) == expected
    assert not second.shuffle and second.output_index == tuple(range(64))
    assert p.macs(32, 32) == 3234 * 16 * 16
    spatial = osep_plan(8, 8, 3, spatial=True, stride=2)
    assert [layer.stride for layer in spatial.layers] == [(2, 1), (1, 2)]
    assert spatial.macs(9, 9) == spatial.layer_params[0] * 5 * 9 + spatial.layer_params[1] * 25
    deep = osep_plan(64, 64, 3, n_sep=4, stride=2)
    assert [layer.stride for layer in deep.layers] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    assert deep.macs_per_pixel == 4 * 256 + 576 + 256 + 256


def test_to_dict_is_json_and_public_api():
    p = convnas.osep_plan(64, 64, 3, n_sep="auto")
    data = json.loads(json.dumps(p.to_dict()))
    assert data["groups"] == list(p.groups) and data["params"] == 1344
    assert data["kernels"][1] == [3, 3] and data["layers"][1]["groups"] == 64
    assert data["saving"] == pytest.approx(36864 / 1344) and data["dsep_params"] == 4672
    assert isinstance(p, convnas.OSepPlan)
    with pytest.raises(AttributeError):
        p.params = 1  # frozen


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0, 8, 3), {}, "in_channels must be a positive int"),
        ((8, -1, 3), {}, "out_channels"),
        ((8, 8, 0), {}, "kernel_size"),
        ((8, 8, (3, 0)), {}, "kernel_size"),
        ((8, 8, 3), {"gamma": 0}, "gamma must be a number > 0"),
        ((8, 8, 3), {"gamma": -1.0}, "gamma"),
        ((8, 8, 3), {"gamma": float("nan")}, "gamma"),
        ((8, 8, 3), {"n_sep": 0}, "n_sep must be an int >= 1"),
        ((8, 8, 3), {"n_sep": "many"}, "n_sep"),
        ((8, 8, 3), {"policy": "max"}, "policy must be one of"),
        ((8, 8, 3), {"n_sep": 1, "spatial": True}, "needs n_sep >= 2"),
        ((8, 8, 3), {"kernels": (3,)}, "one kernel per layer"),
        ((8, 8, 5), {"kernels": (3, 1)}, "receptive field"),
        ((8, 8, 3), {"groups": (9, None)}, "groups\\[0\\]"),
        ((8, 8, 3), {"groups": (1,)}, "one entry"),
        ((8, 8, 3), {"n_sep": "auto", "groups": (1, None)}, "auto"),
        ((8, 8, 3), {"stride": 0}, "stride"),
    ],
)
def test_invalid_requests_raise(args, kwargs, match):
    with pytest.raises(OperatorArgumentError, match=match):
        osep_plan(*args, **kwargs)


def test_padded_condition_is_not_guaranteed_outside_the_verified_domain():
    # Rule 6b keeps the padded channel condition for C_out >= C_in and gamma <= 1 (the sweep
    # below), not always: when channels shrink, ceil(C_l / ceil(C_l / n)) can fall below n.
    p = osep_plan(8, 4, 1)  # n = (2.83, 2.83) -> (3, 3) -> g = (3, 2) -> padded (3, 2)
    assert p.groups == (3, 2) and math.prod(p.channels_per_group) == 6 < 8


# --- properties ------------------------------------------------------------------------------

KERNELS = st.sampled_from([(3, 3), (5, 5), (7, 7), (3, 5), (5, 3), (1, 3), (7, 1)])


@st.composite
def requests(draw, *, gammas, policies, min_channels=1, grow=False):
    cin = draw(st.integers(min_channels, 160))
    cout = draw(st.integers(cin if grow else min_channels, 2 * cin if grow else 160))
    n = draw(st.integers(1, 6))
    spatial = n > 1 and draw(st.booleans())
    return dict(
        in_channels=cin,
        out_channels=cout,
        kernel_size=draw(KERNELS),
        n_sep=n,
        spatial=spatial,
        gamma=draw(st.sampled_from(gammas)),
        policy=draw(st.sampled_from(policies)),
    )


@settings(max_examples=150, deadline=None)
@given(requests(gammas=(0.25, 0.5, 1.0, 2.0, 4.0), policies=POLICIES))
def test_property_group_condition_theorem1_and_padded_counts(req):
    p = osep_plan(**req)
    n, (kh, kw) = req["n_sep"], req["kernel_size"]
    c = p.channels
    assert len(c) == n + 1 and c[0] == req["in_channels"] and c[-1] == req["out_channels"]
    assert sum(k[0] for k in p.kernels) == kh + n - 1
    assert sum(k[1] for k in p.kernels) == kw + n - 1
    k = [a * b for a, b in p.kernels]
    for i, g in enumerate(p.groups):
        assert 1 <= g <= min(c[i], c[i + 1])
        assert p.layer_params[i] == _padded(c[i], c[i + 1], g, k[i])
        # step 5's fixed point: the continuous groups lie in [1, min(C_l, C_l+1)]
        assert 1 - 1e-9 <= c[i] / p.n_continuous[i] <= min(c[i], c[i + 1]) * (1 + 1e-9)
    assert p.params == sum(p.layer_params)
    product = req["gamma"] * c[0] * math.prod(c[i + 1] * k[i] for i in range(n))
    assert p.continuous_params == pytest.approx(n * product ** (1 / n), rel=1e-9)


@settings(max_examples=150, deadline=None)
@given(requests(gammas=(0.25, 0.5, 1.0), policies=("min", "inverted"), grow=True))
def test_property_padded_channel_condition(req):
    p = osep_plan(**req)
    assert math.prod(math.ceil(ci / g) for ci, g in zip(p.channels, p.groups, strict=False)) >= (
        req["gamma"] * req["in_channels"]
    )


@settings(max_examples=150, deadline=None)
@given(requests(gammas=(0.25, 0.5, 1.0), policies=("min",), min_channels=5))
def test_property_never_more_params_than_dense(req):
    # Not for tiny layers: N layers cost at least about N * C, so e.g. 3 -> 3 with a 1x3
    # kernel and N = 4 has 33 params against the dense 27 (exhaustive over C <= 40: every
    # excess has min(C_in, C_out) <= 4).
    p = osep_plan(**req)
    kh, kw = req["kernel_size"]
    assert p.params <= req["in_channels"] * req["out_channels"] * kh * kw == p.dense_params


def test_planner_imports_no_torch():
    import ast
    import inspect

    import convnas.operators.osep_plan as module

    tree = ast.parse(inspect.getsource(module))
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] == "torch"]
