"""SIGKILL a single-worker Optuna search at random and at chosen moments, resume, repeat.

After every scenario the study must hold exactly ``n_trials`` COMPLETE trials, nothing RUNNING or
WAITING, every interrupted trial FAIL and retried with its parameters, no retry chain completed
twice, and ``trials.csv`` must agree with the study (see ``harness.audit``).
"""

from __future__ import annotations

import random
import socket
import time

import pytest
import torch

from convnas.io import load_checkpoint
from tests.reliability import harness

pytest.importorskip("optuna")

SUPERNET = {
    "kind": "supernet",
    "epochs": 3,
    "batch_size": 16,
    "steps_per_epoch": 4,
    "bn_batches": 1,
}


def _storage(kind: str, tmp_path) -> str | None:
    return None if kind == "sqlite" else f"journal:{tmp_path / 'study.journal'}"


def _kill_at_marker(config, pause: str, at: int = 2, timeout: float = 60) -> str:
    """Run the search until it announces ``pause``, SIGKILL it there; return the announcement."""
    marker = harness.marker_path(config)
    marker.unlink(missing_ok=True)
    proc = harness.start(config, pause=pause, env={"CONVNAS_TEST_PAUSE_AT": str(at)})
    try:
        harness.wait_for(lambda: marker.exists() or proc.poll() is not None, timeout, pause)
    finally:
        alive = harness.kill(proc)
    assert alive and marker.exists(), f"never reached {pause}:\n{harness.tail(config)}"
    return marker.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_random_sigkills_then_resume_complete_exactly_n_trials(tmp_path, kind):
    n_trials, rng = 30, random.Random(f"kill-{kind}")
    config = harness.write_config(tmp_path, n_trials=n_trials, storage=_storage(kind, tmp_path))
    started, kills, mid_trial, rounds = time.monotonic(), 0, 0, 0
    while kills < 6 and rounds < 10:
        rounds += 1
        proc = harness.start(config)
        worker = f"{socket.gethostname()}:{proc.pid}"
        if rng.random() < 0.35:  # start-up: imports, data, study creation, evaluator
            time.sleep(rng.uniform(0.3, 3.0))
        else:  # once it runs trials: sampling, cost model, training, storage writes
            _wait_for_a_trial_of(config, worker, proc)
            time.sleep(rng.uniform(0.0, 0.6))
        kills += harness.kill(proc)
        mid_trial += _has_running_trial(config, worker)
    harness.finish(config)
    result = harness.audit(config, n_trials)
    assert kills == 6 and mid_trial >= 2, (kills, mid_trial, rounds)
    print(
        f"\n[{kind}] {kills} random SIGKILLs survived ({mid_trial} left a trial RUNNING); "
        f"trials {dict(result.states)}, {len(result.retries)} retried; "
        f"{time.monotonic() - started:.1f} s"
    )


_STUDIES: dict = {}


def _has_running_trial(config, worker: str) -> bool:
    import optuna

    url = harness.storage_url(config)
    try:
        study = _STUDIES.get(url) or _STUDIES.setdefault(url, harness.open_study(url))
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    except Exception:  # no storage or study yet
        return False
    return any(t.user_attrs.get("worker") == worker for t in running)


def _wait_for_a_trial_of(config, worker: str, proc) -> None:
    harness.wait_for(
        lambda: proc.poll() is not None or _has_running_trial(config, worker),
        timeout=60,
        what="the search to start a trial",
        poll=0.1,
    )


@pytest.mark.slow
def test_kills_during_supernet_training_and_checkpoint_write(tmp_path):
    config = harness.write_config(tmp_path, n_trials=6, evaluator=SUPERNET)
    checkpoint = harness.run_dir(config) / "supernet.pt"
    started = time.monotonic()
    assert _kill_at_marker(config, "training", at=6).startswith("training: supernet training")
    assert load_checkpoint(checkpoint)["epoch"] == 1  # killed in epoch 2
    assert _kill_at_marker(config, "checkpoint", at=2).startswith("checkpoint:")
    # Killed between writing the temporary file and renaming it: the old checkpoint is intact.
    assert load_checkpoint(checkpoint)["epoch"] == 2
    assert list(checkpoint.parent.glob(".supernet.pt.*.tmp"))
    harness.finish(config)
    result = harness.audit(config, 6)
    resumed = load_checkpoint(checkpoint)
    assert resumed["epoch"] == 3
    reference = _uninterrupted_supernet(config, tmp_path / "reference")
    for name, tensor in reference["supernet"].items():
        assert torch.equal(tensor, resumed["supernet"][name]), name
    print(
        f"\n[supernet] 2 targeted SIGKILLs survived; trials {dict(result.states)}; weights "
        f"equal to an uninterrupted run; {time.monotonic() - started:.1f} s"
    )


def _uninterrupted_supernet(config_path, run_dir):
    from convnas.run.config import build_space, load_config
    from convnas.run.runner import load_data
    from convnas.strategies.evaluators import SupernetEvaluator

    config = load_config(config_path)
    data = load_data(config)
    space = build_space(config, input_shape=data.input_shape, num_classes=data.num_classes)
    settings = {k: v for k, v in SUPERNET.items() if k != "kind"}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the killed subprocesses (OMP_NUM_THREADS=1)
    try:
        SupernetEvaluator(**settings).prepare(
            space, data, run_dir, seed=config.seed, device=torch.device("cpu"), show_progress=False
        )
    finally:
        torch.set_num_threads(threads)
    return load_checkpoint(run_dir / "supernet.pt")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_kill_during_a_storage_write(tmp_path, kind):
    config = harness.write_config(tmp_path, n_trials=4, storage=_storage(kind, tmp_path))
    started = time.monotonic()
    announced = _kill_at_marker(config, f"storage-{kind}")
    assert announced.startswith(f"storage-{kind}")
    if kind == "journal":
        journal = tmp_path / "study.journal"
        assert not journal.read_bytes().endswith(b"\n")  # a torn line ...
        assert (tmp_path / "study.journal.lock").exists()  # ... and the dead writer's lock
    harness.finish(config)
    result = harness.audit(config, 4)
    # The trial whose COMPLETE never landed was failed as stale and run again.
    assert result.retries and result.trials[min(result.retries)].number == 0
    print(
        f"\n[{kind}] SIGKILL inside a storage write survived; trials {dict(result.states)}; "
        f"{time.monotonic() - started:.1f} s"
    )
