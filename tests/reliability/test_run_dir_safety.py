"""Issue 18, data loss and wrong results: a user's files are never overwritten, a refused
search changes nothing, a run directory has one DARTS search at a time, a lost study stops a
resume, workers die with their parent, the divergence advice works, failures say why.

Every search here runs in-process on 64 synthetic images (seconds); the tests that need real
processes (signals, orphaned workers, a second search while one runs) are marked ``slow``.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import pathlib
import shutil
import signal
import time

import pytest
import torch
import yaml

from convnas.io import load_checkpoint, save_checkpoint
from convnas.rundir import LOCK, MARKER, run_lock
from tests.reliability.catalogue_setup import (
    DARTS,
    alive,
    assert_clean_error,
    children,
    cli,
    config,
    popen,
    snapshot,
    write,
)


def _config(tmp: pathlib.Path, name: str = "run", **sections) -> pathlib.Path:
    """A config file in ``tmp`` whose run directory is ``runs/NAME`` relative to the cwd."""
    data = config(tmp, name=name, **sections)
    data["output"]["root"] = "runs"
    return write(tmp / f"{name}.yaml", data)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def optuna_run(tmp_path_factory):
    """A finished tiny Optuna search (root/run.yaml, root/runs/run)."""
    root = tmp_path_factory.mktemp("optuna")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        from convnas.cli import main

        assert main(["search", str(_config(root))]) == 0
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("darts")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        from convnas.cli import main

        assert main(["search", str(_config(root, strategy=DARTS))]) == 0
    finally:
        os.chdir(cwd)
    return root


def _copy(src: pathlib.Path, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
    return dst


# 1. An unrelated directory is never overwritten, links are never followed.


def test_a_non_run_directory_is_refused_and_left_as_it_was(here, capfd):
    victim = here / "runs" / "notes"
    (victim / "architectures").mkdir(parents=True)
    for name in ("trials.csv", "report.html", "config.yaml", "architectures/pareto_0001.yaml"):
        (victim / name).write_text(f"the user's own {name}\n")
    cfg = _config(here)
    before = snapshot(here)
    for extra in ([], ["--resume"]):
        rc, out, err = cli(["search", cfg, "--name", "notes", *extra], capfd)
        assert_clean_error(rc, out, err, "search", "runs/notes", "not a convnas run directory")
        assert snapshot(here) == before


def test_an_architectures_link_is_neither_followed_nor_deleted_through(optuna_run, here, capfd):
    _copy(optuna_run, here)
    run = here / "runs" / "run"
    target = here / "elsewhere"
    target.mkdir()
    (target / "pareto_0005.yaml").write_text("precious\n")
    shutil.rmtree(run / "architectures")
    (run / "architectures").symlink_to(target)
    outside = snapshot(here, exclude=(run,))
    rc, out, err = cli(["search", here / "run.yaml", "--resume"], capfd)
    assert_clean_error(rc, out, err, "search", "symbolic link")
    assert snapshot(here, exclude=(run,)) == outside


def test_only_files_convnas_wrote_are_deleted(optuna_run, here, capfd):
    _copy(optuna_run, here)
    run = here / "runs" / "run"
    mine = run / "architectures" / "pareto_9999.yaml"
    mine.write_text("a file the user put there\n")
    rc, _, err = cli(
        ["search", here / "run.yaml", "--resume", "--set", "strategy.n_trials=3"], capfd
    )
    assert rc == 0, err
    assert mine.read_text() == "a file the user put there\n"
    recorded = json.loads((run / MARKER).read_text())["written"]
    assert recorded and all(f.startswith("architectures/pareto_") for f in recorded)
    assert "architectures/pareto_9999.yaml" not in recorded


# 2. A refused run has not replaced the run's record.


def test_a_refused_optuna_resume_changes_nothing_and_the_run_resumes_after(optuna_run, here, capfd):
    _copy(optuna_run, here)
    run = here / "runs" / "run"
    before = snapshot(here)
    other = ["--set", "space.candidates=[conv_3x3, conv_1x1]"]
    rc, out, err = cli(["search", here / "run.yaml", "--resume", *other], capfd)
    assert_clean_error(rc, out, err, "search", "another configuration")
    assert snapshot(here) == before
    rc, _, err = cli(["search", run / "config.yaml", "--resume"], capfd)
    assert rc == 0, err


def test_a_refused_darts_resume_changes_nothing_and_the_run_resumes_after(darts_run, here, capfd):
    _copy(darts_run, here)
    run = here / "runs" / "run"
    before = snapshot(here)
    rc, out, err = cli(["search", here / "run.yaml", "--resume", "--set", "strategy.tau=2"], capfd)
    assert_clean_error(rc, out, err, "search", "another configuration")
    assert snapshot(here) == before
    rc, _, err = cli(["search", run / "config.yaml", "--resume"], capfd)
    assert rc == 0, err


# 3. One DARTS search per run directory, with the holder named.


def test_a_second_search_on_a_locked_run_directory_names_the_holder(darts_run, here, capfd):
    _copy(darts_run, here)
    run = here / "runs" / "run"
    before = snapshot(here)
    for shared in (True, False):  # a DARTS search excludes Optuna ones and other DARTS ones
        with run_lock(run, shared=shared):
            rc, out, err = cli(["search", here / "run.yaml", "--resume"], capfd)
        assert_clean_error(rc, out, err, "search", "is in use by", f"pid {os.getpid()}")
    assert {k: v for k, v in snapshot(here).items() if LOCK not in k} == {
        k: v for k, v in before.items() if LOCK not in k
    }


@pytest.mark.slow
def test_two_darts_processes_on_one_run_directory(here, capfd):
    cfg = _config(here, strategy={**DARTS, "epochs": 40, "steps_per_epoch": 2})
    first = popen(["search", cfg], here, here / "first.log")
    lock = here / "runs" / "run" / LOCK
    try:
        deadline = time.monotonic() + 120
        while not (lock.is_file() and f'"pid": {first.pid}' in lock.read_text()):
            assert first.poll() is None, (here / "first.log").read_text()
            assert time.monotonic() < deadline, "the first search never took the lock"
            time.sleep(0.2)
        rc, out, err = cli(["search", cfg, "--resume"], capfd)
        assert_clean_error(rc, out, err, "search", f"pid {first.pid}")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


# 4. A resume that finds no study, or a damaged one, stops.


@pytest.mark.parametrize("damage", ["empty", "garbage", "missing"])
def test_a_lost_study_stops_a_resume(optuna_run, here, capfd, damage):
    _copy(optuna_run, here)
    db = here / "runs" / "run" / "study.db"
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "garbage":
        data = bytearray(db.read_bytes())
        data[100:4096] = b"\xff" * (4096 - 100)
        db.write_bytes(bytes(data))
    else:
        db.unlink()
    before = snapshot(here)
    rc, out, err = cli(["search", here / "run.yaml", "--resume"], capfd)
    assert_clean_error(rc, out, err, "search", "study.db")
    assert snapshot(here) == before


# 5. Workers die with their parent; SIGTERM is Ctrl-C.


def _worker_search(here: pathlib.Path, n_trials: int = 40) -> pathlib.Path:
    train = {"kind": "train", "epochs": 1, "batch_size": 16, "max_steps": 2}
    strategy = {
        "kind": "optuna",
        "n_trials": n_trials,
        "population_size": 2,
        "objectives": ["accuracy", "params"],
        "evaluator": train,
        "heartbeat_interval": 1,
        "grace_period": 2,
    }
    return _config(here, strategy=strategy)


def _wait_for_workers(proc, n: int, log: pathlib.Path) -> list[int]:
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, log.read_text()
        helpers = [p for p in children(proc.pid) if "spawn" in _cmdline(p)]
        if len(helpers) >= n and (pathlib.Path("runs/run/study.db")).exists():
            return helpers
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def _cmdline(pid: int) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers still alive: {[p for p in pids if alive(p)]}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent_and_the_search_resumes(here, capfd, sig):
    cfg = _worker_search(here)
    log = here / "search.log"
    proc = popen(["search", cfg, "--workers", "3"], here, log)
    helpers = _wait_for_workers(proc, 2, log)
    time.sleep(3)  # let trials start
    os.kill(proc.pid, sig)
    rc = proc.wait(timeout=120)
    _wait_gone(helpers)
    text = log.read_text()
    if sig == signal.SIGTERM:
        assert rc == 143, text
        assert "interrupted (SIGTERM)" in text and "--resume" in text
        assert "Traceback" not in text, text
    rc, _, err = cli(["search", cfg, "--resume", "--set", "strategy.n_trials=6"], capfd)
    assert rc == 0, err
    if sig == signal.SIGTERM:
        rows = list(csv.DictReader(open(here / "runs" / "run" / "trials.csv")))
        failed = [r["fail_reason"] for r in rows if r["state"] == "FAIL"]
        assert all("no heartbeat" not in r for r in failed), failed


# 8. Reading a run creates nothing outside it.


def test_export_opens_the_runs_storage_read_only(optuna_run, here, capfd):
    _copy(optuna_run, here)
    run = here / "runs" / "run"
    for f in (run / "architectures").glob("pareto_*.yaml"):
        f.unlink()  # the trial must come from the study
    rc, _, err = cli(
        ["export", run, "--trial", "0", "--format", "yaml", "--out", here / "x"], capfd
    )
    assert rc == 0, err
    outside = snapshot(here, exclude=(here / "x",))
    rc, _, err = cli(
        ["export", run, "--trial", "1", "--format", "yaml", "--out", here / "x"], capfd
    )
    assert rc == 0, err
    assert snapshot(here, exclude=(here / "x",)) == outside, "export changed the study"
    write(here / "afile", "keep me\n")
    rc, out, err = cli(["export", run, "--trial", "1", "--out", here / "afile"], capfd)
    assert_clean_error(rc, out, err, "export", "afile", "not a directory")
    assert (here / "afile").read_text() == "keep me\n"
    settings = yaml.safe_load((run / "config.yaml").read_text())
    settings["strategy"]["storage"] = f"journal:{here / 'elsewhere' / 'deep' / 'study.log'}"
    (run / "config.yaml").write_text(yaml.safe_dump(settings))
    before = snapshot(here)
    rc, out, err = cli(["export", run, "--trial", "0", "--format", "yaml"], capfd)
    assert_clean_error(rc, out, err, "export", "does not exist", code=2)
    assert snapshot(here) == before and not (here / "elsewhere").exists()


# 9. The divergence advice can be followed.


@pytest.mark.slow  # about 15 s on two shared cores
def test_the_darts_divergence_advice_works(here, capfd, monkeypatch):
    from convnas.errors import TrainingDivergedError
    from convnas.strategies.darts import strategy as darts_module

    real = darts_module.DartsStrategy._epoch
    calls = []

    def epoch(self, index, data, run):
        calls.append(index)
        if index == 1 and len(calls) == 2:
            raise TrainingDivergedError("loss is NaN (simulated)")
        return real(self, index, data, run)

    monkeypatch.setattr(darts_module.DartsStrategy, "_epoch", epoch)
    cfg = _config(here, strategy=DARTS)
    rc, out, err = cli(["search", cfg], capfd)
    line = assert_clean_error(rc, out, err, "search", "--resume", "strategy.w_lr=")
    advised = [w for w in line.split() if w.startswith("strategy.w_lr")]
    argv = ["search", cfg, "--resume"]
    for item in advised:
        argv += ["--set", item.rstrip("),")]
    rc, _, err = cli(argv, capfd)
    assert rc == 0, err
    history = json.loads((here / "runs" / "run" / "alphas.json").read_text())
    assert len(history) == DARTS["epochs"]
    assert "w_lr" in history[1]["optimiser_changed"]


def test_a_finite_blow_up_is_divergence(here, capfd):
    cfg = _config(here, strategy={**DARTS, "w_lr": 1e6})
    rc, out, err = cli(["search", cfg], capfd)
    assert_clean_error(rc, out, err, "search", "diverged")


# 10. Failure reasons are the real ones; a search without a result fails.


def test_nan_objectives_are_labelled_and_a_search_without_result_fails(here, capfd, monkeypatch):
    from convnas.strategies.evaluators import SupernetEvaluator

    monkeypatch.setattr(SupernetEvaluator, "score", lambda self, *a, **k: float("nan"))
    monkeypatch.setattr(SupernetEvaluator, "deterministic", False, raising=False)
    cfg = _config(here, strategy={**config(here)["strategy"], "max_failed": 3})
    rc, out, err = cli(["search", cfg], capfd)
    assert_clean_error(rc, out, err, "search", "no architecture was evaluated", "trials.csv")
    rows = list(csv.DictReader(open(here / "runs" / "run" / "trials.csv")))
    assert rows and all(r["state"] == "FAIL" for r in rows)
    assert all("non-finite accuracy" in r["fail_reason"] for r in rows), rows


@pytest.mark.slow  # about 15 s on two shared cores
def test_ctrl_c_in_a_trial_is_recorded_as_an_interrupt_and_resumable(here, capfd, monkeypatch):
    from convnas.strategies.evaluators import SupernetEvaluator

    real = SupernetEvaluator.score
    state = {"n": 0}

    def score(self, *args, **kwargs):
        state["n"] += 1
        if state["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SupernetEvaluator, "score", score)
    cfg = _config(here, strategy={**config(here)["strategy"], "n_trials": 3})
    rc, out, err = cli(["search", cfg], capfd)
    assert rc == 130 and "interrupted (Ctrl-C)" in err and "--resume" in err, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, err
    rows = list(csv.DictReader(open(here / "runs" / "run" / "trials.csv")))
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert len(failed) == 1 and "interrupted" in failed[0]["fail_reason"], rows
    monkeypatch.setattr(SupernetEvaluator, "score", real)
    rc, _, err = cli(["search", cfg, "--resume"], capfd)
    assert rc == 0, err


# The environment: full and read-only disks, forged checkpoints.


@pytest.mark.slow  # about 15 s on two shared cores
def test_a_full_disk_on_a_checkpoint_is_one_line_and_resumable(here, capfd, monkeypatch):
    from convnas.strategies.darts import strategy as darts_module

    real = darts_module.save_checkpoint
    calls = []

    def full(path, state):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, state)

    monkeypatch.setattr(darts_module, "save_checkpoint", full)
    cfg = _config(here, strategy=DARTS)
    rc, out, err = cli(["search", cfg], capfd)
    assert_clean_error(rc, out, err, "search", "no space left", "darts_checkpoint.pt", "--resume")
    monkeypatch.setattr(darts_module, "save_checkpoint", real)
    rc, _, err = cli(["search", cfg, "--resume"], capfd)
    assert rc == 0, err


def test_a_read_only_file_system_is_one_line(here, capfd, monkeypatch):
    from convnas.run import runner

    def read_only(path, data):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(runner, "write_yaml", read_only)
    rc, out, err = cli(["search", _config(here)], capfd)
    assert_clean_error(rc, out, err, "search", "read-only file system", "config.yaml")


@pytest.mark.parametrize(
    "message,needle",
    [
        ("database disk image is malformed", "damaged"),
        ("database or disk is full", "no space left"),
        ("attempt to write a readonly database", "read-only"),
    ],
)
def test_database_failures_are_one_line(here, capfd, monkeypatch, message, needle):
    import optuna
    import sqlalchemy.exc

    from convnas.strategies.optuna import strategy as optuna_module

    def broken(*args, **kwargs):
        try:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, Exception(message))
        except sqlalchemy.exc.OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("An exception is raised") from exc

    monkeypatch.setattr(optuna_module, "make_storage", broken)
    rc, out, err = cli(["search", _config(here)], capfd)
    assert_clean_error(rc, out, err, "search", needle)


def _forge(run: pathlib.Path, change) -> None:
    path = run / "darts_checkpoint.pt"
    state = load_checkpoint(path)
    change(state)
    save_checkpoint(path, state)


@pytest.mark.parametrize(
    "forgery,needle",
    [
        (lambda s: s.pop("w_opt"), "'w_opt' is missing"),
        (lambda s: s.update(torch_rng=torch.zeros(3, dtype=torch.uint8)), "RNG state"),
        (lambda s: s.update(epoch=10**9), "inconsistent"),
        (lambda s: s.update(history="x"), "'history'"),
        (lambda s: s["supernet"].clear(), "does not fit"),
        (lambda s: s.update(extra=__import__("fractions").Fraction(1, 3)), "not loaded"),
    ],
    ids=["missing-key", "wrong-rng", "absurd-epoch", "bad-history", "empty-weights", "pickle"],
)
def test_a_forged_sealed_checkpoint_is_refused(darts_run, here, capfd, forgery, needle):
    _copy(darts_run, here)
    run = here / "runs" / "run"
    (run / "darts_checkpoint.pt").chmod(0o644)
    _forge(run, forgery)
    before = snapshot(here)
    rc, out, err = cli(["search", here / "run.yaml", "--resume"], capfd)
    assert_clean_error(rc, out, err, "search", needle)
    assert snapshot(here) == before
