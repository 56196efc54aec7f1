"""DARTS survives SIGKILL at random points: resume ends exactly where an uninterrupted run does."""

from __future__ import annotations

import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from convnas.data import load_dataset
from convnas.errors import TrainingDivergedError
from convnas.io import load_checkpoint
from convnas.search_space import get_space
from convnas.strategies.darts import DartsStrategy
from tests.reliability.darts_setup import darts_config, final_alphas, subprocess_env, write_config


def _command(cfg: pathlib.Path, name: str) -> list[str]:
    return [sys.executable, "-m", "convnas", "search", str(cfg), "--name", name, "--resume"]


def test_sigkill_and_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = tmp_path / "darts.yaml"
    write_config(cfg, darts_config(tmp_path, epochs=6, batch_size=16, steps_per_epoch=4))
    started = time.monotonic()
    subprocess.run(
        _command(cfg, "clean"), env=subprocess_env(), check=True, capture_output=True, timeout=300
    )
    clean_seconds = time.monotonic() - started
    rng = random.Random(20261123)
    kills = 0
    for _ in range(5):  # kill at random points, then let the last resume finish
        proc = subprocess.Popen(
            _command(cfg, "killed"),
            env=subprocess_env(),
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            proc.wait(timeout=rng.uniform(0.3, 0.9) * clean_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    subprocess.run(
        _command(cfg, "killed"), env=subprocess_env(), check=True, capture_output=True, timeout=300
    )
    assert kills >= 1, "no kill happened; the delays are too long for this machine"
    run = tmp_path / "killed"
    clean, killed = final_alphas(tmp_path / "clean", 6), final_alphas(run, 6)
    for key in clean:
        torch.testing.assert_close(killed[key], clean[key], rtol=0, atol=0)
    history = yaml.safe_load((run / "alphas.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 7))


def test_nan_stops_darts_with_the_last_good_checkpoint_intact(tmp_path, monkeypatch):
    data = load_dataset(
        "synthetic",
        num_classes=4,
        input_shape=(3, 8, 8),
        size=128,
        seed=0,
        val_fraction=0.5,
        limit_test=16,
    )
    space = get_space(
        "resnet",
        candidates=["conv_3x3", "c2sp"],
        depth=8,
        widths=[4, 8, 8],
        num_classes=4,
        input_shape=[3, 8, 8],
    )
    settings = dict(epochs=3, batch_size=16, steps_per_epoch=2, progress=False, device="cpu")
    import convnas.strategies.darts.strategy as darts_module

    real = darts_module.F.cross_entropy
    calls = {"n": 0}

    def poisoned(logits, target, *args, **kwargs):
        calls["n"] += 1
        loss = real(logits, target, *args, **kwargs)
        return loss * float("nan") if calls["n"] > 12 else loss

    monkeypatch.setattr(darts_module.F, "cross_entropy", poisoned)
    with pytest.raises(TrainingDivergedError, match="loss became nan") as info:
        DartsStrategy(**settings).search(space, data, tmp_path / "run")
    monkeypatch.setattr(darts_module.F, "cross_entropy", real)
    state = load_checkpoint(tmp_path / "run" / "darts_checkpoint.pt")
    assert 1 <= state["epoch"] < 3
    assert f"last good checkpoint (after epoch {state['epoch']}) is intact" in str(info.value)
    assert all(torch.isfinite(v).all() for v in state["supernet"].values() if v.is_floating_point())
    resumed = DartsStrategy(**settings).search(space, data, tmp_path / "run", resume=True)
    assert resumed.info["epochs"] == 3
