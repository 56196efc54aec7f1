from __future__ import annotations

import base64
import csv
import html.parser
import itertools
import json
import math
import pathlib
import random
import re
import shutil
import subprocess

import pytest
import yaml

from convnas.report import build_report_data, hypervolume, render_html, write_report

optuna = pytest.importorskip("optuna")

OPTUNA_CANDIDATES = ["conv_3x3", "conv_1x1", "do_conv_3x3", "osep_3x3"]
DARTS_CANDIDATES = ["none", "skip_connect", "conv_1x1", "conv_3x3"]
OBJECTIVES = ["accuracy", "params", "macs", "train_memory"]


def _data():
    from convnas.data import load_dataset

    return load_dataset(
        "synthetic",
        num_classes=3,
        input_shape=(3, 8, 8),
        size=64,
        seed=0,
        val_fraction=0.25,
        limit_test=8,
    )


def tiny_optuna_run(base: pathlib.Path) -> pathlib.Path:
    """A real 7-trial Optuna run with four objectives (built once per session, then reused)."""
    from convnas.search_space import get_space
    from convnas.strategies.optuna import OptunaStrategy

    run = base / "convnas_runs" / "optuna"
    if not (run / "trials.csv").is_file():
        space = get_space(
            "resnet",
            candidates=OPTUNA_CANDIDATES,
            depth=8,
            widths=[4, 4, 8],
            num_classes=3,
            input_shape=[3, 8, 8],
        )
        OptunaStrategy(
            n_trials=7,
            objectives=OBJECTIVES,
            evaluator="supernet",
            evaluator_settings={"epochs": 1, "batch_size": 12, "steps_per_epoch": 3},
            progress=False,
            device="cpu",
            population_size=4,
            seed=1,
            memory_batch_size=8,
        ).search(space, _data(), run)
    return run


def tiny_darts_run(base: pathlib.Path) -> pathlib.Path:
    """A real 3-epoch DARTS run, with a config.yaml naming its candidates."""
    from convnas.search_space import get_space
    from convnas.strategies.darts import DartsStrategy

    run = base / "convnas_runs" / "darts"
    if not (run / "architectures" / "darts_final.yaml").is_file():
        space = get_space(
            "darts",
            candidates=DARTS_CANDIDATES,
            channels=4,
            layers=3,
            steps=2,
            multiplier=2,
            num_classes=3,
            input_shape=[3, 8, 8],
        )
        DartsStrategy(
            epochs=3, batch_size=8, steps_per_epoch=1, progress=False, device="cpu"
        ).search(space, _data(), run)
        (run / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    "name": "darts",
                    "data": {"dataset": "synthetic"},
                    "space": {"kind": "darts", "candidates": DARTS_CANDIDATES},
                    "strategy": {"kind": "darts", "epochs": 3},
                }
            )
        )
    return run


@pytest.fixture(scope="module")
def optuna_run(tmp_path_factory):
    return tiny_optuna_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory):
    return tiny_darts_run(tmp_path_factory.getbasetemp())


def _inclusion_exclusion(points, ref):
    """Union of the boxes [p, ref] by inclusion-exclusion: an independent exact reference."""
    total = 0.0
    for k in range(1, len(points) + 1):
        for subset in itertools.combinations(points, k):
            corner = [max(c) for c in zip(*subset, strict=True)]
            total += (-1) ** (k + 1) * math.prod(
                max(0.0, r - c) for r, c in zip(ref, corner, strict=True)
            )
    return total


def test_hypervolume_2d_hand_computed():
    # staircase (1,3),(2,2),(3,1) under (4,4): 1*1 + 1*2 + 1*3 = 6
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    # a dominated point, a duplicate and a point beyond the reference change nothing
    assert hypervolume([(1, 3), (2, 2), (3, 1), (3, 3), (2, 2), (5, 0)], (4, 4)) == pytest.approx(
        6.0
    )
    assert hypervolume([], (4, 4)) == 0.0


def test_hypervolume_3d_hand_computed():
    # a=(1,1,2) [vol 4], b=(2,2,1) [vol 2], overlap (2,2,2) [vol 1]: 4 + 2 - 1 = 5
    assert hypervolume([(1, 1, 2), (2, 2, 1)], (3, 3, 3)) == pytest.approx(5.0)
    # adding c=(1,2,1): slab z in [1,2) has area 2, slab [2,3) area 4: total 6
    assert hypervolume([(1, 1, 2), (2, 2, 1), (1, 2, 1)], (3, 3, 3)) == pytest.approx(6.0)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_inclusion_exclusion(dims):
    rng = random.Random(dims)
    for _ in range(5):
        points = [tuple(rng.random() for _ in range(dims)) for _ in range(7)]
        ref = (1.1,) * dims
        assert hypervolume(points, ref) == pytest.approx(
            _inclusion_exclusion(points, ref), rel=1e-12
        )


def _csv_rows(run):
    with open(run / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def _dominated(a, b):
    """Whether a is dominated by b; accuracy maximised, costs minimised."""
    sign = {o: (-1 if o == "accuracy" else 1) for o in OBJECTIVES}
    sa = [sign[o] * a[o] for o in OBJECTIVES]
    sb = [sign[o] * b[o] for o in OBJECTIVES]
    return all(y <= x for x, y in zip(sa, sb, strict=True)) and sa != sb


def test_optuna_report_data_matches_trials_csv(optuna_run):
    data = build_report_data(optuna_run)
    rows = [r for r in _csv_rows(optuna_run) if r["state"] == "COMPLETE"]
    values = {int(r["number"]): {o: float(r[f"objective_{o}"]) for o in OBJECTIVES} for r in rows}
    assert data.strategy == "optuna" and data.objectives == tuple(OBJECTIVES)
    assert [p.x_metric for p in data.pareto_plots] == ["params", "macs", "train_memory"]
    for plot in data.pareto_plots:
        assert {p.trial: (p.x, p.y) for p in plot.points} == {
            n: (v[plot.x_metric], v["accuracy"]) for n, v in values.items()
        }
        xs = [x for x, _ in plot.front]
        assert xs == sorted(xs)
        assert all(b[1] > a[1] for a, b in itertools.pairwise(plot.front))  # a real staircase
    flagged = {p.trial for p in data.pareto_plots[0].points if p.pareto}
    expected = {n for n, v in values.items() if not any(_dominated(v, w) for w in values.values())}
    assert flagged == expected
    files = {int(f.stem.split("_")[1]) for f in (optuna_run / "architectures").glob("pareto_*")}
    assert files and files <= flagged
    assert data.scatter_matrix is not None and data.scatter_matrix.metrics == tuple(OBJECTIVES)
    assert len(data.scatter_matrix.trials) == len(rows)

    hv = data.hypervolume
    assert hv.trials == tuple(sorted(values))
    assert all(b >= a for a, b in itertools.pairwise(hv.values))
    assert 0.0 < hv.values[-1] < 1.0
    assert len(flagged) >= 3  # a real front, not one trial that dominates the rest
    # the last value equals an independent computation over the flagged front
    lo = [min(v[o] * (-1 if o == "accuracy" else 1) for v in values.values()) for o in OBJECTIVES]
    hi = [max(v[o] * (-1 if o == "accuracy" else 1) for v in values.values()) for o in OBJECTIVES]
    front = [
        tuple(
            (values[n][o] * (-1 if o == "accuracy" else 1) - a) / ((b - a) or 1.0)
            for o, a, b in zip(OBJECTIVES, lo, hi, strict=True)
        )
        for n in flagged
    ]
    assert hv.values[-1] == pytest.approx(_inclusion_exclusion(front, (1.1,) * 4) / 1.1**4)

    counts = {}
    for f in (optuna_run / "architectures").glob("pareto_*.yaml"):
        for choice in yaml.safe_load(f.read_text())["choices"]:
            counts[choice["op"]] = counts.get(choice["op"], 0) + 1
    assert data.operator_usage.counts == counts and data.operator_usage.members == len(files)

    ((title, table),) = data.tables
    assert [row[0] for row in table.rows] == [int(r["number"]) for r in _csv_rows(optuna_run)]
    links = [link for link in table.links if link]
    assert len(links) == len(files) and all((optuna_run / link).is_file() for link in links)
    summary = dict(data.summary)
    assert summary["run"] == "optuna" and "not 2xMACs" in summary["objectives"]
    assert summary["trials"].startswith(f"{len(rows)} complete")


def test_darts_report_data_follows_alphas_json(darts_run):
    data = build_report_data(darts_run)
    history = json.loads((darts_run / "alphas.json").read_text())
    assert data.strategy == "darts" and data.pareto_plots == () and data.hypervolume is None
    assert [s.decision for s in data.alphas] == list(history[0]["probabilities"])
    for s in data.alphas:
        assert s.epochs == (1, 2, 3)
        assert s.candidates[0] == "none" and "conv_3x3" in s.candidates  # named from config.yaml
        for e, record in enumerate(history):
            assert [p[e] for p in s.probabilities] == record["probabilities"][s.decision]
            assert sum(p[e] for p in s.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert data.supernet_curve["val_accuracy"] == tuple(h["val_accuracy"] for h in history)
    final = yaml.safe_load((darts_run / "architectures" / "darts_final.yaml").read_text())
    assert sum(data.operator_usage.counts.values()) == len(final["choices"])
    tables = dict(data.tables)
    assert tables["Architectures"].links == ("architectures/darts_final.yaml",)
    assert len(tables["Supernet epochs"].rows) == 3
    assert dict(data.summary)["dataset"] == "synthetic"


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.ids, self.external = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag in ("link", "script", "iframe") and (attrs.get("src") or attrs.get("href")):
            self.external.append(attrs)


SECTIONS = {"summary", "pareto", "hypervolume", "operators", "alphas", "trials"}


@pytest.mark.parametrize("which", ["optuna", "darts"])
def test_html_has_every_section_and_embedded_pngs(which, optuna_run, darts_run):
    run = optuna_run if which == "optuna" else darts_run
    path = write_report(run)
    text = path.read_text()
    parser = _Images()
    parser.feed(text)
    assert SECTIONS <= parser.ids and not parser.external
    # optuna: + supernet curve; darts: + the cell diagram
    assert len(parser.images) == (5 if which == "optuna" else 4)
    for src in parser.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix) :], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
    for href in re.findall(r'href="([^"]+)"', text):
        assert (run / href).is_file()
    assert "not 2xMACs" in text


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


PROBE = """<script>window.addEventListener("load", function () {
  var r = Array.prototype.map.call(document.images, function (i) {
    return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images-loaded", JSON.stringify(r)); });</script>"""


@pytest.mark.skipif(_chromium() is None, reason="no chromium/chromium-browser/google-chrome")
@pytest.mark.parametrize("which", ["optuna", "darts"])
def test_report_opens_in_headless_chromium_with_every_image(which, optuna_run, darts_run, tmp_path):
    run = optuna_run if which == "optuna" else darts_run
    report = write_report(run)
    text = report.read_text()
    images = len(re.findall(r"<img\b", text))
    assert images >= 4, f"the {which} report embeds only {images} image(s)"
    probe = tmp_path / "probe.html"  # the report plus a script that records each image's state
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    out = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'data-images-loaded="([^"]*)"', out.stdout)
    assert match, out.stderr[-2000:]
    loaded = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(loaded) == images and all(loaded), loaded  # every image decoded by the browser
    if which == "darts":  # the genotype and the cell diagrams survive the browser's parser
        assert "Genotype(" in out.stdout and "normal" in out.stdout and "reduce" in out.stdout


def test_an_optuna_report_says_what_its_accuracy_is_and_shows_supernet_training(optuna_run):
    data = build_report_data(optuna_run)
    summary = dict(data.summary)
    assert summary["accuracy axis"].startswith("one-shot")
    assert summary["supernet training"].startswith("1 epoch(s)")
    assert data.supernet_curve["epoch"] == (1.0,)
    html_text = render_html(data)
    assert 'id="supernet"' in html_text and "Supernet training" in html_text
