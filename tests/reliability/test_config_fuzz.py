"""Property-based fuzz of configs: any mistake gives a ConfigError naming a key, never a crash."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convnas.errors import ConfigError
from convnas.run.config import build_space, parse_config

VALID = {
    "name": "fuzz",
    "seed": 0,
    "data": {
        "dataset": "synthetic",
        "val_fraction": 0.2,
        "options": {"num_classes": 3, "input_shape": [3, 8, 8], "size": 32},
    },
    "space": {
        "kind": "resnet",
        "depth": 8,
        "widths": [4, 8, 8],
        "granularity": "layer",
        "candidates": ["conv_3x3", "c2sp"],
    },
    "strategy": {
        "kind": "optuna",
        "n_trials": 2,
        "objectives": ["accuracy", "params"],
        "max_params": 10000,
        "evaluator": {"kind": "supernet", "epochs": 0},
    },
    "output": {"root": "runs", "progress": False},
}

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
OPERATOR_NAMES = st.sampled_from(
    [
        "conv_3x3",
        "c2sp",
        "sw",
        "none",
        "max_pool_3x3",
        "c2spp",
        "osep_3x3",
        "nope",
        "skip_connect",
        "sw_sep",
        "",
    ]
)


def _paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


PATHS = list(_paths(VALID))


@st.composite
def mutated(draw):
    config = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = config
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                break
        if not isinstance(parent, dict):
            continue
        action = draw(st.sampled_from(["junk", "delete", "unknown", "operators", "kind"]))
        if action == "junk":
            parent[path[-1]] = draw(JUNK)
        elif action == "delete":
            parent.pop(path[-1], None)
        elif action == "unknown":
            parent[draw(st.text(min_size=1, max_size=6))] = draw(JUNK)
        elif not isinstance(config.get("space"), dict):
            continue
        elif action == "operators":
            config["space"]["candidates"] = draw(st.lists(OPERATOR_NAMES, max_size=4))
        else:
            config["space"]["kind"] = draw(st.sampled_from(["resnet", "darts", "vit", 3]))
    return config


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_configs_fail_only_with_config_errors(config):
    try:
        parsed = parse_config(config)
        build_space(parsed, input_shape=(3, 8, 8), num_classes=3).decisions()
    except ConfigError as exc:
        message = str(exc)
        assert message and "Traceback" not in message
        if exc.key is not None:
            assert message.startswith(f"{exc.key}: ")


def test_incompatible_candidates_for_a_space_name_the_key():
    config = copy.deepcopy(VALID)
    config["space"] = {"kind": "darts", "channels": 4, "layers": 3, "candidates": ["sw"]}
    parsed = parse_config(config)
    try:
        build_space(parsed, input_shape=(3, 8, 8), num_classes=3)
    except ConfigError as exc:
        assert exc.key == "space.candidates" and "reduce/" in str(exc)
    else:
        raise AssertionError("a DARTS space whose only operator cannot reduce must be refused")
