"""``convnas status``: a tiny finished run, a running (locked) one, an empty root; read-only."""

from __future__ import annotations

import hashlib
import multiprocessing
import pathlib

import pytest

from convnas.cli import main
from convnas.cli.status import collect

pytest.importorskip("optuna")


def _tree_hash(root: pathlib.Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        digest.update(f"{path.relative_to(root)}|{stat.st_mode}|{stat.st_mtime_ns}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from convnas.run import parse_config, run_search

    root = tmp_path_factory.mktemp("status") / "runs"
    config = {
        "name": "tiny",
        "device": "cpu",
        "data": {
            "dataset": "synthetic",
            "val_fraction": 0.25,
            "options": {"num_classes": 3, "input_shape": [3, 8, 8], "size": 32},
        },
        "space": {
            "kind": "resnet",
            "depth": 8,
            "widths": [4, 4, 8],
            "granularity": "network",
            "candidates": ["conv_3x3", "conv_1x1"],
        },
        "strategy": {
            "kind": "optuna",
            "sampler": "bruteforce",
            "n_trials": 2,
            "objectives": ["accuracy", "params"],
            "evaluator": {"kind": "supernet", "epochs": 1, "batch_size": 8},
        },
        "output": {"root": str(root), "progress": False, "report": False},
    }
    run_search(parse_config(config))
    (root / "notes").mkdir()  # not a run directory: not listed
    return root


def test_lists_a_finished_run_without_writing(runs, capsys):
    before = _tree_hash(runs)
    assert main(["status", str(runs)]) == 0
    out = capsys.readouterr().out
    assert _tree_hash(runs) == before
    (status,) = collect(runs)
    assert (status.name, status.strategy, status.progress) == ("tiny", "optuna", "2/2 trials")
    assert status.state == "finished"
    assert status.best.endswith("(one-shot)") and float(status.best.split()[0]) > 0
    assert "tiny" in out and "finished" in out and "notes" not in out
    assert _tree_hash(runs) == before


def _hold_lock(run_dir, ready, stop):
    from convnas.rundir import run_lock

    with run_lock(pathlib.Path(run_dir), shared=True):
        ready.set()
        stop.wait(60)


def test_a_locked_run_is_running(runs):
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(runs / "tiny"), ready, stop))
    holder.start()
    try:
        assert ready.wait(30)
        before = _tree_hash(runs)
        assert collect(runs)[0].state == "running"
        assert _tree_hash(runs) == before
    finally:
        stop.set()
        holder.join(30)
    assert collect(runs)[0].state == "finished"


def test_an_empty_root_and_a_missing_one(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 0
    assert "no run directories" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert main(["status", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "is not a directory" in err and not (tmp_path / "missing").exists()


def test_an_interrupted_darts_run(tmp_path):
    import json

    import yaml

    run = tmp_path / "darts_run"
    run.mkdir()
    (run / ".convnas-run").write_text(json.dumps({"format": "convnas/run/v1", "written": []}))
    (run / "config.yaml").write_text(yaml.safe_dump({"strategy": {"kind": "darts", "epochs": 5}}))
    history = [{"epoch": e, "val_accuracy": 0.2 * e, "probabilities": {}} for e in (1, 2)]
    (run / "alphas.json").write_text(json.dumps(history))
    before = _tree_hash(tmp_path)
    (status,) = collect(tmp_path)
    assert (status.strategy, status.progress, status.state) == ("darts", "epoch 2/5", "interrupted")
    assert status.best == "0.4000 (one-shot, supernet val)"
    assert _tree_hash(tmp_path) == before
