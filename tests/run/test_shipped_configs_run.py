"""Every shipped config runs, and what its header's "Expected:" says is what the run gives.

Each config is run through the CLI with its header's "Smoke:" flags (the quickstart in full) plus
caps that keep the test small (a few hundred CIFAR images, a few steps), and each claim of the
header is checked on the output. A claim is a phrase of the header and a check: editing the
header without the test, or the code without the header, fails here.
"""

from __future__ import annotations

import csv
import json
import pathlib
import re
import shlex
from collections.abc import Callable

import pytest
import yaml
from torch import nn

from convnas.cli import main
from convnas.costs import measure
from convnas.search_space import build_model, get_space, load_architecture

pytest.importorskip("optuna")

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"
Check = Callable[[pathlib.Path], None]


def header(path: pathlib.Path) -> str:
    """The comment lines before the first key, joined and with runs of spaces collapsed."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return re.sub(r"\s+", " ", " ".join(lines))


def smoke_flags(path: pathlib.Path) -> list[str]:
    """The ``--set KEY=VALUE`` items of the header's "Smoke:" command."""
    match = re.search(r"Smoke: (.*?)(?:\(|$)", header(path))
    assert match, f"{path.name}: the header gives no 'Smoke:' command"
    tokens = shlex.split(match.group(1))
    return [tokens[i + 1] for i, t in enumerate(tokens) if t == "--set"]


def trials(run: pathlib.Path) -> list[dict[str, str]]:
    with open(run / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def complete(run: pathlib.Path) -> list[dict[str, str]]:
    return [r for r in trials(run) if r["state"] == "COMPLETE" and not r["duplicate_of"]]


def front(run: pathlib.Path) -> list:
    return [load_architecture(p) for p in sorted((run / "architectures").glob("pareto_*.yaml"))]


def files(*names: str) -> Check:
    def check(run: pathlib.Path) -> None:
        for name in names:
            assert list(run.glob(name)), f"{name} missing from {run}"

    return check


def distinct_trials(n: int) -> Check:
    def check(run: pathlib.Path) -> None:
        rows = complete(run)
        assert len(rows) == n, f"{len(rows)} distinct completed trials, header says {n}"
        assert len({r["operators"] for r in rows}) == n

    return check


def front_size_about(n: int, slack: int) -> Check:
    def check(run: pathlib.Path) -> None:
        assert abs(len(front(run)) - n) <= slack, f"front of {len(front(run))}, header says ~{n}"

    return check


def front_accuracy_within(lo: float, hi: float) -> Check:
    def check(run: pathlib.Path) -> None:
        accs = [a.metadata["metrics"]["accuracy"] for a in front(run)]
        assert lo - 0.03 <= min(accs) and max(accs) <= hi + 0.03, (accs, lo, hi)
        assert all(a.metadata["accuracy_kind"] == "one-shot" for a in front(run))

    return check


def _operator(row: dict[str, str]) -> str:
    match = re.match(r"[a-z0-9_]+", row["operators"])
    assert match, row["operators"]
    return match.group(0)


def one_row_per_operator(run: pathlib.Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = complete(run)
    assert sorted(map(_operator, rows)) == sorted(config["space"]["candidates"]), (
        "each operator trained exactly once"
    )
    for row in rows:  # one decision: the operator used everywhere
        assert row["operators"].count(_operator(row)) == 1, row["operators"]
    study = json.loads((run / "run_info.json").read_text())
    assert study["result"]["complete"] == len(rows), "no operator x hyper-parameter pairs"


def operator_table(run: pathlib.Path) -> None:
    html = (run / "report.html").read_text()
    assert "Operator comparison" in html
    for row in complete(run):
        assert _operator(row) in html


def _by_operator(run: pathlib.Path) -> dict[str, dict[str, float]]:
    return {
        _operator(r): {k: float(r[k]) for k in ("params", "deploy_params", "macs")}
        for r in complete(run)
    }


def _block_conv_weights(run: pathlib.Path) -> int:
    """Weights of the blocks' 3x3 convolutions in the conv_3x3 network (the stem excluded)."""
    arch = next(a for a in map(load_architecture, run.glob("architectures/*.yaml")))
    space = get_space("resnet", **{**arch.settings, "candidates": ["conv_3x3"]})
    model = build_model(space.architecture([0] * len(space.decisions())))
    return sum(
        m.weight.numel()
        for name, m in model.named_modules()
        if name.startswith("blocks.") and isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
    )


def operator_relations(run: pathlib.Path) -> None:
    ops = _by_operator(run)
    conv, c2sp = ops["conv_3x3"], ops["c2sp"]
    # c2sp's 2x2 kernels: 4/9 of the blocks' 3x3 weights, everything else unchanged
    block = _block_conv_weights(run)
    assert conv["params"] - c2sp["params"] == pytest.approx(5 / 9 * block, rel=1e-6)
    csg = ops["csg_conv_3x3"]
    assert csg["params"] < conv["params"] and csg["macs"] == conv["macs"]
    assert ops["do_conv_3x3"]["deploy_params"] == conv["params"]


def darts_cells(run: pathlib.Path) -> None:
    arch = load_architecture(run / "architectures" / "darts_final.yaml")
    nodes: dict[str, int] = {}
    for choice in arch.choices:
        cell_node = choice.decision.split("<-")[0]
        nodes[cell_node] = nodes.get(cell_node, 0) + 1
    kinds = {n.split("/")[0] for n in nodes}
    assert kinds == {"normal", "reduce"}, nodes
    assert set(nodes.values()) == {2}, f"not 2 kept edges per node: {nodes}"


def alpha_history(run: pathlib.Path) -> None:
    history = json.loads((run / "alphas.json").read_text())
    assert history and all(epoch["probabilities"] for epoch in history), "no alpha history"


def within_max_params(run: pathlib.Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    limit = config["strategy"]["max_params"]
    for arch in front(run):
        assert measure(build_model(arch), arch.settings["input_shape"]).params <= limit


def all_trials_completed(run: pathlib.Path) -> None:
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert len(complete(run)) == config["strategy"]["n_trials"]


CIFAR_CAPS = ["data.limit_train=320", "data.limit_test=40", "data.val_fraction=0.25"]
CASES: dict[str, tuple[list[str], list[tuple[str, Check]]]] = {
    "quickstart.yaml": (
        [],  # run in full: the header's numbers are checked as they are
        [
            ("30 completed trials (30 distinct networks)", distinct_trials(30)),
            ("a Pareto front of about 9 networks", front_size_about(9, 3)),
            ("one-shot validation accuracy (about 0.73-0.85)", front_accuracy_within(0.73, 0.85)),
            (
                "report.html, trials.csv and architectures/pareto_*.yaml",
                files("report.html", "trials.csv", "architectures/pareto_*.yaml"),
            ),
        ],
    ),
    "compare_operators_cifar10.yaml": (
        [*CIFAR_CAPS, "strategy.evaluator.max_steps=1", "strategy.evaluator.batch_size=16"],
        [
            ("trials.csv with one row per operator", one_row_per_operator),
            ("each operator trained once at its default hyper-parameters", one_row_per_operator),
            ('"Operator comparison" table', operator_table),
            ("c2sp at 4/9 of conv_3x3's block params", operator_relations),
            ("csg_conv_3x3 with fewer params at equal MACs", operator_relations),
            ("do_conv_3x3 with equal deploy params", operator_relations),
            ("the Pareto front in architectures/", files("architectures/pareto_*.yaml")),
        ],
    ),
    "optuna_cifar10.yaml": (
        [*CIFAR_CAPS, "strategy.n_trials=4", "strategy.population_size=4"]
        + ["strategy.evaluator.batch_size=16", "strategy.evaluator.steps_per_epoch=2"]
        + ["strategy.evaluator.bn_batches=1", "strategy.memory_batch_size=8"],
        [
            ("completed trials", all_trials_completed),
            ("networks within max_params (0.4M params)", within_max_params),
            (
                "trials.csv and report.html",
                files("trials.csv", "report.html", "architectures/pareto_*.yaml"),
            ),
        ],
    ),
    "darts_cifar10.yaml": (
        [*CIFAR_CAPS, "space.layers=3", "space.channels=4", "strategy.steps_per_epoch=2"],
        [
            ("architectures/darts_final.yaml (2 kept edges per node", darts_cells),
            ("in the normal and reduction cells)", darts_cells),
            ("alphas.json with the alpha history", alpha_history),
            ("report.html", files("report.html", "architectures/darts_final.yaml")),
        ],
    ),
}


def test_every_shipped_config_has_a_case():
    assert sorted(p.name for p in CONFIGS.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shipped_config_does_what_its_header_says(name, tmp_path, request, capsys):
    path = CONFIGS / name
    text = header(path)
    caps, claims = CASES[name]
    for phrase, _ in claims:
        assert phrase in text, f"{name}: the header no longer says {phrase!r}; update the test"
    flags = [] if name == "quickstart.yaml" else smoke_flags(path)
    if "cifar" in name:
        flags.append(f"data.root={request.getfixturevalue('cifar_subset_dir')}")
    flags += [*caps, f"output.root={tmp_path}", "output.progress=false", "device=cpu"]
    argv = ["search", str(path)]
    for flag in flags:
        argv += ["--set", flag]
    assert main(argv) == 0
    capsys.readouterr()
    run = tmp_path / yaml.safe_load(path.read_text())["name"]
    for phrase, check in claims:
        try:
            check(run)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {phrase!r} does not hold: {exc}") from exc
